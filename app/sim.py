"""Desktop simulation: an embedded broker, N real `lookout run` services, and a fleet monitor.

Each simulated device is a real service in its own process with its own device id and state directory,
doing real inference on the demo video. Nothing about the hardware is invented: power comes from a meter
that exists here (RAPL where readable) or is null with the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.redact import redact
from app.telemetry.broker import Broker, start_broker

RUNTIME_CYCLE = ("tflite", "executorch", "edgetpu", "torchscript-lite")
MODEL_CYCLE = ("blazeface-short", "blazeface-back")
RAPL_ZONE = Path("/sys/class/powercap/intel-rapl:0")


@dataclass
class SimDevice:
    device_id: str
    runtime: str
    model: str
    workdir: Path
    proc: subprocess.Popen | None = None
    exit_code: int | None = None

    @property
    def report_path(self) -> Path:
        return self.workdir / "report.json"

    @property
    def log_path(self) -> Path:
        return self.workdir / "service.log"

    def report(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.report_path.read_text())
        except (OSError, ValueError):
            return None

    def log_tail(self, lines: int = 5) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def plan_devices(n: int, workdir: Path) -> list[SimDevice]:
    """Device 1 on tflite, 2 on executorch, 3 asks for edgetpu (fallback), then cycling runtimes and models."""
    devices = []
    for i in range(n):
        model = MODEL_CYCLE[(i // len(RUNTIME_CYCLE)) % len(MODEL_CYCLE)]
        dev = SimDevice(
            f"sim-{i + 1:02d}", RUNTIME_CYCLE[i % len(RUNTIME_CYCLE)], model, workdir / f"sim-{i + 1:02d}"
        )
        dev.workdir.mkdir(parents=True)
        devices.append(dev)
    return devices


def meter_table() -> str:
    """RAPL where this machine has it (the meter itself reports null + reason if unreadable), else none."""
    if (RAPL_ZONE / "energy_uj").exists():
        return '[meter]\ntype = "rapl"\n'
    return '[meter]\ntype = "none"\n'


def device_config(
    dev: SimDevice, broker_url: str, video: Path, models_dir: Path, protocol: str = "5"
) -> Path:
    text = f"""# simulated device {dev.device_id}
device_id = "{dev.device_id}"
model = "{dev.model}"
models_dir = "{models_dir}"
state_dir = "{dev.workdir / "state"}"

[runtime]
type = "{dev.runtime}"
threads = 1

[source]
type = "opencv"
uri = "{video}"
loop = true
realtime = true

[pipeline]
warmup = 3

[mqtt]
url = "{broker_url}"
protocol = "{protocol}"
metrics_interval_s = 2.0
publish_empty = true
homeassistant = false
reconnect_max_s = 2.0

