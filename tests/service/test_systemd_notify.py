"""`lookout run` under a NOTIFY_SOCKET, as systemd's Type=notify with WatchdogSec starts it."""

from __future__ import annotations

import itertools
import os
import socket
import time
from pathlib import Path

from .live_device import start_run, stop_run


def test_ready_status_and_watchdog_from_frames(demo_video, clean_env, tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(1.0)
    env = {**clean_env, "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"}  # 1 s: pings every <= 0.5 s
    proc = start_run(env, "--source", str(demo_video), "--fps", "20", "--no-mqtt", "--runtime", "tflite")
    messages: list[tuple[float, str]] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                messages.append((time.monotonic(), sock.recv(4096).decode()))
            except TimeoutError:
                continue
            if sum("WATCHDOG=1" in m for _, m in messages) >= 4:
                break
    finally:
        err = stop_run(proc)
        sock.close()
        os.unlink(path)
    assert proc.returncode == 0, err[-2000:]
    texts = [m for _, m in messages]
    ready = next(i for i, m in enumerate(texts) if "READY=1" in m)
    assert "tflite" in texts[ready]  # after the model is loaded and warmed up
    pings = [t for t, m in messages if "WATCHDOG=1" in m]
    assert len(pings) >= 4
    assert all(b - a < 1.0 for a, b in itertools.pairwise(pings)), pings
    assert any(m.startswith("STATUS=") or "\nSTATUS=" in m for m in texts)
