"""Simulated devices (fleet_load.py) are marked wherever their numbers show, and offline devices export
no stale readings: a real mosquitto, a real fleet_load subprocess, `lookout fleet serve` and the CLI."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.fleet.monitor import parse_broker_url
from app.fleet.table import COLUMNS
from app.telemetry import contract

pytestmark = pytest.mark.broker

REAL = "pi-real"
READINGS = (
    "lookout_device_fps",
    "lookout_device_inference_p90_seconds",
    "lookout_device_spool_depth",
    "lookout_device_detections_per_minute",
)


def wait_until(pred, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if v := pred():
            return v
        time.sleep(0.2)
    pytest.fail(f"not within {timeout_s:.0f} s: {what}")


def publish_real_device(url: str) -> None:
    """A device that is not simulated: its own status version and measured-looking metrics."""
    addr = parse_broker_url(url)
    status = {"v": 1, "state": "online", "version": "0.9.0", "runtime": "tflite", "model": "m",
              "fallback": None, "board": "Raspberry Pi 5", "started_at": time.time(), "ts": time.time(),
              "spool_depth": 0}  # fmt: skip
    metrics = {"v": 1, "ts": time.time(), "fps": 29.8, "latency_ms": {"infer": {"p50": 9.0, "p90": 11.0, "p99": 15.0}},
               "power_w": 2.5, "power_source": "ina219", "energy_mj_per_inference": 80.0, "temp_c": 61.5,
               "temps": {}, "cpu_percent": 40.0, "rss_mb": 150.0, "dropped_frames": 0, "spool_depth": 0,
               "spool_dropped": 0, "runtime": "tflite", "model": "m", "throttled": None, "reasons": {}}  # fmt: skip
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect(addr.host, addr.port)
    c.loop_start()
    try:
        for kind, payload, retain in (("status", status, True), ("metrics", metrics, False)):
            wire = json.dumps(contract.parse(kind, payload).to_wire())
            c.publish(f"lookout/{REAL}/{kind}", wire, qos=1, retain=retain).wait_for_publish(timeout=10)
    finally:
        c.disconnect()
        c.loop_stop()


def samples(body: bytes) -> dict[str, dict[str, float]]:
    """metric name -> {device_id: value} (device series only)."""
    out: dict[str, dict[str, float]] = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            if "device_id" in s.labels:
                out.setdefault(s.name, {})[s.labels["device_id"]] = s.value
    return out


def row_cells(html: str, device_id: str) -> list[str]:
    row = re.search(rf"<tr data-id='{device_id}'[^>]*>(.*?)</tr>", html)
    assert row, device_id
    return [re.sub(r"<[^>]+>", "", td) for td in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))]


def terminal_line(lookout_cmd, env, url: str, device_id: str) -> str:
    r = subprocess.run([*lookout_cmd, "fleet", "--broker", url, "--once", "--wait", "3"],
                       capture_output=True, text=True, env=env | {"COLUMNS": "320"}, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return next(line for line in r.stdout.splitlines() if f" {device_id} " in line)


def test_simulated_devices_are_marked_and_offline_ones_export_no_readings(
    broker, fleet_load, fleet_serve, lookout_cmd, clean_env, tmp_path: Path
) -> None:
    ready = tmp_path / "ready.json"
    load = fleet_load("--devices", "2", "--broker", broker.url, "--duration", "0", "--rate", "2",
                      "--detections-rate", "2", "--ready", str(ready))  # fmt: skip
    wait_until(ready.exists, 60, "fleet_load ready")
    sims = json.loads(ready.read_text())["devices"]
    db = tmp_path / "h.sqlite"
    srv = fleet_serve("--broker", broker.url, "--db", str(db), "--history-interval", "1", "--refresh", "0.5")
    wait_until(lambda: len(srv.json("/api/devices")) == 2, 30, "the simulated devices listed")
    publish_real_device(broker.url)  # metrics are not retained: published once the monitor listens
    wait_until(lambda: sum(1 for d in srv.json("/api/devices") if d["fps"]) == 3, 30, "3 devices with fps")

    # the web table and the terminal table mark a simulated device's readings, not a real one's
    html = srv.get("/")[1].decode()
    fps, p90 = ([c.header for c in COLUMNS].index(h) for h in ("fps", "p90 ms"))
    for dev in sims:
        cells = row_cells(html, dev)
        assert re.fullmatch(r"[\d.]+ sim", cells[fps]) and re.fullmatch(r"[\d.]+ sim", cells[p90]), cells
        assert re.search(r"\d sim", terminal_line(lookout_cmd, clean_env, broker.url, dev))
    real = row_cells(html, REAL)
    assert real[fps] == "29.8" and real[p90] == "11.0"
    assert " sim" not in terminal_line(lookout_cmd, clean_env, broker.url, REAL)
    assert "Power marked" not in html and "Numbers marked <em>sim</em>" in html

    # /metrics: a gauge says which devices are simulated
    m = samples(srv.get("/metrics")[1])
    assert m["lookout_device_simulated"] == {**dict.fromkeys(sims, 1.0), REAL: 0.0}

    # fleet_load makes up no memory figure for its bench; /runtimes and the report show none
    results = srv.json("/api/runtimes")["results"]
    assert {r["device_id"] for r in results} == set(sims)
    assert all(r["rss_mb"] is None and r["simulated"] for r in results)
    assert all(
        s["median_rss_mb"] is None for g in srv.json("/api/runtimes")["by_model"] for s in g["runtimes"]
    )
    assert srv.get("/runtimes")[0] == 200

    # offline: only what is true now is exported, the last readings are not
    load.send_signal(signal.SIGKILL)
    wait_until(lambda: all(not d["online"] for d in srv.json("/api/devices") if d["device_id"] in sims), 30,
               "simulated devices offline")  # fmt: skip
    m = samples(srv.get("/metrics")[1])
    for dev in sims:
        assert m["lookout_device_online"][dev] == 0.0 and m["lookout_device_simulated"][dev] == 1.0
        assert dev in m["lookout_device_last_seen_age_seconds"] and dev in m["lookout_device_seq_gaps_total"]
        for name in READINGS:
            assert dev not in m.get(name, {}), (name, dev)
    assert m["lookout_device_fps"][REAL] == 29.8  # the online device keeps its readings
    html = srv.get("/")[1].decode()
    assert all(row_cells(html, dev)[fps].endswith(" sim") for dev in sims)  # still marked while offline

    r = subprocess.run([*lookout_cmd, "fleet", "report", "--since", "1h", "--db", str(db), "--out",
                        str(tmp_path / "report")], capture_output=True, text=True, env=clean_env, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "simulated numbers" in (tmp_path / "report/index.html").read_text()
