"""The Telemetry client against a real mosquitto: every topic, retention, commands, discovery."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from app.telemetry.broker import Broker
from app.telemetry.schemas import validate
from app.telemetry.topics import parse

from .conftest import Collector, wait_until

DET = {"frame": 0, "model": "blazeface-short", "runtime": "tflite",
       "detections": [{"label": "face", "score": 0.93, "box": [179.0, 81.0, 273.0, 176.0]}],
       "latency_ms": {"capture": 0.4, "preprocess": 1.1, "infer": 4.2, "postprocess": 0.3}}  # fmt: skip
METRICS = {"fps": 24.0, "latency_ms": {"infer": {"p50": 4.0, "p90": 5.5, "p99": 8.0}}, "power_w": None,
           "power_source": "none: no power meter configured", "energy_mj_per_inference": None, "temp_c": None,
           "cpu_percent": 93.0, "rss_mb": 150.2, "dropped_frames": 2, "runtime": "tflite",
           "model": "blazeface-short", "throttled": None, "temps": {},
           "reasons": {"temp_c": "no thermal zone", "throttled": "vcgencmd not found"}}  # fmt: skip
BENCH = {
    "model": "blazeface-short",
    "host": {"cpu": "test"},
    "results": [{"runtime": "tflite", "load_s": 0.3}],
}


class Service:
    """A stand-in for app/service.py's handler: a real function recording its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, verb: str, payload: dict) -> dict:
        self.calls.append((verb, payload))
        self.gate.wait(30)
        if verb == "swap":
            return {"to": {"model": payload["model"], "runtime": payload["runtime"]}, "load_s": 0.0}
        return {}


def _check_all_against_schemas(msgs: list) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for m in msgs:
        p = parse(m.topic)
        if p is None or p.kind == "cmd":
            continue
        validate(p.kind, m.json())
        kinds[p.kind] = kinds.get(p.kind, 0) + 1
    return kinds


def test_every_topic_roundtrips_and_validates(
    broker: Broker, collect: Callable[..., Collector], telemetry: Callable
) -> None:
    sub = collect(broker, ["lookout/#", "homeassistant/#"])
    svc = Service()
    t = telemetry(broker.url, command_handler=svc)
    assert t.wait_connected(10)
    t.publish_status(state="online", runtime="tflite", model="blazeface-short")
    seqs = [t.publish_detections(DET | {"frame": i}) for i in range(3)]
    t.publish_metrics(METRICS)
    t.publish_bench(BENCH)
    sub.publish(t.topics.cmd("swap"), json.dumps({"model": "blazeface-short", "runtime": "executorch"}))
    sub.publish(t.topics.cmd("bench"), json.dumps({"runtimes": ["tflite"], "frames": 10}))
    sub.publish(t.topics.cmd("config"), json.dumps({"metrics_interval_s": 2}))
    sub.wait_for("/cmd/config/reply")
    sub.wait_for("/detections", 3)
    sub.wait_for("/bench")
    kinds = _check_all_against_schemas(sub.msgs)
    assert kinds == kinds | {
        "status": kinds["status"],
        "detections": 3,
        "metrics": 1,
        "bench": 1,
        "cmd_reply": 3,
    }
    assert seqs == [s + seqs[0] for s in range(3)] and sub.seqs() == seqs
    assert [c[0] for c in svc.calls] == ["swap", "bench", "config"]
    assert all(m.json()["ok"] for m in sub.on("/reply"))
    assert len([m for m in sub.msgs if m.topic.startswith("homeassistant/")]) == 5  # 4 sensors + connectivity
    st = wait_until(lambda: t.stats()["spool_depth"] == 0 and t.stats(), 10, "the spool to drain")
    assert (
        st["connected"]
        and st["published"] == st["acked"]
        and st["spool_depth"] == 0
        and st["last_seq"] == seqs[-1]
    )

    # retained: a monitor connecting now gets the status and bench at once
    late = collect(broker, ["lookout/+/status", "lookout/+/bench"])
    late.wait_for("/bench")
    assert late.on("/status")[-1].retain and late.on("/status")[-1].json()["state"] == "online"
    assert late.on("/bench")[-1].retain

    t.stop()
    last = sub.wait_for("/status", kinds["status"] + 1)[-1].json()
    assert last["state"] == "stopped" and last["runtime"] == "tflite"


