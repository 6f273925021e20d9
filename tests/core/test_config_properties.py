"""Property-based: any config file gives a LookoutConfig or one clear line, never a traceback (#15).

Three kinds of input to the real `load_config`: arbitrary bytes; arbitrary TOML text; and TOML documents
built from the real config keys (so the values reach the model's validators) with hostile values:
NaN, infinities, huge numbers, control characters, wrong types, unknown keys. A secret given with a wrong
type never shows in the error.
"""

from __future__ import annotations

import math
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.config import LookoutConfig, load_config
from app.errors import ConfigError
from app.tomlwrite import dump_toml

SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
CANARY = "Canary-Secret-0451"

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
    st.sampled_from(["mqtt://127.0.0.1:1883", "mqtts://u:p@h:8883", "http://x", "#", "a/+/b", "tflite",
                     "synthetic", "opencv", "images", "edgetpu", "picamera2", "blazeface-short", "../x"]),
)  # fmt: skip
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=6)

SUB_KEYS = {
    "mqtt": ["enabled", "url", "protocol", "username", "password", "keepalive_s", "topic_prefix",
             "publish_empty", "metrics_interval_s", "reconnect_max_s", "homeassistant"],
    "pipeline": ["score_threshold", "fps", "max_frames", "warmup", "queue_size"],
    "spool": ["max_messages", "max_age_s", "drop_policy"],
    "source": ["type", "uri", "loop", "realtime", "width", "height", "folder", "seed", "camera", "fps"],
    "runtime": ["type", "threads", "artifact", "isolate", "device", "delegate_path"],
    "meter": ["type", "name", "root", "rate_hz", "chip", "bus", "address", "shunt_ohms"],
    "reconnect": ["initial_s", "max_s"],
    "bench": ["min_queries", "min_duration_s", "warmup"],
}  # fmt: skip
TYPES = {
    "runtime": ["tflite", "edgetpu", "executorch", "torchscript-lite", "onnxruntime"],
    "source": ["opencv", "images", "synthetic", "picamera2"],
    "meter": ["none", "hwmon", "ina2xx_i2c", "rpi_pmic", "rapl"],
}
tables = st.fixed_dictionaries(
    {},
    optional={
        "device_id": st.one_of(*[st.sampled_from(["cam-1", "a.b_c-9", "x" * 64])] * 3, values),
        "model": st.one_of(st.just("blazeface-short"), values),
        **{
            sec: st.dictionaries(st.sampled_from([*keys, "bogus"]), values, max_size=4)
            for sec, keys in SUB_KEYS.items()
            if sec not in TYPES
        },
        **{
            sec: st.fixed_dictionaries(
                {"type": st.one_of(*[st.sampled_from(TYPES[sec])] * 3, values)},
                optional={k: values for k in [*SUB_KEYS[sec], "bogus"] if k != "type"},
            )
            for sec in TYPES
        },
        "tls": st.dictionaries(st.sampled_from(["ca_file", "cert_file", "key_file", "insecure"]), values),
    },
)


def _drop_none(d: object) -> object:
    if isinstance(d, dict):
        return {k: _drop_none(v) for k, v in d.items() if v is not None}
    if isinstance(d, list):
        return [x for x in (_drop_none(v) for v in d) if x is not None]
    return d


def _check(path: Path) -> LookoutConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg, repr(msg)
        assert str(path) in msg or "config file" in msg, msg
        return None


@SETTINGS
@given(data=st.binary(max_size=300))
def test_any_bytes(tmp_path: Path, data: bytes) -> None:
    p = tmp_path / "c.toml"
    p.write_bytes(data)
    _check(p)


@SETTINGS
@given(doc=st.text(max_size=200))
def test_any_text(tmp_path: Path, doc: str) -> None:
    p = tmp_path / "c.toml"
    p.write_bytes(doc.encode("utf-8", "surrogatepass"))
    _check(p)


@SETTINGS
@given(doc=tables)
def test_config_shaped_documents(tmp_path: Path, doc: dict) -> None:
    doc = _drop_none(doc)
    if "tls" in doc:
        doc.setdefault("mqtt", {})["tls"] = doc.pop("tls")
    p = tmp_path / "c.toml"
    p.write_text(dump_toml(doc), encoding="utf-8")
    cfg = _check(p)
    if cfg is not None:  # what loads is what the rules allow
        for v in (cfg.mqtt.metrics_interval_s, cfg.mqtt.reconnect_max_s, cfg.spool.max_age_s):
            assert v > 0
        assert cfg.pipeline.score_threshold is None or 0 <= cfg.pipeline.score_threshold <= 1


@SETTINGS
@given(
    bad=st.one_of(st.lists(st.integers(), min_size=1, max_size=2), st.integers(), st.floats(), st.booleans())
)
def test_a_secret_of_the_wrong_type_is_never_echoed(tmp_path: Path, bad: object) -> None:
    p = tmp_path / "c.toml"
    value = [CANARY, bad] if isinstance(bad, list) else bad
    p.write_text(f"[mqtt]\npassword = {dump_toml({'v': value}).split(' = ', 1)[1]}", encoding="utf-8")
    try:
        load_config(p)
    except ConfigError as exc:
        assert CANARY not in str(exc)
        if isinstance(bad, float) and not math.isfinite(bad):
            return
        assert "secret" in str(exc)


# `lookout run` flags, written `--flag=value` so a value starting with '-' stays a value.
flag_values = {
    "--source": st.one_of(st.sampled_from(["synthetic", "demo", "0", "/dev/video9", "rtsp://h/s", "nope"]), text),
    "--model": st.one_of(st.just("blazeface-short"), text),
    "--runtime": st.one_of(st.sampled_from(TYPES["runtime"]), text),
    "--threads": st.integers(min_value=-(2**70), max_value=2**70),
    "--fps": st.floats(allow_nan=False, allow_infinity=False),
    "--max-frames": st.integers(min_value=-5, max_value=2**70),
    "--device-id": text,
    "--broker": st.one_of(st.sampled_from(["mqtt://127.0.0.1:1883", "mqtts://u:p@h:8883", "x"]), text),
    "--state-dir": text,
    "--models-dir": text,
}  # fmt: skip
flags = st.dictionaries(st.sampled_from(sorted(flag_values)), st.just(None), max_size=4).flatmap(
    lambda chosen: st.fixed_dictionaries({k: flag_values[k] for k in chosen})
)
# a scalar or array where the file should have a table (`pipeline = 3`), next to the flags merged into it
not_tables = st.dictionaries(
    st.sampled_from([*SUB_KEYS, "tls"]), st.one_of(st.integers(), text, st.lists(st.integers(), max_size=2))
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=tables, scalars=not_tables, argv=flags)
def test_config_file_with_run_flags(tmp_path: Path, doc: dict, scalars: dict, argv: dict) -> None:
    """Any config file with any `lookout run` flags: a config, or one ConfigError line (#15)."""
    from app.cli import build_parser
    from app.commands.run import overrides_from_args

    doc = {**_drop_none(doc), **scalars}
    tls = doc.pop("tls", None)
    if tls is not None and isinstance(doc.get("mqtt", {}), dict):
        doc.setdefault("mqtt", {})["tls"] = tls
    p = tmp_path / "c.toml"
    p.write_text(dump_toml(doc), encoding="utf-8")
    args = build_parser().parse_args(["run", "--config", str(p), *(f"{k}={v}" for k, v in argv.items())])
    try:
        load_config(args.config, overrides_from_args(args))
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc), repr(str(exc))
