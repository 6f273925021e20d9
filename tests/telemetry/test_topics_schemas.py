"""Topic contract and JSON Schemas: well-formed payloads pass, each kind of mistake is named."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from app.errors import ConfigError
from app.telemetry import schemas
from app.telemetry.schemas import SchemaError, validate
from app.telemetry.topics import Topics, parse, wildcard

STATUS = {"state": "online", "version": "0.1.0", "runtime": "tflite", "model": "blazeface-short",
          "fallback": None, "started_at": 1.0, "ts": 2.0}  # fmt: skip
DETECTIONS = {"seq": 7, "ts": 2.0, "frame": 3, "model": "blazeface-short", "runtime": "tflite",
              "detections": [{"label": "face", "score": 0.9, "box": [1, 2, 30, 40]}],
              "latency_ms": {"capture": 1.2, "infer": 4.5}}  # fmt: skip
METRICS = {"ts": 2.0, "fps": 29.5, "latency_ms": {"infer": {"p50": 4.0, "p90": 5.0, "p99": 9.0}},
           "power_w": None, "power_source": "none: no power meter configured", "energy_mj_per_inference": None,
           "temp_c": 51.0, "cpu_percent": 80.0, "rss_mb": 120.0, "dropped_frames": 0, "spool_depth": 0,
           "runtime": "tflite", "model": "blazeface-short", "throttled": None}  # fmt: skip


def test_device_topics() -> None:
    t = Topics("cam-1")
    assert (t.status, t.detections, t.metrics, t.bench) == (
        "lookout/cam-1/status", "lookout/cam-1/detections", "lookout/cam-1/metrics", "lookout/cam-1/bench",
    )  # fmt: skip
    assert t.cmd("swap") == "lookout/cam-1/cmd/swap"
    assert t.cmd_reply("swap") == "lookout/cam-1/cmd/swap/reply"
    assert t.cmd_filter == "lookout/cam-1/cmd/+"
    assert Topics("a", prefix="site/x").status == "site/x/a/status"


@pytest.mark.parametrize("bad", ["", "a/b", "a+b", "a#", "x" * 65, "sp ace"])
def test_bad_device_id_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="device_id"):
        Topics(bad)


def test_wildcards_and_shared_subscriptions() -> None:
    assert wildcard("status") == "lookout/+/status"
    assert wildcard("cmd_reply") == "lookout/+/cmd/+/reply"
    assert wildcard("metrics", share_group="fleet") == "$share/fleet/lookout/+/metrics"
    with pytest.raises(ValueError, match="unknown topic kind"):
        wildcard("nope")


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("lookout/cam-1/status", ("cam-1", "status", None)),
        ("lookout/cam-1/detections", ("cam-1", "detections", None)),
        ("lookout/cam.2/metrics", ("cam.2", "metrics", None)),
        ("lookout/cam-1/bench", ("cam-1", "bench", None)),
        ("lookout/cam-1/cmd/swap", ("cam-1", "cmd", "swap")),
        ("lookout/cam-1/cmd/swap/reply", ("cam-1", "cmd_reply", "swap")),
        ("lookout/cam-1/other", None),
        ("lookout/cam-1", None),
        ("other/cam-1/status", None),
        ("lookout/cam-1/cmd/swap/reply/x", None),
    ],
)
def test_parse(topic: str, expected: tuple | None) -> None:
    assert parse(topic) == expected


def test_parse_roundtrips_every_device_topic() -> None:
    t = Topics("dev_9", prefix="a/b")
    for kind in ("status", "detections", "metrics", "bench"):
        assert parse(getattr(t, kind), prefix="a/b") == ("dev_9", kind, None)
    assert parse(t.cmd_reply("config"), prefix="a/b") == ("dev_9", "cmd_reply", "config")


def test_every_schema_is_valid_2020_12_and_shipped_as_package_data() -> None:
    files = {p.name for p in resources.files("app.telemetry").joinpath("schemas").iterdir()}
    assert files == {f"{k}.json" for k in schemas.KINDS}
    for kind in schemas.KINDS:
        doc = json.loads(resources.files("app.telemetry").joinpath("schemas", f"{kind}.json").read_text())
        assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        schemas.validator(kind)  # check_schema raises on an invalid schema


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("status", STATUS),
        ("status", {"state": "offline"}),
        (
            "status",
            STATUS
            | {"state": "degraded", "fallback": {"from": "edgetpu", "to": "tflite", "reason": "no TPU"}},
        ),
        ("detections", DETECTIONS),
        ("detections", DETECTIONS | {"detections": []}),
        ("metrics", METRICS),
        ("metrics", METRICS | {"fps": None, "latency_ms": {}, "throttled": {"under_voltage": True}}),
        (
            "bench",
            {
                "model": "m",
                "host": {"cpu": "x"},
                "results": [{"runtime": "tflite", "latency_ms": {"p90": 1.0}}],
            },
        ),
        ("cmd_swap", {"model": "blazeface-short", "runtime": "executorch"}),
        ("cmd_bench", {"runtimes": ["tflite", "executorch"], "frames": 100}),
        ("cmd_config", {"publish_empty": True}),
        ("cmd_reply", {"ok": True, "verb": "swap", "ts": 1.0, "load_s": 2.0}),
        ("cmd_reply", {"ok": False, "verb": "swap", "ts": 1.0, "error": "bad"}),
    ],
)
def test_valid_payloads(kind: str, payload: dict) -> None:
    validate(kind, payload)


@pytest.mark.parametrize(
    ("kind", "payload", "message"),
    [
        ("status", {"state": "online"}, "'version' is a required property"),
        ("status", STATUS | {"state": "sleeping"}, "state"),
        ("status", STATUS | {"extra": 1}, "extra"),
        ("detections", DETECTIONS | {"seq": 0}, "seq"),
        (
            "detections",
            DETECTIONS | {"detections": [{"label": "f", "score": 1.5, "box": [0, 0, 1, 1]}]},
            "detections[0].score",
        ),
        (
            "detections",
            DETECTIONS | {"detections": [{"label": "f", "score": 0.5, "box": [0, 0, 1]}]},
            "detections[0].box",
        ),
        ("metrics", {k: v for k, v in METRICS.items() if k != "power_source"}, "power_source"),
        ("metrics", METRICS | {"power_w": 0.5, "power_source": ""}, "power_source"),
        ("metrics", METRICS | {"latency_ms": {"infer": {"p50": 1}}}, "latency_ms.infer"),
        ("bench", {"model": "m", "results": []}, "'host' is a required property"),
        ("cmd_swap", {"model": "m"}, "'runtime' is a required property"),
        ("cmd_swap", {"model": "m", "runtime": "tflite", "force": True}, "force"),
        ("cmd_bench", {"runtimes": []}, "runtimes"),
        ("cmd_bench", {"runtimes": ["tflite"], "frames": 0}, "frames"),
        ("cmd_config", {}, "(root)"),
        ("cmd_config", {"score_threshold": 2}, "score_threshold"),
        ("cmd_config", {"model": "x"}, "model"),
        ("cmd_reply", {"ok": False, "verb": "swap", "ts": 1.0}, "'error' is a required property"),
    ],
)
def test_invalid_payloads_raise_one_line(kind: str, payload: dict, message: str) -> None:
    with pytest.raises(SchemaError) as info:
        validate(kind, payload)
    text = str(info.value)
    assert "\n" not in text and text.startswith(kind) and message in text


def test_unknown_kind() -> None:
    with pytest.raises(SchemaError, match="no schema for 'nope'"):
        validate("nope", {})
