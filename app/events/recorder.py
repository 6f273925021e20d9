"""Pipeline frames -> presence changes -> published events, presence state and snapshots.

`on_frame` runs on the pipeline's post thread and only does the cheap part: the presence step and,
when something changed, queueing the change with a *reference* to the frame (no copy; sources hand
out a fresh array per frame). A worker thread does the rest in order: JPEG encoding (only for a start,
at most one per frame), then the events, then the retained presence state. So a snapshot never
stalls the pipeline, and a consumer that sees `"snapshot": true` on a start finds that snapshot
already retained on the snapshot topic. Events are never dropped here; when snapshots pile up (more
than MAX_PENDING_FRAMES frames waiting) the newest start goes without one and is counted.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from app.events.presence import PresenceChange, PresenceRules, PresenceTracker
from app.events.snapshot import SnapshotStore, draw_boxes, encode_jpeg
from app.telemetry.contract import event_fields, presence_payload

if TYPE_CHECKING:
    import numpy as np

    from app.config import EventsConfig, SnapshotConfig
    from app.detection import Detection
    from app.pipeline import FrameResult

log = logging.getLogger(__name__)

MAX_PENDING_FRAMES = 2


class EventPublisher(Protocol):
    """Where events go (app.telemetry.mqtt.Telemetry, or a recorder in tests and benchmarks)."""

    def publish_event(self, payload: dict[str, Any]) -> int: ...
    def publish_presence(self, payload: dict[str, Any]) -> None: ...
    def publish_snapshot(self, jpeg: bytes) -> None: ...
    def set_labels(self, labels: list[str], *, camera: bool = False) -> None: ...


def presence_rules(cfg: EventsConfig) -> PresenceRules:
    """The config's [events] table as presence rules."""
    return PresenceRules(
        start_frames=cfg.start_frames,
        window_frames=cfg.window_frames,
        end_after_s=cfg.end_after_s,
        min_score=cfg.min_score or 0.0,
        labels=frozenset(cfg.labels) if cfg.labels is not None else None,
    )


def tracked_labels(cfg: EventsConfig, model_labels: Sequence[str]) -> list[str]:
    """The labels presence is tracked for: the config's, else every label of the model (in order, once)."""
    labels = cfg.labels if cfg.labels is not None else model_labels
    return list(dict.fromkeys(x for x in labels if x))


@dataclass
class _Batch:
    changes: list[PresenceChange]
    present: dict[str, dict[str, Any]]
    ts: float
    frame: np.ndarray | None
    detections: list[Detection]


