"""The emulated Pi as scripts/arm64_check.py uses it: commands in the root (scripts/arm64_pi.sh enter),
as root or as lookout.service would run them (its user, groups, environment, directories, umask)."""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arm64_steps import Failure, Runner

PI = Path(__file__).resolve().parent / "arm64_pi.sh"


@dataclass
class Unit:
    """What lookout.service gives its process, read from the installed unit file."""

    user: str
    exec_start: list[str]
    env: dict[str, str]
    umask: str
    dirs: dict[str, tuple[str, str]]  # env var -> (path, mode)

    @classmethod
    def read(cls, path: Path) -> Unit:
        keys: dict[str, list[str]] = {}
        for line in path.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
                k, v = line.split("=", 1)
                keys.setdefault(k.strip(), []).append(v.strip())
        env: dict[str, str] = {}
        for value in keys.get("Environment", []):
            for word in shlex.split(value):
                k, v = word.split("=", 1)
                env[k] = v
        dirs = {}
        for kind, var, base in (
            ("StateDirectory", "STATE_DIRECTORY", "/var/lib"),
            ("CacheDirectory", "CACHE_DIRECTORY", "/var/cache"),
            ("ConfigurationDirectory", "CONFIGURATION_DIRECTORY", "/etc"),
        ):
            if kind in keys:
                dirs[var] = (f"{base}/{keys[kind][-1]}", keys.get(f"{kind}Mode", ["0755"])[-1])
        return cls(
            user=keys["User"][-1],
            exec_start=shlex.split(keys["ExecStart"][-1]),
            env=env,
            umask=keys.get("UMask", ["0022"])[-1],
            dirs=dirs,
        )


def passwd_ids(root: Path, user: str) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        f = line.split(":")
        if f[0] == user:
            return int(f[2]), int(f[3])
    raise Failure(f"install.sh did not create the user {user!r}")


class Pi:
    """A fresh arm64 root in a work folder, entered through scripts/arm64_pi.sh."""

    def __init__(self, runner: Runner, work: Path) -> None:
        self.runner = runner
        self.root = work / "root"

    def enter(
        self, name: str, cmd: list[str], timeout: float, cpu: str = "cortex-a72", user: str | None = None,
        env: dict[str, str] | None = None, umask: str | None = None, check: bool = True,
    ) -> subprocess.CompletedProcess:  # fmt: skip
        argv = ["bash", str(PI), "enter", "--cpu", cpu]
        if user:
            argv += ["--user", user]
        if umask:
            argv += ["--umask", umask]
        for k, v in (env or {}).items():
            argv += ["--env", f"{k}={v}"]
        return self.runner.run(name, [*argv, str(self.root), "--", *cmd], timeout, check=check)

    def as_service(self, unit: Unit, name: str, args: list[str], timeout: float, cpu: str) -> Any:
        """The unit's ExecStart program with `args`, as its user, with its environment."""
        env = {**unit.env, **{var: path for var, (path, _) in unit.dirs.items()}}
        return self.enter(
            name, [unit.exec_start[0], *args], timeout, cpu=cpu, user=unit.user, env=env, umask=unit.umask
        )

    def service_dirs(self, unit: Unit) -> None:
        """What systemd does before ExecStart: StateDirectory=, CacheDirectory= owned by the user."""
        uid, gid = passwd_ids(self.root, unit.user)
        for var, (path, mode) in unit.dirs.items():
            d = self.root / path.lstrip("/")
            d.mkdir(parents=True, exist_ok=True)
            if var != "CONFIGURATION_DIRECTORY":  # /etc/lookout stays root-owned
                os.chown(d, uid, gid)
                d.chmod(int(mode, 8))
