"""`lookout doctor`: what on this machine can run, and why not. Exit 0 when the configured pipeline can run."""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.config import LookoutConfig, MqttConfig


@dataclass
class Check:
    area: str
    name: str
    ok: bool
    detail: str


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check runtimes, Edge TPUs, cameras, power meters and the broker")
    p.add_argument("--config", help="TOML config file")
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    p.add_argument(
        "--no-probe", action="store_true", help="do not probe the Edge TPU delegate in a subprocess"
    )
    p.set_defaults(func=run)


def check_runtimes() -> list[Check]:
    from app.runtimes.base import discover

    out = []
    for name, entry in sorted(discover().items()):
        if entry.cls is None:
            out.append(
                Check("runtime", name, False, f"plugin {entry.target} failed to import: {entry.error}")
            )
            continue
        ok, why = entry.cls.availability()
        out.append(Check("runtime", name, ok, why))
    return out


def check_edgetpu(probe: bool) -> list[Check]:
    from app.hostroots import HostRoots
    from app.runtimes import edgetpu

    tpu = edgetpu.EdgeTPURuntime(HostRoots.from_env())
    devices = edgetpu.enumerate_tpus(tpu.sysfs_root, tpu.dev_root)
    if devices:
        out = [Check("edgetpu", d.name, True, f"{d.path} ({d.state})") for d in devices]
    else:
        none = "no Edge TPU found (no USB 1a6e:089a / 18d1:9302, no /dev/apex_*)"
        out = [Check("edgetpu", "devices", False, none)]
    if probe:
        result = edgetpu.probe_delegate(edgetpu.EdgeTPUConfig().delegate_path, "")
        out.append(Check("edgetpu", "delegate", result.ok, result.reason))
    return out


def check_cameras() -> list[Check]:
    from importlib.util import find_spec

    videos = sorted(glob.glob("/dev/video*"))
    out = [
        Check("camera", "v4l2", bool(videos), ", ".join(videos) if videos else "no /dev/video* devices"),
        Check(
            "camera",
            "picamera2",
            find_spec("picamera2") is not None,
            "importable"
            if find_spec("picamera2")
            else "python3-picamera2 not installed (Raspberry Pi OS apt package)",
        ),
    ]
    return out


def check_meters() -> list[Check]:
    out = []
    names = []
    for name_file in sorted(Path("/sys/class/hwmon").glob("hwmon*/name")):
        try:
            names.append(f"{name_file.read_text().strip()} ({name_file.parent.name})")
        except OSError:
            continue
    inas = [n for n in names if n.startswith("ina")]
    out.append(
        Check("meter", "hwmon", bool(inas), ", ".join(inas) or "no ina2xx device under /sys/class/hwmon")
    )
    i2c = sorted(glob.glob("/dev/i2c-*"))
    out.append(Check("meter", "ina2xx_i2c", bool(i2c), ", ".join(i2c) or "no /dev/i2c-* bus"))
    vcgencmd = shutil.which("vcgencmd")
    out.append(
        Check("meter", "rpi_pmic", bool(vcgencmd), vcgencmd or "vcgencmd not found (not a Raspberry Pi)")
    )
    rapl = Path("/sys/class/powercap/intel-rapl:0/energy_uj")
    if not rapl.exists():
        out.append(Check("meter", "rapl", False, "no /sys/class/powercap/intel-rapl:0"))
    else:
        readable = os.access(rapl, os.R_OK)
        out.append(Check("meter", "rapl", readable, str(rapl) + ("" if readable else ": permission denied")))
    return out


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


def check_pipeline(cfg: LookoutConfig, probe: bool) -> list[Check]:
    """Can the configured model run on the configured runtime (or the substitute its plugin names) with
    the configured source? Asks the same hooks as selection (`plan_runtime`), so both agree."""
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
    from app.runtimes.base import get_runtime_class

    ok, why = get_runtime_class(plan.runtime).availability()
    if not ok:
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


def check_source(src: Any) -> Check:
    if src.type == "opencv":
        uri = str(src.uri)
        if uri == "demo" or "://" in uri or uri.isdigit():
            return Check("pipeline", "source", True, f"opencv {uri}")
        return Check(
            "pipeline",
            "source",
            Path(uri).exists(),
            f"opencv {uri}" + ("" if Path(uri).exists() else ": not found"),
        )
    if src.type == "images":
        return Check("pipeline", "source", src.folder.is_dir(), f"images {src.folder}")
    if src.type == "picamera2":
        from importlib.util import find_spec

        ok = find_spec("picamera2") is not None
        return Check(
            "pipeline", "source", ok, "picamera2" + ("" if ok else ": python3-picamera2 not installed")
        )
    return Check("pipeline", "source", True, src.type)


def run(args: argparse.Namespace) -> int:
    from app.config import load_config

    cfg = load_config(args.config)
    runtimes = check_runtimes()
    tpus = check_edgetpu(probe=not args.no_probe)
    checks = [*runtimes, *tpus, *check_cameras(), *check_meters()]
    if cfg.mqtt.enabled:
        checks.append(check_broker(cfg.mqtt))
    pipeline = check_pipeline(cfg, probe=not args.no_probe)
    checks += pipeline
    can_run = all(c.ok for c in pipeline)
    if args.json:
        print(json.dumps({"can_run": can_run, "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        t = Table(title="lookout doctor")
        for col in ("area", "name", "", "detail"):
            t.add_column(col)
        for c in checks:
            t.add_row(c.area, c.name, "[green]ok[/]" if c.ok else "[red]no[/]", c.detail)
        Console().print(t)
        bad = next((c for c in pipeline if not c.ok), None)
        print(
            "the configured pipeline can run"
            if can_run
            else f"the configured pipeline cannot run: {bad.detail if bad else ''}"
        )
    return 0 if can_run else 1
