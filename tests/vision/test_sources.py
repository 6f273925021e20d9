"""Frame sources against real files, folders and device paths: ends, loops, loss and reconnection."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.config import ImagesSource, OpenCVSource, ReconnectConfig, SyntheticSource
from app.vision.sources import SourceError, open_source

FAST = ReconnectConfig(initial_s=0.02, max_s=0.1)
WAIT = 30.0  # generous upper bound for events on a loaded machine


def write_video(path: Path, frames: int, size: tuple[int, int] = (160, 120), fps: float = 30.0) -> Path:
    w, h = size
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert vw.isOpened()
    for i in range(frames):
        img = np.full((h, w, 3), (i * 5) % 256, np.uint8)
        cv2.putText(img, str(i), (10, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 255), 2)
        vw.write(img)
    vw.release()
    return path


class Recorder:
    """on_state callback that records transitions and signals them."""

    def __init__(self) -> None:
        self.states: list[tuple[str, str]] = []
        self.degraded = threading.Event()
        self.online = threading.Event()

    def __call__(self, state: str, reason: str) -> None:
        self.states.append((state, reason))
        (self.degraded if state == "degraded" else self.online).set()


class Reader(threading.Thread):
    """Reads frames until read() returns None."""

    def __init__(self, src, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.src, self.stop, self.frames = src, stop, 0

    def run(self) -> None:
        while self.src.read(self.stop) is not None:
            self.frames += 1


# --- synthetic -----------------------------------------------------------------------------------
def test_synthetic_is_deterministic_and_moves() -> None:
    stop = threading.Event()
    a = open_source(SyntheticSource(width=320, height=240, seed=7), FAST)
    b = open_source(SyntheticSource(width=320, height=240, seed=7), FAST)
    c = open_source(SyntheticSource(width=320, height=240, seed=8), FAST)
    fa = [a.read(stop) for _ in range(5)]
    fb = [b.read(stop) for _ in range(5)]
    fc = c.read(stop)
    assert fa[0].shape == (240, 320, 3) and fa[0].dtype == np.uint8
    assert all(np.array_equal(x, y) for x, y in zip(fa, fb, strict=True))
    assert not np.array_equal(fa[0], fa[4])
    assert not np.array_equal(fa[0], fc)


# --- video files ---------------------------------------------------------------------------------
def test_file_without_loop_ends_with_none(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", 12)
    src = open_source(OpenCVSource(uri=str(path), loop=False), FAST)
    stop = threading.Event()
    frames = []
    while (f := src.read(stop)) is not None:
        frames.append(f)
    assert len(frames) == 12 and frames[0].shape == (120, 160, 3)
    assert src.fps == pytest.approx(30.0)
    assert (src.failures, src.reconnects, src.degraded) == (0, 0, False)
    src.close()


def test_file_with_loop_restarts(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", 5)
    src = open_source(OpenCVSource(uri=str(path), loop=True), FAST)
    stop = threading.Event()
    frames = [src.read(stop) for _ in range(11)]
    assert all(f is not None for f in frames)
    np.testing.assert_array_equal(frames[0], frames[5])
    np.testing.assert_array_equal(frames[1], frames[6])
    assert src.failures == 0
    src.close()


def test_realtime_pacing_is_not_faster_than_the_file(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", 12, fps=40.0)
    src = open_source(OpenCVSource(uri=str(path), loop=False, realtime=True), FAST)
    stop = threading.Event()
    t0 = time.perf_counter()
    n = 0
    while src.read(stop) is not None:
        n += 1
    assert n == 12
    assert time.perf_counter() - t0 >= 11 / 40.0  # a lower bound: pacing can be late, never early


def test_truncated_file_degrades_and_recovers(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", 90)
    full = path.read_bytes()
    rec = Recorder()
    src = open_source(OpenCVSource(uri=str(path), loop=False), FAST, on_state=rec)
    stop = threading.Event()
    for _ in range(3):
        assert src.read(stop) is not None
    with open(path, "r+b") as fh:  # cut the file mid-way under the open capture
        fh.truncate(len(full) * 2 // 5)
    reader = Reader(src, stop)
    reader.start()
    assert rec.degraded.wait(WAIT), "truncation was not noticed"
    assert src.degraded and src.failures >= 1
    path.write_bytes(full)  # the file comes back
    assert rec.online.wait(WAIT), "did not come back online"
    reader.join(WAIT)  # loop=False: it reaches the real end
    assert not reader.is_alive()
    assert [s for s, _ in rec.states] == ["degraded", "online"]
    assert "frame" in rec.states[0][1] or "cannot open" in rec.states[0][1]
    assert src.reconnects >= 1 and not src.degraded
    src.close()


# --- image folders -------------------------------------------------------------------------------
def _folder(tmp_path: Path, n: int, astronaut_bgr: np.ndarray) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(n):
        img = np.ascontiguousarray(astronaut_bgr[::4, ::4])
        img[:10, :10] = i * 40
        cv2.imwrite(str(d / f"{i:03d}.png"), img)
    return d


def test_images_in_order_then_end(tmp_path: Path, astronaut_bgr: np.ndarray) -> None:
    d = _folder(tmp_path, 3, astronaut_bgr)
    src = open_source(ImagesSource(folder=d, loop=False), FAST)
    stop = threading.Event()
    got = [src.read(stop) for _ in range(4)]
    assert got[3] is None
    assert [int(f[0, 0, 0]) for f in got[:3]] == [0, 40, 80]


def test_images_deleted_mid_run_degrade_then_recover(tmp_path: Path, astronaut_bgr: np.ndarray) -> None:
    d = _folder(tmp_path, 3, astronaut_bgr)
    rec = Recorder()
    src = open_source(ImagesSource(folder=d, loop=True), FAST, on_state=rec)
    stop = threading.Event()
    assert src.read(stop) is not None
    saved = {p.name: p.read_bytes() for p in d.iterdir()}
    for p in d.iterdir():
        p.unlink()
    reader = Reader(src, stop)
    reader.start()
    assert rec.degraded.wait(WAIT)
    assert src.degraded and not rec.online.is_set()
    for name, data in saved.items():
        (d / name).write_bytes(data)
    assert rec.online.wait(WAIT)
    stop.set()
    reader.join(WAIT)
    assert not reader.is_alive()
    assert src.failures >= 1 and src.reconnects >= 1 and reader.frames >= 1


# --- devices and start-up errors -----------------------------------------------------------------
def test_missing_device_is_degraded_and_stop_wakes_the_backoff() -> None:
    rec = Recorder()
    src = open_source(OpenCVSource(uri="/dev/video99"), ReconnectConfig(initial_s=60, max_s=60), on_state=rec)
    assert src.degraded and src.failures == 1
    assert rec.states[0][0] == "degraded" and "/dev/video99" in rec.states[0][1]
    stop = threading.Event()
    reader = Reader(src, stop)
    reader.start()
    time.sleep(0.2)
    assert reader.is_alive()  # sleeping in its 60 s backoff
    stop.set()
    reader.join(5.0)  # a 60 s backoff that wakes at once on stop
    assert not reader.is_alive() and reader.frames == 0
    src.close()


def test_startup_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"nope\.mp4 not found"):
        open_source(OpenCVSource(uri=str(tmp_path / "nope.mp4")), FAST)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(SourceError, match="cannot decode"):
        open_source(OpenCVSource(uri=str(bad)), FAST)
    with pytest.raises(SourceError, match="not found"):
        open_source(ImagesSource(folder=tmp_path / "none"), FAST)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        open_source(ImagesSource(folder=tmp_path / "empty"), FAST)


def test_demo_uri_generates_and_reads_the_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    src = open_source(OpenCVSource(uri="demo", loop=False), FAST)
    frame = src.read(threading.Event())
    assert frame is not None and frame.shape == (480, 640, 3)
    assert src.fps == pytest.approx(30.0)
    assert list((tmp_path / "cache" / "lookout").glob("demo-*.mp4"))
    src.close()


def test_truncated_looping_file_stays_degraded_and_keeps_retrying(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", 60)
    rec = Recorder()
    src = open_source(OpenCVSource(uri=str(path), loop=True), FAST, on_state=rec)
    stop = threading.Event()
    assert src.read(stop) is not None
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    reader = Reader(src, stop)
    reader.start()
    assert rec.degraded.wait(WAIT)
    deadline = time.monotonic() + WAIT
    while src.failures < 3 and time.monotonic() < deadline:  # re-open attempts fail: the index is gone
        time.sleep(0.02)
    stop.set()
    reader.join(WAIT)
    assert not reader.is_alive()
    assert src.degraded and src.failures >= 3 and src.reconnects == 0
    assert not rec.online.is_set()


def test_picamera2_missing_is_a_one_line_error() -> None:
    import importlib.util

    from app.config import Picamera2Source

    if importlib.util.find_spec("picamera2") is not None:
        pytest.skip("picamera2 is installed here")
    with pytest.raises(SourceError, match="picamera2 not installed"):
        open_source(Picamera2Source(), FAST)


# --- #15 item 13: a file deleted mid-run -----------------------------------------------------------
def test_file_deleted_mid_run_without_loop_ends_after_its_last_frame(tmp_path: Path) -> None:
    """The open capture still reads the deleted file to its end; then the source ends (loop = false)
    instead of waiting, degraded, for a file that will not come back."""
    path = write_video(tmp_path / "v.mp4", 40)
    rec = Recorder()
    src = open_source(OpenCVSource(uri=str(path), loop=False), FAST, on_state=rec)
    stop = threading.Event()
    assert src.read(stop) is not None
    path.unlink()
    reader = Reader(src, stop)
    reader.start()
    reader.join(WAIT)
    still_running = reader.is_alive()
    stop.set()
    reader.join(WAIT)
    assert not still_running, f"the source waits for the deleted file: {rec.states}"
    assert reader.frames == 39 and not rec.states  # every frame, and never degraded
    src.close()


def test_file_deleted_while_degraded_without_loop_ends(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", 90)
    rec = Recorder()
    src = open_source(OpenCVSource(uri=str(path), loop=False), FAST, on_state=rec)
    stop = threading.Event()
    assert src.read(stop) is not None
    with open(path, "r+b") as fh:  # a broken file first: degraded, waiting for it to be whole again
        fh.truncate(path.stat().st_size // 3)
    reader = Reader(src, stop)
    reader.start()
    assert rec.degraded.wait(WAIT)
    path.unlink()  # now it is gone
    reader.join(WAIT)
    still_running = reader.is_alive()
    stop.set()
    reader.join(WAIT)
    assert not still_running, f"the source waits for the deleted file: {rec.states}"
    src.close()


def test_file_deleted_with_loop_waits_and_says_so(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", 20)
    rec = Recorder()
    src = open_source(OpenCVSource(uri=str(path), loop=True), FAST, on_state=rec)
    stop = threading.Event()
    assert src.read(stop) is not None
    path.unlink()
    reader = Reader(src, stop)
    reader.start()
    assert rec.degraded.wait(WAIT)
    stop.set()
    reader.join(WAIT)
    assert not reader.is_alive()
    assert "missing" in rec.states[0][1] and "loop" in rec.states[0][1], rec.states
