"""Event payloads and their topics: the contract's events and presence kinds, the events seq counter of
its own, Home Assistant templates rendered with Jinja (never "None"), and publishing through a real broker.
(That the shipped schemas match the models is test_contract.py's, for every kind.)"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from app.config import SpoolConfig
from app.telemetry import contract, discovery
from app.telemetry.broker import Broker
from app.telemetry.mqtt import Telemetry
from app.telemetry.schemas import SchemaError, validate
from app.telemetry.spool import Spool
from app.telemetry.topics import Topics, parse

from .conftest import Collector, mqtt_cfg, wait_until

EVENT = {"v": 1, "seq": 3, "type": "start", "label": "face", "count": 1, "max_score": 0.93,
         "started_at": 100.0, "ts": 100.2, "snapshot": True}  # fmt: skip
PRESENCE = {"v": 1, "ts": 100.2, "present": {"face": {"count": 2, "max_score": 0.9, "started_at": 100.0}}}
METRICS = {"ts": 2.0, "fps": 29.5, "latency_ms": {"infer": {"p50": 4.0, "p90": 5.0, "p99": 9.0}},
           "power_w": None, "power_source": "none: no power meter configured", "energy_mj_per_inference": None,
           "temp_c": None, "cpu_percent": 80.0, "rss_mb": 120.0, "dropped_frames": 0, "spool_depth": 0,
           "runtime": "tflite", "model": "blazeface-short", "throttled": None}  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("events", EVENT),
        ("events", EVENT | {"type": "end", "count": 0, "snapshot": False}),
        ("presence", PRESENCE),
        ("presence", {"v": 1, "ts": 1.0, "present": {}}),
    ],
)
def test_valid(kind: str, payload: dict) -> None:
    validate(kind, payload)
    assert contract.parse(kind, payload).to_wire() == payload  # what the fleet parses is what was sent


@pytest.mark.parametrize(
    ("kind", "payload", "message"),
    [
        ("events", EVENT | {"v": 2}, "events payload is version 2"),
        ("events", EVENT | {"type": "pause"}, "type"),
        ("events", EVENT | {"seq": 0}, "seq"),
        ("events", EVENT | {"count": -1}, "count"),
        ("events", EVENT | {"max_score": 1.5}, "max_score"),
        ("events", EVENT | {"snapshot": "yes"}, "snapshot"),
        ("events", EVENT | {"extra": 1}, "'extra' is not allowed"),
        ("presence", PRESENCE | {"present": {"face": {"count": 1}}}, "present.face"),
    ],
)
def test_invalid_raise_one_line(kind: str, payload: dict, message: str) -> None:
    with pytest.raises(SchemaError) as info:
        validate(kind, payload)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_consumer_refuses_events_without_v() -> None:
    with pytest.raises(contract.UnsupportedVersion, match="has no 'v'"):
        contract.parse("events", {k: v for k, v in EVENT.items() if k != "v"})


def test_event_topics_parse() -> None:
    t = Topics("cam-1")
    for kind in ("events", "presence", "snapshot"):
        assert getattr(t, kind) == f"lookout/cam-1/{kind}"
        assert parse(getattr(t, kind)) == ("cam-1", kind, None)


# --- the spool's second counter ---------------------------------------------------------------------
def test_events_seq_is_a_counter_of_its_own_and_persists(tmp_path: Path) -> None:
    s = Spool(tmp_path / "s.db")
    assert [s.put_seq("d", lambda q: b"d")[1] for _ in range(3)] == [1, 2, 3]
    assert [s.put_seq("e", lambda q: b"e", counter="events_seq")[1] for _ in range(2)] == [1, 2]
    assert s.put_seq("d", lambda q: b"d")[1] == 4
    s.close()
    s2 = Spool(tmp_path / "s.db")
    assert (s2.last_seq, s2.last_of("events_seq")) == (4, 2)
    assert s2.put_seq("e", lambda q: str(q).encode(), counter="events_seq")[1] == 3
    with pytest.raises(ValueError, match="unknown seq counter"):
        s2.put_seq("e", lambda q: b"", counter="nope")


def test_a_spool_from_before_the_events_counter_gets_one(tmp_path: Path) -> None:
    s = Spool(tmp_path / "s.db")
    s.put_seq("d", lambda q: b"d")
    s._db.execute("DELETE FROM meta WHERE key = 'events_seq'")  # as an older version left the file
    s.close()
    s2 = Spool(tmp_path / "s.db")
    assert (s2.last_seq, s2.last_of("events_seq")) == (1, 0)
    assert s2.put_seq("e", lambda q: b"e", counter="events_seq")[1] == 1


# --- Home Assistant templates, rendered the way HA renders them (Jinja, value_json) -------------------
def render(template: str, payload: dict) -> str:
    return ImmutableSandboxedEnvironment().from_string(template).render(value_json=payload).strip()


def by_topic(labels: list[str], camera: bool = True) -> dict[str, dict]:
    return discovery.configs(Topics("cam.7"), "0.1.0", labels, camera=camera)


def test_metrics_sensors_are_unavailable_without_a_measurement_never_none() -> None:
    cfgs = by_topic([])
    for obj in ("fps", "infer_p90_ms", "power_w", "temp_c"):
        c = cfgs[f"homeassistant/sensor/cam_7/{obj}/config"]
        assert c["availability_mode"] == "all"
        status_av, measured_av = c["availability"]
        assert render(status_av["value_template"], {"state": "degraded"}) == "online"
        assert render(status_av["value_template"], {"state": "offline"}) == "offline"
        unmeasured = METRICS | {"fps": None, "latency_ms": {}}
        assert render(measured_av["value_template"], unmeasured) == "offline"
        assert render(c["value_template"], unmeasured) == ""  # never the string "None"
    full = METRICS | {"power_w": 3.25, "temp_c": 51.5}
    for obj, want in (("fps", "29.5"), ("infer_p90_ms", "5.0"), ("power_w", "3.25"), ("temp_c", "51.5")):
        c = cfgs[f"homeassistant/sensor/cam_7/{obj}/config"]
        assert render(c["availability"][1]["value_template"], full) == "online"
        assert render(c["value_template"], full) == want


@pytest.mark.parametrize("label", ["face", "traffic light", 'odd "label" \\ é'])
def test_presence_entities_per_label(label: str) -> None:
    cfgs = by_topic([label, "person"])
    obj = discovery.object_id(label)
    occ = cfgs[f"homeassistant/binary_sensor/cam_7/presence_{obj}/config"]
    count = cfgs[f"homeassistant/sensor/cam_7/count_{obj}/config"]
    assert (
        occ["device_class"] == "occupancy"
        and occ["state_topic"] == count["state_topic"] == "lookout/cam.7/presence"
    )
    here = {"v": 1, "ts": 1.0, "present": {label: {"count": 3, "max_score": 0.9, "started_at": 0.5}}}
    gone = {"v": 1, "ts": 2.0, "present": {"person": {"count": 1, "max_score": 0.9, "started_at": 0.5}}}
    assert render(occ["value_template"], here) == "ON"
    assert render(occ["value_template"], gone) == "OFF"
    assert render(count["value_template"], here) == "3"
    assert render(count["value_template"], gone) == "0"
    for c in (occ, count):
        assert c["availability"] == [{"topic": "lookout/cam.7/status", "value_template": discovery._UP}]
    assert len({c["unique_id"] for c in cfgs.values()}) == len(cfgs)


def test_camera_entity_on_the_snapshot_topic() -> None:
    cam = by_topic(["face"])["homeassistant/camera/cam_7/snapshot/config"]
    assert cam["topic"] == "lookout/cam.7/snapshot"
    assert "image_encoding" not in cam  # raw JPEG bytes
    assert cam["availability"][0]["topic"] == "lookout/cam.7/status"
    no_events = by_topic([], camera=False)  # [events] or [snapshot] off: no entities for them
    assert not [t for t in no_events if "/camera/" in t or "presence_" in t or "count_" in t]


def test_too_many_labels_are_capped(caplog: pytest.LogCaptureFixture) -> None:
    cfgs = by_topic([f"class{i}" for i in range(discovery.MAX_LABELS + 20)])
    assert sum("/presence_" in t for t in cfgs) == discovery.MAX_LABELS
    assert "set [events] labels" in caplog.text


# --- through a real broker --------------------------------------------------------------------------
def test_events_presence_snapshot_and_label_entities_on_the_wire(
    broker: Broker, collect: Callable[..., Collector], telemetry: Callable, astronaut_bgr: np.ndarray
) -> None:
    sub = collect(broker, ["lookout/#", "homeassistant/#"])
    t = telemetry(broker.url, device_id="cam-3")
    t.set_labels(["face"], camera=True)
    assert t.wait_connected(10)
    ok, jpeg = cv2.imencode(".jpg", astronaut_bgr)
    assert ok
    t.publish_snapshot(jpeg.tobytes())
    det_seq = t.publish_detections(
        {"frame": 0, "model": "m", "runtime": "tflite", "detections": [], "latency_ms": {}}
    )
    seqs = [
        t.publish_event({k: v for k, v in EVENT.items() if k != "seq"} | {"type": kind})
        for kind in ("start", "end")
    ]
    t.publish_presence(PRESENCE)
    assert det_seq == 1 and seqs == [1, 2]  # each topic counts on its own
    events = sub.wait_for("/events", 2)
    assert [(m.json()["seq"], m.json()["type"], m.retain) for m in events] == [
        (1, "start", False),
        (2, "end", False),
    ]
    snap = sub.wait_for("/snapshot")[0]
    assert snap.retain is False and snap.payload == jpeg.tobytes()  # a live subscriber: retain flag unset
    sub.wait_for("/presence")
    sub.wait_for("/presence_face/config")
    wait_until(lambda: t.stats()["spool_depth"] == 0, 10, "the spool to drain")
    assert t.stats()["last_events_seq"] == 2

    late = collect(broker, ["lookout/cam-3/snapshot", "lookout/cam-3/presence", "homeassistant/#"])
    late.wait_for("/camera/cam-3/snapshot/config")
    shot = late.wait_for("/snapshot")[0]
    assert shot.retain
    img = cv2.imdecode(np.frombuffer(shot.payload, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape == astronaut_bgr.shape
    assert late.wait_for("/presence")[0].json() == PRESENCE
    late.wait_for("/count_face/config")

    # the model changes (hot swap): the old label's entities are removed with an empty retained config
    n = len(sub.on("/presence_face/config"))
    t.set_labels(["person"], camera=True)
    sub.wait_for("/presence_person/config")
    gone = sub.wait_for("/presence_face/config", n + 1)[-1]
    assert gone.payload == b""
    fresh = collect(broker, ["homeassistant/#"])
    fresh.wait_for("/presence_person/config")
    assert not fresh.on("/presence_face/config")
    assert json.loads(fresh.on("/presence_person/config")[0].payload)["device_class"] == "occupancy"


def test_entities_a_restart_no_longer_makes_are_removed(
    broker: Broker, collect: Callable[..., Collector], tmp_path: Path
) -> None:
    """Labels changed in the config, then Home Assistant turned off, each across a restart: no ghost entity
    stays retained (before: the old label's occupancy and count entities stayed forever)."""

    def run(labels: list[str], homeassistant: bool = True) -> set[str]:
        """One run of the device on the same state dir; then the entities retained on the broker."""
        t = Telemetry(
            mqtt_cfg(broker.url, homeassistant=homeassistant), SpoolConfig(), "cam-9", tmp_path / "s"
        )
        t.set_labels(labels, camera=True)
        t.start()
        try:
            assert t.wait_connected(10)
            wait_until(lambda: t.stats()["spool_depth"] == 0, 10, "the spool to drain")
        finally:
            t.stop(timeout_s=2)
        late = collect(broker, ["homeassistant/+/cam-9/+/config"])
        time.sleep(1.0)  # retained messages arrive right after the subscription; empty ones are not kept
        return {m.topic.split("/")[-2] for m in late.on("/config") if m.payload}

    assert {"presence_face", "count_face", "snapshot", "connectivity"} <= run(["face"])
    now = run(["person"])
    assert {"presence_person", "count_person"} <= now and not {"presence_face", "count_face"} & now
    assert run(["person"], homeassistant=False) == set()
