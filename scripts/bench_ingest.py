#!/usr/bin/env python3
"""Per-message cost of the fleet monitor's ingest steps, without a broker (docs/fleet.md, "Ingest cost").

Times JSON parsing, topic parsing, parsing with the payload contract's models (what the monitor does for
every message), the whole `Monitor.handle`, and, for comparison, jsonschema validation against the
shipped (generated) schema, of a detections and a metrics payload from scripts/fleet_load.py's simulated
devices. Prints the median over --repeats runs of --messages messages each, in microseconds of CPU per
message. jsonschema is a development dependency (the monitor does not use it).

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
from app.telemetry import contract, schemas, topics


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

    dev = SimDevice("sim-0001", 0, "lookout", random.Random(1))
    det_raw, met_raw = dev.detections(10.0), dev.metrics(10.0)
    det, met = json.loads(det_raw), json.loads(met_raw)
    n, r = args.messages, args.repeats
    monitor = Monitor(Registry())
    det_topic, met_topic = dev.topics.detections, dev.topics.metrics
    from jsonschema import Draft202012Validator

    det_schema = Draft202012Validator(schemas.schema("detections"))
    met_schema = Draft202012Validator(schemas.schema("metrics"))
    rows = {
        "json parse (detections)": per_message_us(lambda i: json.loads(det_raw), n, r),
        "topic parse": per_message_us(lambda i: topics.parse(det_topic), n, r),
        "contract parse (detections)": per_message_us(lambda i: contract.parse("detections", det), n, r),
        "contract parse (metrics)": per_message_us(lambda i: contract.parse("metrics", met), n, r),
        "Monitor.handle, whole ingest (detections)": per_message_us(
            lambda i: monitor.handle(det_topic, det_raw, float(i)), n, r
        ),
        "Monitor.handle, whole ingest (metrics)": per_message_us(
            lambda i: monitor.handle(met_topic, met_raw, float(i)), n, r
        ),
        "for comparison: jsonschema (detections)": per_message_us(
            lambda i: det_schema.validate(det), n // 10, r
        ),
        "for comparison: jsonschema (metrics)": per_message_us(
            lambda i: met_schema.validate(met), n // 10, r
        ),
    }
    print(f"# {platform.machine()}, Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}, "
          f"median of {r} runs, us of CPU per message")  # fmt: skip
    for name, us in rows.items():
        print(f"{us:8.1f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
