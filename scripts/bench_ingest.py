#!/usr/bin/env python3
"""Per-message cost of the fleet monitor's ingest steps, without a broker (docs/fleet.md, "Ingest cost").

Times JSON parsing, topic parsing, `Monitor.handle` without schema validation, and full JSON Schema
validation of a detections and a metrics payload from scripts/fleet_load.py's simulated devices. Prints
the median over --repeats runs of --messages messages each, in microseconds of CPU per message.

    python scripts/bench_ingest.py [--messages 20000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet_load import SimDevice

from app.fleet.monitor import Monitor
from app.fleet.registry import Registry
from app.telemetry import schemas, topics


def per_message_us(fn: Callable[[int], None], n: int, repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        t0 = time.process_time_ns()  # CPU time: less disturbed by other processes than wall time
        for i in range(n):
            fn(i)
        runs.append((time.process_time_ns() - t0) / n / 1000.0)
    return statistics.median(runs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    import random

    dev = SimDevice("sim-0001", 0, "lookout", random.Random(1), simulated_power=False)
    det_raw, met_raw = dev.detections(10.0).encode(), dev.metrics(10.0).encode()
    det, met = json.loads(det_raw), json.loads(met_raw)
    n, r = args.messages, args.repeats
    # validate_every far above n: after each device's first message, only the structural check runs
    monitor = Monitor(Registry(), validate_every=10**9)
    det_topic, met_topic = dev.topics.detections, dev.topics.metrics
    rows = {
        "json parse (detections)": per_message_us(lambda i: json.loads(det_raw), n, r),
        "topic parse": per_message_us(lambda i: topics.parse(det_topic), n, r),
        "Monitor.handle, no schema validation (detections)": per_message_us(
            lambda i: monitor.handle(det_topic, det_raw, float(i)), n, r
        ),
        "Monitor.handle, no schema validation (metrics)": per_message_us(
            lambda i: monitor.handle(met_topic, met_raw, float(i)), n, r
        ),
        "full schema validation (detections)": per_message_us(
            lambda i: schemas.validate("detections", det), n // 10, r
        ),
        "full schema validation (metrics)": per_message_us(
            lambda i: schemas.validate("metrics", met), n // 10, r
        ),
    }
    print(f"# {platform.machine()}, Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}, "
          f"median of {r} runs, us of CPU per message")  # fmt: skip
    for name, us in rows.items():
        print(f"{us:8.1f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
