"""The monitor against a real mosquitto: malformed input is counted, shared subscriptions split the load."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from app.fleet.monitor import Monitor
from app.fleet.registry import Registry
from app.telemetry.broker_url import parse_broker_url

pytestmark = pytest.mark.broker

VALID_STATUS = {
    "v": 1,
    "state": "online",
    "version": "test",
    "runtime": "tflite",
    "model": "blazeface-short",
    "fallback": None,
    "board": None,
    "started_at": 1.0,
    "ts": 2.0,
}


def publish_retained(url: str, messages: list[tuple[str, bytes]]) -> None:
    addr = parse_broker_url(url)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect(addr.host, addr.port)
    c.loop_start()
    infos = [c.publish(t, p, qos=1, retain=True) for t, p in messages]
    for i in infos:
        i.wait_for_publish(timeout=10)
    c.disconnect()
    c.loop_stop()


def test_malformed_messages_are_counted_and_the_monitor_keeps_going(
    broker, lookout_cmd, clean_env, tmp_path: Path
) -> None:
    bad_metrics = {"v": 1, "ts": 1.0, "fps": "fast"}  # missing fields, wrong type
    full_metrics_wrong_type = {
        "v": 1, "ts": 1.0, "fps": 3.0, "latency_ms": {"infer": {"p50": 1, "p90": "slow", "p99": 3}},
        "power_w": None, "power_source": "none: test", "energy_mj_per_inference": None, "temp_c": None,
        "temps": {}, "cpu_percent": None, "rss_mb": None, "dropped_frames": None, "spool_depth": 0,
        "spool_dropped": 0, "runtime": "tflite", "model": "m", "throttled": None, "reasons": {},
    }  # fmt: skip
    messages = [
        ("lookout/bad-json/status", b"{not json"),
        ("lookout/bad-utf8/status", b"\xff\xfe\x00"),
        ("lookout/bad-array/metrics", b"[1, 2, 3]"),
        ("lookout/bad-state/status", json.dumps({**VALID_STATUS, "state": "dancing"}).encode()),
        ("lookout/bad-metrics/metrics", json.dumps(bad_metrics).encode()),
        ("lookout/bad-p90/metrics", json.dumps(full_metrics_wrong_type).encode()),
        (
            "lookout/bad-seq/detections",
            json.dumps({"v": 1, "seq": "one", "ts": 1.0, "detections": []}).encode(),
        ),
        ("lookout/bad-bench/bench", json.dumps({"v": 1, "results": []}).encode()),
        (
            "lookout/old-device/status",
            json.dumps({k: v for k, v in VALID_STATUS.items() if k != "v"}).encode(),
        ),
        ("lookout/new-device/status", json.dumps(VALID_STATUS | {"v": 2}).encode()),
        ("lookout/big/detections", b"[" + b"1," * 200_000 + b"1]"),
        ("lookout/good-1/status", json.dumps(VALID_STATUS).encode()),
    ]
    publish_retained(broker.url, messages)
    stats_file = tmp_path / "stats.json"
    r = subprocess.run(
        [*lookout_cmd, "fleet", "--broker", broker.url, "--once", "--wait", "2", "--json",
         "--stats-json", str(stats_file)],
        capture_output=True, text=True, env=clean_env, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = {d["device_id"]: d for d in json.loads(r.stdout)}
    stats = json.loads(stats_file.read_text())
    assert stats["malformed"] == {"json": 4, "schema:status": 1, "schema:metrics": 2, "schema:detections": 1,
                                  "schema:bench": 1}  # fmt: skip
    assert stats["unsupported_version"] == {"none": 1, "2": 1}  # counted apart from malformed
    assert rows["old-device"]["unsupported_version"] == 1 and rows["old-device"]["malformed"] == 0
    assert rows["good-1"]["online"] is True and rows["good-1"]["malformed"] == 0
    assert rows["bad-state"]["malformed"] == 1 and rows["bad-state"]["state"] == "unknown"
    assert "malformed message" in r.stderr  # logged, rate-limited per reason
    assert "Traceback" not in r.stderr


def test_shared_subscription_splits_metrics_and_detections_between_monitors(
    broker, fleet_load, tmp_path
) -> None:
    summary = tmp_path / "summary.json"
    monitors = [Monitor(Registry(), share_group="fleet") for _ in range(2)]
    for m in monitors:
        m.start(broker.url)
    try:
        deadline = time.monotonic() + 20
        while not all(m.stats.connected for m in monitors) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # SUBACK
        load = fleet_load(
            "--devices", "6", "--broker", broker.url, "--duration", "3", "--rate", "2", "--detections-rate", "5",
            "--summary", str(summary),
        )  # fmt: skip
        load.wait(timeout=60)
        published = json.loads(summary.read_text())["published"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            got = sum(m.stats.received["detections"] for m in monitors)
            # the final `stopped` statuses travel on another subscription than the shared detections:
            # their arrival is not ordered with the last detections, so wait for both
            stopped = all(sum(r["state"] == "stopped" for r in m.registry.snapshot()) == 6 for m in monitors)
            if got >= published["detections"] and stopped:
                break
            time.sleep(0.1)
    finally:
        for m in monitors:
            m.stop()
    for kind in ("detections", "metrics"):
        counts = [m.stats.received[kind] for m in monitors]
        assert sum(counts) == published[kind], (kind, counts, published)  # QoS 1 both ways: none lost
        assert all(c > 0 for c in counts), (kind, counts)  # and both monitors got a share
    for (
        m
    ) in monitors:  # status and bench are retained, so they are not shared: every monitor sees every device
        rows = m.registry.snapshot()
        assert len(rows) == 6 and all(r["state"] == "stopped" for r in rows)
        assert all(r["seq_gaps"] is None for r in rows)  # a share of a device's seqs has gaps by design
        assert all(r["messages"]["bench"] == 1 for r in rows)
