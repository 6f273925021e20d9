"""device/install.sh --root: files, owners, modes; idempotent; --uninstall keeps config and state."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest

BOOT_CONFIG = "arm_64bit=1\n[pi4]\nmax_framebuffers=2\n"


def run_install(repo: Path, root: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["bash", str(repo / "device/install.sh"), "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    return result


def manifest(root: Path) -> dict[str, tuple]:
    """path -> (kind, mode, uid, gid, sha256 or link target) for everything under root."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                what = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                what = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                what = ""
            out[str(p.relative_to(root))] = (
                stat.S_IFMT(st.st_mode),
                stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
                what,
            )
    return out


def ids(root: Path, db: str, name: str) -> int:
    for line in (root / "etc" / db).read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2])
    raise AssertionError(f"{name} not in {db}")


@pytest.fixture
def root(tmp_path: Path, tool) -> Path:
    tool("systemd-sysusers", "systemd")
    r = tmp_path / "root"
    (r / "boot/firmware").mkdir(parents=True)
    (r / "boot/firmware/config.txt").write_text(BOOT_CONFIG)
    return r


def test_install_files_owners_modes(repo: Path, root: Path) -> None:
    run_install(repo, root)
    uid, gid = ids(root, "passwd", "lookout"), ids(root, "group", "lookout")
    assert uid > 0 and gid > 0
    members = {
        line.split(":")[0]: line.split(":")[3] for line in (root / "etc/group").read_text().splitlines()
    }
    for group in ("video", "plugdev", "i2c"):
        assert "lookout" in members[group].split(",")

    def check(rel: str, mode: int, owner: tuple[int, int] = (0, 0), same_as: str | None = None) -> None:
        st = (root / rel).stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (mode, *owner), rel
        if same_as:
            assert (root / rel).read_bytes() == (repo / same_as).read_bytes(), rel

    check("etc/lookout/config.toml", 0o640, (0, gid), "device/config.example.toml")
    check("etc/lookout", 0o755)
    check("etc/systemd/system/lookout.service", 0o644, same_as="systemd/lookout.service")
    check("etc/systemd/system/lookout-fleet.service", 0o644, same_as="systemd/lookout-fleet.service")
    check("etc/udev/rules.d/99-lookout-coral.rules", 0o644, same_as="device/99-lookout-coral.rules")
    check("etc/udev/rules.d/99-lookout-rpi.rules", 0o644, same_as="device/rpi/99-lookout-rpi.rules")
    check("etc/sysusers.d/lookout.conf", 0o644, same_as="device/lookout.sysusers")
    check("opt/lookout", 0o755)
    for model_file in (repo / "models").rglob("*"):
        if model_file.is_file() and "__pycache__" not in model_file.parts:
            rel = model_file.relative_to(repo)
            check(f"opt/lookout/{rel}", 0o644, same_as=str(rel))
    wants = root / "etc/systemd/system/multi-user.target.wants/lookout.service"
    assert os.readlink(wants) == "/etc/systemd/system/lookout.service"
    assert not (root / "etc/systemd/system/lookout.service.d").exists()
    assert not (root / "opt/lookout/venv").exists()  # built on the device, never staged
    # on PATH once the device builds the venv (`lookout`, `sudo lookout`): a link inside the root
    assert os.readlink(root / "usr/local/bin/lookout") == "/opt/lookout/venv/bin/lookout"
    assert not (root / "var/lib/lookout").exists()  # StateDirectory= creates it with the right owner
    boot = (root / "boot/firmware/config.txt").read_text()
    assert boot.startswith(BOOT_CONFIG)
    assert boot.count("# >>> lookout") == 1 and "dtparam=i2c_arm=on" in boot


def test_second_run_changes_nothing(repo: Path, root: Path) -> None:
    run_install(repo, root)
    first = manifest(root)
    run_install(repo, root)
    assert manifest(root) == first


def test_existing_config_is_kept(repo: Path, root: Path, tmp_path: Path) -> None:
    (root / "etc/lookout").mkdir(parents=True)
    mine = 'device_id = "pi-7"\n[mqtt]\nurl = "mqtt://10.1.2.3:1883"\n'
    (root / "etc/lookout/config.toml").write_text(mine)
    other = tmp_path / "other.toml"
    other.write_text('device_id = "not-me"\n')
    out = run_install(repo, root, "--config", str(other))
    assert (root / "etc/lookout/config.toml").read_text() == mine
    assert "kept the existing /etc/lookout/config.toml" in out.stdout


