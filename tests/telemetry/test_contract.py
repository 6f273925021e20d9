"""The payload contract: models, generated schemas (drift), versions, NaN, and model/schema agreement."""

from __future__ import annotations

import json
import math
from importlib import resources
from typing import Any, ClassVar

import pytest
from jsonschema import Draft202012Validator

from app.telemetry import contract, schemas
from app.telemetry.contract import ContractError, Throttling, UnsupportedVersion

V = {"v": 1}
STATUS = V | {"state": "online", "version": "0.1.0", "runtime": "tflite", "model": "blazeface-short",
              "fallback": None, "board": None, "started_at": 1.0, "ts": 2.0}  # fmt: skip
DETECTIONS = V | {"seq": 7, "ts": 2.0, "frame": 3, "model": "blazeface-short", "runtime": "tflite",
                  "detections": [{"label": "face", "score": 0.9, "box": [1, 2, 30, 40]}],
                  "latency_ms": {"capture": 1.2, "infer": 4.5}}  # fmt: skip
THROTTLED = Throttling.from_register(0x50005).model_dump()
METRICS = V | {"ts": 2.0, "fps": 29.5, "latency_ms": {"infer": {"p50": 4.0, "p90": 5.0, "p99": 9.0}},
               "power_w": None, "power_source": "none: no power meter configured", "energy_mj_per_inference": None,
               "temp_c": 51.0, "temps": {"cpu-thermal": 51.0}, "cpu_percent": 80.0, "rss_mb": 120.0,
               "dropped_frames": 0, "spool_depth": 0, "spool_dropped": 0, "runtime": "tflite",
               "model": "blazeface-short", "throttled": THROTTLED, "reasons": {}}  # fmt: skip
BENCH = V | {"model": "m", "host": {"cpu": "x"}, "ts": 1.0,
             "results": [{"runtime": "tflite", "latency_ms": {"p50": 1.0, "p90": 1.0, "p99": 1.0, "mean": 1.0,
                                                               "min": 1.0, "max": 1.0}}]}  # fmt: skip

VALID = [
    ("status", STATUS),
    ("status", V | {"state": "offline"}),
    (
        "status",
        STATUS
        | {
            "state": "degraded",
            "reason": "camera lost",
            "fallback": {"from": "edgetpu", "to": "tflite", "reason": "no TPU"},
        },
    ),
    ("detections", DETECTIONS),
    ("detections", DETECTIONS | {"detections": []}),
    ("metrics", METRICS),
    (
        "metrics",
        METRICS | {"fps": None, "latency_ms": {}, "throttled": None, "reasons": {"throttled": "no Pi"}},
    ),
    ("bench", BENCH),
    ("cmd_swap", {"model": "blazeface-short", "runtime": "executorch"}),
    ("cmd_swap", V | {"model": "blazeface-short", "runtime": "executorch", "id": "42"}),
    ("cmd_bench", {"runtimes": ["tflite", "executorch"], "frames": 100}),
    ("cmd_config", {"publish_empty": True}),
    (
        "cmd_reply",
        V | {"ok": True, "verb": "swap", "ts": 1.0, "load_s": 2.0, "to": {"model": "m", "runtime": "tflite"}},
    ),
    ("cmd_reply", V | {"ok": False, "verb": "swap", "ts": 1.0, "error": "bad"}),
]
INVALID = [
    ("status", V | {"state": "online"}, "'version'"),
    ("status", STATUS | {"state": "sleeping"}, "state"),
    ("status", STATUS | {"extra": 1}, "extra"),
    ("detections", DETECTIONS | {"seq": 0}, "seq"),
    ("detections", DETECTIONS | {"seq": True}, "seq"),
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
    ("metrics", METRICS | {"fps": "fast"}, "fps"),
    ("metrics", METRICS | {"latency_ms": {"infer": {"p50": 1}}}, "latency_ms.infer"),
    ("metrics", METRICS | {"throttled": {"under_voltage_now": True}}, "throttled"),  # the old shapes are gone
    ("metrics", METRICS | {"throttled": True}, "throttled"),
    ("metrics", METRICS | {"throttled": THROTTLED | {"raw": "0x0"}}, "raw"),  # flags must match the register
    ("bench", V | {"model": "m", "results": [], "ts": 1.0}, "'host'"),
    ("cmd_swap", {"model": "m"}, "'runtime' is a required property"),
    ("cmd_swap", {"model": "m", "runtime": "tflite", "force": True}, "force"),
    ("cmd_bench", {"runtimes": []}, "runtimes"),
    ("cmd_bench", {"runtimes": ["tflite", "tflite"]}, "runtime"),
    ("cmd_bench", {"runtimes": ["tflite"], "frames": 0}, "frames"),
    ("cmd_config", {}, "(root)"),
    ("cmd_config", {"score_threshold": 2}, "score_threshold"),
    ("cmd_config", {"model": "x"}, "model"),
    ("cmd_reply", V | {"ok": False, "verb": "swap", "ts": 1.0}, "'error'"),
    ("cmd_reply", V | {"ok": True, "verb": "swap", "ts": 1.0, "error": "x"}, "'error'"),
]


