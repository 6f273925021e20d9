"""device/install.sh on the host itself (no --root) where systemd is not running as PID 1.

Each case runs the real install.sh with real bash as root inside a chroot: a staged root holding this
machine's /usr read-only, a copy of the account files from /etc, and its own /run, all in a private
mount namespace (nothing mounted here outlives the test). Only apt is a recording stand-in (tests
reach no archive); `systemctl` and `udevadm` are stand-ins only in the case that fakes a booted system.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ETC_FILES = ("passwd", "group", "shadow", "gshadow", "login.defs", "nsswitch.conf", "ld.so.cache")
ETC_DIRS = ("alternatives", "default", "skel", "ld.so.conf.d")
SYSTEMD_TOOLS = ("usr/bin/systemctl", "usr/bin/systemd-sysusers", "usr/bin/udevadm")
WANTS = "etc/systemd/system/multi-user.target.wants/lookout.service"
# Records its arguments: apt-get/apt-cache (no archive in tests), and systemctl/udevadm when booted.
RECORDER = '#!/bin/sh\necho "$(basename "$0") $*" >>/shim.log\n'
APT_CACHE = '#!/bin/sh\necho "apt-cache $*" >>/shim.log\nexit 100\n'  # python3-picamera2: not in Debian
# `python3 -m venv --system-site-packages DIR` making a venv whose pip and lookout record their arguments
# (tests reach no package index); install.sh itself runs as on a device.
VENV_PYTHON = """#!/bin/sh
echo "python3 $*" >>/shim.log
for d; do :; done
mkdir -p "$d/bin"
for exe in python pip lookout; do
  printf '#!/bin/sh\\necho "%s $*" >>/shim.log\\n' "$exe" >"$d/bin/$exe"
  chmod 755 "$d/bin/$exe"
done
"""


@pytest.fixture
def host_root(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("needs root: install.sh runs in a chroot with a private mount namespace")
    for tool in ("unshare", "chroot", "systemd-sysusers", "useradd"):
        if not (shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")):
            pytest.fail(f"{tool} is not installed: `make test` installs it (systemd, passwd, util-linux)")
    root = tmp_path / "host"
    for d in ("usr", "etc", "proc", "dev", "run", "tmp", "var/log", "src", "shim", "boot/firmware"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    for link in ("bin", "lib", "lib64", "sbin"):
        if Path("/", link).is_symlink():
            (root / link).symlink_to(os.readlink(Path("/", link)))
    for name in ETC_FILES:
        if Path("/etc", name).exists():
            shutil.copy2(Path("/etc", name), root / "etc" / name)
    for name in ETC_DIRS:
        if Path("/etc", name).is_dir():
            shutil.copytree(Path("/etc", name), root / "etc" / name, symlinks=True)
    (root / "boot/firmware/config.txt").write_text("arm_64bit=1\n")
    for name, text in (("apt-get", RECORDER), ("apt-cache", APT_CACHE), ("python3", VENV_PYTHON)):
        (root / "shim" / name).write_text(text)
        (root / "shim" / name).chmod(0o755)
    return root


def install(
    repo: Path, root: Path, *args: str, booted: bool = False, systemd: bool = True, venv: bool = False
):
    """Run install.sh in the chroot (--no-venv unless venv: then the venv stand-in); returns
    (CompletedProcess, the stand-ins' call log)."""
    if booted:
        (root / "run/systemd/system").mkdir(parents=True, exist_ok=True)
        for name in ("systemctl", "udevadm"):
            (root / "shim" / name).write_text(RECORDER)
            (root / "shim" / name).chmod(0o755)
    if systemd:
        usr = 'mount --bind -o ro /usr "$R/usr"'
    else:  # /usr as an overlay whose upper layer has whiteouts (0:0 char devices) for systemd's tools
        for d in ("usr-upper/bin", "usr-work"):
            (root.parent / d).mkdir(parents=True, exist_ok=True)
        for t in SYSTEMD_TOOLS:
            whiteout = root.parent / "usr-upper" / Path(t).relative_to("usr")
            if not whiteout.exists():
                os.mknod(whiteout, 0o600 | stat.S_IFCHR, os.makedev(0, 0))
        usr = (
            f"mount -t overlay overlay -o lowerdir=/usr,upperdir={root.parent}/usr-upper,"
            f'workdir={root.parent}/usr-work "$R/usr"'
        )
    script = f"""set -eu
R={root}
{usr}
mkdir -p {root.parent}/usr-local/bin
mount --bind {root.parent}/usr-local "$R/usr/local"
mount --bind /dev "$R/dev"
mount -t proc proc "$R/proc"
mount --bind -o ro {repo} "$R/src"
exec env -i PATH=/shim:/usr/sbin:/usr/bin HOME=/root LANG=C.UTF-8 \\
  chroot "$R" /bin/bash /src/device/install.sh {"--python /shim/python3" if venv else "--no-venv"} {" ".join(args)}
"""
    (root / "shim.log").unlink(missing_ok=True)
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
    )
    log = (root / "shim.log").read_text().splitlines() if (root / "shim.log").exists() else []
    return result, log


def systemctl_root(root: Path, *args: str) -> str:
    """The real systemctl, offline on the root: what systemd itself will see at boot."""
    r = subprocess.run(["systemctl", f"--root={root}", *args], capture_output=True, text=True, timeout=60)
    return r.stdout.strip()


