"""Steps of scripts/arm64_check.py: commands in their own process group with a timeout, a log, failures."""

from __future__ import annotations

import hashlib
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


class Failure(Exception):
    """A check failed: the message is the verdict's reason (one line)."""


@dataclass
class Log:
    path: Path
    t0: float = field(default_factory=time.monotonic)

    def write(self, text: str) -> None:
        with self.path.open("a", encoding="utf-8", errors="replace") as f:
            f.write(text if text.endswith("\n") else text + "\n")

    def step(self, text: str) -> None:
        line = f"arm64-check: [{time.monotonic() - self.t0:6.1f} s] {text}"
        print(line, file=sys.stderr, flush=True)
        self.write(line)


class Runner:
    """Runs commands in their own process group with a timeout; kill_all() ends every one still running."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.procs: set[subprocess.Popen] = set()
        self.lock = threading.Lock()

    def run(
        self,
        name: str,
        argv: list[str],
        timeout: float,
        env: dict[str, str] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess:
        self.log.write(f"$ [{name}] {shlex.join(argv)}")
        p = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
            start_new_session=True, env=env, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        with self.lock:
            self.procs.add(p)
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(p)
            out = p.communicate()[0] if p.stdout else ""
            self.log.write(out or "")
            raise Failure(f"{name}: no result within {timeout:.0f} s (killed)") from None
        finally:
            with self.lock:
                self.procs.discard(p)
        self.log.write(out)
        if check and p.returncode != 0:
            raise Failure(f"{name}: exit {p.returncode}: {last_line(out)}")
        return subprocess.CompletedProcess(argv, p.returncode, out, "")

    def kill_all(self) -> None:
        with self.lock:
            procs = list(self.procs)
        for p in procs:
            kill_group(p)


def kill_group(p: subprocess.Popen) -> None:
    """TERM, then KILL after 10 s, to the process group (the emulated processes are in it too)."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("WARNING: Location")]
    return lines[-1][:300] if lines else "(no output)"


def sha256_files(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:12]
