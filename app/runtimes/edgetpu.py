"""Coral Edge TPU: LiteRT plus the libedgetpu delegate, running a compiled ``*_edgetpu.tflite``.

Before the delegate is loaded in this process, ``check`` enumerates present TPUs from sysfs and /dev
(no pyusb) and probes the delegate in a short-lived child process (``edgetpu_probe``) with a timeout:
libedgetpu is built against one TensorFlow Lite version and may segfault with another, and USB Corals
disappear. A failed check raises RuntimeUnavailable with a one-line reason; ``substitute`` names the
CPU fallback when ``fallback = "cpu"``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator

from app.errors import RuntimeUnavailable
from app.hostroots import HostRoots
from app.runtimes.base import RuntimeConfig, Substitute, TensorSpec, switch_runtime
from app.runtimes.filecheck import check_tflite
from app.runtimes.litert import LiteRTBase, LiteRTConfig, LiteRTModule, LiteRTOptions, LiteRTRuntime

if TYPE_CHECKING:
    from app.zoo import Manifest

USB_SYSFS = Path("/sys/bus/usb/devices")
DEV_ROOT = Path("/dev")
#: The manifest artifact a model runs on the CPU when the TPU cannot be used.
CPU_ARTIFACT = "tflite"
#: (idVendor, idProduct) -> state. Global Unichip 1a6e:089a until libedgetpu uploads the firmware,
#: then the device re-enumerates as Google 18d1:9302.
USB_IDS = {("1a6e", "089a"): "needs-firmware", ("18d1", "9302"): "ready"}
DEVICE_RE = re.compile(r"^(?:(usb|pci)(?::(\d+))?)?$")
APEX_RE = re.compile(r"^apex_(\d+)$")


@dataclass(frozen=True, slots=True)
class TpuDevice:
    """One Edge TPU seen by the OS. index counts devices of the same kind in sysfs/dev order."""

    kind: Literal["usb", "pci"]
    index: int
    path: str
    state: str

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.index}"


def parse_device(device: str) -> tuple[str | None, int | None]:
    """'usb' -> ('usb', None), 'pci:1' -> ('pci', 1), '' -> (None, None); ValueError otherwise."""
    m = DEVICE_RE.match(device)
    if not m:
        raise ValueError(f"Edge TPU device {device!r} is not one of usb, usb:N, pci, pci:N or '' (any)")
    return m.group(1), (int(m.group(2)) if m.group(2) is not None else None)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip().lower()
    except OSError:
        return ""


def enumerate_tpus(sysfs_root: Path = USB_SYSFS, dev_root: Path = DEV_ROOT) -> list[TpuDevice]:
    """USB TPUs from <sysfs_root>/*/idVendor,idProduct and PCIe TPUs from <dev_root>/apex_N."""
    found: list[TpuDevice] = []
    usb = 0
    for vendor_file in sorted(Path(sysfs_root).glob("*/idVendor")):
        state = USB_IDS.get((_read(vendor_file), _read(vendor_file.with_name("idProduct"))))
        if state:
            found.append(TpuDevice("usb", usb, str(vendor_file.parent), state))
            usb += 1
    apex = []
    for node in Path(dev_root).glob("apex_*"):
        m = APEX_RE.match(node.name)
        if m:
            apex.append((int(m.group(1)), node))
    for n, node in sorted(apex):
        found.append(TpuDevice("pci", n, str(node), "ready"))
    return found


def matching(devices: list[TpuDevice], device: str) -> list[TpuDevice]:
    """The devices a device string selects."""
    kind, index = parse_device(device)
    picked = [d for d in devices if kind is None or d.kind == kind]
    if index is not None:
        same_kind = [d for d in picked if d.kind == kind]
        picked = [same_kind[index]] if index < len(same_kind) else []
    return picked


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    kind: str  # ok | library | symbol | delegate | model | litert | signal | timeout | error
    reason: str


