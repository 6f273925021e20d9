"""The event recorder between the pipeline's post thread and the publisher: order, snapshots only
at a start and off the pipeline's thread, nothing lost, labels that follow the model."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from app.config import EventsConfig, SnapshotConfig
from app.detection import Detection
from app.events.recorder import MAX_PENDING_FRAMES, EventRecorder
from app.pipeline import FrameResult
from app.telemetry.schemas import validate


class Recorded:
    """The publisher side, recorded in order (what Telemetry would spool)."""

    def __init__(self, block: threading.Event | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.block = block
        self.threads: set[str] = set()
        self.fail_next = False

    def publish_event(self, payload: dict[str, Any]) -> int:
        if self.block is not None:
            self.block.wait(10)
        if self.fail_next:
            self.fail_next = False
            raise OSError("disk full")
        validate("events", payload | {"seq": 1})
        self.calls.append(("event", payload))
        self.threads.add(threading.current_thread().name)
        return len(self.calls)

    def publish_presence(self, payload: dict[str, Any]) -> None:
        validate("presence", payload)
        self.calls.append(("presence", payload))

    def publish_snapshot(self, jpeg: bytes) -> None:
        self.calls.append(("snapshot", jpeg))

    def set_labels(self, labels: list[str], *, camera: bool = False) -> None:
        self.calls.append(("labels", labels))
        self.camera = camera

    def kinds(self) -> list[str]:
        return [k if k != "event" else f"event:{p['type']}" for k, p in self.calls]


def result(
    i: int, frame: np.ndarray | None, dets: list[Detection], model: str = "blazeface-short"
) -> FrameResult:
    return FrameResult(i, 1000.0 + i / 10, model, "tflite", dets, {}, frame=frame)


def recorder(pub: Recorded, tmp_path: Path | None = None, **snap: Any) -> EventRecorder:
    events = EventsConfig(start_frames=2, window_frames=3, end_after_s=0.0)
    return EventRecorder(events, SnapshotConfig(**snap), pub, tmp_path, model_labels=lambda: ["face"]).start()


def test_start_brings_a_snapshot_first_then_the_event_then_the_presence(
    astronaut_bgr: np.ndarray, astronaut_face, tmp_path: Path
) -> None:
    pub = Recorded()
    rec = recorder(pub, tmp_path, save=True, keep=2)
    face = [Detection("face", 0.9, astronaut_face)]
    frames = [face, face, face, [], [], face, face, []]
    for i, dets in enumerate(frames):
        rec.on_frame(result(i, astronaut_bgr, dets))
    rec.close()
    assert pub.kinds() == [
        "labels",
        "snapshot", "event:start", "presence",
        "event:end", "presence",
        "snapshot", "event:start", "presence",
        "event:end", "presence",
    ]  # fmt: skip
    events = [p for k, p in pub.calls if k == "event"]
    assert [e["snapshot"] for e in events] == [True, False, True, False]
    assert pub.threads == {"lookout-events"}  # never the pipeline's thread
    jpeg = pub.calls[1][1]
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape == astronaut_bgr.shape and len(jpeg) <= 100 * 1024
    presence = [p for k, p in pub.calls if k == "presence"]
    assert list(presence[0]["present"]) == ["face"] and presence[1]["present"] == {}
    assert len(list((tmp_path / "snapshots").glob("*.jpg"))) == 2
    st = rec.stats()
    assert (st["events"], st["snapshots"], st["errors"]) == (4, 2, 0) and st["snapshot_encode_ms"] > 0


def test_no_frame_is_kept_without_a_start(astronaut_bgr: np.ndarray, astronaut_face) -> None:
    pub = Recorded()
    rec = recorder(pub, enabled=False)
    face = [Detection("face", 0.9, astronaut_face)]
    for i in range(4):
        rec.on_frame(result(i, astronaut_bgr, face))
    rec.close()
    assert "snapshot" not in pub.kinds() and pub.kinds()[1:3] == ["event:start", "presence"]
    assert [p["snapshot"] for k, p in pub.calls if k == "event"] == [False, False]


def test_a_slow_publisher_never_blocks_on_frame_and_loses_no_event(
    astronaut_bgr: np.ndarray, astronaut_face
) -> None:
    gate = threading.Event()
    pub = Recorded(block=gate)
    rec = recorder(pub)
    face = [Detection("face", 0.9, astronaut_face)]
    for i in range(40):  # start/end every few frames while the publisher is stuck: on_frame returns
        rec.on_frame(result(i, astronaut_bgr, face if i % 4 < 2 else []))
    assert "event:start" not in pub.kinds()  # the publisher is still stuck in its first event
    gate.set()
    rec.close()
    events = [p for k, p in pub.calls if k == "event"]
    assert [e["type"] for e in events] == ["start", "end"] * 10
    st = rec.stats()
    assert st["snapshots"] + st["snapshots_skipped"] == 10 and st["snapshots"] <= MAX_PENDING_FRAMES + 1


def test_a_publisher_error_is_counted_and_the_worker_goes_on(astronaut_face) -> None:
    pub = Recorded()
    pub.fail_next = True
    rec = recorder(pub, enabled=False)
    face = [Detection("face", 0.9, astronaut_face)]
    for i, dets in enumerate([face, face, [], [], face, face]):
        rec.on_frame(result(i, None, dets))
    rec.close()
    assert rec.stats()["errors"] == 1
    assert [p["type"] for k, p in pub.calls if k == "event"] == ["end", "start", "end"]


def test_labels_follow_a_hot_swap(astronaut_face) -> None:
    pub = Recorded()
    labels = ["face"]
    rec = EventRecorder(
        EventsConfig(), SnapshotConfig(enabled=False), pub, model_labels=lambda: labels
    ).start()
    rec.on_frame(result(0, None, [], model="blazeface-short"))
    labels = ["person"]
    rec.on_frame(result(1, None, [], model="person-detector"))
    rec.on_frame(result(2, None, [], model="person-detector"))
    rec.close()
    assert [p for k, p in pub.calls if k == "labels"] == [["face"], ["person"]]
    assert pub.camera is False  # snapshots off: no camera entity


def test_expire_ends_presence_when_frames_stop(astronaut_face) -> None:
    pub = Recorded()
    rec = EventRecorder(
        EventsConfig(start_frames=1, window_frames=1), SnapshotConfig(enabled=False), pub
    ).start()
    rec.on_frame(result(0, None, [Detection("face", 0.9, astronaut_face)]))
    rec.expire(now=1000.0 + 60)
    rec.close()
    assert [p["type"] for k, p in pub.calls if k == "event"] == ["start", "end"]
