"""`lookout run` under a NOTIFY_SOCKET, as systemd's Type=notify with WatchdogSec starts it."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def test_ready_status_and_watchdog_from_frames(demo_video, clean_env, tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(1.0)
    env = {**clean_env, "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"}  # 1 s: pings every <= 0.5 s
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "run", "--source", str(demo_video), "--fps", "20", "--no-mqtt",
         "--runtime", "tflite"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
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
        proc.terminate()
        _, err = proc.communicate(timeout=60)
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
