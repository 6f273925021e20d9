"""Frames in, detections out: three threads joined by bounded channels, every stage timed.

    grab thread:   capture (source.read) -> preprocess   ─┐  Channel (drop-oldest when live)
    infer thread:  runtime.infer                          <┘ ─┐  Channel (back-pressure)
    post thread:   postprocess (decode) -> publish (sink)    <┘

Preprocess runs on the grab thread (OpenCV releases the GIL) so decoding and resizing the next frame
overlaps inference of this one; decode and publish overlap the next inference. For a live source the
hand-off to inference keeps only the freshest frame (stale frames are dropped and counted), so latency
stays bounded when inference is slower than the camera. For a file read as fast as possible it applies
back-pressure instead, so no frame is skipped. Each frame carries perf_counter_ns timestamps; stage
durations go into the latency histograms. The source frame travels with its job by reference, so the
sink can take a snapshot of it without a copy per frame; sources return a fresh array per read.

Liveness (what feeds the systemd watchdog): each thread records whether it is inside a call (a read,
an inference, a decode, a publish) and since when, or waiting on purpose (for the next frame slot under
the fps cap, or on a channel whose other side is working). `stalled(limit_s)` names a call that has
lasted longer than `limit_s`; a pipeline at one frame per minute is live, a hung inference is not.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.channel import Channel, Closed
from app.detection import Detection
from app.engine import Engine

log = logging.getLogger(__name__)

STAGES = ("capture", "preprocess", "infer", "postprocess", "publish")


@dataclass(slots=True)
class Job:
    """One frame on its way through the stages."""

    index: int
    ts: float  # wall-clock capture time (epoch s)
    engine: Engine
    tensor: np.ndarray
    transform: Any
    t_capture0: int
    t_capture1: int
    t_pre1: int
    source: str = ""
    frame: np.ndarray | None = None  # the source frame, referenced (not copied) for snapshots
    t_infer0: int = 0
    t_infer1: int = 0
    outputs: list[np.ndarray] = field(default_factory=list)


class Activity:
    """What one stage thread is doing: inside `call` since `since_ns`, or waiting on purpose (call None)."""

    __slots__ = ("call", "since_ns")

    def __init__(self) -> None:
        self.call: str | None = None
        self.since_ns = time.perf_counter_ns()

    def enter(self, call: str, now_ns: int) -> None:
        self.call, self.since_ns = call, now_ns

    def wait(self) -> None:
        self.call = None


@dataclass(slots=True)
class FrameResult:
    """What the sink receives for every processed frame."""

    index: int
    ts: float
    model: str
    runtime: str
    detections: list[Detection]
    latency_ms: dict[str, float]
    source: str = ""  # image file name for an image folder, the URI otherwise
    frame: np.ndarray | None = None  # the source frame (BGR), a reference: copy before changing it


class Pipeline:
    """Runs a source through an engine until the source ends, max_frames are done, or stop() is called."""

    def __init__(
        self,
        source: Any,
        engine: Engine,
        sink: Callable[[FrameResult], None],
        histograms: Any,
        *,
        live: bool,
        fps_cap: float | None = None,
        max_frames: int | None = None,
        queue_size: int = 2,
        on_infer: Callable[[int, int], None] | None = None,
    ) -> None:
        self.source = source
        self._engine = engine
        self._sink = sink
        self.histograms = histograms
        self.live = live
        self.fps_cap = fps_cap
        self.max_frames = max_frames
        self._on_infer = on_infer  # (t0_ns, t1_ns) of each inference: energy windows
        self._activity = {name: Activity() for name in ("grab", "infer", "post")}
        self._to_infer: Channel[Job] = Channel(1 if live else queue_size, drop_oldest=live)
        self._to_post: Channel[Job] = Channel(max(queue_size, 2))
        self._stop = threading.Event()
        self._retired: list[Engine] = []
        self._retired_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.frames = 0
        self.detections_total = 0
        self.errors = 0
        self.last_error: str | None = None
        self.first_done_ns: int | None = None
        self.last_done_ns: int | None = None
        self.last_progress_ns = time.perf_counter_ns()
        self.max_gap_ms = 0.0

    # --- control -------------------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def dropped_frames(self) -> int:
        return self._to_infer.dropped

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def start(self) -> None:
        for name, target in (
            ("grab", self._grab_loop),
            ("infer", self._infer_loop),
            ("post", self._post_loop),
        ):
            t = threading.Thread(target=target, name=f"lookout-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        """Ask the pipeline to finish: capture stops, frames in flight are drained."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        done = not self.running
        if done:
            with self._retired_lock:
                for old in self._retired:
                    old.close()
                self._retired.clear()
        return done

    def swap_engine(self, new: Engine) -> Engine:
        """Switch to `new` between two frames: frames captured from now on use it. Returns the old engine,
        which is closed once its last frame has left the pipeline."""
        with self._retired_lock:
            old, self._engine = self._engine, new
            self._retired.append(old)
        return old

    def stalled(self, limit_s: float) -> str | None:
        """Why the pipeline is not live, or None: a thread has been inside one call for more than
        `limit_s` (the capture call also gets one frame period of the source, and counts as waiting
        while the source reconnects)."""
        now = time.perf_counter_ns()
        for name, act in self._activity.items():
            call, since = act.call, act.since_ns
            if call is None:
                continue
            allowed = limit_s
            if call == "capture":
                if getattr(self.source, "degraded", False):
                    continue  # reconnecting with backoff, on purpose
                source_fps = getattr(self.source, "fps", None)
                allowed += 1.0 / source_fps if source_fps else 0.0
            if now - since > allowed * 1e9:
                return f"{call} has not returned for {(now - since) / 1e9:.0f} s ({name} thread)"
        return None

    @property
    def fps(self) -> float:
        if self.first_done_ns is None or self.last_done_ns is None or self.frames < 2:
            return 0.0
        span = (self.last_done_ns - self.first_done_ns) / 1e9
        return (self.frames - 1) / span if span > 0 else 0.0

    # --- stages --------------------------------------------------------------------------------
    def _grab_loop(self) -> None:
        act = self._activity["grab"]
        index = 0
        try:
            period_ns = int(1e9 / self.fps_cap) if self.fps_cap else 0
            next_ns = time.perf_counter_ns()
            while not self._stop.is_set():
                if not self.live and self.max_frames is not None and index >= self.max_frames:
                    break
                if period_ns:
                    act.wait()  # until the next frame slot: on purpose
                    wait = (next_ns - time.perf_counter_ns()) / 1e9
                    if wait > 0 and self._stop.wait(wait):
                        break
                    next_ns = max(next_ns + period_ns, time.perf_counter_ns() - period_ns)
                t0 = time.perf_counter_ns()
                act.enter("capture", t0)
                frame = self.source.read(self._stop)
                t1 = time.perf_counter_ns()
                if frame is None:
                    break
                ts = time.time()
                engine = self._engine
                act.enter("preprocess", t1)
                try:
                    tensor, transform = engine.preprocess(frame)
                except Exception as exc:
                    self._record_error("preprocess", exc)
                    continue
                t2 = time.perf_counter_ns()
                name = getattr(self.source, "frame_source", "")
                act.wait()  # a full channel waits for inference, which has its own activity
                self._to_infer.put(Job(index, ts, engine, tensor, transform, t0, t1, t2, name, frame))
                index += 1
        except Exception as exc:
            self._record_error("capture", exc)
        finally:
            act.wait()
            self._to_infer.close()

    def _infer_loop(self) -> None:
        on_infer = self._on_infer
        act = self._activity["infer"]
        try:
            while True:
                act.wait()
                job = self._to_infer.get()
                job.t_infer0 = time.perf_counter_ns()
                act.enter("infer", job.t_infer0)
                try:
                    job.outputs = job.engine.infer(job.tensor)
                except Exception as exc:
                    self._record_error("infer", exc)
                    continue
                job.t_infer1 = time.perf_counter_ns()
                if on_infer is not None:
                    on_infer(job.t_infer0, job.t_infer1)
                act.wait()
                self._to_post.put(job)
        except Closed:
            pass
        finally:
            act.wait()
            self._to_post.close()

    def _post_loop(self) -> None:
        record = self.histograms.record
        act = self._activity["post"]
        current: Engine | None = None
        try:
            while True:
                act.wait()
                job = self._to_post.get()
                if self.max_frames is not None and self.frames >= self.max_frames:
                    continue  # in flight when the limit was reached: drained, not counted
                if job.engine is not current:
                    act.enter("closing a retired engine", time.perf_counter_ns())
                    self._close_retired(job.engine)
                    current = job.engine
                t5 = time.perf_counter_ns()
                act.enter("postprocess", t5)
                try:
                    detections = job.engine.decode(job.outputs, job.transform)
                except Exception as exc:
                    self._record_error("postprocess", exc)
                    continue
                t6 = time.perf_counter_ns()
                durations = {
                    "capture": job.t_capture1 - job.t_capture0,
                    "preprocess": job.t_pre1 - job.t_capture1,
                    "infer": job.t_infer1 - job.t_infer0,
                    "postprocess": t6 - t5,
                }
                latency_ms = {k: round(v / 1e6, 3) for k, v in durations.items()}
                result = FrameResult(
                    job.index,
                    job.ts,
                    job.engine.model,
                    job.engine.runtime,
                    detections,
                    latency_ms,
                    job.source,
                    job.frame,
                )
                act.enter("publish", t6)
                try:
                    self._sink(result)
                except Exception as exc:
                    self._record_error("publish", exc)
                t7 = time.perf_counter_ns()
                durations["publish"] = t7 - t6
                durations["end_to_end"] = t7 - job.t_capture0
                for stage, ns in durations.items():
                    record(stage, ns)
                self._count_frame(t7, len(detections))
                if self.max_frames is not None and self.frames >= self.max_frames:
                    self._stop.set()
        except Closed:
            pass
        finally:
            act.wait()

    # --- bookkeeping ---------------------------------------------------------------------------
    def _count_frame(self, now_ns: int, n_detections: int) -> None:
        if self.last_done_ns is not None:
            self.max_gap_ms = max(self.max_gap_ms, (now_ns - self.last_done_ns) / 1e6)
        if self.first_done_ns is None:
            self.first_done_ns = now_ns
        self.last_done_ns = now_ns
        self.last_progress_ns = now_ns
        self.frames += 1
        self.detections_total += n_detections

    def _close_retired(self, active: Engine) -> None:
        """Every frame of a retired engine has passed once a frame of a newer one arrives (FIFO)."""
        with self._retired_lock:
            done = [old for old in self._retired if old is not active]
            self._retired = [old for old in self._retired if old is active]
        for old in done:
            log.info("closing retired engine %s/%s", old.model, old.runtime)
            old.close()

    def _record_error(self, stage: str, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{stage}: {type(exc).__name__}: {exc}"
        if self.errors <= 5 or self.errors % 100 == 0:
            log.warning("pipeline %s error #%d: %s", stage, self.errors, exc)
