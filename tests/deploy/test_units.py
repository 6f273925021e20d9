"""systemd/*.service: `systemd-analyze verify` is silent and lookout.service scores <= 2.0."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

UNITS = ("lookout.service", "lookout-fleet.service")
EXEC = "opt/lookout/venv/bin/lookout"


@pytest.fixture
def verify(tool, systemd_root):
    def run(root: Path, unit_text: dict[str, str]) -> subprocess.CompletedProcess:
        """verify units placed in ROOT/etc/systemd/system (verify --root reads them from there)."""
        return _verify(tool("systemd-analyze", "systemd"), systemd_root, root, unit_text)

    return run


def _verify(analyze: str, systemd_root, root: Path, unit_text: dict[str, str]) -> subprocess.CompletedProcess:
    systemd_root(root)
    unit_dir = root / "etc/systemd/system"
    unit_dir.mkdir(parents=True, exist_ok=True)
    for name, text in unit_text.items():
        (unit_dir / name).write_text(text)
    cmd = [analyze, "verify", f"--root={root}", "--man=no", "--generators=no"]
    cmd += [str(unit_dir / name) for name in unit_text]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def staged(tmp_path: Path) -> Path:
    """A root where ExecStart's /opt/lookout/venv/bin/lookout exists (as install.sh + pip make it)."""
    exe = tmp_path / EXEC
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    return tmp_path


def test_units_verify_cleanly(verify, staged: Path, repo: Path) -> None:
    result = verify(staged, {u: (repo / "systemd" / u).read_text() for u in UNITS})
    assert result.stderr == ""
    assert result.returncode == 0


def test_verify_check_catches_typos_and_missing_binary(verify, staged: Path, repo: Path) -> None:
    """Control: the check above can fail. verify exits 0 on an unknown key, so stderr is what counts."""
    text = (repo / "systemd/lookout.service").read_text()
    typo = verify(staged, {"lookout.service": text.replace("WatchdogSec=", "WatchdogSecs=")})
    assert "Unknown key" in typo.stderr and "WatchdogSecs" in typo.stderr
    (staged / EXEC).unlink()
    missing = verify(staged, {"lookout.service": text})
    assert "/opt/lookout/venv/bin/lookout" in missing.stderr


@pytest.fixture
def exposure(tool):
    return lambda unit: _exposure(tool("systemd-analyze", "systemd"), unit)


def _exposure(analyze: str, unit: Path) -> float:
    result = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert match, f"no exposure line in systemd-analyze output: {result.stdout[-500:]} {result.stderr}"
    return float(match.group(1))


def test_lookout_service_exposure_at_most_2(exposure, repo: Path) -> None:
    score = exposure(repo / "systemd/lookout.service")
    print(f"lookout.service exposure {score}")
    assert score <= 2.0


def test_exposure_parser_sees_an_unhardened_unit(exposure, tmp_path: Path) -> None:
    """Control: a bare unit scores far above 2.0, so the threshold test measures something."""
    bare = tmp_path / "bare.service"
    bare.write_text("[Service]\nExecStart=/bin/true\n")
    assert exposure(bare) > 5.0


def test_service_contract(repo: Path) -> None:
    """What app/service.py relies on: notify type, main-PID notifications, a watchdog, the config path."""
    text = (repo / "systemd/lookout.service").read_text()
    settings = dict(
        line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#")
    )
    assert settings["Type"] == "notify"
    assert settings["NotifyAccess"] == "main"
    assert settings["ExecStart"] == "/opt/lookout/venv/bin/lookout run --config /etc/lookout/config.toml"
    assert int(settings["WatchdogSec"]) >= 10
    assert settings["Restart"] == "on-failure"
    assert settings["StateDirectory"] == "lookout"


def _documented_dropin(repo: Path) -> str:
    """The lookout-fleet drop-in docs/deploy.md tells a monitor owner to write."""
    doc = (repo / "docs/deploy.md").read_text()
    block = re.search(
        r"```ini\n# /etc/systemd/system/lookout-fleet\.service\.d/lan\.conf\n(.*?)```", doc, re.S
    )
    assert block, "the drop-in is gone from docs/deploy.md"
    return block.group(1)


def test_documented_fleet_dropin_verifies_and_keeps_secrets_out_of_argv(
    verify, staged: Path, repo: Path
) -> None:
    """Specifiers and credentials go in ExecStart= (systemd expands them there, not in an EnvironmentFile);
    the broker password never sits in a URL."""
    dropin = _documented_dropin(repo)
    assert "%d/token" in dropin.split("ExecStart=\nExecStart=")[1]
    (staged / "etc/systemd/system/lookout-fleet.service.d").mkdir(parents=True)
    (staged / "etc/systemd/system/lookout-fleet.service.d/lan.conf").write_text(dropin)
    result = verify(staged, {"lookout-fleet.service": (repo / "systemd/lookout-fleet.service").read_text()})
    assert result.stderr == "" and result.returncode == 0
    # control: verify reads the drop-in (a typo there is reported)
    (staged / "etc/systemd/system/lookout-fleet.service.d/lan.conf").write_text(
        dropin + "LoadCredentials=x\n"
    )
    bad = verify(staged, {"lookout-fleet.service": (repo / "systemd/lookout-fleet.service").read_text()})
    assert "LoadCredentials" in bad.stderr
    # what the unit and the docs put in fleet.env: no specifier, no credentials directory, no user:pass@
    unit = (repo / "systemd/lookout-fleet.service").read_text()
    doc = (repo / "docs/deploy.md").read_text()
    env_lines = re.findall(r"#\s+(LOOKOUT_\w+=.*)", unit) + re.findall(r"'(LOOKOUT_\w+=[^']*)'", doc)
    assert len(env_lines) >= 4, env_lines
    for line in env_lines:
        assert "%" not in line and "$" not in line, line
        assert not re.search(r"://[^/@\s]+:[^/@\s]*@", line), line
