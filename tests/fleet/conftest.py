"""Fixtures for the fleet tests: the simulated fleet (scripts/fleet_load.py) as a real subprocess."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.telemetry.broker import free_port

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers beside this file (importlib mode)
from cdp_browser import Browser
from pg_cluster import PgCluster

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


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless chromium per test module (fresh profile), stopped by PID."""
    b = Browser()
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def pg() -> Iterator[PgCluster]:
    """A PostgreSQL cluster of this test's own (initdb + pg_ctl on a free port), stopped by PID."""
    c = PgCluster()
    try:
        yield c
    finally:
        c.stop()


class FleetServe:
    """A `lookout fleet serve` subprocess on a free port."""

    def __init__(self, proc: subprocess.Popen, url: str) -> None:
        self.proc, self.url = proc, url

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
        req = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)

    def json(self, path: str) -> Any:
        status, body, _ = self.get(path)
        assert status == 200, (path, status, body[:500])
        return json.loads(body)


@pytest.fixture
def fleet_serve(lookout_cmd, clean_env) -> Iterator[Callable[..., FleetServe]]:
    """Start `lookout fleet serve <args>` on a free port; waits for its "serving" line; SIGTERM by PID."""
    started: list[subprocess.Popen] = []

    def start(*args: str) -> FleetServe:
        port = free_port()
        p = subprocess.Popen(
            [*lookout_cmd, "fleet", "serve", "--http", f"127.0.0.1:{port}", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env,
        )
        started.append(p)
        line = p.stdout.readline()
        if "serving" not in line:
            p.kill()
            pytest.fail(f"fleet serve did not start: {line}{p.communicate(timeout=10)[1][-2000:]}")
        return FleetServe(p, f"http://127.0.0.1:{port}")

    yield start
    for p in started:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate(timeout=10)