class EventRecorder:
    """Presence tracking on the post thread; encoding and publishing on its own worker thread.

    `model_labels` returns the running model's labels: the tracked labels (announced to the publisher
    with `set_labels`, for Home Assistant) follow a hot swap to another model."""

    def __init__(
        self,
        events: EventsConfig,
        snapshots: SnapshotConfig,
        publisher: EventPublisher,
        state_dir: Path | None = None,
        model_labels: Callable[[], Sequence[str]] = tuple,
    ) -> None:
        self.events_cfg = events
        self.tracker = PresenceTracker(presence_rules(events))
        self.snapshots = snapshots
        self.model_labels = model_labels
        self._model: str | None = None
        self.publisher = publisher
        self.store = (
            SnapshotStore(Path(state_dir) / "snapshots", snapshots.keep)
            if snapshots.save and state_dir is not None
            else None
        )
        self._lock = threading.Lock()  # the tracker: post thread and main loop
        self._cond = threading.Condition()
        self._queue: deque[_Batch] = deque()
        self._frames_pending = 0
        self._closing = False
        self._thread = threading.Thread(target=self._work, name="lookout-events", daemon=True)
        self.counts = {
            "events": 0,
            "snapshots": 0,
            "snapshot_bytes": 0,
            "snapshots_skipped": 0,
            "snapshots_too_big": 0,
            "errors": 0,
        }
        self.encode_ms: list[float] = []

    def start(self) -> EventRecorder:
        self._announce()
        self._thread.start()
        return self

    def _announce(self) -> None:
        """Tell the publisher what there is to show (Home Assistant entities)."""
        labels = tracked_labels(self.events_cfg, self.model_labels())
        self.publisher.set_labels(labels, camera=self.snapshots.enabled)

    # --- producers -------------------------------------------------------------------------------
    def on_frame(self, result: FrameResult) -> None:
        """One processed frame (post thread): the presence step; queue what changed."""
        if result.model != self._model:  # first frame, or the first after a hot swap
            if self._model is not None:
                self._announce()
            self._model = result.model
        with self._lock:
            changes = self.tracker.observe(result.ts, result.detections)
            if not changes:
                return
            present = self.tracker.present()
        wants_shot = self.snapshots.enabled and any(c.type == "start" for c in changes)
        self._enqueue(
            _Batch(changes, present, result.ts, result.frame if wants_shot else None, result.detections)
        )

    def expire(self, now: float | None = None) -> None:
        """End presences unconfirmed for T seconds (main loop: frames may have stopped coming)."""
        now = time.time() if now is None else now
        with self._lock:
            changes = self.tracker.expire(now)
            present = self.tracker.present() if changes else {}
        if changes:
            self._enqueue(_Batch(changes, present, now, None, []))

    def close(self, timeout_s: float = 10.0) -> None:
        """End every presence, publish what is queued, stop the worker. Idempotent."""
        now = time.time()
        with self._lock:
            changes = self.tracker.finish(now)
        if changes:
            self._enqueue(_Batch(changes, {}, now, None, []))
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _enqueue(self, batch: _Batch) -> None:
        with self._cond:
            if batch.frame is not None:
                if self._frames_pending >= MAX_PENDING_FRAMES:
                    batch.frame = None
                    self.counts["snapshots_skipped"] += 1
                else:
                    self._frames_pending += 1
            self._queue.append(batch)
            self._cond.notify()

    # --- worker ----------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                batch = self._queue.popleft()
            try:
                self._publish(batch)
            except Exception as exc:  # the spool or the broker; never let the worker die
                self.counts["errors"] += 1
                log.warning("events: %s: %s", type(exc).__name__, exc)
            finally:
                if batch.frame is not None:
                    with self._cond:
                        self._frames_pending -= 1

    def _publish(self, batch: _Batch) -> None:
        shot = batch.frame is not None and self._snapshot(batch)
        for c in batch.changes:
            fields = dataclasses.asdict(c)
            self.publisher.publish_event(event_fields(**fields, snapshot=shot and c.type == "start"))
            self.counts["events"] += 1
        self.publisher.publish_presence(presence_payload(batch.present, batch.ts))

    def _snapshot(self, batch: _Batch) -> bool:
        """Encode the frame (boxes of the detections that count, if configured); publish and keep it."""
        assert batch.frame is not None
        t0 = time.perf_counter()
        img = batch.frame
        if self.snapshots.boxes:
            rules = self.tracker.rules
            img = draw_boxes(img, [d for d in batch.detections if rules.counts(d)])
        shot = encode_jpeg(img, self.snapshots.max_kb * 1024)
        self.encode_ms.append((time.perf_counter() - t0) * 1000)
        del self.encode_ms[:-100]
        if shot is None:
            self.counts["snapshots_too_big"] += 1
            log.warning(
                "snapshot does not fit snapshot.max_kb = %d even at the lowest quality", self.snapshots.max_kb
            )
            return False
        self.publisher.publish_snapshot(shot.jpeg)
        self.counts["snapshots"] += 1
        self.counts["snapshot_bytes"] += len(shot.jpeg)
        if self.store is not None:
            labels = [c.label for c in batch.changes if c.type == "start"]
            self.store.save(shot.jpeg, batch.ts, labels)
        return True

    def stats(self) -> dict[str, Any]:
        """Counters, the labels present now, and the mean snapshot encode time (ms, last 100)."""
        with self._lock:
            present = self.tracker.present()
        ms = self.encode_ms
        return {
            **self.counts,
            "present": present,
            "snapshot_encode_ms": round(sum(ms) / len(ms), 3) if ms else None,
        }
