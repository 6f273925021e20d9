#!/usr/bin/env python3
"""Simulated Lookout fleet: N device ids publishing schema-valid status, metrics, detections and bench.

Payloads are built with the payload contract (app/telemetry/contract.py), like a real device's.
One MQTT 5 client per device, each with its own retained `{"v": 1, "state": "offline"}` will, so killing this
process (SIGKILL) turns every simulated device offline through the broker. All clients run in ONE
thread: a selector over their sockets (paho's external-loop API: loop_read / loop_write / loop_misc),
because a thread per client costs more than the publishing itself at 1,000 devices. For large fleets run
several processes with disjoint --id-offset ranges (scripts/bench_fleet.py does).

Its rates and latencies are a synthetic load profile: device ids are `sim-NNNN`, `version` says
fleet_load, the bench `host` says simulated. It never makes up hardware readings: power, energy,
temperature, CPU load, memory (the bench's rss_mb too) and throttling are null, each with its reason ("simulated device
(fleet_load): ..."), as on a device that cannot measure them.

    python scripts/fleet_load.py --devices 50 --rate 1 --detections-rate 10 --duration 60 --broker mqtt://127.0.0.1:1883
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import selectors
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as mqtt

from app.fleet.table import SIM_VERSION  # the fleet marks a device with this status version as simulated
from app.telemetry import contract
from app.telemetry.broker_url import parse_broker_url
from app.telemetry.topics import Topics

# (runtime, model, infer p50 ms) profiles; the numbers are invented, only their shape is realistic.
PROFILES = (
    ("tflite", "blazeface-short", 6.0),
    ("executorch", "blazeface-short", 9.0),
    ("edgetpu", "ssd-mobilenet-v2", 3.0),
    ("torchscript-lite", "blazeface-short", 14.0),
)
STAGES = ("capture", "preprocess", "infer", "postprocess", "publish")
NO_SENSORS = "simulated device (fleet_load): no sensors, nothing measured"


class SimDevice:
    """One simulated device: its MQTT client, profile and counters."""

    def __init__(self, device_id: str, index: int, prefix: str, rng: random.Random) -> None:
        self.id = device_id
        self.topics = Topics(device_id, prefix)
        self.rng = rng
        self.runtime, self.model, base = PROFILES[index % len(PROFILES)]
        self.infer_ms = base * rng.uniform(0.8, 1.4)
        self.started_at = time.time()
        self.seq = 0
        self.frame = 0
        self.spool = 0
        self.box = [rng.uniform(0, 400), rng.uniform(0, 300)]
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"fleet-load-{device_id}", protocol=mqtt.MQTTv5
        )
        self.client.will_set(self.topics.status, contract.offline_will(), qos=1, retain=True)
        self.connected = False
        self.client.on_connect = self._on_connect

    def _on_connect(self, _c: object, _u: object, _f: object, reason: object, _p: object) -> None:
        self.connected = not getattr(reason, "is_failure", False)

    def status(self, state: str) -> bytes:
        return contract.Status(
            state=state,
            version=SIM_VERSION,
            runtime=self.runtime,
            model=self.model,
            fallback=None,
            board=None,  # no hardware: nothing to name
            started_at=self.started_at,
            ts=time.time(),
            spool_depth=self.spool,
        ).to_json()

    def detections(self, rate: float) -> bytes:
        self.seq += 1
        self.frame += 1
        r = self.rng
        self.box[0] = min(max(self.box[0] + r.uniform(-4, 4), 0.0), 500.0)
        self.box[1] = min(max(self.box[1] + r.uniform(-4, 4), 0.0), 380.0)
        x, y = self.box
        dets = [
            {"label": "face", "score": round(r.uniform(0.55, 0.99), 3), "box": [x, y, x + 90.0, y + 96.0]}
        ]
        if r.random() < 0.3:
            dets.append(
                {
                    "label": "face",
                    "score": round(r.uniform(0.5, 0.8), 3),
                    "box": [x + 150, y, x + 220, y + 75],
                }
            )
        infer = self.infer_ms * r.uniform(0.9, 1.3)
        return contract.Detections(
            seq=self.seq,
            ts=time.time(),
            frame=self.frame,
            model=self.model,
            runtime=self.runtime,
            detections=dets,
            latency_ms={"preprocess": round(r.uniform(0.8, 1.5), 3), "infer": round(infer, 3)},
        ).to_json()

    def metrics(self, fps: float) -> bytes:
        r = self.rng
        lat = {}
        for stage, base in zip(STAGES, (2.0, 1.2, self.infer_ms, 0.6, 0.3), strict=True):
            p50 = base * r.uniform(0.95, 1.05)
            lat[stage] = {"p50": round(p50, 3), "p90": round(p50 * 1.2, 3), "p99": round(p50 * 1.6, 3)}
        return contract.Metrics(
            ts=time.time(),
            fps=round(fps * r.uniform(0.97, 1.03), 2),
            latency_ms=lat,
            power_w=None,
            power_source=f"none: {NO_SENSORS}, no power meter",
            energy_mj_per_inference=None,
            temp_c=None,
            temps={},
            cpu_percent=None,
            rss_mb=None,
            dropped_frames=0,
            spool_depth=self.spool,
            spool_dropped=0,
            runtime=self.runtime,
            model=self.model,
            throttled=None,
            reasons=dict.fromkeys(("temp_c", "cpu_percent", "rss_mb", "throttled"), NO_SENSORS),
        ).to_json()

    def bench(self) -> bytes:
        results = []
        for runtime, _model, base in PROFILES[:2]:
            p50 = base * self.infer_ms / PROFILES[0][2]
            results.append(
                {
                    "runtime": runtime,
                    "latency_ms": {
                        "p50": round(p50, 3),
                        "p90": round(p50 * 1.15, 3),
                        "p99": round(p50 * 1.5, 3),
                        "mean": round(p50 * 1.05, 3),
                        "min": round(p50 * 0.9, 3),
                        "max": round(p50 * 2.0, 3),
                    },
                    "throughput_fps": round(1000.0 / p50, 1),
                    "rss_mb": None,  # no process was measured
                    "energy_mj_per_inference": None,
                    "power": {"source": "none: simulated device (fleet_load)", "mean_w": None},
                }
            )
        host = {"simulated": f"fleet_load ({self.id}): synthetic numbers, not a measurement"}
        return contract.Bench(model=self.model, host=host, ts=time.time(), results=results).to_json()


def run(args: argparse.Namespace) -> dict:
    addr = parse_broker_url(args.broker)
    rng = random.Random(args.seed)
    devs = [
        SimDevice(f"{args.id_prefix}-{i:04d}", i, args.prefix, rng)
        for i in range(args.id_offset, args.id_offset + args.devices)
    ]
    sel = selectors.DefaultSelector()
    for d in devs:
        d.client.connect(addr.host, addr.port, keepalive=60)
        sel.register(d.client.socket(), selectors.EVENT_READ, d)
    deadline = time.monotonic() + 30
    while not all(d.connected for d in devs):
        if time.monotonic() > deadline:
            raise SystemExit(
                f"fleet_load: only {sum(d.connected for d in devs)}/{len(devs)} clients connected"
            )
        for key, _ in sel.select(0.1):
            key.data.client.loop_read()
    counts = {"status": 0, "metrics": 0, "detections": 0, "bench": 0}
    for d in devs:
        d.client.publish(d.topics.status, d.status("online"), qos=1, retain=True)
        counts["status"] += 1
        if args.bench:
            d.client.publish(d.topics.bench, d.bench(), qos=1, retain=True)
            counts["bench"] += 1
    if args.ready:  # whole or absent: a waiter polls for the file, then reads it (write, then rename)
        tmp = Path(f"{args.ready}.tmp")
        tmp.write_text(json.dumps({"devices": [d.id for d in devs]}))
        tmp.replace(args.ready)
    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    signal.signal(signal.SIGINT, lambda *_: stop.update(flag=True))

    t0 = time.monotonic()
    heap: list[tuple[float, int, int]] = []  # (due, kind 0=metrics 1=detections, device index)
    for i in range(len(devs)):
        if args.rate > 0:
            heap.append((t0 + rng.uniform(0, 1 / args.rate), 0, i))
        if args.detections_rate > 0:
            heap.append((t0 + rng.uniform(0, 1 / args.detections_rate), 1, i))
    heapq.heapify(heap)
    periods = (
        1 / args.rate if args.rate > 0 else 0,
        1 / args.detections_rate if args.detections_rate > 0 else 0,
    )
    end = t0 + args.duration if args.duration > 0 else float("inf")
    next_misc = t0 + 1.0
    late_max = 0.0
    while not stop["flag"]:
        now = time.monotonic()
        if now >= end:
            break
        while heap and heap[0][0] <= now:
            due, kind, i = heapq.heappop(heap)
            late_max = max(late_max, now - due)
            d = devs[i]
            if kind:
                d.client.publish(d.topics.detections, d.detections(args.detections_rate), qos=args.qos)
                counts["detections"] += 1
            else:
                d.client.publish(d.topics.metrics, d.metrics(args.detections_rate), qos=1)
                counts["metrics"] += 1
            heapq.heappush(heap, (due + periods[kind], kind, i))
        if now >= next_misc:
            next_misc = now + 1.0
            for d in devs:
                d.client.loop_misc()
                if d.client.want_write():
                    d.client.loop_write()
        timeout = max(0.0, min(heap[0][0] if heap else now + 0.1, next_misc, end) - time.monotonic())
        for key, _ in sel.select(timeout):
            key.data.client.loop_read()
    elapsed = time.monotonic() - t0
    for d in devs:  # a clean stop publishes "stopped"; SIGKILL leaves it to the will
        d.client.publish(d.topics.status, d.status("stopped"), qos=1, retain=True)
        d.client.disconnect()
    return {
        "devices": len(devs),
        "published": counts,
        "elapsed_s": round(elapsed, 2),
        "schedule_late_max_s": round(late_max, 3),
        "last_seq": {d.id: d.seq for d in devs},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--rate", type=float, default=1.0, help="metrics messages per second per device")
    ap.add_argument(
        "--detections-rate", type=float, default=10.0, help="detections messages per second per device"
    )
    ap.add_argument("--duration", type=float, default=60.0, help="seconds; 0 = until SIGTERM/SIGINT")
    ap.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    ap.add_argument("--prefix", default="lookout")
    ap.add_argument("--id-prefix", default="sim")
    ap.add_argument(
        "--id-offset", type=int, default=0, help="first device number (split a fleet across processes)"
    )
    ap.add_argument("--qos", type=int, choices=(0, 1), default=1, help="QoS of detections (contract: 1)")
    ap.add_argument(
        "--no-bench", dest="bench", action="store_false", help="do not publish retained bench documents"
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ready", metavar="FILE", help="write this file once every device is online")
    ap.add_argument("--summary", metavar="FILE", help="write the JSON summary here (default: stdout)")
    args = ap.parse_args(argv)
    if args.devices < 1:
        ap.error("--devices must be >= 1")
    summary = run(args)
    text = json.dumps(summary)
    if args.summary:
        Path(args.summary).write_text(text)
    else:
        print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
