"""A Raspberry Pi 4 and a Pi 5 on this machine, end to end, and the payload contract test.

Three real `lookout run` subprocesses publish to a real mosquitto at the same time, each on a fixture
board (tests/measure/fixtures/boards: LOOKOUT_HOST_ROOT at its tree, its `vcgencmd` first on PATH):
- pi4: INA219 under hwmon (the meter a Pi 4 would use), get_throttled 0x0;
- pi5: the PMIC meter (`rpi_pmic`), a PCIe Coral's apex_0 temperature, get_throttled 0x50005;
- pi5-failing: get_throttled hangs, measure_temp answers "Command not registered", pmic_read_adc
  answers garbage, no thermal zone is readable.
A real `lookout fleet --once --json` and a real `lookout fleet` live view (on a pseudo-terminal) watch.
Every message captured from the broker is checked against the SHIPPED JSON Schemas (jsonschema, not
the models) and fed through the fleet's real ingest path.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from jsonschema import Draft202012Validator

from app.fleet.monitor import Monitor
from app.fleet.registry import Registry
from app.measure.power.rpi_pmic import parse_pmic_adc, rails_power_w
from app.telemetry import contract, topics
from app.telemetry.broker import Broker, start_broker

pytestmark = [pytest.mark.broker, pytest.mark.slow]

INTERVAL_S = 1.0
FRAMES = {"pi4": 140, "pi5": 80, "pi5-failing": 80}
FIXTURES = Path(__file__).resolve().parents[1] / "measure" / "fixtures"
PMIC_W = rails_power_w(parse_pmic_adc((FIXTURES / "pmic_read_adc_pi5.txt").read_text()))
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")


@dataclass
class Captured:
    """Everything one run of the fleet produced."""

    msgs: list[tuple[str, bytes, bool]] = field(default_factory=list)
    runs: dict[str, subprocess.CompletedProcess] = field(default_factory=dict)
    reports: dict[str, dict] = field(default_factory=dict)
    once: list[dict] = field(default_factory=list)
    screen: str = ""

    def payloads(self, device: str, kind: str) -> list[dict]:
        out = []
        for topic, payload, _ in self.msgs:
            t = topics.parse(topic)
            if t is not None and t.device_id == device and t.kind == kind:
                out.append(json.loads(payload))
        return out


class Recorder:
    """A real paho subscriber on lookout/#, recording raw payloads."""

    def __init__(self, broker: Broker, into: list) -> None:
        self.into = into
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="pi-boards-recorder", protocol=mqtt.MQTTv5
        )
        self.c.on_connect = lambda c, *_: c.subscribe("lookout/#", qos=1)
        self.c.on_subscribe = lambda *_: self.ready.set()
        self.c.on_message = self._on_message
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        assert self.ready.wait(10), "recorder could not subscribe"

    def _on_message(self, _c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.into.append((m.topic, bytes(m.payload), bool(m.retain)))

    def seen(self, topic: str) -> bool:
        with self.lock:
            return any(t == topic for t, _, _ in self.into)

    def publish(self, topic: str, payload: dict) -> None:
        self.c.publish(topic, json.dumps(payload), qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def board_config(path: Path, device: str, meter: str, video: Path) -> Path:
    """Each device its own state dir: a spool is one device's outbox."""
    meter_table = (
        '[meter]\ntype = "hwmon"\nname = "ina219"\n'
        if meter == "hwmon"
        else '[meter]\ntype = "rpi_pmic"\nrate_hz = 5\n'
    )
    path.write_text(
        f'device_id = "{device}"\nmodel = "blazeface-short"\nstate_dir = "{path.parent / device}"\n\n[runtime]\ntype = "tflite"\nthreads = 1\n\n'
        f'[source]\ntype = "opencv"\nuri = "{video}"\n\n'
        f"[pipeline]\nfps = 20\nmax_frames = {FRAMES[device]}\n\n{meter_table}\n"
        f"[mqtt]\nmetrics_interval_s = {INTERVAL_S}\nhomeassistant = false\n"
    )
    return path


def start_live_view(
    cmd: list[str], env: dict[str, str]
) -> tuple[subprocess.Popen, list[bytes], threading.Thread]:
    """`lookout fleet` on a 200x40 pseudo-terminal, its output read continuously (a full pty blocks it)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))
    proc = subprocess.Popen(
        cmd, stdin=slave, stdout=slave, stderr=slave, env=env | {"TERM": "xterm-256color"}, close_fds=True
    )
    os.close(slave)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        os.close(master)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    return proc, chunks, t


@pytest.fixture(scope="module")
def fleet(pi_board, tmp_path_factory, demo_video) -> Iterator[Captured]:
    tmp = tmp_path_factory.mktemp("pi-fleet")
    boards = {
        "pi4": pi_board("pi4", throttled="0x0", name="pi4"),
        "pi5": pi_board("pi5", throttled="0x50005", name="pi5"),
        "pi5-failing": pi_board("pi5", name="pi5-failing"),
    }
    failing = boards["pi5-failing"]
    failing.hang("get_throttled")
    failing.answer("measure_temp", None)
    failing.answer("pmic_read_adc", "VCHI initialization failed\n")
    for sub in ("thermal", "apex"):
        for p in sorted((failing.root / "sys/class" / sub).rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
    meters = {"pi4": "hwmon", "pi5": "rpi_pmic", "pi5-failing": "rpi_pmic"}

    base_env = {k: v for k, v in os.environ.items() if k not in ("LOOKOUT_CONFIG", "LOOKOUT_HOST_ROOT")}
    base_env |= {"XDG_STATE_HOME": str(tmp / "state"), "PYTHONUNBUFFERED": "1"}
    lookout = [sys.executable, "-m", "app"]
    cap = Captured()
    broker = start_broker("mosquitto")
    procs: list[subprocess.Popen] = []
    rec = Recorder(broker, cap.msgs)
    try:
        once = subprocess.Popen(
            [*lookout, "fleet", "--broker", broker.url, "--once", "--wait", "150", "--idle-exit", "4", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=base_env,
        )  # fmt: skip
        procs.append(once)
        live, screen, reader = start_live_view(
            [*lookout, "fleet", "--broker", broker.url, "--sort", "id"], base_env
        )
        procs.append(live)
        time.sleep(1.0)  # both monitors subscribed before the first device speaks
        runs = {}
        for dev, board in boards.items():
            cfg = board_config(tmp / f"{dev}.toml", dev, meters[dev], demo_video)
            runs[dev] = subprocess.Popen(
                [*lookout, "run", "--config", str(cfg), "--broker", broker.url, "--report", str(tmp / f"{dev}.json")],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=board.env(base_env),
            )  # fmt: skip
            procs.append(runs[dev])
        # commands to the Pi 4 once it is online: a config change and a short bench (their replies and the
        # bench document are part of what a real run publishes)
        deadline = time.monotonic() + 90
        while (
            not rec.seen("lookout/pi4/status") and time.monotonic() < deadline and runs["pi4"].poll() is None
        ):
            time.sleep(0.1)
        rec.publish("lookout/pi4/cmd/config", {"metrics_interval_s": INTERVAL_S, "id": "cfg-1"})
        rec.publish("lookout/pi4/cmd/bench", {"runtimes": ["tflite"], "frames": 20, "id": "bench-1"})
        for dev, p in runs.items():
            out, err = p.communicate(timeout=240)
            cap.runs[dev] = subprocess.CompletedProcess(p.args, p.returncode, out, err)
            if p.returncode == 0:
                cap.reports[dev] = json.loads((tmp / f"{dev}.json").read_text())
        out, err = once.communicate(timeout=180)
        assert once.returncode == 0, err[-2000:]
        cap.once = json.loads(out)
        time.sleep(1.5)  # the live view redraws once a second
        live.send_signal(signal.SIGINT)
        live.wait(timeout=30)
        reader.join(timeout=10)
        cap.screen = ANSI.sub("", b"".join(screen).decode("utf-8", "replace"))
        yield cap
    finally:
        rec.close()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        broker.stop()


def metrics_of(fleet: Captured, dev: str) -> list[dict]:
    ms = fleet.payloads(dev, "metrics")
    assert ms, f"no metrics from {dev}"
    return ms


@pytest.mark.parametrize("dev", list(FRAMES))
def test_service_runs_to_its_frame_limit_and_exits_0(fleet: Captured, dev: str) -> None:
    run = fleet.runs[dev]
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert fleet.reports[dev]["frames"] == FRAMES[dev]


@pytest.mark.parametrize("dev", list(FRAMES))
def test_metrics_every_interval(fleet: Captured, dev: str) -> None:
    ms = metrics_of(fleet, dev)
    online = fleet.payloads(dev, "status")[0]
    span = ms[-1]["ts"] - online["ts"]
    # one per interval over the run (the count, not the timing: a loaded machine shifts both ends)
    assert len(ms) >= 3 and len(ms) >= span / INTERVAL_S - 2, (len(ms), span)
    assert all(m["v"] == 1 for m in ms)


def test_pi5_power_from_the_pmic_and_its_flags(fleet: Captured) -> None:
    ms = metrics_of(fleet, "pi5")
    for m in ms:
        assert m["power_source"].startswith("rpi_pmic: PMIC rails")
        assert m["power_w"] == pytest.approx(PMIC_W, rel=1e-9)  # the recorded rails, summed: nothing made up
        assert m["energy_mj_per_inference"] > 0
        assert m["temp_c"] == 63.85 and m["temps"] == {"cpu-thermal": 63.85, "apex_0": 52.3}
        assert m["throttled"] == contract.Throttling.from_register(0x50005).model_dump()
        assert m["reasons"] == {}
    assert fleet.payloads("pi5", "status")[0]["board"] == "Raspberry Pi 5 Model B Rev 1.0"


def test_pi4_power_from_the_ina219_under_hwmon(fleet: Captured) -> None:
    for m in metrics_of(fleet, "pi4"):
        assert m["power_source"] == "hwmon:ina219 (hwmon2)"
        assert m["power_w"] == pytest.approx(4.572, rel=1e-9)  # power1_input 4572000 µW
        assert m["energy_mj_per_inference"] > 0
        assert m["temp_c"] == 58.426 and m["throttled"]["raw"] == "0x0"
    assert fleet.payloads("pi4", "status")[0]["board"] == "Raspberry Pi 4 Model B Rev 1.5"


def test_failing_board_readings_are_null_with_reasons(fleet: Captured) -> None:
    ms = metrics_of(fleet, "pi5-failing")
    for m in ms:
        assert m["throttled"] is None and "get_throttled" in m["reasons"]["throttled"]
        assert m["temp_c"] is None and "Command not registered" in m["reasons"]["temp_c"]
        assert m["power_w"] is None and m["energy_mj_per_inference"] is None
        assert (
            m["power_source"].startswith("rpi_pmic unavailable")
            and "VCHI initialization failed" in m["power_source"]
        )
    assert "timed out" in ms[0]["reasons"]["throttled"]  # the hang, bounded; later ones say it backs off


def test_fleet_once_json_shows_the_alerts_of_the_board_that_has_them(fleet: Captured) -> None:
    rows = {r["device_id"]: r for r in fleet.once}
    assert set(rows) == set(FRAMES)
    pi5, pi4, failing = rows["pi5"], rows["pi4"], rows["pi5-failing"]
    assert {"throttled", "under-voltage"} <= set(pi5["alerts"])
    assert (
        pi5["under_voltage"] is True
        and pi5["under_voltage_since_boot"] is True
        and pi5["throttled_raw"] == "0x50005"
    )
    assert pi5["power_w"] == pytest.approx(PMIC_W) and pi5["power_source"].startswith("rpi_pmic")
    assert pi5["board"] == "Raspberry Pi 5 Model B Rev 1.0"
    assert not {a for a in pi4["alerts"] if "throttled" in a or "under-voltage" in a}
    assert pi4["under_voltage"] is False and pi4["power_w"] == pytest.approx(4.572)
    assert failing["under_voltage"] is None and "get_throttled" in failing["reasons"]["throttled"]
    for r in rows.values():
        assert r["malformed"] == 0 and r["unsupported_version"] == 0 and r["state"] == "stopped"


def test_fleet_live_view_shows_under_voltage(fleet: Captured) -> None:
    frame = fleet.screen[fleet.screen.rfind("Lookout fleet") :]
    lines = {ln.split("│")[1].strip(): ln for ln in frame.splitlines() if ln.count("│") > 3}
    assert "under-voltage" in lines["pi5"] and "throttled" in lines["pi5"], frame
    assert "under-voltage" not in lines["pi4"] and "under-voltage" not in lines["pi5-failing"], frame


def test_contract_every_captured_payload_validates_and_round_trips(fleet: Captured) -> None:
    """The contract test: what real runs published fits the shipped schemas and the fleet's ingest."""
    validators = {}
    for kind in contract.KINDS:
        doc = json.loads(resources.files("app.telemetry").joinpath("schemas", f"{kind}.json").read_text())
        validators[kind] = Draft202012Validator(doc)
    kinds: dict[str, int] = {}
    monitor = Monitor(Registry())
    for topic, payload, _ in fleet.msgs:
        t = topics.parse(topic)
        if t is None or t.kind == "cmd":
            continue
        if t.kind == "snapshot":  # a bare JPEG, the one payload outside the JSON contract
            assert payload.startswith(b"\xff\xd8\xff"), topic
            monitor.handle(topic, payload, time.time())
            kinds["snapshot"] = kinds.get("snapshot", 0) + 1
            continue
        kind = "cmd_reply" if t.kind == "cmd_reply" else t.kind
        data = json.loads(payload)
        errors = [e.message for e in validators[kind].iter_errors(data)]
        assert not errors, (topic, errors[:3], data)
        assert data["v"] == 1
        assert contract.parse(kind, data).to_wire() == data  # the model reproduces the wire exactly
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind != "cmd_reply":
            monitor.handle(topic, payload, time.time())
    assert {
        "status",
        "metrics",
        "detections",
        "bench",
        "cmd_reply",
        "events",
        "presence",
        "snapshot",
    } <= kinds.keys(), kinds
    assert monitor.stats.malformed == {} and monitor.stats.unsupported_version == {}
    rows = {r["device_id"]: r for r in monitor.registry.snapshot()}
    assert rows["pi4"]["bench_runtimes"] == ["tflite"]
    replies = [
        json.loads(p) for t, p, _ in fleet.msgs if t.startswith("lookout/pi4/cmd/") and t.endswith("/reply")
    ]
    assert {(r["verb"], r["ok"], r["id"]) for r in replies} == {
        ("config", True, "cfg-1"),
        ("bench", True, "bench-1"),
    }