{meter_table()}"""
    path = dev.workdir / "config.toml"
    path.write_text(text)
    return path


class Simulation:
    """Owns every process, port and temporary file it creates; `close()` removes them all."""

    def __init__(
        self,
        devices: int,
        duration_s: float,
        broker_url: str | None,
        models_dir: Path,
        broker_kind: str = "auto",
    ) -> None:
        self.n = devices
        self.broker_kind = broker_kind
        self.duration_s = duration_s
        self.external_broker = broker_url
        self.models_dir = models_dir
        self.workdir = Path(tempfile.mkdtemp(prefix="lookout-sim-"))
        self.broker: Broker | None = None
        self.devices: list[SimDevice] = []
        self.monitor: Any = None
        self.registry: Any = None

    @property
    def broker_url(self) -> str:
        return self.external_broker or (self.broker.url if self.broker else "")

    def start(self, log: Any) -> None:
        from app.fleet.monitor import Monitor
        from app.fleet.registry import Registry
        from app.vision.demo import demo_video_path

        if self.external_broker is None:
            self.broker = start_broker(self.broker_kind)
            note = ""
            if self.broker.kind == "amqtt":
                why = "mosquitto not on PATH; " if self.broker_kind == "auto" else ""
                note = f" ({why}MQTT 3.1.1 only)"
            log(f"broker: embedded {self.broker.kind} at {self.broker.url}{note}")
        else:
            log(f"broker: {redact(self.external_broker)}")
        video = demo_video_path()
        log(f"source: demo video {video}")
        protocol = "3.1.1" if self.broker is not None and self.broker.kind == "amqtt" else "5"
        self.registry = Registry()
        self.monitor = Monitor(self.registry, protocol=protocol)
        self.monitor.start(self.broker_url, client_id="lookout-sim-monitor")
        self.devices = plan_devices(self.n, self.workdir)
        for dev in self.devices:
            cfg = device_config(dev, self.broker_url, video, self.models_dir, protocol)
            cmd = [sys.executable, "-m", "app", "run", "--config", str(cfg), "--report", str(dev.report_path)]
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "LOOKOUT_CONFIG": str(cfg)}
            with open(dev.log_path, "wb") as out:
                dev.proc = subprocess.Popen(
                    cmd,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    start_new_session=True,
                )
            log(f"device {dev.device_id}: {dev.model} on {dev.runtime} (pid {dev.proc.pid})")

    def stop_devices(self, timeout_s: float = 60.0) -> None:
        """SIGTERM every device (they drain, flush the spool, publish `stopped`, write their report)."""
        for dev in self.devices:
            if dev.proc is not None and dev.proc.poll() is None:
                dev.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for dev in self.devices:
            if dev.proc is None:
                continue
            try:
                dev.exit_code = dev.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                dev.proc.kill()
                dev.exit_code = dev.proc.wait()

    def wait_for_delivery(self, timeout_s: float = 10.0) -> None:
        """Give the monitor time to receive the last acknowledged messages."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self.received(d) >= (self.published(d) or 0) for d in self.devices):
                return
            time.sleep(0.2)

    def published(self, dev: SimDevice) -> int | None:
        report = dev.report()
        return None if report is None else report.get("detections_published")

    def received(self, dev: SimDevice) -> int:
        with self.registry.lock:
            state = self.registry.devices.get(dev.device_id)
            return 0 if state is None else state.n_detections - state.seq.dups

    def summary(self) -> list[dict[str, Any]]:
        rows = []
        for dev in self.devices:
            report = dev.report() or {}
            with self.registry.lock:
                state = self.registry.devices.get(dev.device_id)
                gaps = state.seq.gaps if state else None
                seen_online = bool(state and state.n_status)
            published = report.get("detections_published")
            received = self.received(dev)
            infer = (report.get("stages") or {}).get("infer") or {}
            rows.append(
                {
                    "device_id": dev.device_id,
                    "requested_runtime": dev.runtime,
                    "runtime": report.get("runtime"),
                    "model": dev.model,
                    "exit_code": dev.exit_code,
                    "seen_by_monitor": seen_online,
                    "frames": report.get("frames", 0),
                    "fps": report.get("fps"),
                    "infer_p90_ms": infer.get("p90_ms"),
                    "fallback": report.get("fallback"),
                    "published": published,
                    "received": received,
                    "seq_gaps": gaps,
                    "lost": None if published is None else max(0, published - received) + (gaps or 0),
                    "power_source": (report.get("energy") or {}).get("power_source"),
                }
            )
        return rows

    def close(self) -> None:
        """Stop everything this simulation started, whatever state it is in."""
        for dev in self.devices:
            if dev.proc is not None and dev.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(dev.proc.pid, signal.SIGKILL)
                dev.proc.wait()
        if self.monitor is not None:
            self.monitor.stop()
            self.monitor = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        shutil.rmtree(self.workdir, ignore_errors=True)


def failed(rows: list[dict[str, Any]]) -> list[str]:
    """Why the simulation failed, one line per problem (empty when it passed)."""
    problems = []
    for r in rows:
        if r["exit_code"] != 0:
            problems.append(f"{r['device_id']}: service exited with {r['exit_code']}")
        elif not r["frames"]:
            problems.append(f"{r['device_id']}: processed no frames")
        if r["lost"]:
            problems.append(f"{r['device_id']}: {r['lost']} detection messages lost")
    return problems
