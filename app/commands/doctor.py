"""`lookout doctor`: what on this machine can run, and why not. Exit 0 when the configured pipeline can run."""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.config import LookoutConfig, MqttConfig

#: the table's mark and its style for ok, not ok, and a runtime that was not run
MARKS: dict[bool | None, tuple[str, str]] = {
    True: ("ok", "green"),
    False: ("no", "red"),
    None: ("not run", "yellow"),
}
#: Opening a runtime imports it (torch: seconds on x86, a minute or more on a Pi or under emulation).
PROBE_TIMEOUT_S = 300.0


@dataclass
class Check:
    """One row. `ok` is None for a runtime that imports but had nothing of the model's to run ("not run"):
    neither working nor broken, and never counted as the pipeline's working runtime."""

    area: str
    name: str
    ok: bool | None
    detail: str


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check runtimes, Edge TPUs, cameras, power meters and the broker")
    p.add_argument("--config", help="TOML config file")
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    p.add_argument(
        "--no-probe", action="store_true", help="do not probe the Edge TPU delegate in a subprocess"
    )
    p.set_defaults(func=run)


def check_runtimes(
    model: str | None = None, models_dir: Path | None = None, artifacts: dict[str, str] | None = None
) -> list[Check]:
    """Each registered runtime, opened for real in its own process (app/runtimes/probe.py): its modules
    import and, when `model` has the runtime's artifact (`artifacts[name]`, else the runtime's default),
    it runs that artifact once. The processes run side by side, at most one per CPU core (up to 4)."""
    from concurrent.futures import ThreadPoolExecutor

    from app.runtimes.base import discover

    entries = sorted(discover().items())
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        probes = {
            name: pool.submit(_probe_runtime, name, model, models_dir, (artifacts or {}).get(name))
            for name, entry in entries
            if entry.cls is not None and entry.cls.availability()[0]
        }
        out = []
        for name, entry in entries:
            if entry.cls is None:
                why = f"plugin {entry.target} failed to import: {entry.error}"
                out.append(Check("runtime", name, False, why))
            elif name in probes:
                out.append(Check("runtime", name, *probes[name].result()))
            else:
                out.append(Check("runtime", name, False, entry.cls.availability()[1]))
    return out


def _probe_runtime(
    name: str, model: str | None, models_dir: Path | None, artifact: str | None
) -> tuple[bool | None, str]:
    from app.runtimes.probe import NOT_RUN

    cmd = [sys.executable, "-m", "app.runtimes.probe", name]
    if model:
        cmd += ["--model", model]
    if models_dir:
        cmd += ["--models-dir", str(models_dir)]
    if artifact:
        cmd += ["--artifact", artifact]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return False, f"no answer within {PROBE_TIMEOUT_S:.0f} s when opening it (hung import or load)"
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode).name
        return False, f"the process opening it died with {sig}{_last_line(proc.stderr, ': ')}"
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        ok = None if result["state"] == NOT_RUN else bool(result["ok"])
        return ok, str(result["detail"])
    except (IndexError, ValueError, KeyError, TypeError):
        return False, f"the process opening it exited {proc.returncode}{_last_line(proc.stderr, ': ')}"