def file_validator(kind: str) -> Draft202012Validator:
    """A jsonschema validator of the SHIPPED file (independent of pydantic)."""
    doc = json.loads(resources.files("app.telemetry").joinpath("schemas", f"{kind}.json").read_text())
    Draft202012Validator.check_schema(doc)
    return Draft202012Validator(doc)


# --- generated schemas ----------------------------------------------------------------------------
def test_checked_in_schemas_are_exactly_what_the_models_generate() -> None:
    """The drift test: `make schemas` regenerates; this fails until the files match the models."""
    assert schemas.drifted() == [], "schemas differ from the models: run `make schemas`"
    files = {p.name for p in resources.files("app.telemetry").joinpath("schemas").iterdir()}
    assert files == {f"{k}.json" for k in contract.KINDS}


def test_drift_is_detected(tmp_path) -> None:
    schemas.write_all(tmp_path)
    assert schemas.drifted(tmp_path) == []
    doc = json.loads((tmp_path / "metrics.json").read_text())
    doc["properties"]["fps"] = {"type": "string"}
    (tmp_path / "metrics.json").write_text(json.dumps(doc, indent=2) + "\n")
    (tmp_path / "old.json").write_text("{}")
    (tmp_path / "status.json").unlink()
    assert schemas.drifted(tmp_path) == ["status", "metrics", "old"]
    assert schemas.main(["--check"]) == 0


@pytest.mark.parametrize("kind", list(contract.KINDS))
def test_every_schema_is_2020_12_versioned_and_requires_v_from_devices(kind: str) -> None:
    doc = schemas.schema(kind)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"] == f"https://lookout.local/schemas/v1/{kind}.json"
    assert doc["properties"]["v"]["const"] == 1
    assert ("v" in doc.get("required", [])) == contract.KINDS[kind].sent_by_device
    file_validator(kind)


# --- model and schema say the same --------------------------------------------------------------
@pytest.mark.parametrize(("kind", "payload"), VALID)
def test_valid_payloads_pass_the_model_and_the_shipped_schema(kind: str, payload: dict) -> None:
    msg = contract.parse(kind, payload)
    assert file_validator(kind).is_valid(payload)
    wire = msg.to_wire()
    assert wire["v"] == 1
    assert file_validator(kind).is_valid(wire)
    assert contract.parse(kind, json.loads(msg.to_json())) == msg  # round trip


@pytest.mark.parametrize(("kind", "payload", "message"), INVALID)
def test_invalid_payloads_fail_both_with_one_line_naming_the_field(
    kind: str, payload: dict, message: str
) -> None:
    with pytest.raises(ContractError) as info:
        contract.parse(kind, payload)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{kind} payload") and message in text
    if not (kind == "metrics" and "raw" in message):  # a register/flags mismatch is beyond JSON Schema
        assert not file_validator(kind).is_valid(payload)


def test_unknown_kind() -> None:
    with pytest.raises(ContractError, match="no payload kind 'nope'"):
        schemas.validate("nope", {})


# --- versions -------------------------------------------------------------------------------------
def test_versions_known_unknown_and_missing() -> None:
    bare = {k: v for k, v in STATUS.items() if k != "v"}
    with pytest.raises(UnsupportedVersion) as info:
        contract.parse("status", bare)
    assert info.value.version is None and "older than the v1 contract" in str(info.value)
    with pytest.raises(UnsupportedVersion) as info:
        contract.parse("status", bare | {"v": 2, "state": "hibernating"})
    assert info.value.version == 2
    with pytest.raises(ContractError) as info:  # not a version at all: malformed, not unsupported
        contract.parse("status", bare | {"v": "1"})
    assert not isinstance(info.value, UnsupportedVersion)
    assert contract.build("status", bare).to_wire()["v"] == 1  # a producer's dict gets v filled in
    assert contract.parse("cmd_config", {"publish_empty": True}).v == 1  # commands may leave it out
    with pytest.raises(UnsupportedVersion):
        contract.parse("cmd_config", {"v": 2, "publish_empty": True})


