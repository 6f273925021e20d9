"""Strings from the network are shown inert (#15 item 4): terminal escape sequences and rich markup a
device puts into its status, metrics, bench or detections never reach the terminal or the report as
anything but visible text.

Real mosquitto, a hostile device (a plain MQTT client that may write its own tree), the real `lookout
fleet` CLI: once on a pipe, and live inside a real terminal (tmux), whose pane title an OSC 0 would
change. The HTML report is checked the same way.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

pytestmark = pytest.mark.broker

TITLE = "\x1b]0;pwned-title\x07"
CLEAR = "\x1b[2J\x1b[H"
OSC8 = "\x1b]8;;https://evil.example/\x1b\\click-me\x1b]8;;\x1b\\"
MARKUP = "[blink]blinky[/blink][link=https://evil.example/]linky[/link][reverse]rev[/]"
MATH = "$\\frac{1}{$"  # matplotlib mathtext (a parse error if taken as math)
BIDI = "\u202egnp.exe"
HOSTILE = {
    "model": f"m{TITLE}{MARKUP}",
    "runtime": f"rt{CLEAR}[bold red]RED",
    "version": f"v{OSC8}",
    "power_source": f"ps{MATH}{TITLE}",
    "reason": f"why{CLEAR}{BIDI}",
    "label": f"face{TITLE}[blink]",
}
RAW_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _publish_hostile_device(broker, device_id: str = "evil-1") -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"hostile-{uuid.uuid4().hex[:6]}",
                    protocol=mqtt.MQTTv5)  # fmt: skip
    c.connect(broker.host, broker.port)
    c.loop_start()
    now = time.time()
    status = {
        "v": 1, "state": "degraded", "board": f"Pi{TITLE}", "version": HOSTILE["version"], "runtime": HOSTILE["runtime"],
        "model": HOSTILE["model"], "started_at": now - 5, "ts": now, "reason": HOSTILE["reason"],
        "fallback": {"from": HOSTILE["runtime"], "to": "tflite", "reason": HOSTILE["reason"]},
    }  # fmt: skip
    metrics = {
        "v": 1, "ts": now, "fps": 9.5, "latency_ms": {"infer": {"p50": 4.0, "p90": 5.0, "p99": 6.0}},
        "power_w": 2.5, "power_source": HOSTILE["power_source"], "energy_mj_per_inference": 1.0,
        "temp_c": 50.0, "cpu_percent": 10.0, "rss_mb": 100.0, "dropped_frames": 0, "spool_depth": 0,
        "runtime": HOSTILE["runtime"], "model": HOSTILE["model"], "throttled": None,
        "temps": {f"zone{TITLE}": 50.0}, "spool_dropped": 0, "reasons": {"throttled": HOSTILE["reason"]},
    }  # fmt: skip
    detections = {
        "v": 1, "seq": 1, "ts": now, "frame": 1, "model": HOSTILE["model"], "runtime": HOSTILE["runtime"],
        "detections": [{"label": HOSTILE["label"], "score": 0.9, "box": [1, 2, 3, 4]}],
        "latency_ms": {"infer": 5.0},
    }  # fmt: skip
    bench = {
        "v": 1, "model": HOSTILE["model"], "host": {"machine": TITLE}, "ts": now,
        "results": [{"runtime": HOSTILE["runtime"], "error": MARKUP,
                     "latency_ms": {"p50": 4.0, "p90": 5.0, "p99": 6.0, "mean": 4.2, "min": 3.9, "max": 6.1}}],
    }  # fmt: skip
    base = f"lookout/{device_id}"
    infos = [
        c.publish(f"{base}/status", json.dumps(status), qos=1, retain=True),
        c.publish(f"{base}/bench", json.dumps(bench), qos=1, retain=True),
    ]
    for info in infos:
        info.wait_for_publish(10)
    c.user_data_set((f"{base}/metrics", json.dumps(metrics), f"{base}/detections", json.dumps(detections)))
    return c


def _keep_sending(c: mqtt.Client) -> None:
    mt, m, dt, d = c.user_data_get()
    c.publish(mt, m, qos=1).wait_for_publish(10)
    c.publish(dt, d, qos=1).wait_for_publish(10)


def _assert_inert(out: str) -> None:
    assert not RAW_CONTROLS.search(out), repr(RAW_CONTROLS.search(out))
    for bad in ("\x1b]", "\x1b[2J", "\x07"):
        assert bad not in out


def test_fleet_once_prints_hostile_strings_as_text(broker, lookout_cmd, clean_env) -> None:
    c = _publish_hostile_device(broker)
    try:
        proc = subprocess.Popen([*lookout_cmd, "fleet", "--broker", broker.url, "--once", "--wait", "4"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**clean_env, "COLUMNS": "250"})  # fmt: skip
        for _ in range(6):
            time.sleep(0.4)
            _keep_sending(c)
        out_b, err_b = proc.communicate(timeout=120)
    finally:
        c.loop_stop()
        c.disconnect()
    assert proc.returncode == 0, err_b.decode(errors="replace")
    out, err = out_b.decode(), err_b.decode()
    _assert_inert(out)
    _assert_inert(err)
    assert "evil-1" in out
    # markup is shown as the text it is (the table may cut long cells; the start is always there)
    assert "m\\x1b]0;pwned" in out and "rt\\x1b[2J" in out


def test_rendered_table_keeps_markup_and_escapes_as_text() -> None:
    """render() with every string hostile, the device id included, recorded as a real colour terminal."""
    from rich.console import Console

    from app.fleet.view import render

    row = {
        "device_id": f"dev{TITLE}[blink]", "online": True, "state": "online", "runtime": HOSTILE["runtime"],
        "fallback": {"from": "x", "to": "y", "reason": HOSTILE["reason"]}, "model": HOSTILE["model"],
        "fps": 1.0, "infer_p90_ms": 2.0, "power_w": None, "power_source": HOSTILE["power_source"],
        "energy_mj_per_inference": None, "temp_c": None, "throttled": None, "under_voltage": None,
        "spool_depth": 0, "spool_growing": False, "detections_per_min": 0, "seq_gaps": 0, "age_s": 1.0,
        "alerts": ["fallback"], "version": HOSTILE["version"],
    }  # fmt: skip
    console = Console(record=True, force_terminal=True, color_system="truecolor", width=400)
    console.print(render([row], {"connected": True}, 100.0))
    ansi = console.export_text(styles=True, clear=False)
    plain = console.export_text(styles=False)
    for bad in ("\x1b]", "\x1b[2J", "\x07"):
        assert bad not in ansi
    sgr_params = {p for m in re.findall(r"\x1b\[([0-9;]*)m", ansi) for p in m.split(";")}
    assert "5" not in sgr_params and "7" not in sgr_params  # no blink, no reverse from device markup
    assert "[blink]blinky[/blink]" in plain and "[bold red]RED" in plain
    assert "dev\\x1b]0;pwned-title\\x07[blink]" in plain


@pytest.mark.skipif(not shutil.which("tmux"), reason="tmux not installed (Debian package tmux)")
def test_live_view_in_a_real_terminal_keeps_its_title_and_screen(broker, clean_env, tmp_path: Path) -> None:
    sock = f"lookout-test-{uuid.uuid4().hex[:8]}"
    tmux = ["tmux", "-L", sock, "-f", "/dev/null"]
    c = _publish_hostile_device(broker)
    env = {**clean_env, "TERM": "xterm-256color", "COLUMNS": "220", "LINES": "30"}
    cmd = f"{sys.executable} -m app fleet --broker {broker.url} --stale-s 600"
    try:
        subprocess.run([*tmux, "new-session", "-d", "-s", "v", "-x", "220", "-y", "30", "-c",
                        str(Path(__file__).resolve().parents[2]), cmd], check=True, env=env)  # fmt: skip
        subprocess.run([*tmux, "select-pane", "-t", "v", "-T", "lookout-fleet"], check=True)
        deadline = time.monotonic() + 60
        screen = ""
        while time.monotonic() < deadline:
            _keep_sending(c)
            time.sleep(0.5)
            screen = subprocess.run([*tmux, "capture-pane", "-p", "-t", "v"], capture_output=True,
                                    text=True).stdout  # fmt: skip
            if "1/1 online" in screen:
                break
        title = subprocess.run([*tmux, "display-message", "-p", "-t", "v", "#{pane_title}"],
                               capture_output=True, text=True).stdout.strip()  # fmt: skip
        (tmp_path / "screen.txt").write_text(screen)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
        c.loop_stop()
        c.disconnect()
    assert title == "lookout-fleet", f"a device changed the terminal title to {title!r}"
    assert "Lookout fleet" in screen and "evil-1" in screen, screen  # not cleared under the table
    assert "m\\x1b]0;pwned" in screen


def test_html_report_shows_hostile_strings_as_text(tmp_path: Path) -> None:
    from app.fleet.report import write_report
    from app.fleet.store import Store

    store = Store(tmp_path / "h.sqlite")
    now = time.time()
    row = {
        "device_id": "evil-1", "online": True, "state": "online", "runtime": HOSTILE["runtime"],
        "model": HOSTILE["model"], "fps": 9.0, "infer_p90_ms": 5.0, "power_w": 2.0,
        "power_source": HOSTILE["power_source"], "energy_mj_per_inference": 1.0, "temp_c": 40.0,
        "spool_depth": 0, "detections_per_min": 1, "seq_gaps": 0, "throttled": None, "version": HOSTILE["version"],
    }  # fmt: skip
    store.add_samples([row], now - 10)
    store.add_samples([row], now - 5)
    bench = {"model": HOSTILE["model"], "host": {}, "results": [{"runtime": HOSTILE["runtime"] + MATH,
             "latency_ms": {"p50": 1.0, "p90": 2.0}, "error": MARKUP + "<script>alert(1)</script>"}]}  # fmt: skip
    store.add_bench("evil-1", now - 5, json.dumps(bench))
    index = write_report(store, tmp_path / "report", since_s=3600)
    store.close()
    html = index.read_text()
    _assert_inert(html)
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert "m\\x1b]0;pwned-title\\x07[blink]" in html


def test_fleet_serve_pages_metrics_and_live_events_show_escapes(broker, fleet_serve, tmp_path: Path) -> None:
    """`lookout fleet serve`: HTML pages, /metrics and the live table's events carry no raw control
    character from a device (HTML escaping alone leaves ESC and U+202E in place)."""
    import urllib.request

    srv = fleet_serve("--broker", broker.url, "--db", str(tmp_path / "h.sqlite"), "--history-interval", "0.3")
    c = _publish_hostile_device(broker)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not srv.json("/api/devices"):
            _keep_sending(c)
            time.sleep(0.3)
        _keep_sending(c)
        time.sleep(1.0)
    finally:
        c.loop_stop()
        c.disconnect()
    for path in ("/", "/devices/evil-1?since=1h", "/runtimes", "/metrics"):
        status, body, _ = srv.get(path)
        assert status == 200, (path, body[:300])
        text = body.decode()
        _assert_inert(text)
        if path != "/metrics":
            assert "\\x1b]0;pwned-title\\x07" in text, path
    with urllib.request.urlopen(srv.url + "/events", timeout=20) as stream:
        line = b""
        while not line.startswith(b"data: "):
            line = stream.readline()
    view = json.loads(line[len(b"data: ") :])
    cells = [text for row in view["rows"] for text, _tone in row["cells"]]
    assert any("\\x1b[2J" in t for t in cells), cells
    for t in cells:
        _assert_inert(t)