def _last_line(text: str, prefix: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return prefix + lines[-1][:200] if lines else ""


def check_edgetpu(probe: bool, runtime: Any = None) -> list[Check]:
    """Edge TPUs present, and (`probe`) whether the delegate loads: the configured runtime's delegate
    (`runtime` is the config's [runtime] table) when it is an Edge TPU one, else the default; probed by
    the same call as selection's `unusable_reason`, so this row and the pipeline's fallback row agree."""
    from app.hostroots import HostRoots
    from app.runtimes import edgetpu

    tpu = edgetpu.EdgeTPURuntime(HostRoots.from_env())
    options = runtime if isinstance(runtime, edgetpu.EdgeTPUConfig) else edgetpu.EdgeTPUConfig()
    devices = edgetpu.enumerate_tpus(tpu.sysfs_root, tpu.dev_root)
    if devices:
        out = [Check("edgetpu", d.name, True, f"{d.path} ({d.state})") for d in devices]
    else:
        none = "no Edge TPU found (no USB 1a6e:089a / 18d1:9302, no /dev/apex_*)"
        out = [Check("edgetpu", "devices", False, none)]
    if probe:
        result = tpu.probe(options)
        out.append(Check("edgetpu", "delegate", result.ok, result.reason))
    return out


def check_cameras(dev_root: Path | None = None) -> list[Check]:
    """V4L2 capture devices that open and answer VIDIOC_QUERYCAP; picamera2 cameras libcamera lists."""
    from app.hostroots import HostRoots

    dev_root = dev_root or HostRoots.from_env().dev
    found, problems = [], []
    for node in sorted(dev_root.glob("video*")):
        try:
            name = _v4l2_capture_name(node)
        except OSError as exc:
            problems.append(f"{node}: {(exc.strerror or str(exc)).lower()}")
            continue
        if name:
            found.append(f"{node} {name}")
    if found:
        v4l2 = Check("camera", "v4l2", True, ", ".join(found))
    else:
        why = "; ".join(problems) or f"no V4L2 capture device under {dev_root}/video*"
        v4l2 = Check("camera", "v4l2", False, why)
    return [v4l2, Check("camera", "picamera2", *_picamera2_cameras())]


#: VIDIOC_QUERYCAP = _IOR('V', 0, struct v4l2_capability), a 104-byte struct
VIDIOC_QUERYCAP = 0x80685600
V4L2_CAP_VIDEO_CAPTURE, V4L2_CAP_VIDEO_CAPTURE_MPLANE, V4L2_CAP_DEVICE_CAPS = 0x1, 0x1000, 0x80000000


def _v4l2_capture_name(node: Path) -> str | None:
    """'card (driver)' when the node is a V4L2 video-capture device, None for other V4L2 nodes
    (codecs, ISP, metadata); OSError when it cannot be opened or is no V4L2 device."""
    import fcntl
    import struct

    fd = os.open(node, os.O_RDWR | os.O_NONBLOCK)
    try:
        buf = fcntl.ioctl(fd, VIDIOC_QUERYCAP, bytes(104))
    except OSError as exc:
        if exc.errno == errno.ENOTTY:
            raise OSError(exc.errno, "not a V4L2 device") from None
        raise
    finally:
        os.close(fd)
    driver, card = (b.split(b"\0", 1)[0].decode(errors="replace") for b in (buf[:16], buf[16:48]))
    caps, device_caps = struct.unpack_from("<II", buf, 84)
    if caps & V4L2_CAP_DEVICE_CAPS:
        caps = device_caps
    if not caps & (V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_VIDEO_CAPTURE_MPLANE):
        return None
    return f"{card} ({driver})"


def _picamera2_cameras() -> tuple[bool, str]:
    """Cameras libcamera reports through picamera2, asked in a child process (libcamera is noisy)."""
    from importlib.util import find_spec

    if find_spec("picamera2") is None:
        return False, "python3-picamera2 not installed (Raspberry Pi OS apt package)"
    code = "import json\nfrom picamera2 import Picamera2\nprint(json.dumps(Picamera2.global_camera_info()))"
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S
        )
        cameras = json.loads(proc.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        return False, f"picamera2 did not list cameras within {PROBE_TIMEOUT_S:.0f} s"
    except (IndexError, ValueError):
        return False, f"picamera2 failed{_last_line(proc.stderr, ': ')}"
    if not cameras:
        return False, "picamera2 imports, libcamera lists no camera (ribbon cable? camera_auto_detect=1?)"
    return True, ", ".join(f"{c.get('Num', i)}: {c.get('Model', '?')}" for i, c in enumerate(cameras))


def check_meters(configured: Any = None) -> list[Check]:
    """Each power meter type, opened as `lookout run` would and read once: ok only with a reading.

    `configured` (the config's meter) is used for its own type; the others use their defaults
    (hwmon: every ina* device found under the configured or default root)."""
    from app.config import HwmonMeter, Ina2xxI2CMeter, RaplMeter, RpiPmicMeter
    from app.hostroots import HostRoots

    host = HostRoots.from_env()
    kinds = {"hwmon": HwmonMeter, "ina2xx_i2c": Ina2xxI2CMeter, "rpi_pmic": RpiPmicMeter, "rapl": RaplMeter}
    out = []
    for kind, model in kinds.items():
        mine = configured if getattr(configured, "type", None) == kind else None
        if kind == "hwmon" and mine is None:
            root = host.path(model().root)
            names = sorted({_read_name(f) for f in root.glob("hwmon*/name")} - {""})
            inas = [n for n in names if n.startswith("ina")]
            if not inas:
                out.append(Check("meter", kind, False, f"no ina2xx device under {root}"))
                continue
            results = [_sample_meter(model(name=n), host) for n in inas]
            good = [d for ok, d in results if ok]
            out.append(Check("meter", kind, bool(good), "; ".join(good or [d for _, d in results])))
            continue
        out.append(Check("meter", kind, *_sample_meter(mine or model(), host)))
    return out


def _read_name(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _sample_meter(cfg: Any, host: Any) -> tuple[bool, str]:
    """Open the meter for `cfg` and take one reading (a counter meter: two, 0.2 s apart)."""
    import math
    import time

    from app.measure.power import make_meter

    meter = make_meter(cfg, host)
    try:
        if not meter.available:
            return False, meter.source
        if meter.has_energy:
            t0, e0 = time.perf_counter(), meter.read_energy_j()
            time.sleep(0.2)
            t1, e1 = time.perf_counter(), meter.read_energy_j()
            watts = (e1 - e0) / (t1 - t0) if e0 is not None and e1 is not None else None
        else:
            watts = meter.read_power_w()
        if watts is None or not math.isfinite(watts):
            return False, f"{meter.source}: no reading ({meter.last_error or 'the meter returned none'})"
        return True, f"{meter.source}: read {watts:.2f} W"
    finally:
        meter.close()


def check_broker(mqtt: MqttConfig | str) -> Check:
    """Log in to the broker as the service would (URL, username/password, TLS): one real MQTT CONNECT, so a
    wrong password, a TLS name mismatch or an unknown CA show here, not just whether a port is open."""
    from app.config import MqttConfig
    from app.errors import ConfigError
    from app.redact import redact
    from app.telemetry import connect
    from app.telemetry.broker_url import parse_broker_url

    url = mqtt if isinstance(mqtt, str) else mqtt.url
    try:
        addr = parse_broker_url(url, "mqtt.url")
        cfg = MqttConfig(url=url) if isinstance(mqtt, str) else mqtt
        ok, detail = connect.probe(cfg)
    except ConfigError as exc:
        return Check("broker", redact(url), False, str(exc))
    return Check("broker", str(addr), ok, detail)


def check_pipeline(cfg: LookoutConfig, probe: bool, runtimes: list[Check]) -> list[Check]:
    """Can the configured model run on the configured runtime (or the substitute its plugin names) with
    the configured source? Asks the same hooks as selection (`plan_runtime`), so both agree; the runtime
    that will run counts as usable only when `check_runtimes` opened it for real."""
    from app.errors import LookoutError
    from app.hostroots import HostRoots
    from app.runtimes.selection import plan_runtime
    from app.zoo import load_manifest

    out = []
    try:
        manifest = load_manifest(cfg.model, cfg.models_dir)
    except LookoutError as exc:
        return [Check("pipeline", "model", False, str(exc))]
    try:
        plan = plan_runtime(cfg.runtime, manifest, HostRoots.from_env(), probe=probe)
    except LookoutError as exc:
        return [Check("pipeline", "runtime", False, str(exc))]
    if plan.fallback:
        detail = f"{plan.requested} cannot run here, will run {plan.runtime}: {plan.fallback['reason']}"
        out.append(Check("pipeline", "fallback", True, detail))
    opened = next((c for c in runtimes if c.name == plan.runtime), None)
    if opened is None or not opened.ok:
        why = opened.detail if opened else "not registered"
        out.append(Check("pipeline", "runtime", False, f"{plan.runtime}: {why}"))
    try:
        path = manifest.verify_artifact(plan.artifact)
        out.append(
            Check("pipeline", "artifact", True, f"{manifest.name}:{plan.artifact} {path.name} sha256 ok")
        )
    except LookoutError as exc:
        out.append(Check("pipeline", "artifact", False, str(exc)))
    out.append(check_source(cfg.source))
    return out


#: The first frame may take a while: the demo video is generated on first use (tens of seconds on a Pi).
SOURCE_TIMEOUT_S = 120.0


def check_source(src: Any, timeout_s: float = SOURCE_TIMEOUT_S) -> Check:
    """Open the configured source as `lookout run` does and read its first frame."""
    import threading

    from app.config import ReconnectConfig
    from app.errors import LookoutError
    from app.vision.sources import open_source

    what = {"opencv": f"opencv {getattr(src, 'uri', '')}", "images": f"images {getattr(src, 'folder', '')}"}
    desc = what.get(src.type, src.type)
    reasons: list[str] = []
    result: dict[str, Any] = {}
    stop = threading.Event()

    def on_state(state: str, why: str) -> None:
        reasons.append(why)
        if state == "degraded":  # `lookout run` would keep retrying; doctor reports the first failure
            stop.set()

    def first_frame() -> None:
        try:
            source = open_source(src, ReconnectConfig(initial_s=0.2, max_s=2.0), on_state)
        except LookoutError as exc:
            result["error"] = str(exc)
            return
        try:
            result["frame"] = source.read(stop)
        finally:
            source.close()

    worker = threading.Thread(target=first_frame, name="doctor-source", daemon=True)
    worker.start()
    worker.join(timeout_s)
    stop.set()
    worker.join(5.0)
    frame = result.get("frame")
    if frame is not None:
        return Check("pipeline", "source", True, f"{desc}: read a {frame.shape[1]}x{frame.shape[0]} frame")
    why = result.get("error") or (reasons[-1] if reasons else "")
    if not why:
        why = (
            f"no frame within {timeout_s:.0f} s" if worker.is_alive() else "the source ended without a frame"
        )
    return Check("pipeline", "source", False, f"{desc}: {why}")


def run(args: argparse.Namespace) -> int:
    from app.config import load_config

    cfg = load_config(args.config)
    artifact = getattr(cfg.runtime, "artifact", None)  # the configured runtime runs the configured artifact
    runtimes = check_runtimes(cfg.model, cfg.models_dir, {cfg.runtime.type: artifact} if artifact else None)
    tpus = check_edgetpu(probe=not args.no_probe, runtime=cfg.runtime)
    checks = [*runtimes, *tpus, *check_cameras(), *check_meters(cfg.meter)]
    if cfg.mqtt.enabled:
        checks.append(check_broker(cfg.mqtt))
    pipeline = check_pipeline(cfg, probe=not args.no_probe, runtimes=runtimes)
    checks += pipeline
    can_run = all(c.ok for c in pipeline)
    if args.json:
        print(json.dumps({"can_run": can_run, "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        from app.inert import printable, rich_text

        t = Table(title="lookout doctor")
        for col in ("area", "name", "", "detail"):
            t.add_column(col)
        for c in checks:  # names and details come from the host, files and the network: data, not markup
            text, style = MARKS[c.ok]
            mark = rich_text(text, style=style)
            t.add_row(rich_text(c.area), rich_text(c.name), mark, rich_text(c.detail))
        Console().print(t)
        bad = next((c for c in pipeline if not c.ok), None)
        print(
            "the configured pipeline can run"
            if can_run
            else f"the configured pipeline cannot run: {printable(bad.detail if bad else '')}"
        )
    return 0 if can_run else 1
