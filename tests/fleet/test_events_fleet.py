"""The fleet side of events: presence and the last event per device (terminal view, --once --json),
and the latest snapshot per device on the web pages — from what a real device client publishes."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.config import MqttConfig, SpoolConfig
from app.fleet.monitor import Monitor
from app.fleet.registry import Registry
from app.fleet.table import COLUMNS, cells
from app.fleet.web import CSP, FleetApp, FleetServer
from app.telemetry.mqtt import Telemetry

EVIL = "<img src=x onerror=alert(1)>"


def jpeg(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return buf.tobytes()


def event(seq: int, kind: str, label: str, ts: float, count: int = 1) -> bytes:
    return json.dumps({"v": 1, "seq": seq, "type": kind, "label": label, "count": count, "max_score": 0.9,
                       "started_at": ts - 1, "ts": ts, "snapshot": kind == "start"}).encode()  # fmt: skip


def presence(ts: float, **labels: int) -> bytes:
    present = {k: {"count": n, "max_score": 0.9, "started_at": ts - 1} for k, n in labels.items()}
    return json.dumps({"v": 1, "ts": ts, "present": present}).encode()


def test_registry_rows_and_table_cells(astronaut_bgr: np.ndarray) -> None:
    mon = Monitor(Registry())
    now = time.time()
    mon.handle("lookout/cam-a/events", event(1, "start", "face", now - 12), now)
    mon.handle("lookout/cam-a/events", event(4, "update", "face", now - 2, count=2), now)  # 2 and 3 lost
    mon.handle("lookout/cam-a/events", event(3, "update", "face", now - 3), now)  # late: not "last"
    mon.handle("lookout/cam-a/presence", presence(now, face=2, person=1), now)
    mon.handle("lookout/cam-a/snapshot", jpeg(astronaut_bgr), now)
    mon.handle("lookout/cam-b/presence", presence(now), now)
    row = {r["device_id"]: r for r in mon.registry.snapshot(now)}
    a, b = row["cam-a"], row["cam-b"]
    assert a["presence"] == {"face": {"count": 2, "max_score": 0.9, "started_at": now - 1},
                             "person": {"count": 1, "max_score": 0.9, "started_at": now - 1}}  # fmt: skip
    assert a["last_event"]["seq"] == 4 and a["last_event"]["age_s"] == pytest.approx(2.0, abs=0.1)
    assert a["events_seq_gaps"] == 2 and a["messages"]["events"] == 3 and a["snapshot_at"] == now
    text = {c.header: cell.text for c, cell in zip(COLUMNS, cells(a), strict=True)}
    assert text["present"] == "face 2, person 1" and text["last event"] == "face update, 2 s ago"
    text_b = {c.header: cell.text for c, cell in zip(COLUMNS, cells(b), strict=True)}
    assert text_b["present"] == "none" and text_b["last event"] == "—" and b["snapshot_at"] is None
    assert mon.registry.snapshot_jpeg("cam-a") == (jpeg(astronaut_bgr), now)

    # not a JPEG (or too big): refused, counted, never served; an empty retained message clears it
    mon.handle("lookout/cam-a/snapshot", b"<svg onload=alert(1)>", now + 1)
    assert mon.stats.malformed == {"snapshot": 1}
    assert mon.registry.snapshot_jpeg("cam-a") == (jpeg(astronaut_bgr), now)
    mon.handle("lookout/cam-a/snapshot", b"", now + 2)
    assert mon.registry.snapshot_jpeg("cam-a") is None
    mon.handle("lookout/cam-a/events", b'{"v": 1, "seq": 9, "type": "start"}', now)
    assert mon.stats.malformed["schema:events"] == 1

    # labels are network strings: control and bidi characters shown as escapes, long ones cut
    hostile = "\x1b]0;owned\x07face\u202e" + "x" * 100
    mon.handle("lookout/cam-c/events", event(1, "start", hostile, now), now)
    mon.handle("lookout/cam-c/presence", presence(now, **{hostile: 1}), now)
    c = {r["device_id"]: r for r in mon.registry.snapshot(now)}["cam-c"]
    text = {col.header: cell.text for col, cell in zip(COLUMNS, cells(c), strict=True)}
    for key in ("present", "last event"):
        assert (
            "\x1b" not in text[key]
            and "\u202e" not in text[key]
            and "\\x1b]0;owned\\x07face\\u202e" in text[key]
        )
        assert len(text[key]) < 120


@pytest.fixture
def web(astronaut_bgr: np.ndarray) -> Iterator[tuple[str, bytes, Monitor]]:
    mon = Monitor(Registry())
    now = time.time()
    shot = jpeg(astronaut_bgr)
    mon.handle("lookout/cam-a/events", event(1, "start", EVIL, now), now)
    mon.handle("lookout/cam-a/presence", json.dumps({"v": 1, "ts": now, "present": {EVIL: {
        "count": 1, "max_score": 0.9, "started_at": now}}}).encode(), now)  # fmt: skip
    mon.handle("lookout/cam-a/snapshot", shot, now)
    mon.handle("lookout/cam.b/presence", presence(now), now)
    srv = FleetServer(FleetApp(mon.registry, mon.stats.as_dict, None, refresh_s=0.2), "127.0.0.1", 0).start()
    try:
        yield srv.url, shot, mon
    finally:
        srv.close()


def get(url: str) -> tuple[int, bytes, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def test_snapshot_is_served_as_received_and_the_pages_show_it_inert(web) -> None:
    url, shot, _ = web
    status, body, hdr = get(url + "/devices/cam-a/snapshot.jpg?t=1")
    assert status == 200 and body == shot
    assert hdr["Content-Type"] == "image/jpeg" and hdr["X-Content-Type-Options"] == "nosniff"
    assert hdr["Content-Security-Policy"] == CSP
    assert get(url + "/devices/cam.b/snapshot.jpg")[0] == 404
    assert get(url + "/devices/nope/snapshot.jpg")[0] == 404

    _, page, _ = get(url + "/")
    html = page.decode()
    assert "<h2>Latest snapshots</h2>" in html and "src='/devices/cam-a/snapshot.jpg?t=" in html
    assert "/devices/cam.b/snapshot.jpg" not in html  # no snapshot, no image
    assert EVIL not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    _, dev, _ = get(url + "/devices/cam-a")
    assert "class='snapshot' src='/devices/cam-a/snapshot.jpg?t=" in dev.decode() and EVIL not in dev.decode()

    with urllib.request.urlopen(url + "/events", timeout=10) as r:
        while not (line := r.readline().decode()).startswith("data: "):
            pass
    view = json.loads(line[6:])
    assert [s["id"] for s in view["snapshots"]] == ["cam-a"] and EVIL in view["snapshots"][0]["caption"]


@pytest.mark.slow
def test_the_page_in_chromium_shows_the_snapshot_and_follows_a_new_one(
    web, browser, no_face_photos_bgr: dict[str, np.ndarray], tmp_path: Path
) -> None:
    url, _, mon = web
    browser.goto(url + "/")
    loaded = (
        "Array.from(document.querySelectorAll('#snapshots img')).map(i => [i.naturalWidth, i.naturalHeight])"
    )
    browser.wait_for(f"{loaded}.length == 1 && {loaded}[0][0] > 0")
    assert browser.js(loaded) == [[512, 512]]
    assert browser.js("document.querySelectorAll('img').length") == 1  # the label's markup stayed text
    browser.wait_for("document.getElementById('conn').textContent == 'live'")
    caption = browser.js("document.querySelector('#snapshots figcaption span').textContent")
    assert caption.startswith(EVIL)
    # a new snapshot arrives: the live page swaps the image without a reload
    mon.handle("lookout/cam-a/snapshot", jpeg(no_face_photos_bgr["chelsea"]), time.time())
    browser.wait_for(f"{loaded}.length == 1 && {loaded}[0][0] == 451")
    browser.screenshot(tmp_path / "fleet-snapshots.png")
    assert browser.problems == []


# --- from a real device client through a real broker to `lookout fleet` --------------------------------
@pytest.fixture
def device(broker, tmp_path: Path) -> Iterator[Telemetry]:
    t = Telemetry(MqttConfig(url=broker.url), SpoolConfig(), "cam-7", tmp_path / "state")
    t.start()
    assert t.wait_connected(10)
    try:
        yield t
    finally:
        t.stop(timeout_s=2)


def fleet_once(lookout_cmd: list[str], env: dict, url: str, *extra: str) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [*lookout_cmd, "fleet", "--broker", url, "--once", "--wait", "2", *extra],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return r


def test_lookout_fleet_shows_presence_and_the_last_event(
    broker, device: Telemetry, lookout_cmd, clean_env, astronaut_bgr: np.ndarray
) -> None:
    now = time.time()
    device.publish_status(state="online", runtime="tflite", model="blazeface-short")
    device.publish_snapshot(jpeg(astronaut_bgr))
    fields = {"v": 1, "label": "face", "count": 1, "max_score": 0.9, "started_at": now - 5, "snapshot": False}
    device.publish_event(fields | {"type": "start", "ts": now - 5, "snapshot": True})
    device.publish_event(fields | {"type": "update", "ts": now - 1, "count": 2})
    device.publish_presence({"v": 1, "ts": now, "present": {"face": {"count": 2, "max_score": 0.9,
                                                                     "started_at": now - 5}}})  # fmt: skip
    deadline = time.monotonic() + 10
    while device.stats()["spool_depth"] and time.monotonic() < deadline:
        time.sleep(0.05)
    # retained presence and snapshot reach a monitor that starts now; the events are a stream
    (row,) = json.loads(fleet_once(lookout_cmd, clean_env, broker.url, "--json").stdout)
    assert row["device_id"] == "cam-7" and row["presence"]["face"]["count"] == 2
    assert row["snapshot_at"] is not None and row["last_event"] is None

    # events while the monitor runs: the terminal view shows the presence and the last one
    proc = subprocess.Popen(
        [*lookout_cmd, "fleet", "--broker", broker.url, "--once", "--wait", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env | {"COLUMNS": "260"},
    )  # fmt: skip
    while proc.poll() is None:
        device.publish_event(fields | {"type": "update", "ts": time.time(), "count": 2})
        time.sleep(0.3)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert "present" in out and "last event" in out
    assert "face 2" in out and re.search(r"face update, \d+ s ago", out)


def test_an_offline_devices_presence_is_shown_as_last_known() -> None:
    """Its retained presence outlives the device: not "face 1" in the highlight colour of a live camera."""
    mon = Monitor(Registry())
    now = time.time()
    mon.handle("lookout/cam-a/presence", presence(now, face=1), now)
    mon.handle("lookout/cam-a/status", b'{"v": 1, "state": "offline"}', now)
    row = mon.registry.snapshot(now)[0]
    cell = dict(zip((c.header for c in COLUMNS), cells(row), strict=True))["present"]
    assert cell.text.endswith("(last known)") and cell.tone == "muted"
