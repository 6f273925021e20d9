"""How many retained statuses reach a new subscriber at QoS 0 and at QoS 1, on a mosquitto with its
default per-client limits (max_inflight_messages 20, max_queued_messages 1000).

usage: .venv/bin/python scripts/retained_delivery.py [--devices 10000] [--delay-ms 0]
Prints one line per QoS: received of published, and mosquitto's $SYS dropped counter.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.telemetry.broker import start_broker

STATUS = {"state": "online", "version": "0.1.0", "runtime": "tflite", "model": "blazeface-short",
          "fallback": None, "started_at": 1.0, "ts": 2.0, "spool_depth": 0, "spool_dropped": 0}  # fmt: skip


def receive(host: str, port: int, qos: int, delay_s: float) -> tuple[int, str]:
    """Subscribe lookout/+/status at `qos`; count distinct topics until 2 s pass without a new one."""
    got: set[str] = set()
    dropped: list[str] = []
    lock = threading.Lock()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.on_connect = lambda c, *_: c.subscribe([("$SYS/broker/publish/messages/dropped", 0),
                                                ("lookout/+/status", qos)])  # fmt: skip

    def on_message(_c: object, _u: object, m: mqtt.MQTTMessage) -> None:
        if m.topic.startswith("$SYS"):
            dropped.append(m.payload.decode())
            return
        time.sleep(delay_s)
        with lock:
            got.add(m.topic)

    c.on_message = on_message
    c.connect(host, port)
    c.loop_start()
    last = -1
    while True:
        time.sleep(2.0)
        with lock:
            n = len(got)
        if n == last:
            break
        last = n
    c.disconnect()
    c.loop_stop()
    return last, dropped[-1] if dropped else "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--delay-ms", type=float, default=0.0, help="slow the subscriber down per message")
    a = ap.parse_args()
    b = start_broker(
        "mosquitto", extra_config="max_queued_messages 1000\nmax_inflight_messages 20\nsys_interval 1"
    )
    try:
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        pub.max_inflight_messages_set(1000)
        pub.connect(b.host, b.port)
        pub.loop_start()
        body = json.dumps(STATUS)
        infos = [
            pub.publish(f"lookout/dev-{i:06d}/status", body, qos=1, retain=True) for i in range(a.devices)
        ]
        for info in infos:
            info.wait_for_publish(120)
        pub.disconnect()
        pub.loop_stop()
        for qos in (0, 1):
            n, dropped = receive(b.host, b.port, qos, a.delay_ms / 1000)
            print(
                f"QoS {qos}: {n} of {a.devices} retained statuses arrived; $SYS dropped (all clients) {dropped}"
            )
    finally:
        b.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
