"""A device in a subprocess for the kill -9 tests: runs a Telemetry, publishes status and then
detections in a loop, printing each allocated seq (`seq N`) on stdout.

usage: publisher.py URL DEVICE_ID STATE_DIR [--count N (0 = forever)] [--rate HZ]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.config import MqttConfig, SpoolConfig
from app.telemetry.mqtt import Telemetry


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("device_id")
    ap.add_argument("state_dir", type=Path)
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--rate", type=float, default=50.0)
    a = ap.parse_args()
    t = Telemetry(MqttConfig(url=a.url, reconnect_max_s=0.4), SpoolConfig(), a.device_id, a.state_dir)
    t.start()
    t.publish_status(state="online", runtime="tflite", model="blazeface-short")
    print("started", flush=True)
    i = 0
    while a.count == 0 or i < a.count:
        seq = t.publish_detections(
            {
                "frame": i,
                "model": "blazeface-short",
                "runtime": "tflite",
                "detections": [],
                "latency_ms": {"infer": 1.0},
            }
        )
        print(f"seq {seq}", flush=True)
        i += 1
        time.sleep(1.0 / a.rate)
    t.stop(timeout_s=10.0)
    print(f"stopped {t.stats()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
