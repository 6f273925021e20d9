"""What machine a benchmark ran on: CPU model, cores, OS, Python, runtime library versions.

Versions come from installed distribution metadata (importlib.metadata): nothing heavy is imported.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

#: distributions whose versions matter per runtime (first found wins for display, all are listed)
RUNTIME_DISTS: dict[str, tuple[str, ...]] = {
    "tflite": ("ai-edge-litert", "tflite-runtime", "tensorflow"),
    "edgetpu": ("ai-edge-litert", "tflite-runtime", "pycoral"),
    "executorch": ("executorch", "torch"),
    "torchscript-lite": ("torch",),
    "onnxruntime": ("onnxruntime",),
}
COMMON_DISTS = ("numpy", "opencv-python-headless")


def _cpuinfo(root: Path) -> dict[str, str] | None:
    """The first value of each /proc/cpuinfo field (lower-case keys); None when it cannot be read."""
    try:
        text = (root / "proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def arm_cpu_features(root: Path = Path("/")) -> set[str] | None:
    """The `Features` of an Arm CPU (e.g. asimddp, the ARMv8.2 dot product); None on other CPUs or when
    /proc/cpuinfo cannot be read."""
    fields = _cpuinfo(root)
    if not fields or "features" not in fields:
        return None
    return set(fields["features"].split())


def cpu_model(root: Path = Path("/")) -> str | None:
    """'model name' (x86), or the board 'Model' line (Raspberry Pi), from /proc/cpuinfo."""
    fields = _cpuinfo(root)
    if fields is None:
        return platform.processor() or None
    return (
        fields.get("model name")
        or fields.get("model")
        or fields.get("hardware")
        or platform.processor()
        or None
    )


def os_name(root: Path = Path("/")) -> str:
    try:
        for line in (root / "etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()


def dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def runtime_versions(runtimes: list[str]) -> dict[str, str | None]:
    """{distribution: version or None} for the runtimes' libraries and the common ones."""
    names: list[str] = []
    for r in runtimes:
        names += [d for d in RUNTIME_DISTS.get(r, ()) if d not in names]
    names += [d for d in COMMON_DISTS if d not in names]
    found = {n: dist_version(n) for n in names}
    # list alternatives only when installed, but always list the first choice of each runtime
    firsts = {RUNTIME_DISTS[r][0] for r in runtimes if r in RUNTIME_DISTS}
    return {n: v for n, v in found.items() if v is not None or n in firsts}


def host_info(runtimes: list[str], power_meter: str) -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "os": os_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "runtimes": runtime_versions(runtimes),
        "power_meter": power_meter,
    }
