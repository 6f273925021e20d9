"""TLS with a CA made by the test, client certificates, passwords and the deployment ACL."""

from __future__ import annotations

import json
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from app.telemetry.schemas import validate

from .conftest import Collector, SecureBroker, wait_until

DET = {
    "frame": 0,
    "model": "blazeface-short",
    "runtime": "tflite",
    "detections": [],
    "latency_ms": {"infer": 1.0},
}
NOT_AUTHORIZED = 135


def _client(sb: SecureBroker, user: str, filters: list[str]) -> Collector:
    return Collector(sb.broker.host, sb.broker.port, filters, client_id=f"test-{user}", username=user,
                     password=sb.passwords[user], tls=sb.tls_dict(user))  # fmt: skip


def test_device_publishes_over_tls_and_monitor_reads(
    secure_broker: SecureBroker, telemetry: Callable
) -> None:
    sb = secure_broker
    monitor = _client(sb, "monitor", ["lookout/#"])
    try:
        t = telemetry(sb.url, "cam-1", username="cam-1", password=sb.passwords["cam-1"], tls=sb.tls("cam-1"),
                      command_handler=lambda verb, p: {"applied": dict(p)})  # fmt: skip
        assert t.wait_connected(15), t.stats()
        t.publish_status(state="online", runtime="tflite", model="blazeface-short")
        seq = t.publish_detections(DET)
        validate("detections", monitor.wait_for("/detections")[0].json())
        assert monitor.seqs() == [seq]
        wait_until(lambda: t.stats()["spool_depth"] == 0, 10, "all acknowledged")
        assert t.stats()["rejected"] == 0  # its own tree and its HA discovery topics are allowed
    finally:
        monitor.close()


def test_device_cannot_write_outside_its_tree(secure_broker: SecureBroker) -> None:
    sb = secure_broker
    dev = _client(sb, "cam-1", ["lookout/cam-1/#"])
    try:
        own = dev.publish("lookout/cam-1/status", json.dumps({"state": "offline"}))
        other = dev.publish("lookout/cam-2/status", json.dumps({"state": "offline"}))
        cmd = dev.publish("lookout/cam-2/cmd/swap", json.dumps({"model": "x", "runtime": "tflite"}))
        wait_until(lambda: {own.mid, other.mid, cmd.mid} <= set(dev.pub_reasons), 10, "three PUBACKs")
        assert dev.pub_reasons[own.mid].value == 0
        assert dev.pub_reasons[other.mid].value == NOT_AUTHORIZED
        assert dev.pub_reasons[cmd.mid].value == NOT_AUTHORIZED
    finally:
        dev.close()


def test_monitor_is_read_only(secure_broker: SecureBroker) -> None:
    sb = secure_broker
    mon = _client(sb, "monitor", ["lookout/#"])
    try:
        info = mon.publish("lookout/cam-1/cmd/swap", json.dumps({"model": "x", "runtime": "tflite"}))
        wait_until(lambda: info.mid in mon.pub_reasons, 10, "PUBACK")
        assert mon.pub_reasons[info.mid].value == NOT_AUTHORIZED
    finally:
        mon.close()


def test_reply_to_a_response_topic_outside_the_tree_is_refused_by_the_device(
    secure_broker: SecureBroker, telemetry: Callable
) -> None:
    """A requester asks cam-1 to answer on cam-2's tree: the device refuses that response topic itself
    (only its own reply topic or one under it is allowed), sends nothing there and still answers on its
    own reply topic, naming the refusal."""
    sb = secure_broker
    t = telemetry(sb.url, "cam-1", username="cam-1", password=sb.passwords["cam-1"], tls=sb.tls("cam-1"),
                  command_handler=lambda verb, p: {})  # fmt: skip
    assert t.wait_connected(15)
    cam2 = _client(sb, "cam-2", ["lookout/cam-2/#"])
    mon = _client(sb, "monitor", ["lookout/cam-1/cmd/+/reply"])
    try:
        # cam-2 may not write to cam-1's cmd topic either; use a plain client of cam-1's identity
        requester = _client(sb, "cam-1", ["lookout/cam-1/cmd/config/reply"])
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = "lookout/cam-2/inbox"
        props.CorrelationData = b"c1"
        requester.publish("lookout/cam-1/cmd/config", json.dumps({"publish_empty": True}), props)
        reply = mon.wait_for("/cmd/config/reply")[0].json()
        assert reply["ok"] is True and "lookout/cam-1/cmd/config/reply" in reply["response_topic_refused"]
        wait_until(lambda: t.stats()["spool_depth"] == 0, 10, "the reply acknowledged")
        assert t.stats()["rejected"] == 0  # never offered to the broker
        assert cam2.on("/inbox") == []
        requester.close()
    finally:
        cam2.close()
        mon.close()


def test_wrong_password_is_refused_and_reported(secure_broker: SecureBroker, telemetry: Callable) -> None:
    sb = secure_broker
    t = telemetry(sb.url, "cam-1", username="cam-1", password="wrong", tls=sb.tls("cam-1"))
    wait_until(lambda: t.stats()["last_error"], 15, "a connection error")
    assert not t.stats()["connected"]
    assert "refused" in t.stats()["last_error"] or "Not authorized" in t.stats()["last_error"]
    t.publish_detections(DET)  # still never blocks: spooled
    assert t.stats()["spool_depth"] >= 1


def test_plain_tcp_client_cannot_talk_to_the_tls_listener(secure_broker: SecureBroker) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="plain", protocol=mqtt.MQTTv5)
    c.username_pw_set("monitor", secure_broker.passwords["monitor"])
    try:
        c.connect(secure_broker.broker.host, secure_broker.broker.port, keepalive=5)
        rc = c.loop(timeout=2.0)
        rc2 = c.loop(timeout=2.0)
        assert not c.is_connected(), (rc, rc2)
    except OSError:
        pass
    finally:
        c.disconnect()
