"""A real `lookout run` subprocess and a real MQTT subscriber on its topic tree, for service tests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt


def start_run(env: dict, *args: str, **popen: Any) -> subprocess.Popen:
    """`python -m app run ARGS` as a subprocess, stdout and stderr piped as text."""
    return subprocess.Popen([sys.executable, "-m", "app", "run", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)  # fmt: skip


def stop_run(proc: subprocess.Popen) -> str:
    """SIGTERM (when still running), wait up to 60 s (then SIGKILL); its stderr. The caller checks the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    return err


class DeviceWatcher:
    """An MQTT 5 client on one device's topic tree: its detections, command replies and statuses (parsed
    JSON, in arrival order), and the commands a test sends it."""

    KEPT = ("/detections", "/reply", "/status")  # events, presence, metrics pass by; a snapshot is a JPEG

    def __init__(self, broker: Any, device_id: str) -> None:
        self.device_id = device_id
        self.detections: list[dict] = []
        self.replies: list[dict] = []
        self.status: list[dict] = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.on_message = self._on_message
        self.c.connect(broker.host, broker.port)
        self.c.subscribe(f"lookout/{device_id}/#", qos=1)
        self.c.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        if not msg.payload or not msg.topic.endswith(self.KEPT):
            return  # an empty payload clears a retained message
        kept = dict(zip(self.KEPT, (self.detections, self.replies, self.status), strict=True))
        payload = json.loads(msg.payload)
        with self.lock:
            kept[next(k for k in self.KEPT if msg.topic.endswith(k))].append(payload)

    def command(self, verb: str, payload: dict, retain: bool = False) -> None:
        info = self.c.publish(
            f"lookout/{self.device_id}/cmd/{verb}", json.dumps(payload), qos=1, retain=retain
        )
        info.wait_for_publish(10)

    def wait(self, what: Callable[[], Any], proc: subprocess.Popen, timeout: float = 60.0) -> Any:
        """What `what()` returns once truthy (called under the lock); fails at once if the service exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                got = what()
            if got:
                return got
            assert proc.poll() is None, (
                "service exited: " + (proc.stderr.read() if proc.stderr else "")[-2000:]
            )
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting")

    def reply_to(self, req_id: str, proc: subprocess.Popen) -> dict:
        return self.wait(lambda: next((r for r in self.replies if r.get("id") == req_id), None), proc)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


class LiveDevice:
    """Starts `lookout run --config FILE`, records everything under lookout/<id>/# (raw bytes)."""

    def __init__(self, broker_host: str, broker_port: int, device_id: str, config: Path, env: dict) -> None:
        self.device_id = device_id
        self.lock = threading.Lock()
        self.msgs: list[tuple[float, str, bytes]] = []
        self.subscribed = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.on_message = self._on_message
        self.c.on_connect = lambda c, *_: c.subscribe(f"lookout/{device_id}/#", qos=1)
        self.c.on_subscribe = lambda *_: self.subscribed.set()
        self.c.reconnect_delay_set(0.2, 1.0)
        self.c.connect_async(broker_host, broker_port)
        self.c.loop_start()
        assert self.subscribed.wait(10), "test subscriber could not subscribe"
        self.report = config.with_suffix(".report.json")
        self.proc = start_run(env, "--config", str(config), "--report", str(self.report))
        self.stderr = ""
        self._stopped = False

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        with self.lock:
            self.msgs.append((time.time(), msg.topic, bytes(msg.payload)))

    def on(self, suffix: str, since: float = 0.0) -> list[dict]:
        """Parsed payloads on topics ending with `suffix` received after `since` (epoch s)."""
        with self.lock:
            raw = [p for t, topic, p in self.msgs if topic.endswith(suffix) and t >= since]
        return [json.loads(p) for p in raw]

    def wait(self, what: Callable[[], Any], timeout_s: float, label: str) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = what()
            if got:
                return got
            if self.proc.poll() is not None:
                self.stop()
                raise AssertionError(
                    f"service exited ({self.proc.returncode}) waiting for {label}: {self.stderr[-3000:]}"
                )
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {label}")

    def command(self, verb: str, payload: bytes) -> None:
        self.c.publish(f"lookout/{self.device_id}/cmd/{verb}", payload, qos=1).wait_for_publish(10)

    def stop(self) -> int:
        """SIGTERM (when still running), wait, close the subscriber; the exit code. Idempotent."""
        if not self._stopped:
            self._stopped = True
            self.stderr = stop_run(self.proc)
            self.c.loop_stop()
            self.c.disconnect()
        return self.proc.returncode

    def read_report(self) -> dict:
        return json.loads(self.report.read_text())