def user_groups(root: Path, user: str) -> set[str]:
    groups = set()
    for line in (root / "etc/group").read_text().splitlines():
        name, _, _, members = line.split(":")
        if user in members.split(","):
            groups.add(name)
    return groups


def test_systemd_installed_not_running(repo: Path, host_root: Path) -> None:
    result, calls = install(repo, host_root)
    assert result.returncode == 0, result.stderr + result.stdout
    out = result.stdout + result.stderr
    notes = [line for line in out.splitlines() if "not running" in line]
    assert notes == [
        "install.sh: systemd is not running here (not booted with it): enabled lookout.service "
        "without starting it; it starts at the next boot"
    ]
    assert "booted with systemd as init" not in out and "Failed" not in out
    assert calls == [
        "apt-cache show python3-picamera2",
        "apt-get update -q",
        "apt-get install -y -q python3-venv python3-pip",
    ]
    assert os.readlink(host_root / WANTS) == "/etc/systemd/system/lookout.service"
    assert systemctl_root(host_root, "is-enabled", "lookout.service") == "enabled"
    assert user_groups(host_root, "lookout") == {"video", "plugdev", "i2c"}
    assert (host_root / "etc/udev/rules.d/99-lookout-coral.rules").is_file()


def test_second_run_and_uninstall_without_systemd_running(repo: Path, host_root: Path) -> None:
    first, _ = install(repo, host_root)
    assert first.returncode == 0, first.stderr
    again, _ = install(repo, host_root)
    assert again.returncode == 0, again.stderr
    assert "kept the existing /etc/lookout/config.toml" in again.stdout
    gone, calls = install(repo, host_root, "--uninstall")
    assert gone.returncode == 0, gone.stderr + gone.stdout
    assert calls == []  # nothing to stop or reload
    assert not (host_root / WANTS).exists()
    assert not (host_root / "etc/systemd/system/lookout.service").exists()
    assert (host_root / "etc/lookout/config.toml").is_file()


def test_systemd_absent(repo: Path, host_root: Path) -> None:
    result, _ = install(repo, host_root, systemd=False)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "command not found" not in result.stderr
    assert "enabled lookout.service without starting it" in result.stdout
    assert os.readlink(host_root / WANTS) == "/etc/systemd/system/lookout.service"
    # no systemd-sysusers: groupadd/useradd made the same user and groups
    assert user_groups(host_root, "lookout") == {"video", "plugdev", "i2c"}
    passwd = {line.split(":")[0]: line for line in (host_root / "etc/passwd").read_text().splitlines()}
    assert passwd["lookout"].endswith(":/var/lib/lookout:/usr/sbin/nologin")


def test_monitor_role_installs_the_fleet_extra_and_lookout_on_path(repo: Path, host_root: Path) -> None:
    """`--db postgresql://` needs psycopg (the fleet extra) and `fleet report` matplotlib; plain `lookout`
    works (sudo's secure_path has /usr/local/bin); --uninstall takes the link away."""
    result, calls = install(repo, host_root, "--role", "monitor", venv=True)
    assert result.returncode == 0, result.stderr + result.stdout
    pip = [c for c in calls if c.startswith("pip ")]
    assert len(pip) == 1 and pip[0].split()[-2:] == ["/src[fleet]", "matplotlib>=3.7"], pip
    assert "python3 -m venv --system-site-packages /opt/lookout/venv" in calls
    link = host_root.parent / "usr-local/bin/lookout"  # the chroot's /usr/local/bin
    assert os.readlink(link) == "/opt/lookout/venv/bin/lookout"
    device, calls = install(repo, host_root, venv=True)
    assert device.returncode == 0, device.stderr + device.stdout
    assert [c.split()[-1] for c in calls if c.startswith("pip ")] == ["/src[tflite,rpi]"]
    gone, _ = install(repo, host_root, "--uninstall")
    assert gone.returncode == 0, gone.stderr
    assert not link.exists() and not link.is_symlink()


def test_monitor_role_unbooted_enables_the_fleet_unit(repo: Path, host_root: Path) -> None:
    result, _ = install(repo, host_root, "--role", "monitor")
    assert result.returncode == 0, result.stderr
    assert "enabled lookout-fleet.service without starting it" in result.stdout
    assert systemctl_root(host_root, "is-enabled", "lookout-fleet.service") == "enabled"
    assert not (host_root / WANTS).exists()


@pytest.mark.parametrize("no_start", [False, True])
def test_booted_system_is_reloaded_enabled_and_started(repo: Path, host_root: Path, no_start: bool) -> None:
    """With /run/systemd/system present the installer talks to systemd (stand-ins record the calls)."""
    result, calls = install(repo, host_root, *(["--no-start"] if no_start else []), booted=True)
    assert result.returncode == 0, result.stderr + result.stdout
    managed = [c for c in calls if c.split()[0] in ("systemctl", "udevadm")]
    expected = [
        "udevadm control --reload",
        "udevadm trigger --action=add --subsystem-match=usb --subsystem-match=apex --subsystem-match=i2c-dev",
        "systemctl daemon-reload",
        "systemctl enable lookout.service",
    ]
    assert managed == expected + ([] if no_start else ["systemctl restart lookout.service"])
    assert "journalctl -fu lookout.service" in result.stdout
    assert not (host_root / WANTS).exists()  # left to the real systemctl enable
