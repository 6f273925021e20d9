#!/usr/bin/env python3
"""Screenshots of the fleet web pages for docs/fleet.md, from a scene built of real parts.

The scene: a Debian mosquitto on a free 127.0.0.1 port, a real `lookout fleet serve` (SQLite history in a
temporary directory), real `lookout run` devices on the demo video (paced like a camera, events and
snapshots on; their fps and latencies are measured here, power and temperature are null with the reason,
as this machine has no sensors), one of them hot-swapped and asked for a bench over MQTT, one SIGKILLed so
it goes offline, plus `scripts/fleet_load.py` devices (synthetic rates, labelled simulated, hardware
readings null). Headless Debian chromium (tests/fleet/cdp_browser.py) takes the pictures. Every process
is stopped by PID and every temporary directory removed at the end (also on Ctrl-C or SIGTERM).

No device runs on the Raspberry Pi fixture boards (tests/measure/fixtures/boards): its pages would show
the recorded PMIC power, temperatures and under-voltage as live measurements, nothing on them says
"fixture", so they stay out of the documentation's pictures.

    .venv/bin/python scripts/fleet_screenshots.py --out docs/
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import paho.mqtt.client as mqtt  # noqa: E402

from app.telemetry.broker import Broker, free_port, start_broker  # noqa: E402
from app.tomlwrite import dump_toml  # noqa: E402
from tests.fleet.cdp_browser import Browser  # noqa: E402

MAX_PNG_BYTES = 400_000


@dataclass(frozen=True)
class RealDevice:
    """One `lookout run` of the scene."""

    id: str
    model: str
    runtime: str
    fps: float


# vm-cam-1 is swapped to executorch and benched; vm-cam-4 is killed partway (its row turns offline)
REAL = (
    RealDevice("vm-cam-1", "blazeface-short", "tflite", 10.0),
    RealDevice("vm-cam-2", "blazeface-short", "executorch", 10.0),
    RealDevice("vm-cam-3", "person-detector", "tflite", 5.0),
    RealDevice("vm-cam-4", "blazeface-short", "tflite", 2.0),
)
SWAP = {"model": "blazeface-short", "runtime": "executorch", "id": "docs-swap"}
BENCH = {
    "runtimes": ["tflite", "executorch", "torchscript-lite", "onnxruntime"],
    "frames": 100,
    "id": "docs-bench",
}
SHOWN = "vm-cam-1"
KILLED = "vm-cam-4"


def device_config(dev: RealDevice, path: Path, broker_url: str) -> Path:
    """A device config: the demo video paced like a camera at an fps cap, events and snapshots on, and the
    meter an x86 host would have (RAPL), which reports null with its reason where the machine has none."""
    cfg = {
        "device_id": dev.id,
        "model": dev.model,
        "models_dir": str(REPO / "models"),
        "runtime": {"type": dev.runtime, "threads": 1},
        "source": {"type": "opencv", "uri": "demo", "loop": True, "realtime": True},
        "pipeline": {"fps": dev.fps, "warmup": 3},
        "mqtt": {"url": broker_url, "metrics_interval_s": 2.0, "homeassistant": False},
        "meter": {"type": "rapl"},
        "events": {"enabled": True},
        "snapshot": {"enabled": True, "boxes": True},
    }
    path.write_text(dump_toml(cfg))
    return path


class Scene:
    """Owns every process and temporary file it starts; `close()` stops them by PID and removes them."""

    def __init__(self, sims: int, log: Callable[[str], None]) -> None:
        self.sims = sims
        self.log = log
        self.tmp = Path(tempfile.mkdtemp(prefix="lookout-shots-"))
        self.env = {k: v for k, v in os.environ.items() if k not in ("LOOKOUT_CONFIG", "LOOKOUT_HOST_ROOT")}
        self.env |= {"XDG_STATE_HOME": str(self.tmp / "state"), "PYTHONUNBUFFERED": "1"}
        # `python -m app` runs in a temporary cwd: import this checkout's app, not whichever one the venv has
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))
        self.procs: dict[str, subprocess.Popen] = {}
        self.broker: Broker | None = None
        self.client: mqtt.Client | None = None
        self.replies: dict[str, dict] = {}
        self.killed: set[str] = set()
        self.url = ""

    # ---- processes ---------------------------------------------------------------------------------
    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen:
        out = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - handed to the child
        try:
            p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=self.tmp)
        finally:
            out.close()
        self.procs[name] = p
        return p

    def logtail(self, name: str) -> str:
        p = self.tmp / f"{name}.log"
        return p.read_text(errors="replace")[-1500:] if p.exists() else ""

    def start(self) -> None:
        self.broker = start_broker("mosquitto")
        port = free_port()
        self._spawn("serve", [
            sys.executable, "-m", "app", "fleet", "serve", "--broker", self.broker.url,
            "--http", f"127.0.0.1:{port}", "--db", str(self.tmp / "fleet.sqlite"),
            "--history-interval", "2", "--monitor-id", "docs-monitor",
        ])  # fmt: skip
        self.url = f"http://127.0.0.1:{port}"
        self.until("fleet serve listening", lambda: "serving" in self.logtail("serve"), 60, "serve")
        self._connect_commander()
        for dev in REAL:
            cfg = device_config(dev, self.tmp / f"{dev.id}.toml", self.broker.url)
            self._spawn(dev.id, [
                sys.executable, "-m", "app", "run", "--config", str(cfg),
                "--state-dir", str(self.tmp / "devices" / dev.id),
            ])  # fmt: skip
        ready = self.tmp / "fleet_load.ready"
        self._spawn("fleet_load", [
            sys.executable, str(REPO / "scripts" / "fleet_load.py"), "--devices", str(self.sims),
            "--rate", "0.5", "--detections-rate", "1", "--duration", "0", "--broker", self.broker.url,
            "--ready", str(ready),
        ])  # fmt: skip
        self.until("fleet_load devices online", ready.exists, 60, "fleet_load")
        self.until("every real device online", lambda: self._online() >= {d.id for d in REAL}, 120)

    def until(self, what: str, cond: Callable[[], bool], timeout_s: float, proc: str | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if cond():
                return
            dead = [n for n, p in self.procs.items() if p.poll() is not None and n not in self.killed]
            if dead:
                raise RuntimeError(f"{dead[0]} exited while waiting for {what}:\n{self.logtail(dead[0])}")
            time.sleep(0.5)
        raise TimeoutError(f"{what}: not within {timeout_s:.0f} s\n{self.logtail(proc) if proc else ''}")

    def kill(self, name: str) -> None:
        """SIGKILL one process: no clean stop, the broker publishes its will (offline)."""
        self.killed.add(name)
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait(timeout=10)

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.disconnect()
            self.client.loop_stop()
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        if self.broker is not None:
            self.broker.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- the monitor's API -------------------------------------------------------------------------
    def api(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return json.load(r)

    def devices(self) -> dict[str, dict]:
        return {d["device_id"]: d for d in self.api("/api/devices")}

    def _online(self) -> set[str]:
        return {k for k, d in self.devices().items() if d.get("online")}

    # ---- commands over MQTT ------------------------------------------------------------------------
    def _connect_commander(self) -> None:
        assert self.broker is not None
        done = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="docs-commander", protocol=mqtt.MQTTv5)
        c.on_connect = lambda cl, *_: cl.subscribe("lookout/+/cmd/+/reply", qos=1)
        c.on_subscribe = lambda *_: done.set()

        def on_message(_c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
            reply = json.loads(m.payload)
            self.replies[str(reply.get("id"))] = reply

        c.on_message = on_message
        c.connect(self.broker.host, self.broker.port)
        c.loop_start()
        self.client = c
        if not done.wait(10):
            raise TimeoutError("the command client could not subscribe")

    def command(self, device: str, verb: str, payload: dict, timeout_s: float) -> dict:
        """Send one command (not retained) and wait for its reply."""
        assert self.client is not None
        self.client.publish(f"lookout/{device}/cmd/{verb}", json.dumps(payload), qos=1).wait_for_publish(10)
        self.until(f"{verb} reply from {device}", lambda: payload["id"] in self.replies, timeout_s, device)
        reply = self.replies[payload["id"]]
        if not reply.get("ok"):
            raise RuntimeError(f"{verb} on {device} failed: {reply}")
        return reply


def run_scene(scene: Scene, seconds: float) -> float:
    """Start everything, then the timeline: swap, kill, bench; returns the seconds the devices ran."""
    t0 = time.monotonic()
    scene.start()
    scene.log(f"scene up in {time.monotonic() - t0:.0f} s: {len(scene.devices())} devices")

    def at(frac: float) -> None:
        time.sleep(max(0.0, t0 + frac * seconds - time.monotonic()))

    at(0.45)
    r = scene.command(SHOWN, "swap", SWAP, 90)
    scene.log(f"swap on {SHOWN}: {r['from']} -> {r['to']} in {r['load_s']} s")
    at(0.6)
    scene.kill(KILLED)
    scene.log(f"SIGKILLed {KILLED}")
    at(0.7)
    r = scene.command(SHOWN, "bench", BENCH, 300)
    scene.log(f"bench on {SHOWN}: {r['results']} results")
    at(1.0)
    scene.until(
        "a snapshot from every running real device",
        lambda: all(scene.devices()[d.id].get("snapshot_at") for d in REAL if d.id != KILLED),
        60,
    )
    return time.monotonic() - t0


def optimise(path: Path) -> int:
    """Palette PNG (256 colours) when the screenshot is larger than MAX_PNG_BYTES; returns the size."""
    if path.stat().st_size > MAX_PNG_BYTES:
        from PIL import Image

        with Image.open(path) as im:
            pal = im.convert("RGB").quantize(
                colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
            )
        pal.save(path, optimize=True)
    return path.stat().st_size


def shoot(scene: Scene, out: Path, width: int, ran_s: float, log: Callable[[str], None]) -> list[Path]:
    """`/`, the shown device's page over a window just longer than the run, and `/runtimes`."""
    since = f"{math.ceil((ran_s + 20) / 60)}m"  # the run fills most of the time axis
    pages = (
        ("fleet-web-table.png", "/?sort=fps", "document.querySelectorAll('#fleet tbody tr').length >= "
         f"{len(REAL) + scene.sims} && document.querySelectorAll('#snapshots img').length >= {len(REAL) - 1} && "
         "[...document.images].every(i => i.complete && i.naturalWidth > 0)"),
        ("fleet-web-device.png", f"/devices/{SHOWN}?since={since}",
         "[...document.images].every(i => i.complete && i.naturalWidth > 0)"),
        ("fleet-web-runtimes.png", "/runtimes", "document.querySelectorAll('table.runtimes').length > 0"),
    )  # fmt: skip
    browser = Browser(width=width, height=900)
    saved = []
    try:
        for name, path, ready in pages:
            browser.goto(scene.url + path)
            browser.wait_for(ready, 30)
            browser.pump(2.5)  # the live table's first server-sent update, fonts settled
            if browser.problems:
                raise RuntimeError(f"{path}: the page reported problems: {browser.problems}")
            png = browser.screenshot(out / name)
            log(f"{png}: {optimise(png) / 1000:.0f} KB")
            saved.append(png)
    finally:
        browser.close()
    return saved


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs", help="where the PNGs go (default docs/)")
    ap.add_argument("--seconds", type=float, default=80.0, help="how long the devices run before the shots")
    ap.add_argument("--sims", type=int, default=12, help="fleet_load devices")
    ap.add_argument("--width", type=int, default=1440, help="viewport width in CSS pixels")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(f"fleet_screenshots: {msg}", flush=True)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the finally below still cleans up
    scene = Scene(args.sims, log)
    try:
        ran = run_scene(scene, args.seconds)
        shoot(scene, args.out, args.width, ran, log)
    finally:
        scene.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
