"""Helpers for the deployment tests: Debian tools, a staged systemd root."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def need(tool: str, package: str) -> str:
    """Path of a Debian tool the tests need; a clear failure when it is missing."""
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if not path:
        pytest.fail(f"{tool} is not installed: `make test` installs it (apt-get install {package})")
    return path


def stage_systemd_root(root: Path) -> None:
    """Give a staged root the host's unit library, so `systemd-analyze verify --root` resolves
    sysinit.target, network-online.target & co. (unit files only; nothing runs)."""
    host_units = next(p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir())
    dest = root / "usr/lib/systemd/system"
    if not dest.exists():
        shutil.copytree(host_units, dest, symlinks=True)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tool():
    """tool(name, debian_package) -> path, failing clearly when the package is missing."""
    return need


@pytest.fixture(scope="session")
def systemd_root():
    """systemd_root(root): copy the host's unit library into a staged root for verify --root."""
    return stage_systemd_root
