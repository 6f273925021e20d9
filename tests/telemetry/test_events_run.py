"""Acceptance of #17: `lookout run` on the demo video (a face pans in and out) against a real broker
sends start then end for `face`, a retained snapshot OpenCV decodes, the Home Assistant discovery
documents, and an events seq without a gap across a broker outage."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.telemetry.schemas import validate

from ..service.live_device import start_run, stop_run
from .conftest import broker_outage, wait_until

DEVICE = "events-dev"
OUTAGE_S = 6.0  # longer than one pass of the demo at 60 fps (5 s): an end and a start fall inside it


def write_config(tmp_path: Path, url: str, video: Path) -> Path:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'device_id = "{DEVICE}"\nstate_dir = "{tmp_path / "state"}"\n'
        f'[source]\ntype = "opencv"\nuri = "{video}"\nloop = true\n'
        "[pipeline]\nfps = 60.0\n"  # the 10 s video in 5 s: 3.25 s with the face, 1.75 s without
        f'[mqtt]\nurl = "{url}"\nmetrics_interval_s = 1.0\nreconnect_max_s = 1.0\n'
        "[events]\nend_after_s = 0.5\n"
        "[snapshot]\nsave = true\nkeep = 3\n"
    )
    return cfg


def events_by_seq(sub) -> dict[int, dict]:
    return {m.json()["seq"]: m.json() for m in sub.on("/events")}


@pytest.mark.slow
def test_run_publishes_events_snapshot_and_discovery_across_an_outage(
    persistent_broker, collect, demo_video, clean_env, tmp_path: Path
) -> None:
    sub = collect(
        persistent_broker,
        [f"lookout/{DEVICE}/#", "homeassistant/#"],
        client_id="events-monitor",
        persistent=True,
    )
    cfg = write_config(tmp_path, persistent_broker.url, demo_video)
    proc = start_run(clean_env, "--config", str(cfg), "--report", str(tmp_path / "r.json"))
    try:
        wait_until(lambda: any(m.json()["type"] == "start" for m in sub.on("/events")), 60, "a start event")
        sub.wait_for("/snapshot", timeout_s=10)
        t_down, t_up = broker_outage(persistent_broker, OUTAGE_S)
        wait_until(
            lambda: any(m.json()["ts"] > t_up + 0.5 for m in sub.on("/events")), 30, "events after the outage"
        )
        assert proc.poll() is None
    finally:
        err = stop_run(proc)
    assert proc.returncode == 0, err[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    last = report["mqtt"]["last_events_seq"]
    assert report["events"]["events"] == last and report["events"]["errors"] == 0

    # every event arrived, the seq has no gap, and the detections kept their own seq
    wait_until(lambda: len(events_by_seq(sub)) >= last, 30, "every events seq")
    events = events_by_seq(sub)
    assert sorted(events) == list(range(1, last + 1))
    for e in events.values():
        validate("events", e)
    assert {e["label"] for e in events.values()} == {"face"}
    kinds = [events[s]["type"] for s in sorted(events)]
    starts_ends = [k for k in kinds if k != "update"]
    assert starts_ends[0] == "start" and starts_ends == ["start", "end"] * (len(starts_ends) // 2)
    assert len(starts_ends) >= 4  # at least two presences: one of them began or ended in the outage
    during = [e for e in events.values() if t_down + 0.2 < e["ts"] < t_up - 0.2]
    assert during, "no event from the outage was delivered afterwards"
    assert all(e["snapshot"] == (e["type"] == "start") for e in events.values())

    # the retained snapshot and presence, as a client connecting now sees them
    late = collect(persistent_broker, [f"lookout/{DEVICE}/snapshot", f"lookout/{DEVICE}/presence"])
    shot = late.wait_for("/snapshot")[0]
    assert shot.retain and len(shot.payload) <= 100 * 1024
    img = cv2.imdecode(np.frombuffer(shot.payload, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape == (480, 640, 3)
    presence = late.wait_for("/presence")[0]
    assert presence.retain and presence.json()["present"] == {}  # a clean stop ends every presence
    saved = sorted((tmp_path / "state" / "snapshots").glob("*.jpg"))
    assert 1 <= len(saved) <= 3

    # Home Assistant discovery: occupancy and count for the model's label, the camera, all available
    # only while the device is
    node = DEVICE.replace(".", "_")
    docs = {m.topic: m.json() for m in sub.on("/config") if m.payload}
    occ = docs[f"homeassistant/binary_sensor/{node}/presence_face/config"]
    count = docs[f"homeassistant/sensor/{node}/count_face/config"]
    cam = docs[f"homeassistant/camera/{node}/snapshot/config"]
    assert occ["device_class"] == "occupancy" and occ["state_topic"] == f"lookout/{DEVICE}/presence"
    assert count["state_topic"] == occ["state_topic"] and cam["topic"] == f"lookout/{DEVICE}/snapshot"
    for doc in (occ, count, cam):
        assert doc["availability"][0]["topic"] == f"lookout/{DEVICE}/status"
