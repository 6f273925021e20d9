"""The systemd watchdog is fed by the pipeline's liveness, not by frames (issue #15, item 9).

`lookout run` under a real NOTIFY_SOCKET with WATCHDOG_USEC, as systemd's Type=notify + WatchdogSec starts it.
Before: WATCHDOG=1 came once per processed frame, so `--fps 0.02` pinged every 50 s against WatchdogSec=30;
`--fps 1e-300` passed validation and killed the grab thread (OverflowError) while the process stayed up.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from .live_device import start_run, stop_run

WATCHDOG_S = 2.0  # WatchdogSec: pings are due at least every 2 s (the service aims at every 1 s)


class Notifications:
    """The datagram socket systemd would listen on, with arrival times."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []

    def collect(self, seconds: float, proc: subprocess.Popen) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            with contextlib.suppress(TimeoutError):
                self.messages.append((time.monotonic(), self.sock.recv(4096).decode()))
            assert proc.poll() is None, f"service exited: {proc.communicate()[1][-3000:]}"

    def wait_for(self, text: str, timeout_s: float, proc: subprocess.Popen) -> float:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            self.collect(0.1, proc)
            hits = [t for t, m in self.messages if text in m]
            if hits:
                return hits[0]
        raise AssertionError(f"no {text!r} within {timeout_s} s: {self.messages}")

    def pings(self, since: float = 0.0, until: float = float("inf")) -> list[float]:
        return [t for t, m in self.messages if "WATCHDOG=1" in m and since <= t <= until]


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[Notifications]:
    n = Notifications(tmp_path / "notify.sock")
    try:
        yield n
    finally:
        n.sock.close()
        os.unlink(n.path)


def start(argv: list[str], env: dict, tmp_path: Path, notify: Notifications) -> subprocess.Popen:
    env = {**env, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": str(int(WATCHDOG_S * 1e6))}
    return start_run(env, "--no-mqtt", *argv)


@pytest.mark.slow
def test_one_frame_per_50_s_keeps_the_watchdog_fed(notify, clean_env, tmp_path: Path) -> None:
    proc = start(["--source", "synthetic", "--fps", "0.02"], clean_env, tmp_path, notify)
    try:
        ready = notify.wait_for("READY=1", 90, proc)
        notify.collect(8.0, proc)
    finally:
        err = stop_run(proc)
    assert proc.returncode == 0, err[-3000:]
    pings = notify.pings(since=ready)
    assert len(pings) >= 4, notify.messages
    gaps = [b - a for a, b in itertools.pairwise([ready, *pings])]
    assert max(gaps) < WATCHDOG_S, gaps  # before: one ping per frame, i.e. every 50 s


@pytest.mark.slow
def test_hung_inference_stops_the_pings_and_they_resume_after(notify, clean_env, tmp_path: Path) -> None:
    """Liveness, not a timer: an inference that does not return (its worker process stopped with
    SIGSTOP, as a hung accelerator driver would leave it) stops WATCHDOG=1 while the process lives on."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[runtime]\ntype = "tflite"\nisolate = true\n[source]\ntype = "synthetic"\n[pipeline]\nfps = 10.0\n'
    )
    proc = start(["--config", str(cfg)], clean_env, tmp_path, notify)
    worker = None
    try:
        ready = notify.wait_for("READY=1", 90, proc)
        notify.collect(2.5, proc)
        assert len(notify.pings(since=ready)) >= 2
        worker = next(
            p
            for p in psutil.Process(proc.pid).children(recursive=True)
            if "isolated_worker" in " ".join(p.cmdline())
        )
        worker.send_signal(signal.SIGSTOP)
        hung = time.monotonic()
        notify.collect(WATCHDOG_S + 3.0, proc)
        # one ping may still be due while the stall is younger than half the interval; none after that
        assert notify.pings(since=hung + WATCHDOG_S / 2 + 0.5) == [], notify.messages
        assert any("stalled" in m and "infer" in m for _, m in notify.messages), notify.messages
        worker.send_signal(signal.SIGCONT)
        resumed = time.monotonic()
        notify.collect(3.0, proc)
        assert notify.pings(since=resumed), notify.messages
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGCONT)
        err = stop_run(proc)
    assert proc.returncode == 0, err[-3000:]
    assert "stalled: infer" in err  # logged once, with the stage


@pytest.mark.parametrize("fps", ["1e-300", "0.001", "5000"])
def test_fps_outside_the_documented_range_is_refused(fps: str, lookout_cmd, clean_env) -> None:
    r = subprocess.run([*lookout_cmd, "run", "--no-mqtt", "--source", "synthetic", "--fps", fps],
                       capture_output=True, text=True, env=clean_env, timeout=60)  # fmt: skip
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "pipeline.fps" in lines[0], r.stderr
    assert "0.01" in lines[0] or "1000" in lines[0], r.stderr  # the documented range
