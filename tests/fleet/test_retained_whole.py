"""The fleet view counts every device: retained state arrives whole on a mosquitto with its default queue
limits, the monitor says when it can tell that the broker dropped messages, and `--json` is JSON
(issue #15, item 10).

Before: 10,000 retained statuses on a default mosquitto at --qos 1 listed 1,020 devices (20 in flight +
max_queued_messages 1000; the broker dropped the rest and only its own log said so), and a non-finite
number printed as `Infinity`/`NaN`, which no JSON parser accepts.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from app.telemetry.broker import Broker, start_broker

pytestmark = pytest.mark.broker

STATUS = {"v": 1, "state": "online", "version": "t", "runtime": "tflite", "model": "m", "fallback": None,
          "board": None, "started_at": 1.0, "ts": 2.0}  # fmt: skip
METRICS = {"v": 1, "ts": 1.0, "fps": 3.0, "latency_ms": {}, "power_w": None, "power_source": "none: test",
           "energy_mj_per_inference": None, "temp_c": None, "temps": {}, "cpu_percent": None, "rss_mb": None,
           "dropped_frames": 0, "spool_depth": 0, "spool_dropped": 0, "runtime": "tflite", "model": "m",
           "throttled": None, "reasons": {}}  # fmt: skip


def _strict(text: str) -> object:
    def refuse(token: str) -> None:
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def default_broker() -> Iterator[Broker]:
    """mosquitto with its default per-client limits (the shared fixture lifts them): 20 QoS 1 messages in
    flight and 1000 queued; sys_interval 1 so that $SYS counters are fresh."""
    b = start_broker(
        "mosquitto", extra_config="max_queued_messages 1000\nmax_inflight_messages 20\nsys_interval 1"
    )
    try:
        yield b
    finally:
        b.stop()


def _publish(broker: Broker, messages: list[tuple[str, bytes]], retain: bool) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect(broker.host, broker.port)
    c.loop_start()
    infos = [c.publish(t, p, qos=1, retain=retain) for t, p in messages]
    for i in infos:
        i.wait_for_publish(timeout=60)
    c.disconnect()
    c.loop_stop()


def _fleet(lookout_cmd, env, broker: Broker, *args: str) -> list[str]:
    return [*lookout_cmd, "fleet", "--broker", broker.url, "--once", "--json", *args]


def test_ten_thousand_retained_statuses_are_all_listed(default_broker, lookout_cmd, clean_env) -> None:
    n = 10_000
    body = json.dumps(STATUS).encode()
    _publish(default_broker, [(f"lookout/dev-{i:05d}/status", body) for i in range(n)], retain=True)
    r = subprocess.run(_fleet(lookout_cmd, clean_env, default_broker, "--qos", "1", "--wait", "25", "--idle-exit", "3"),
                       capture_output=True, text=True, env=clean_env, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    rows = _strict(r.stdout)
    assert len(rows) == n, f"{len(rows)} of {n} devices listed"
    assert all(row["online"] for row in rows)
    assert "missed" not in r.stderr, r.stderr[-2000:]


def test_the_monitor_says_when_the_broker_dropped_messages(lookout_cmd, clean_env, tmp_path: Path) -> None:
    b = start_broker(
        "mosquitto", extra_config="max_queued_messages 10\nmax_inflight_messages 5\nsys_interval 1"
    )
    try:
        stats = tmp_path / "stats.json"
        proc = subprocess.Popen(_fleet(lookout_cmd, clean_env, b, "--qos", "1", "--wait", "8", "--stats-json", str(stats)),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env)  # fmt: skip
        deadline = time.monotonic() + 30
        while "New client connected" not in b.log and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # its SUBSCRIBE
        burst = [(f"lookout/m-{i % 200:03d}/metrics", json.dumps({**METRICS, "ts": time.time()}).encode())
                 for i in range(3000)]  # fmt: skip
        _publish(b, burst, retain=False)
        out, err = proc.communicate(timeout=60)
    finally:
        b.stop()
    assert proc.returncode == 0, err[-3000:]
    missed = json.loads(stats.read_text())["missed"]
    assert missed["broker_dropped"] > 0, missed
    assert missed["devices_without_status"] > 0, missed
    assert "missed" in err and "max_queued_messages" in err, err[-2000:]
    assert len(_strict(out)) == missed["devices_without_status"]


def test_json_output_has_null_for_non_finite_numbers(broker, lookout_cmd, clean_env, tmp_path: Path) -> None:
    stats = tmp_path / "stats.json"
    metrics = json.dumps(METRICS).replace('"fps": 3.0', '"fps": 1e999').encode()  # parses as inf
    nan_metrics = json.dumps(METRICS).replace('"temp_c": null', '"temp_c": NaN').encode()  # not JSON
    _publish(broker, [("lookout/inf-dev/status", json.dumps(STATUS).encode()),
                      ("lookout/inf-dev/metrics", metrics),
                      ("lookout/nan-dev/metrics", nan_metrics)], retain=True)  # fmt: skip
    r = subprocess.run(_fleet(lookout_cmd, clean_env, broker, "--wait", "3", "--idle-exit", "1", "--stats-json", str(stats)),
                       capture_output=True, text=True, env=clean_env, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    rows = {row["device_id"]: row for row in _strict(r.stdout)}
    assert rows["inf-dev"]["fps"] is None
    assert json.loads(stats.read_text())["malformed"].get("json") == 1  # NaN is not JSON: counted, not stored