def test_given_config_is_used_for_a_new_install(repo: Path, root: Path, tmp_path: Path) -> None:
    given = tmp_path / "given.toml"
    given.write_text('device_id = "pi-8"\n')
    run_install(repo, root, "--config", str(given))
    assert (root / "etc/lookout/config.toml").read_text() == 'device_id = "pi-8"\n'


def test_torch_dropin_follows_the_flag(repo: Path, root: Path) -> None:
    run_install(repo, root, "--torch")
    dropin = root / "etc/systemd/system/lookout.service.d/50-torch-jit.conf"
    assert "MemoryDenyWriteExecute=no" in dropin.read_text()
    run_install(repo, root)
    assert not dropin.exists()
    assert not dropin.parent.exists()


def test_monitor_role_enables_the_fleet_unit_only(repo: Path, root: Path) -> None:
    run_install(repo, root, "--role", "monitor")
    wants = root / "etc/systemd/system/multi-user.target.wants"
    assert sorted(p.name for p in wants.iterdir()) == ["lookout-fleet.service"]
    assert not (root / "etc/udev/rules.d/99-lookout-coral.rules").exists()


def test_a_lookout_on_path_from_elsewhere_is_kept(repo: Path, root: Path) -> None:
    other = root / "usr/local/bin/lookout"
    other.parent.mkdir(parents=True)
    other.write_text("#!/bin/sh\n")
    out = run_install(repo, root)
    assert "kept /usr/local/bin/lookout" in out.stdout and other.read_text() == "#!/bin/sh\n"
    run_install(repo, root, "--uninstall")
    assert other.read_text() == "#!/bin/sh\n"


def test_uninstall_leaves_only_config_state_and_user(repo: Path, root: Path) -> None:
    run_install(repo, root)
    state = root / "var/lib/lookout/spool.sqlite"
    state.parent.mkdir(parents=True)
    state.write_bytes(b"spool")
    config = (root / "etc/lookout/config.toml").read_bytes()
    run_install(repo, root, "--uninstall")
    files = {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()}
    user_db = {"etc/passwd", "etc/group", "etc/shadow", "etc/gshadow", "etc/.pwd.lock"}
    assert files - user_db == {
        "etc/lookout/config.toml",
        "var/lib/lookout/spool.sqlite",
        "boot/firmware/config.txt",
    }
    assert (root / "etc/lookout/config.toml").read_bytes() == config
    assert state.read_bytes() == b"spool"
    assert (root / "boot/firmware/config.txt").read_text() == BOOT_CONFIG
    assert not (root / "opt/lookout").exists()


def test_installed_units_verify_in_the_staged_root(repo: Path, root: Path, tool, systemd_root) -> None:
    """The staged root plus the venv a device build would add is a system systemd accepts."""
    run_install(repo, root)
    exe = root / "opt/lookout/venv/bin/lookout"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    systemd_root(root)
    units = [str(root / "etc/systemd/system" / u) for u in ("lookout.service", "lookout-fleet.service")]
    result = subprocess.run(
        [
            tool("systemd-analyze", "systemd"),
            "verify",
            f"--root={root}",
            "--man=no",
            "--generators=no",
            *units,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stderr == ""


def test_scripts_are_shellcheck_clean(repo: Path, tool) -> None:
    scripts = [
        repo / "device/install.sh",
        repo / "device/flash.sh",
        *sorted((repo / "device/firstboot").glob("*.sh")),
        *sorted((repo / "scripts").glob("arm64*.sh")),
    ]
    result = subprocess.run(
        [tool("shellcheck", "shellcheck"), *map(str, scripts)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout


def test_config_template_is_a_valid_lookout_config(repo: Path) -> None:
    from app.config import load_config
    from app.errors import ConfigError

    try:
        cfg = load_config(repo / "device/config.example.toml")
    except ConfigError as exc:
        if "no runtime plugins" in str(exc):
            pytest.skip(f"runtime plugins not registered yet: {exc}")
        raise
    assert cfg.runtime.type == "tflite"
    assert cfg.source.type == "picamera2"