def _repo_pythonpath() -> str:
    root = str(Path(__file__).resolve().parents[2])
    old = os.environ.get("PYTHONPATH", "")
    return root + (os.pathsep + old if old else "")


def probe_delegate(
    delegate_path: str, device: str = "", model: Path | None = None, timeout_s: float = 15.0
) -> ProbeResult:
    """Load the delegate (and run `model` with it) in a child process; classify the outcome."""
    lib = delegate_path
    cmd = [sys.executable, "-m", "app.runtimes.edgetpu_probe", "--delegate", lib, "--device", device]
    if model is not None:
        cmd += ["--model", str(model)]
    env = dict(os.environ, PYTHONPATH=_repo_pythonpath())
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s, env=env, errors="replace"
        )
    except subprocess.TimeoutExpired:
        return ProbeResult(
            False,
            "timeout",
            f"Edge TPU delegate {lib} probe timed out after {timeout_s:g} s (device not responding?)",
        )
    if proc.returncode < 0:
        try:
            sig = signal.Signals(-proc.returncode).name
        except ValueError:
            sig = f"signal {-proc.returncode}"
        return ProbeResult(
            False,
            "signal",
            f"Edge TPU delegate {lib} crashed the probe with {sig} (signal {-proc.returncode}); "
            "likely a libedgetpu built for another TensorFlow Lite version",
        )
    result = None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                result = json.loads(line)
                break
            except ValueError:
                continue
    if result is None:
        tail = next((ln for ln in reversed(proc.stderr.splitlines()) if ln.strip()), "no output")
        return ProbeResult(
            False, "error", f"Edge TPU probe of {lib} exited with code {proc.returncode}: {tail.strip()}"
        )
    return _classify(lib, device, model, result)


def _classify(lib: str, device: str, model: Path | None, r: dict[str, Any]) -> ProbeResult:
    kind, err = str(r.get("kind", "error")), str(r.get("error", "")).strip().splitlines()
    msg = err[0] if err else ""
    msg = msg.removeprefix(f"{lib}: ")  # dlerror repeats the library path
    if r.get("ok"):
        return ProbeResult(True, "ok", "ok")
    if kind == "library":
        if "No such file" in msg or "cannot open shared object" in msg:
            why = f"Edge TPU delegate {lib} not found (install libedgetpu1-std from Coral's apt repository)"
        else:
            why = f"Edge TPU delegate {lib} cannot be loaded: {msg}"
    elif kind == "symbol":
        why = f"{lib} is not a TFLite delegate plugin (libedgetpu expected): {msg}"
    elif kind == "delegate":
        why = f"Edge TPU delegate {lib} found no Edge TPU for device {device or 'any'!r}: {msg}"
    elif kind == "model":
        why = f"Edge TPU delegate {lib} could not run {model}: {msg}"
    elif kind == "litert":
        why = msg
    else:
        why = f"Edge TPU probe of {lib} failed: {msg}"
    return ProbeResult(False, kind, why)


class EdgeTPUConfig(LiteRTOptions):
    type: Literal["edgetpu"] = "edgetpu"
    device: str = Field(
        default="", description="Edge TPU: usb, usb:N, pci, pci:N, or '' for the first one found"
    )
    delegate_path: str = Field(
        default="libedgetpu.so.1", description="libedgetpu shared library (name or path)"
    )
    fallback: Literal["cpu", "fail"] = Field(
        default="cpu",
        description="when the TPU cannot be used: run the model's CPU artifact on tflite, or fail",
    )
    probe_timeout_s: float = Field(default=15.0, gt=0, le=300, description="time limit of the delegate probe")

    @field_validator("device")
    @classmethod
    def _valid_device(cls, v: str) -> str:
        parse_device(v)
        return v


