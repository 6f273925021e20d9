"""Fixtures for the fleet tests: the simulated fleet (scripts/fleet_load.py) as a real subprocess."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FLEET_LOAD = REPO / "scripts" / "fleet_load.py"


@pytest.fixture
def fleet_load(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start fleet_load.py with the given arguments; every process is killed by PID afterwards."""
    procs: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        p = subprocess.Popen(
            [sys.executable, str(FLEET_LOAD), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        p.communicate(timeout=10)
