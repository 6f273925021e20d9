#!/usr/bin/env python3
"""How big a fleet does one `lookout fleet` monitor on one core keep up with?

For each fleet size: a fresh Debian mosquitto, `fleet_load.py` processes (<= --per-process devices each)
publishing 1 metrics/s + 10 detections/s per device (QoS 1), and one monitor
(`lookout fleet --once --wait W --stats-json`) pinned to CPU --monitor-cpu; broker and load generators are
pinned to the other CPUs (--shared-cpus: to all CPUs). A drain test then measures the monitor alone. The monitor reports ingest lag (receive time - payload ts) and seq gaps
(dropped detections); the load generators report what they really published (they can fall behind too).

    .venv/bin/python scripts/bench_fleet.py --sizes 100,250,500,1000 --window 20
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from app.telemetry.broker import start_broker  # noqa: E402


def run_size(n: int, args: argparse.Namespace, tmp: Path, cpus: list[int]) -> dict:
    mon_cpu = {args.monitor_cpu}
    other = set(cpus) if args.shared_cpus else (set(cpus) - mon_cpu or mon_cpu)
    broker = start_broker("mosquitto")
    loads: list[subprocess.Popen] = []
    try:
        os.sched_setaffinity(broker.proc.pid, other)
        duration = args.warmup + args.window + 8
        for k, off in enumerate(range(0, n, args.per_process)):
            cnt = min(args.per_process, n - off)
            cmd = [
                sys.executable, str(REPO / "scripts" / "fleet_load.py"), "--devices", str(cnt),
                "--id-offset", str(off), "--rate", str(args.rate), "--detections-rate", str(args.detections_rate),
                "--duration", str(duration), "--broker", broker.url, "--no-bench", "--seed", str(k),
                "--summary", str(tmp / f"load-{n}-{k}.json"),
            ]  # fmt: skip
            loads.append(subprocess.Popen(cmd, preexec_fn=lambda: os.sched_setaffinity(0, other)))
        time.sleep(args.warmup)
        stats_file = tmp / f"monitor-{n}.json"
        mon = subprocess.run(
            [sys.executable, "-m", "app", "fleet", "--broker", broker.url, "--once", "--wait", str(args.window),
             "--stats-json", str(stats_file), "--qos", str(args.qos), "--json"],
            preexec_fn=lambda: os.sched_setaffinity(0, mon_cpu), capture_output=True, text=True, timeout=args.window + 60,
        )  # fmt: skip
        if mon.returncode != 0:
            raise SystemExit(f"monitor failed at {n} devices: {mon.stderr.strip()[-500:]}")
        stats = json.loads(stats_file.read_text())
        for p in loads:
            p.wait(timeout=duration + 60)
        published = {"metrics": 0, "detections": 0}
        elapsed = late = 0.0
        for k in range(len(loads)):
            s = json.loads((tmp / f"load-{n}-{k}.json").read_text())
            for key in published:
                published[key] += s["published"][key]
            elapsed = max(elapsed, s["elapsed_s"])
            late = max(late, s["schedule_late_max_s"])
    finally:
        for p in loads:
            if p.poll() is None:
                p.kill()
                p.wait()
        broker.stop()
    target = n * (args.rate + args.detections_rate)
    got = stats["received"]["metrics"] + stats["received"]["detections"]
    lag = stats["lag_ms"]
    return {
        "devices": n,
        "target_msgs_per_s": target,
        "published_msgs_per_s": round((published["metrics"] + published["detections"]) / elapsed, 1),
        "load_late_max_s": late,
        "monitor_msgs_per_s": round(got / args.window, 1),
        "lag_p50_ms": lag["p50_ms"],
        "lag_p99_ms": lag["p99_ms"],
        "lag_max_ms": lag["max_ms"],
        "seq_gaps": stats["fleet"]["seq_gaps"],
        "online": stats["fleet"]["online"],
        "malformed": stats["malformed_total"],
        "monitor_cpu_share": round(stats["cpu_s"] / max(stats["uptime_s"], 1e-9), 2),
    }


def run_drain(n: int, args: argparse.Namespace, tmp: Path, cpus: list[int]) -> dict:
    """Monitor capacity without the load generator in the way: SIGSTOP the subscribed monitor, let the
    broker queue `n` devices' traffic for --drain-seconds, SIGCONT it and time how fast it drains."""
    mon_cpu = {args.monitor_cpu}
    other = set(cpus) - mon_cpu or mon_cpu
    broker = start_broker("mosquitto")
    stats_file = tmp / f"drain-{n}.json"
    mon = None
    try:
        os.sched_setaffinity(broker.proc.pid, other)
        mon = subprocess.Popen(
            [sys.executable, "-m", "app", "fleet", "--broker", broker.url, "--once", "--wait", "120",
             "--idle-exit", "3", "--stats-json", str(stats_file),
             "--qos", str(args.qos)],
            preexec_fn=lambda: os.sched_setaffinity(0, mon_cpu), stdout=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(3)  # imported, connected, subscribed
        mon.send_signal(signal.SIGSTOP)
        summaries = []
        procs = []
        for k, off in enumerate(range(0, n, args.per_process)):
            f = tmp / f"drain-load-{n}-{k}.json"
            summaries.append(f)
            procs.append(subprocess.Popen(
                [sys.executable, str(REPO / "scripts" / "fleet_load.py"), "--devices", str(min(args.per_process, n - off)),
                 "--id-offset", str(off), "--duration", str(args.drain_seconds), "--broker", broker.url,
                 "--no-bench", "--summary", str(f)],
                preexec_fn=lambda: os.sched_setaffinity(0, other),
            ))  # fmt: skip
        for p in procs:
            p.wait(timeout=args.drain_seconds + 60)
        published = sum(
            json.loads(f.read_text())["published"][k] for f in summaries for k in ("metrics", "detections")
        )
        resumed = time.time()
        mon.send_signal(signal.SIGCONT)
        mon.wait(timeout=180)
        stats = json.loads(stats_file.read_text())
    finally:
        if mon is not None and mon.poll() is None:
            mon.send_signal(signal.SIGCONT)
            mon.kill()
            mon.wait()
        broker.stop()
    got = stats["received"]["metrics"] + stats["received"]["detections"]
    busy = stats["last_rx"] - resumed
    return {
        "drain_devices": n,
        "backlog_published": published,
        "received": got,
        "seq_gaps": stats["fleet"]["seq_gaps"],
        "drain_s": round(busy, 2),
        "drain_msgs_per_s": round(got / busy, 1) if busy > 0 else None,
        "monitor_cpu_s": stats["cpu_s"],
        "cpu_us_per_msg": round(stats["cpu_s"] / got * 1e6, 1) if got else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100,250,500,1000")
    ap.add_argument("--rate", type=float, default=1.0, help="metrics/s per device")
    ap.add_argument("--detections-rate", type=float, default=10.0, help="detections/s per device")
    ap.add_argument("--window", type=float, default=20.0, help="seconds the monitor measures per size")
    ap.add_argument("--warmup", type=float, default=4.0, help="seconds of load before the monitor starts")
    ap.add_argument("--per-process", type=int, default=250, help="devices per fleet_load process")
    ap.add_argument("--monitor-cpu", type=int, default=0)
    ap.add_argument("--qos", type=int, choices=(0, 1), default=1, help="monitor subscription QoS")
    ap.add_argument(
        "--shared-cpus", action="store_true", help="do not keep broker and load off the monitor's CPU"
    )
    ap.add_argument("--drain-devices", type=int, default=1000, help="fleet size of the drain test (0 = skip)")
    ap.add_argument(
        "--drain-seconds", type=float, default=8.0, help="seconds of traffic queued for the drain test"
    )
    ap.add_argument("--json", metavar="FILE", help="also write the results here")
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    load_cpus = cpus if args.shared_cpus else sorted(set(cpus) - {args.monitor_cpu})
    print(f"# {len(cpus)} CPUs {cpus}; monitor on CPU {args.monitor_cpu}, broker + load on {load_cpus}")
    print(f"# load average before: {os.getloadavg()}")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        for n in (int(x) for x in args.sizes.split(",") if x):
            r = run_size(n, args, Path(tmp), cpus)
            r["holds"] = (
                r["lag_p99_ms"] is not None
                and r["lag_p99_ms"] < 1000
                and r["seq_gaps"] == 0
                and r["online"] == n
            )
            results.append(r)
            print(json.dumps(r), flush=True)
        drain = run_drain(args.drain_devices, args, Path(tmp), cpus) if args.drain_devices else None
    if drain:
        print(json.dumps(drain), flush=True)
    held = [r["devices"] for r in results if r["holds"]]
    verdict = {
        "largest_fleet_held": max(held) if held else None,
        "first_failing": next((r["devices"] for r in results if not r["holds"]), None),
        "monitor_capacity_msgs_per_s": drain and drain["drain_msgs_per_s"],
        "load_average_after": os.getloadavg(),
    }
    print(json.dumps(verdict))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"results": results, "drain": drain, "verdict": verdict}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
