"""Frame sources: OpenCV (file, V4L2 device, RTSP/HTTP), a folder of images, synthetic frames, picamera2.

Every source yields BGR HxWx3 uint8 frames from ``read(stop)``. I/O failures never raise out of
``read``: the source goes ``degraded`` (``on_state("degraded", reason)``), retries with exponential
backoff (``ReconnectConfig.initial_s`` doubling up to ``max_s``, with jitter; every wait wakes
as soon as ``stop`` is set) and reports ``on_state("online", "")`` when frames flow again.
``failures`` counts failed reads and failed re-open attempts; ``reconnects`` counts successful
re-opens after a loss. ``read`` returns None only at a real end (file or folder exhausted with
``loop=false``, or a video file deleted with ``loop=false`` once its open handle is read to the end) or
when ``stop`` is set. Use one reader thread; ``close`` may come from another.
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import cv2
import numpy as np

from app.config import (
    FPS_MAX,
    FPS_MIN,
    ImagesSource,
    OpenCVSource,
    Picamera2Source,
    ReconnectConfig,
    SyntheticSource,
)
from app.errors import LookoutError

log = logging.getLogger(__name__)
OnState = Callable[[str, str], None]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")
STREAM_TIMEOUT_MS = 5000
EXACT_COUNT_SUFFIXES = {".mp4", ".m4v", ".mov", ".3gp"}  # frame count read from the container index


class SourceError(LookoutError):
    """A source cannot be used at all (missing file or folder, library not installed)."""


class Lost(Exception):
    """The source stopped delivering frames for now (reason in args[0]); the base class reconnects."""


class EndOfStream(Exception):
    """A real end: no more frames will come."""


class FrameSource:
    """Base class: the read loop with reconnect/backoff; subclasses implement _open, _grab, _release.

    `live`: frames arrive at the world's pace (a camera, a stream, a paced file), so the pipeline keeps
    only the freshest one; a file or folder read flat out is not live and no frame is skipped.
    """

    live: bool = False

    def __init__(self, description: str, reconnect: ReconnectConfig, on_state: OnState | None = None) -> None:
        self.description = description
        #: where the last frame came from: the image's file name for a folder, the URI otherwise
        self.frame_source = description
        self.fps: float | None = None
        self.reconnects = 0
        self.failures = 0
        self.degraded = False
        self._cfg = reconnect
        self._on_state = on_state
        self._delay = reconnect.initial_s
        self._open_ok = False
        self._lost_since_open = False
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._rng = random.Random()

    # --- subclass hooks --------------------------------------------------------------------------
    def _open(self) -> None:
        """Open the device/file/folder; raise Lost if it is not there."""

    def _grab(self, stop: threading.Event) -> np.ndarray:
        """The next frame; raise Lost on failure, EndOfStream at a real end."""
        raise NotImplementedError

    def _release(self) -> None:
        """Free the device (idempotent)."""

    # --- public ----------------------------------------------------------------------------------
    def start(self) -> None:
        """First open attempt; a failure only marks the source degraded (read() keeps retrying).
        Subclasses raise SourceError here for a source that can never work."""
        self._try_open()

    def read(self, stop: threading.Event) -> np.ndarray | None:
        """The next BGR frame, or None at a real end or when `stop` is set."""
        while not stop.is_set() and not self._closed.is_set():
            if not self._open_ok:
                if not self._backoff(stop):
                    return None
                try:
                    if not self._try_open():
                        continue
                except EndOfStream:
                    return None
            try:
                with self._lock:
                    if self._closed.is_set():
                        return None
                    frame = self._grab(stop)
            except Lost as exc:
                self._lost(str(exc))
                continue
            except EndOfStream:
                return None
            except (OSError, cv2.error) as exc:  # an I/O failure the subclass did not classify
                self._lost(f"{type(exc).__name__}: {exc}")
                continue
            if self.degraded:
                self._set_state("online", "")
            self._delay = self._cfg.initial_s
            return frame
        return None

    def close(self) -> None:
        """Release the device; safe to call from another thread and more than once."""
        self._closed.set()
        with self._lock:
            self._release()
            self._open_ok = False

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals -------------------------------------------------------------------------------
    def _try_open(self) -> bool:
        try:
            with self._lock:
                self._open()
        except Lost as exc:
            self._lost(str(exc))
            return False
        except (OSError, cv2.error) as exc:
            self._lost(f"{type(exc).__name__}: {exc}")
            return False
        self._open_ok = True
        if self._lost_since_open:
            self.reconnects += 1
            self._lost_since_open = False
        return True

    def _lost(self, reason: str) -> None:
        self.failures += 1
        self._lost_since_open = True
        with self._lock:
            self._release()
        self._open_ok = False
        if not self.degraded:
            log.warning("source %s degraded: %s", self.description, reason)
            self._set_state("degraded", reason)

    def _backoff(self, stop: threading.Event) -> bool:
        """Sleep the current backoff (jittered), then double it. False if stopped or closed meanwhile."""
        delay = self._delay * self._rng.uniform(0.75, 1.0)
        self._delay = min(self._delay * 2.0, self._cfg.max_s)
        end = time.monotonic() + delay
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return not self._closed.is_set()
            # wakes at once on stop; close() is noticed within 0.1 s
            if stop.wait(min(left, 0.1)) or self._closed.is_set():
                return False

    def _set_state(self, state: str, reason: str) -> None:
        self.degraded = state == "degraded"
        if state == "online":
            log.info("source %s online again", self.description)
        if self._on_state is not None:
            try:
                self._on_state(state, reason)
            except Exception:  # a broken callback must not stop the camera
                log.exception("on_state callback failed")


def _wait_until(deadline: float, stop: threading.Event) -> None:
    left = deadline - time.perf_counter()
    if left > 0:
        stop.wait(left)


class OpenCVFrameSource(FrameSource):
    """cv2.VideoCapture on a video file, a V4L2 device (index or /dev/videoN) or a stream URL."""

    def __init__(
        self, cfg: OpenCVSource, reconnect: ReconnectConfig, on_state: OnState | None = None
    ) -> None:
        self.cfg = cfg
        self.kind, self.target = _classify_uri(cfg.uri)
        super().__init__(f"opencv {self.kind} {cfg.uri}", reconnect, on_state)
        self.live = self.kind != "file" or cfg.realtime
        self.frame_source = str(cfg.uri)
        self._cap: cv2.VideoCapture | None = None
        self._pos = 0
        self._frame_count = 0
        self._size_at_open: int | None = None
        self._next_t: float | None = None

    def start(self) -> None:
        """A video file must exist and decode now; a device or stream may come later."""
        if self.kind != "file":
            super().start()
            return
        path = Path(str(self.target))
        if not path.is_file():
            raise SourceError(f"source opencv: video file {path} not found")
        try:
            self._open()
        except Lost:
            raise SourceError(f"source opencv: cannot decode video file {path}") from None
        self._open_ok = True

    def _open(self) -> None:
        if self.kind == "file":
            path = Path(str(self.target))
            if not path.is_file():
                self._gone(path)
            self._size_at_open = path.stat().st_size
            cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        elif self.kind == "device":
            dev = self.target if isinstance(self.target, str) else f"/dev/video{self.target}"
            if os.name == "posix" and not os.path.exists(dev):
                raise Lost(f"camera device {dev} is not present")
            cap = cv2.VideoCapture(self.target, cv2.CAP_V4L2)
            if self.cfg.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.cfg.width)
            if self.cfg.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.cfg.height)
        else:
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                STREAM_TIMEOUT_MS,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                STREAM_TIMEOUT_MS,
            ]
            cap = cv2.VideoCapture(str(self.target), cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise Lost(f"cannot open {self.cfg.uri}")
        self.fps = header_fps(cap.get(cv2.CAP_PROP_FPS))
        self._frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if self.kind == "file" else 0
        if self.kind == "file" and self._pos:
            if 0 < self._pos < self._frame_count:  # resume where the file broke
                cap.set(cv2.CAP_PROP_POS_FRAMES, self._pos)
            else:
                self._pos = 0
        self._cap = cap
        self._next_t = None

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _gone(self, path: Path) -> NoReturn:
        """The video file is not there: the end without `loop` (it is not coming back by itself), else a
        loss that waits for it."""
        if not self.cfg.loop:
            log.warning("source %s: video file %s is gone; ending (loop = false)", self.description, path)
            raise EndOfStream
        raise Lost(f"video file {path} is missing (loop = true: waiting for it to come back)")

    def _truncated(self) -> bool:
        """A failed read is a loss, not the end, if the file changed under us or (in containers whose
        index gives an exact frame count) frames the index promises could not be decoded."""
        path = Path(str(self.target))
        try:
            size = path.stat().st_size
        except OSError:
            return True
        exact_count = path.suffix.lower() in EXACT_COUNT_SUFFIXES
        short = exact_count and self._frame_count > 1 and self._pos < self._frame_count - 1
        return size != self._size_at_open or short

    def _grab(self, stop: threading.Event) -> np.ndarray:
        assert self._cap is not None
        ok, frame = self._cap.read()
        if not ok:
            if self.kind != "file":
                raise Lost(f"{self.kind} {self.cfg.uri}: read failed")
            if not Path(str(self.target)).exists():  # deleted under the open capture, read to its end
                self._gone(Path(str(self.target)))
            if self._truncated():
                raise Lost(
                    f"video file {self.target}: decode failed at frame {self._pos} of {self._frame_count}"
                )
            if not self.cfg.loop:
                raise EndOfStream
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._pos = 0
            ok, frame = self._cap.read()
            if not ok:
                raise Lost(f"video file {self.target}: no frame after rewinding")
        self._pos += 1
        if frame.ndim == 2 or frame.shape[2] != 3:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR if frame.ndim == 2 else cv2.COLOR_BGRA2BGR)
        if self.kind != "device" and (self.cfg.width or self.cfg.height):
            w = self.cfg.width or frame.shape[1]
            h = self.cfg.height or frame.shape[0]
            if (w, h) != (frame.shape[1], frame.shape[0]):
                frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
        if self.kind == "file" and self.cfg.realtime and self.fps:
            self._pace(stop)
        return frame

    def _pace(self, stop: threading.Event) -> None:
        """Release frames at the file's own rate; re-anchor when behind by more than a frame."""
        period = 1.0 / float(self.fps or 1.0)
        now = time.perf_counter()
        if self._next_t is None or now - self._next_t > period:
            self._next_t = now
        _wait_until(self._next_t, stop)
        self._next_t += period


