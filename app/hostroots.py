"""Where this machine's hardware views live: `/` on a device, a fixture tree in tests and simulation.

Hardware adapters take their root as a parameter; the composition root builds one `HostRoots` from the
environment and hands it down. ``LOOKOUT_HOST_ROOT`` (documented in docs/architecture.md) points it at a
folder laid out like `/` (``sys/``, ``dev/``, ``proc/``) so a Raspberry Pi or a Coral can be exercised on
a machine that has neither. Nothing else reads the variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "LOOKOUT_HOST_ROOT"


@dataclass(frozen=True, slots=True)
class HostRoots:
    """The root folder that stands for `/` when reading sysfs, /dev and /proc."""

    base: Path = Path("/")

    @classmethod
    def from_env(cls) -> HostRoots:
        value = os.environ.get(ENV_VAR)
        return cls(Path(value)) if value else cls()

    def path(self, host_path: Path | str) -> Path:
        """An absolute host path (e.g. a configured ``/sys/class/hwmon``) under this root; relative paths
        are left as given."""
        p = Path(host_path)
        if not p.is_absolute() or self.base == Path("/"):
            return p
        return self.base / p.relative_to("/")

    @property
    def sys(self) -> Path:
        return self.base / "sys"

    @property
    def dev(self) -> Path:
        return self.base / "dev"

    @property
    def proc(self) -> Path:
        return self.base / "proc"
