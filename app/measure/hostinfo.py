"""What machine a benchmark ran on: CPU model, cores, OS, Python, runtime library versions.

Versions come from installed distribution metadata (importlib.metadata): nothing heavy is imported.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import psutil

COMMON_MODULES = ("numpy", "cv2")  # every runtime's run also depends on these


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


def runtime_versions(runtimes: list[str]) -> dict[str, str]:
    """{distribution: version} of the libraries the runtimes need (each plugin's `requires` modules, the
    rule doctor and the run report use too) and the common ones; libraries not installed are left out."""
    from app.errors import LookoutError
    from app.runtimes.base import get_runtime_class
    from app.runtimes.probe import versions

    modules: list[str] = []
    for name in runtimes:
        try:
            modules += get_runtime_class(name).requires
        except LookoutError:  # an unknown runtime: the bench reports it as an error result
            continue
    return versions([*modules, *COMMON_MODULES])


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