def test_seq_continues_across_restarts(
    broker: Broker, collect: Callable[..., Collector], tmp_path: Path
) -> None:
    from app.config import SpoolConfig
    from app.telemetry.mqtt import Telemetry

    from .conftest import mqtt_cfg

    sub = collect(broker, ["lookout/+/detections"])
    got = []
    for _ in range(2):
        t = Telemetry(mqtt_cfg(broker.url), SpoolConfig(), "cam-r", tmp_path / "state")
        t.start()
        got += [t.publish_detections(DET) for _ in range(3)]
        t.stop()
    assert got == [1, 2, 3, 4, 5, 6]
    wait_until(lambda: sub.seqs() == got, 10, "six detections in order")


def test_mqtt5_response_topic_and_correlation(
    broker: Broker, collect: Callable[..., Collector], telemetry: Callable
) -> None:
    sub = collect(broker, ["lookout/+/cmd/+/reply/#"])
    t = telemetry(broker.url, command_handler=Service())
    assert t.wait_connected(10)
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = t.topics.cmd_reply("swap") + "/me"  # under the reply topic (docs/mqtt.md)
    props.CorrelationData = b"\x00corr-7"
    sub.publish(t.topics.cmd("swap"), json.dumps({"model": "blazeface-short", "runtime": "tflite"}), props)
    direct = sub.wait_for("/reply/me")[0]
    assert direct.properties.CorrelationData == b"\x00corr-7" and direct.json()["ok"] is True
    assert sub.wait_for("/cmd/swap/reply")[0].json() == direct.json()


def test_bad_commands_get_error_replies_and_the_client_keeps_going(
    broker: Broker, collect: Callable[..., Collector], telemetry: Callable, models_dir: Path
) -> None:
    sub = collect(broker, ["lookout/#"])
    svc = Service()
    t = telemetry(broker.url, command_handler=svc)
    assert t.wait_connected(10)
    bad = [
        ("swap", b"{oops"),
        ("swap", b"x" * (64 * 1024 + 1)),
        ("swap", json.dumps({"model": "../../../etc/shadow", "runtime": "tflite"}).encode()),
        ("swap", json.dumps({"runtime": "tflite"}).encode()),
        ("selfdestruct", b"{}"),
        ("config", json.dumps({"score_threshold": "high"}).encode()),
    ]
    for verb, raw in bad:
        sub.publish(t.topics.cmd(verb), raw)
    replies = sub.wait_for("/reply", len(bad))
    assert sorted(r.topic.split("/")[3] for r in replies) == sorted(v for v, _ in bad)
    assert all(r.json()["ok"] is False and r.json()["error"] for r in replies)
    for r in replies:
        validate("cmd_reply", r.json())
    assert svc.calls == []
    # still alive: a good swap goes through and detections still flow
    sub.publish(t.topics.cmd("swap"), json.dumps({"model": "blazeface-short", "runtime": "executorch"}))
    assert sub.wait_for("/reply", len(bad) + 1)[-1].json()["ok"] is True
    t.publish_detections(DET)
    sub.wait_for("/detections")


def test_slow_handler_does_not_block_the_client(
    broker: Broker, collect: Callable[..., Collector], telemetry: Callable
) -> None:
    sub = collect(broker, ["lookout/#"])
    svc = Service()
    svc.gate.clear()  # the swap "loads" until we open the gate
    t = telemetry(broker.url, command_handler=svc)
    assert t.wait_connected(10)
    sub.publish(t.topics.cmd("swap"), json.dumps({"model": "blazeface-short", "runtime": "executorch"}))
    wait_until(lambda: svc.calls, 10, "the handler to start")
    for i in range(5):
        t.publish_detections(DET | {"frame": i})
    sub.wait_for("/detections", 5)  # delivered while the handler is still busy
    assert sub.on("/reply") == []
    svc.gate.set()
    assert sub.wait_for("/cmd/swap/reply")[0].json()["ok"] is True


