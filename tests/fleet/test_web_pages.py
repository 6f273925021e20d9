"""`lookout fleet serve` in a real headless chromium: a real mosquitto, fleet_load.py devices, the CLI.

Screenshots of every page are saved under the test's tmp dir to look at (the docs' docs/fleet-web-*.png
come from scripts/fleet_screenshots.py, which runs the same real parts with a richer fleet).
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.fleet.monitor import parse_broker_url
from app.fleet.table import COLUMNS
from app.telemetry import contract

pytestmark = [pytest.mark.broker, pytest.mark.slow]

ROW_IDS = "Array.from(document.querySelectorAll('#fleet tbody tr')).map(r => r.dataset.id)"


def wait_until(pred, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    pytest.fail(f"not within {timeout_s:.0f} s: {what}")


def metric_samples(text: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append(s)
    return out


def test_thirty_devices_api_metrics_and_live_page_turn_offline(
    broker, fleet_load, fleet_serve, browser, tmp_path: Path
) -> None:
    ready = tmp_path / "ready.json"
    load = fleet_load(
        "--devices", "30", "--broker", broker.url, "--duration", "0", "--rate", "1", "--detections-rate", "1",
        "--ready", str(ready),
    )  # fmt: skip
    wait_until(ready.exists, 60, "fleet_load ready")
    ids = set(json.loads(ready.read_text())["devices"])
    srv = fleet_serve(
        "--broker", broker.url, "--db", str(tmp_path / "h.sqlite"), "--history-interval", "1", "--refresh", "0.5"
    )  # fmt: skip

    # /api/devices: the same objects as `fleet --once --json`, 30 online with metrics
    def all_reporting() -> list[dict] | None:
        r = srv.json("/api/devices")
        return r if len(r) == 30 and all(d["fps"] for d in r) else None

    rows = wait_until(all_reporting, 30, "30 devices with metrics in /api/devices")
    assert {r["device_id"] for r in rows} == ids
    assert all(r["online"] and r["state"] == "online" and r["alerts"] == [] for r in rows)
    assert all(r["power_w"] is None and r["power_source"].startswith("none:") for r in rows)

    # /metrics: one online series per device, the gauges in base units, power absent where unmeasured
    status, body, headers = srv.get("/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    m = metric_samples(body.decode())
    online = [s for s in m["lookout_device_online"] if s.value == 1.0]
    assert {s.labels["device_id"] for s in online} == ids and len(online) == 30
    assert all(s.labels["model"] and s.labels["runtime"] for s in online)
    for name in ("lookout_device_fps", "lookout_device_inference_p90_seconds", "lookout_device_spool_depth",
                 "lookout_device_seq_gaps_total"):  # fmt: skip
        assert len(m[name]) == 30, name
    assert all(0.001 < s.value < 0.1 for s in m["lookout_device_inference_p90_seconds"])  # ms -> s
    # fleet_load measures no hardware: power, energy and temperature are absent, not made up
    # (their gauges for devices that report them: tests/fleet/test_web_api.py)
    for name in ("power_watts", "energy_per_inference_joules", "temperature_celsius"):
        assert f"lookout_device_{name}" not in m, name
    assert m["lookout_fleet_messages_received_total"] and m["lookout_fleet_connected"][0].value == 1.0

    # the page: all 30 ids, live over SSE, no console error
    browser.goto(srv.url + "/")
    assert set(browser.js(ROW_IDS)) == ids
    browser.wait_for("document.getElementById('conn').classList.contains('live')")
    assert browser.js("document.querySelectorAll('#fleet thead th').length") == len(COLUMNS)
    browser.js("window.__sameDocument = 1")
    browser.screenshot(tmp_path / "fleet.png")

    load.send_signal(signal.SIGKILL)  # the broker publishes every device's will: {"state": "offline"}
    took = browser.wait_for(
        "Array.from(document.querySelectorAll('#fleet tbody tr')).every("
        "r => r.classList.contains('bad') && r.cells[1].textContent === 'offline')",
        timeout_s=8,
    )
    assert browser.js("window.__sameDocument") == 1, "the page reloaded instead of updating live"
    assert browser.js("document.getElementById('badges').textContent").startswith("0/30 online")
    browser.screenshot(tmp_path / "fleet-offline.png")
    print(f"rows turned offline {took:.1f} s after the devices died")

    browser.goto(srv.url + "/devices/sim-0002?since=1h")
    assert browser.js("document.querySelectorAll('svg.chart').length") == 6
    assert "sim-0002" in browser.js("document.querySelector('h1').textContent")
    assert browser.js("document.querySelectorAll('svg.chart polyline, svg.chart circle').length") > 0
    browser.screenshot(tmp_path / "device.png")

    browser.goto(srv.url + "/runtimes")
    text = browser.js("document.body.innerText")
    assert (
        "By model" in text and "By board" in text and "blazeface-short" in text and "ssd-mobilenet-v2" in text
    )
    browser.screenshot(tmp_path / "runtimes.png")

    browser.pump(0.5)
    assert browser.problems == []
    for name in ("fleet", "fleet-offline", "device", "runtimes"):
        assert (tmp_path / f"{name}.png").read_bytes().startswith(b"\x89PNG")


EVIL = "<img src=x onerror=alert(1)>"


def _publish(url: str, messages: list[tuple[str, dict, bool]]) -> None:
    addr = parse_broker_url(url)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect(addr.host, addr.port)
    c.loop_start()
    try:
        for topic, payload, retain in messages:
            c.publish(topic, json.dumps(payload), qos=1, retain=retain).wait_for_publish(timeout=10)
    finally:
        c.disconnect()
        c.loop_stop()


def _metrics(runtime: str, **over: object) -> dict:
    """Contract-valid metrics (what a device could send) with markup in every string it controls."""
    m = {
        "v": 1, "ts": time.time(), "fps": 29.8, "latency_ms": {"infer": {"p50": 9.0, "p90": 11.0, "p99": 15.0}},
        "power_w": 2.5, "power_source": '"><svg onload=alert(3)>', "energy_mj_per_inference": 80.0,
        "temp_c": 61.5, "temps": {"<i>zone</i>": 61.5}, "cpu_percent": 40.0, "rss_mb": 150.0, "dropped_frames": 0,
        "spool_depth": 0, "spool_dropped": 0, "runtime": runtime, "model": EVIL,
        "throttled": contract.Throttling.from_register(0x4).model_dump(),  # throttled now
        "reasons": {"<b>x</b>": "<script>alert(4)</script>"},
    }  # fmt: skip
    m.update(over)
    return contract.parse("metrics", m).to_wire()


def test_device_strings_are_inert_and_swaps_and_fallbacks_are_marked(
    broker, fleet_serve, browser, tmp_path: Path
) -> None:
    """A device that puts markup in every string it controls cannot script or restyle any page."""
    srv = fleet_serve(
        "--broker", broker.url, "--db", str(tmp_path / "h.sqlite"), "--history-interval", "0.3", "--refresh", "0.5"
    )  # fmt: skip
    base = "lookout/evil-1"
    status = {"v": 1, "state": "online", "version": "<script>alert(2)</script>", "runtime": "edgetpu",
              "model": EVIL, "fallback": None, "board": EVIL, "started_at": time.time(), "ts": time.time()}  # fmt: skip
    latency = {"p50": 1.0, "p90": 2.0, "p99": 3.0, "mean": 1.2, "min": 0.9, "max": 4.0}
    bench = {"v": 1, "model": EVIL, "host": {"cpu": "<i>board</i>"}, "ts": time.time(),
             "results": [{"runtime": "<u>rt</u>", "latency_ms": latency, "throughput_fps": 500.0, "rss_mb": 90.0}]}  # fmt: skip
    _publish(broker.url, [(f"{base}/status", status, True), (f"{base}/metrics", _metrics("edgetpu"), False),
                          (f"{base}/bench", bench, True)])  # fmt: skip
    time.sleep(1.0)
    fb = {"from": "edgetpu", "to": "tflite", "reason": "<b>Edge TPU</b> not found \"'"}
    _publish(broker.url, [(f"{base}/status", status | {"runtime": "tflite", "fallback": fb}, True),
                          (f"{base}/metrics", _metrics("tflite"), False)])  # fmt: skip
    wait_until(
        lambda: len(srv.json("/api/devices/evil-1/history?since=1h")["events"]) >= 2, 15, "two history events"
    )

    markup = (
        "document.querySelectorAll('main img, main script, main i, main u, [onload], [onerror]').length"
        " + Array.from(document.querySelectorAll('b')).filter(b => b.textContent === 'Edge TPU').length"
    )
    browser.goto(srv.url + "/")
    browser.wait_for("document.getElementById('conn').classList.contains('live')")
    assert browser.js(markup) == 0
    assert browser.js("document.querySelector('#fleet tbody tr').cells[3].textContent") == EVIL
    assert "fallback" in browser.js("document.querySelector('#fleet tbody tr').lastElementChild.textContent")

    browser.goto(srv.url + "/devices/evil-1?since=1h")
    assert browser.js(markup) == 0
    titles = browser.js(
        "Array.from(document.querySelectorAll('svg.chart line.event title')).map(t => t.textContent)"
    )
    assert any("swap edgetpu → tflite" in t for t in titles), titles
    assert any("fallback edgetpu → tflite: <b>Edge TPU</b>" in t for t in titles), titles
    assert "<script>alert(2)</script>" in browser.js("document.querySelector('.facts').textContent")
    browser.screenshot(tmp_path / "device-events.png")

    browser.goto(srv.url + "/runtimes")
    assert browser.js(markup) == 0
    text = browser.js("document.body.innerText")
    assert "<u>rt</u>" in text and "<i>board</i>" in text and EVIL in text

    m = metric_samples(srv.get("/metrics")[1].decode())
    power = m["lookout_device_power_watts"][0]
    assert power.labels["model"] == EVIL and power.labels["power_source"] == '"><svg onload=alert(3)>'
    assert power.value == 2.5 and m["lookout_device_energy_per_inference_joules"][0].value == pytest.approx(
        0.08
    )
    assert m["lookout_device_throttled"][0].value == 1.0
    browser.pump(0.5)
    assert browser.problems == []
