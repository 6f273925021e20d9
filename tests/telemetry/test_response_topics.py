"""MQTT 5 response topics (#15 item 2): a reply goes only to the request's own reply topic or under it.

A requester that sets Response Topic to the device's data topics (detections, status) or to a Home
Assistant discovery topic must not make the device write there: those are inside the device's own ACL
tree, so the broker would not stop it. Real mosquitto, real MQTT 5 clients.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .conftest import Collector, wait_until


def _request(c: Collector, topic: str, payload: dict, response_topic: str, corr: bytes) -> None:
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = response_topic
    props.CorrelationData = corr
    c.publish(topic, json.dumps(payload), props).wait_for_publish(10)


@pytest.mark.parametrize(
    "response_topic",
    [
        "lookout/d1/detections",
        "lookout/d1/status",
        "lookout/d1/metrics",
        "lookout/d1/cmd/swap",  # another command topic: the device would feed itself commands
        "lookout/d1/cmd/swap/reply",  # the reply topic of another verb
        "homeassistant/sensor/d1/fps/config",
        "lookout/d2/cmd/config/reply",
        "lookout/d1/cmd/config/replyx",
    ],
)
def test_response_topic_outside_the_reply_topic_is_refused(
    broker, telemetry: Callable, collect: Callable, caplog: pytest.LogCaptureFixture, response_topic: str
) -> None:
    handled: list[dict] = []
    t = telemetry(broker.url, "d1", command_handler=lambda verb, p: handled.append(p) or {"applied": dict(p)})
    assert t.wait_connected(10)
    everything = collect(broker, ["#"])
    with caplog.at_level(logging.WARNING, logger="lookout"):
        _request(everything, "lookout/d1/cmd/config", {"publish_empty": True}, response_topic, b"c-1")
        reply = everything.wait_for("lookout/d1/cmd/config/reply")[0]
        wait_until(lambda: t.stats()["spool_depth"] == 0, 10, "the device's spool to drain")
    assert reply.json()["ok"] is True and handled == [{"publish_empty": True}]
    written = [m for m in everything.msgs if m.topic == response_topic and b'"verb"' in m.payload]
    assert written == [], f"the device wrote its reply to {response_topic}"
    assert "response_topic_refused" in reply.json()
    assert t.stats()["rejected"] == 0  # refused by the device itself, never sent to the broker
    assert any(
        "response topic" in r.getMessage() and response_topic in r.getMessage() for r in caplog.records
    )


@pytest.mark.parametrize("suffix", ["", "/req-7", "/monitor/42"])
def test_reply_under_the_reply_topic_carries_the_correlation_data(
    broker, telemetry: Callable, collect: Callable, suffix: str
) -> None:
    t = telemetry(broker.url, "d1", command_handler=lambda verb, p: {})
    assert t.wait_connected(10)
    requester = collect(broker, ["lookout/d1/cmd/config/reply/#"])
    rt = "lookout/d1/cmd/config/reply" + suffix
    _request(requester, "lookout/d1/cmd/config", {"publish_empty": False}, rt, b"corr-9")
    got = requester.wait_for(rt)
    wait_until(lambda: t.stats()["spool_depth"] == 0, 10, "the device's spool to drain")
    mine = [m for m in requester.msgs if m.topic == rt]
    assert len(mine) == 1  # not twice when the response topic is the reply topic itself
    assert mine[0].properties.CorrelationData == b"corr-9"
    assert got[0].json()["ok"] is True and "response_topic_refused" not in got[0].json()