def test_mqtt311(broker: Broker, collect: Callable[..., Collector], telemetry: Callable) -> None:
    sub = collect(broker, ["lookout/#"], protocol=mqtt.MQTTv311)
    t = telemetry(broker.url, protocol="3.1.1", command_handler=Service())
    assert t.wait_connected(10)
    t.publish_status(state="online", runtime="tflite", model="blazeface-short")
    t.publish_detections(DET)
    sub.publish(t.topics.cmd("config"), json.dumps({"publish_empty": True}))
    assert sub.wait_for("/cmd/config/reply")[0].json()["ok"] is True
    validate("detections", sub.wait_for("/detections")[0].json())
    assert "as lookout-cam-1 (p2," in broker.log  # mosquitto's log: p2 = MQTT 3.1.1, p5 = MQTT 5


def test_home_assistant_discovery_and_republish(
    broker: Broker, collect: Callable[..., Collector], telemetry: Callable
) -> None:
    sub = collect(broker, ["homeassistant/+/+/+/config"])
    t = telemetry(broker.url, device_id="cam.7")
    assert t.wait_connected(10)
    first = sub.wait_for("/config", 5)
    topics = {m.topic for m in first}
    assert topics == {
        "homeassistant/sensor/cam_7/fps/config",
        "homeassistant/sensor/cam_7/infer_p90_ms/config",
        "homeassistant/sensor/cam_7/power_w/config",
        "homeassistant/sensor/cam_7/temp_c/config",
        "homeassistant/binary_sensor/cam_7/connectivity/config",
    }
    cfgs = [m.json() for m in first]
    assert len({json.dumps(c["device"], sort_keys=True) for c in cfgs}) == 1  # one HA device
    for c in cfgs:
        assert c["state_topic"] in (t.topics.metrics, t.topics.status)
        if "/sensor/" in c["unique_id"] or c["state_topic"] == t.topics.metrics:
            assert c["availability"][0]["topic"] == t.topics.status
    late = collect(broker, ["homeassistant/#"])
    assert all(m.retain for m in late.wait_for("/config", 5))
    sub.publish("homeassistant/status", b"offline")
    sub.publish("homeassistant/status", b"online")
    sub.wait_for("/config", 10)


def test_unmeasured_metrics_stay_null(
    broker: Broker, collect: Callable[..., Collector], telemetry: Callable
) -> None:
    sub = collect(broker, ["lookout/+/metrics"])
    t = telemetry(broker.url)
    t.publish_metrics(METRICS)
    m = sub.wait_for("/metrics")[0].json()
    assert (
        m["power_w"] is None and m["energy_mj_per_inference"] is None and m["power_source"].startswith("none")
    )
    assert m["spool_depth"] >= 0 and m["spool_dropped"] == 0
    assert m["temp_c"] is None and m["reasons"]["temp_c"] == "no thermal zone"


def test_nan_never_reaches_the_wire(
    broker: Broker, collect: Callable[..., Collector], telemetry: Callable
) -> None:
    sub = collect(broker, ["lookout/+/metrics"])
    t = telemetry(broker.url)
    t.publish_metrics(METRICS | {"fps": float("nan"), "cpu_percent": float("inf")})
    raw = sub.wait_for("/metrics")[0].payload
    assert b"NaN" not in raw and b"Infinity" not in raw
    m = json.loads(raw)
    assert m["fps"] is None and m["cpu_percent"] is None
    assert m["reasons"]["fps"] == "not a finite number (nan)" and "inf" in m["reasons"]["cpu_percent"]
    assert m["reasons"]["temp_c"] == "no thermal zone"  # the producer's own reasons are kept


def test_invalid_payload_is_refused_before_a_seq_is_used(broker: Broker, telemetry: Callable) -> None:
    from app.telemetry.schemas import SchemaError

    t = telemetry(broker.url)
    with pytest.raises(SchemaError, match="score"):
        t.publish_detections(DET | {"detections": [{"label": "face", "score": 7, "box": [0, 0, 1, 1]}]})
    assert t.publish_detections(DET) == 1