class EdgeTPURuntime(LiteRTBase[EdgeTPUConfig]):
    """LiteRT with the libedgetpu delegate; threads serve the ops left on the CPU.

    Cannot run here (no TPU, no libedgetpu, no compiled artifact): with ``fallback = "cpu"`` the model's
    CPU artifact runs on LiteRT instead (``substitute``).
    """

    name: ClassVar[str] = "edgetpu"
    config_model: ClassVar[type[RuntimeConfig]] = EdgeTPUConfig
    default_artifact: ClassVar[str] = "edgetpu"
    delegates_custom_ops: ClassVar[bool] = True

    def __init__(self, roots: HostRoots | None = None) -> None:
        super().__init__(roots)
        self.sysfs_root = self.roots.sys / USB_SYSFS.relative_to("/sys")
        self.dev_root = self.roots.dev
        self.devices: list[TpuDevice] = []

    def probe(self, options: EdgeTPUConfig, model: Path | None = None) -> ProbeResult:
        """The configured delegate loaded (and `model` run) in a probe child: what `check` decides on,
        and what doctor's delegate row shows."""
        return probe_delegate(options.delegate_path, options.device, model, options.probe_timeout_s)

    def check(self, options: EdgeTPUConfig, model: Path | None = None) -> str | None:
        """None when the delegate loads (and runs `model`) in a probe child, else the one-line reason."""
        self.devices = enumerate_tpus(self.sysfs_root, self.dev_root)
        chosen = matching(self.devices, options.device)
        probe = self.probe(options, model)
        if probe.ok:
            return None
        if chosen:
            return f"{probe.reason} (present: {', '.join(f'{d.name} {d.state}' for d in chosen)})"
        return f"{probe.reason}; {self.no_device_reason(options.device)}"

    def no_device_reason(self, device: str) -> str:
        want = device or "any"
        seen = ", ".join(d.name for d in self.devices) or "none"
        return (
            f"no Edge TPU device {want!r} present (USB 1a6e:089a/18d1:9302 under {self.sysfs_root}, "
            f"{self.dev_root}/apex_N; found: {seen})"
        )

    def unusable_reason(
        self, options: EdgeTPUConfig, manifest: Manifest, *, probe: bool = True
    ) -> str | None:
        """A TPU the device string selects, a delegate that loads (probed in a child), a compiled artifact."""
        reasons = []
        lib = super().unusable_reason(options, manifest, probe=probe)
        if lib:
            reasons.append(lib)
        elif probe:
            reasons.append(self.check(options))
        else:
            self.devices = enumerate_tpus(self.sysfs_root, self.dev_root)
            if not matching(self.devices, options.device):
                reasons.append(self.no_device_reason(options.device))
        key = options.artifact or self.default_artifact
        if key not in manifest.artifacts:
            reasons.append(
                f"model {manifest.name!r} has no compiled Edge TPU artifact {key!r} "
                "(compile the tflite-int8 artifact with edgetpu_compiler, then `lookout models import`)"
            )
        return "; ".join(r for r in reasons if r) or None

    def substitute(self, options: EdgeTPUConfig, manifest: Manifest, reason: str) -> Substitute | None:
        """The model's CPU artifact on LiteRT (same threads), unless the config says fallback = "fail"."""
        if options.fallback != "cpu":
            raise RuntimeUnavailable(f"Edge TPU unavailable (fallback = 'fail'): {reason}")
        cpu = LiteRTConfig.model_validate(switch_runtime(LiteRTRuntime.name, options))
        return Substitute(LiteRTRuntime.name, cpu, CPU_ARTIFACT)

    def _delegates_for(self, lite: LiteRTModule, options: EdgeTPUConfig) -> list[Any]:
        opts = {"device": options.device} if options.device else {}
        try:
            return [lite.load_delegate(options.delegate_path, opts)]
        except Exception as exc:
            raise RuntimeUnavailable(
                f"Edge TPU delegate {options.delegate_path} failed to load: {exc}"
            ) from None

    def load(self, artifact: Path, options: EdgeTPUConfig) -> TensorSpec:
        check_tflite(Path(artifact))
        reason = self.check(options, Path(artifact))
        if reason:
            raise RuntimeUnavailable(reason)
        return super().load(artifact, options)
