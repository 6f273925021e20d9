"""Topic contract: device topics, wildcards, shared subscriptions, parsing (payloads: test_contract.py)."""

from __future__ import annotations

import pytest

from app.errors import ConfigError
from app.telemetry.topics import Topics, parse, wildcard


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