def header_fps(fps: float) -> float | None:
    """The frame rate a file or camera states, bounded to [FPS_MIN, FPS_MAX] like every configured rate
    (a header saying 1e-10 fps would pace a file at one frame per century); None when it states none."""
    if not math.isfinite(fps) or fps <= 0:
        return None
    return min(max(float(fps), FPS_MIN), FPS_MAX)


def _classify_uri(uri: str) -> tuple[str, str | int]:
    """('file' | 'device' | 'stream', target) for an OpenCVSource uri."""
    u = uri.strip()
    if u == "demo":
        from app.vision.demo import demo_video_path

        return "file", str(demo_video_path())
    if u.isdigit():
        return "device", int(u)
    if u.startswith("/dev/"):
        return "device", u
    if u.lower().startswith(STREAM_SCHEMES):
        return "stream", u
    return "file", str(Path(u).expanduser())


class ImagesFrameSource(FrameSource):
    """The images of a folder in sorted order; the folder is re-scanned at each wrap and after a loss."""

    def __init__(
        self, cfg: ImagesSource, reconnect: ReconnectConfig, on_state: OnState | None = None
    ) -> None:
        self.cfg = cfg
        self.folder = Path(cfg.folder).expanduser()
        super().__init__(f"images {self.folder}", reconnect, on_state)
        self._files: list[Path] = []
        self._i = 0

    def start(self) -> None:
        """The folder must exist and hold images now."""
        if not self.folder.is_dir():
            raise SourceError(f"source images: folder {self.folder} not found")
        if not self.scan():
            raise SourceError(
                f"source images: folder {self.folder} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        super().start()

    def scan(self) -> list[Path]:
        try:
            return sorted(
                p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            )
        except OSError as exc:
            raise Lost(f"image folder {self.folder}: {exc.strerror or exc}") from None

    def _open(self) -> None:
        files = self.scan()
        if not files:
            raise Lost(f"image folder {self.folder} has no images")
        self._files = files
        if self._i >= len(files):
            self._i = 0 if self.cfg.loop else len(files)

    def _grab(self, stop: threading.Event) -> np.ndarray:
        if self._i >= len(self._files):
            if not self.cfg.loop:
                raise EndOfStream
            self._open()  # re-scan: picks up added or removed files
            self._i = 0
        path = self._files[self._i]
        img = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
        if img is None:
            raise Lost(f"cannot read image {path}")
        self._i += 1
        self.frame_source = path.name
        return img


class SyntheticFrameSource(FrameSource):
    """Generated frames: a gradient background and moving shapes, deterministic from the seed."""

    SHAPES = 5

    def __init__(
        self, cfg: SyntheticSource, reconnect: ReconnectConfig, on_state: OnState | None = None
    ) -> None:
        self.cfg = cfg
        super().__init__(f"synthetic {cfg.width}x{cfg.height} seed {cfg.seed}", reconnect, on_state)
        rng = np.random.default_rng(cfg.seed)
        w, h = cfg.width, cfg.height
        c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :, None]
        row = (c0[None, None, :] * (1 - t) + c1[None, None, :] * t).astype(np.uint8)
        self._bg = np.ascontiguousarray(np.broadcast_to(row, (h, w, 3)))
        s = max(4, min(w, h) // 8)
        self._shapes = [
            {
                "kind": int(rng.integers(0, 2)),
                "size": int(rng.integers(s // 2, s + 1)),
                "color": tuple(int(v) for v in rng.integers(0, 256, 3)),
                "pos": rng.uniform(0, 1, 2),
                "vel": rng.uniform(-0.02, 0.02, 2),
            }
            for _ in range(self.SHAPES)
        ]
        self._n = 0

    def frame(self, n: int) -> np.ndarray:
        """Frame number n (pure function of seed and n)."""
        w, h = self.cfg.width, self.cfg.height
        img = self._bg.copy()
        for sh in self._shapes:
            p = (sh["pos"] + sh["vel"] * n) % 2.0
            p = np.where(p > 1.0, 2.0 - p, p)  # bounce between the edges
            x, y, r = int(p[0] * (w - 1)), int(p[1] * (h - 1)), sh["size"]
            if sh["kind"] == 0:
                cv2.circle(img, (x, y), r, sh["color"], -1, cv2.LINE_AA)
            else:
                cv2.rectangle(img, (x - r, y - r), (x + r, y + r), sh["color"], -1)
        return img

    def _grab(self, stop: threading.Event) -> np.ndarray:
        img = self.frame(self._n)
        self._n += 1
        return img


class Picamera2FrameSource(FrameSource):
    """Raspberry Pi camera via picamera2 (imported at open). Format "RGB888" is B, G, R in memory:
    OpenCV's order, so frames arrive without a conversion."""

    live = True

    def __init__(
        self, cfg: Picamera2Source, reconnect: ReconnectConfig, on_state: OnState | None = None
    ) -> None:
        self.cfg = cfg
        super().__init__(
            f"picamera2 camera {cfg.camera} {cfg.width}x{cfg.height}@{cfg.fps:g}", reconnect, on_state
        )
        self.fps = cfg.fps
        self._cam = None
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise SourceError(
                "source picamera2: python module picamera2 not installed (apt install python3-picamera2; "
                "venv with --system-site-packages)"
            ) from None
        self._cls = Picamera2

    def _open(self) -> None:
        try:
            cam = self._cls(self.cfg.camera)
            config = cam.create_video_configuration(
                main={"size": (self.cfg.width, self.cfg.height), "format": "RGB888"},
                controls={"FrameRate": self.cfg.fps},
                buffer_count=4,
            )
            cam.configure(config)
            cam.start()
        except Exception as exc:  # picamera2 raises RuntimeError/IndexError when the camera is absent
            raise Lost(f"picamera2 camera {self.cfg.camera}: {exc}") from None
        self._cam = cam

    def _grab(self, stop: threading.Event) -> np.ndarray:
        try:
            frame = self._cam.capture_array("main")
        except Exception as exc:
            raise Lost(f"picamera2 capture failed: {exc}") from None
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise Lost(f"picamera2 returned frame of shape {frame.shape}")
        return frame

    def _release(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            try:
                cam.stop()
                cam.close()
            except Exception:
                log.debug("picamera2 close failed", exc_info=True)


def open_source(
    cfg: object, reconnect: ReconnectConfig | None = None, on_state: OnState | None = None
) -> FrameSource:
    """Build and open the source for `cfg` (the class registered for ``cfg.type`` in the entry-point group
    ``lookout.sources``, see app/plugins.py). SourceError for a source that can never work (missing video
    file or image folder, unreadable file, picamera2 not installed); a camera that is merely absent gives
    a degraded source that keeps retrying."""
    from app import plugins

    kind = getattr(cfg, "type", None)
    if not isinstance(kind, str):
        raise SourceError(f"unknown source config {type(cfg).__name__}")
    cls: type[FrameSource] = plugins.load(plugins.SOURCES, kind, SourceError)
    src = cls(cfg, reconnect or ReconnectConfig(), on_state)
    src.start()
    return src
