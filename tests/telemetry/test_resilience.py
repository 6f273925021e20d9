"""Will on SIGKILL, a 10 s broker outage, and a SIGKILL while the broker is down: no seq lost."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from app.telemetry.broker import Broker

from .conftest import Collector, start_publisher, wait_until

DET = {
    "frame": 0,
    "model": "blazeface-short",
    "runtime": "tflite",
    "detections": [],
    "latency_ms": {"infer": 1.0},
}


def _read_seqs(p: subprocess.Popen, until: int, timeout_s: float = 20.0) -> int:
    """Read the publisher's `seq N` lines until N >= until; the last seq read."""
    assert p.stdout is not None
    deadline = time.monotonic() + timeout_s
    last = 0
    while last < until:
        line = p.stdout.readline()
        assert line, f"publisher exited early: {p.stderr.read() if p.stderr else ''}"
        if line.startswith("seq "):
            last = int(line.split()[1])
        assert time.monotonic() < deadline, "publisher too slow"
    return last


def _kill9(p: subprocess.Popen) -> None:
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=10)


def _first_occurrences(seqs: list[int]) -> list[int]:
    seen: set[int] = set()
    out = []
    for s in seqs:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def test_will_arrives_when_the_device_is_killed(
    broker: Broker, collect: Callable[..., Collector], tmp_path: Path
) -> None:
    sub = collect(broker, ["lookout/+/status"])
    p = start_publisher(broker.url, "cam-kill", tmp_path / "state")
    try:
        wait_until(lambda: any(m.json()["state"] == "online" for m in sub.on("/status")), 20, "status online")
        _kill9(p)
        wait_until(lambda: sub.on("/status")[-1].json() == {"v": 1, "state": "offline"}, 20, "the will")
    finally:
        if p.poll() is None:
            p.kill()
    # retained: a monitor starting now sees the device offline
    late = collect(broker, ["lookout/cam-kill/status"])
    msg = late.wait_for("/status")[0]
    assert msg.retain and msg.json() == {"v": 1, "state": "offline"}


def test_broker_down_10s_every_seq_arrives_in_order(
    persistent_broker: Broker, collect: Callable[..., Collector], telemetry: Callable
) -> None:
    b = persistent_broker
    sub = collect(b, ["lookout/+/detections"], client_id="monitor-outage", persistent=True)
    t = telemetry(b.url)
    assert t.wait_connected(10)
    stop = threading.Event()
    worst_call_s = [0.0]
    published: list[int] = []

    def pipeline() -> None:  # a 50 fps publisher, like the pipeline's publish stage
        i = 0
        while not stop.is_set():
            t0 = time.perf_counter()
            published.append(t.publish_detections(DET | {"frame": i}))
            worst_call_s[0] = max(worst_call_s[0], time.perf_counter() - t0)
            i += 1
            time.sleep(0.02)

    th = threading.Thread(target=pipeline, daemon=True)
    th.start()
    wait_until(lambda: len(sub.seqs()) >= 20, 10, "detections before the outage")
    b.stop_process()
    before = len(published)
    time.sleep(10)
    during = len(published) - before
    assert not t.stats()["connected"] and t.stats()["spool_depth"] > 0
    b.start_process()
    time.sleep(1)
    stop.set()
    th.join()
    last = published[-1]
    wait_until(lambda: set(sub.seqs()) >= set(range(1, last + 1)), 30, f"all {last} seqs after the outage")
    assert published == list(range(1, last + 1))
    assert _first_occurrences(sub.seqs()) == list(range(1, last + 1))  # in order; duplicates allowed
    assert during > 100, f"the publisher stalled during the outage ({during} publishes in 10 s)"
    wait_until(lambda: t.stats()["spool_depth"] == 0, 10, "the spool to drain")
    print(f"outage: {during} publishes while the broker was down; slowest publish call {worst_call_s[0] * 1e3:.1f} ms; "
          f"{len(sub.seqs()) - last} duplicates")  # fmt: skip


def test_device_killed_while_broker_down_then_both_restart(
    persistent_broker: Broker, collect: Callable[..., Collector], tmp_path: Path
) -> None:
    b = persistent_broker
    sub = collect(b, ["lookout/+/detections"], client_id="monitor-crash", persistent=True)
    state = tmp_path / "state"
    p = start_publisher(b.url, "cam-crash", state)
    try:
        _read_seqs(p, 20)
        wait_until(lambda: len(sub.seqs()) >= 10, 10, "detections before the outage")
        b.stop_process()
        killed_at = _read_seqs(p, _read_seqs(p, 1) + 30)  # 30 more spooled while the broker is down
        _kill9(p)
    finally:
        if p.poll() is None:
            p.kill()
    b.start_process()
    p2 = start_publisher(b.url, "cam-crash", state, "--count", "10")
    out, err = p2.communicate(timeout=60)
    assert p2.returncode == 0, err
    last = max(int(line.split()[1]) for line in out.splitlines() if line.startswith("seq "))
    assert last >= killed_at + 10
    wait_until(lambda: set(sub.seqs()) >= set(range(1, last + 1)), 30, f"all {last} seqs after the crash")
    assert set(sub.seqs()) == set(range(1, last + 1))