@pytest.mark.parametrize("kind", ["status", "cmd_config"])
@pytest.mark.parametrize("check", [contract.parse, contract.build])
def test_true_is_not_version_1(kind: str, check: Any) -> None:
    """Consumer and producer refuse `"v": true` as malformed, as the shipped schemas do."""
    payload = {"v": True, "state": "offline"} if kind == "status" else {"v": True, "publish_empty": True}
    with pytest.raises(ContractError, match=r"payload v: .*not a boolean") as info:
        check(kind, payload)
    assert not isinstance(info.value, UnsupportedVersion)
    assert not file_validator(kind).is_valid(payload)
    assert check(kind, payload | {"v": 1}).v == 1


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("status", {"v": 1, "state": "offline", "reason": None}),
        ("cmd_config", {"publish_empty": True, "score_threshold": None}),
        ("cmd_config", {"publish_empty": True, "id": None}),
        ("cmd_bench", {"runtimes": ["tflite"], "frames": None}),
    ],
)
def test_a_field_that_may_be_absent_is_not_null_on_the_wire(kind: str, payload: dict[str, Any]) -> None:
    """As the shipped schemas say; a producer's None still just leaves the field out."""
    null = next(k for k, v in payload.items() if v is None)
    with pytest.raises(ContractError, match=f"'{null}' may be left out but not null"):
        contract.parse(kind, payload)
    assert not file_validator(kind).is_valid(payload)
    if kind.startswith("cmd_"):  # a command is always wire data
        with pytest.raises(ContractError, match="may be left out but not null"):
            contract.build(kind, payload)
    else:
        assert null not in contract.build(kind, payload).to_wire()


def test_the_will_is_the_offline_status() -> None:
    will = contract.offline_will()
    assert json.loads(will) == {"v": 1, "state": "offline"}
    assert file_validator("status").is_valid(json.loads(will))


# --- NaN and infinity -----------------------------------------------------------------------------
def test_non_finite_numbers_become_null_with_a_reason() -> None:
    m = contract.build(
        "metrics",
        METRICS | {"fps": math.nan, "latency_ms": {"infer": {"p50": 1.0, "p90": math.inf, "p99": 2.0}}},
    )
    wire = json.loads(m.to_json())
    assert wire["fps"] is None and wire["latency_ms"]["infer"]["p90"] is None
    assert wire["reasons"] == {
        "fps": "not a finite number (nan)",
        "latency_ms.infer.p90": "not a finite number (inf)",
    }
    assert file_validator("metrics").is_valid(wire)


def test_kinds_without_reasons_refuse_non_finite_numbers() -> None:
    with pytest.raises(ContractError, match=r"score: not a finite number \(nan\)"):
        contract.build(
            "detections",
            DETECTIONS | {"detections": [{"label": "f", "score": math.nan, "box": [0, 0, 1, 1]}]},
        )
    kept = contract.finite_detections(
        [
            {"label": "f", "score": 0.9, "box": [0, 0, 1, 1]},
            {"label": "g", "score": 0.8, "box": [0, math.inf, 1, 1]},
        ]
    )
    assert [d["label"] for d in kept] == ["f"]


def test_detections_keep_their_finite_keypoints() -> None:
    nose = {"name": "nose", "x": 1.0, "y": 2.0, "score": 0.9}
    kept = contract.finite_detections(
        [
            {
                "label": "person",
                "score": 0.9,
                "box": [0, 0, 9, 9],
                "keypoints": [nose, nose | {"x": math.nan}],
            },
            {"label": "face", "score": 0.8, "box": [0, 0, 1, 1]},
        ]
    )
    assert kept[0]["keypoints"] == [nose] and "keypoints" not in kept[1]
    wire = json.loads(contract.build("detections", DETECTIONS | {"detections": kept}).to_json())
    assert wire["detections"][0]["keypoints"] == [nose] and "keypoints" not in wire["detections"][1]
    assert file_validator("detections").is_valid(wire)


def test_nan_on_the_wire_is_not_json() -> None:
    with pytest.raises(ValueError, match="NaN is not JSON"):
        contract.loads(b'{"v": 1, "fps": NaN}')
    with pytest.raises(ValueError, match="not an object"):
        contract.loads(b"[1]")


# --- extending the contract -----------------------------------------------------------------------
def test_adding_a_kind_is_one_model_and_one_registry_entry(monkeypatch) -> None:
    class Events(contract.Payload):
        """A presence event (the shape issue #17 will define)."""

        topic: ClassVar[str] = "<prefix>/<device_id>/events (QoS 1)"

        label: str
        state: str
        ts: float

    monkeypatch.setitem(contract.KINDS, "events", Events)
    doc = schemas.generate("events")
    assert doc["$id"].endswith("/v1/events.json") and doc["required"][0] == "v"
    good: dict[str, Any] = {"v": 1, "label": "person", "state": "present", "ts": 1.0}
    assert contract.parse("events", good).to_wire() == good
    assert Draft202012Validator(doc).is_valid(good)
    with pytest.raises(UnsupportedVersion):
        contract.parse("events", {k: v for k, v in good.items() if k != "v"})
