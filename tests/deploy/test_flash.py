"""device/flash.sh on a disk image made here (sfdisk + mkfs.vfat --offset + mtools): no loop device."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

SECTOR = 512
BOOT_START = 2048  # sectors: the FAT partition starts at 1 MiB, like Raspberry Pi OS images
CMDLINE = "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait quiet"
CONFIG = 'device_id = "from-config"\nmodel = "blazeface-short"\n\n[mqtt]\nurl = "mqtt://10.0.0.5:1883"\ndevice_id = "table-key-stays"\n'


@pytest.fixture
def fat(tool):
    for name, pkg in (
        ("sfdisk", "fdisk"),
        ("mkfs.vfat", "dosfstools"),
        ("mcopy", "mtools"),
        ("mtype", "mtools"),
    ):
        tool(name, pkg)
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")

    def mtools(*args: str) -> str:
        return subprocess.run(list(args), check=True, capture_output=True, text=True, env=env).stdout

    return mtools


def make_image(path: Path, fat, boot_files: dict[str, str]) -> Path:
    """A sparse 300 MiB disk image: MBR, a 256 MiB FAT (type c) at 1 MiB (the size of Raspberry Pi OS's
    boot partition before bookworm's 512 MiB: the bundle carries the model zoo, ~90 MiB), a Linux root
    partition after it."""
    subprocess.run(["truncate", "-s", "300M", str(path)], check=True)
    sectors = 256 * 2048
    table = f"label: dos\nstart={BOOT_START}, size={sectors}, type=c\nstart={BOOT_START + sectors}, type=83\n"
    subprocess.run(["sfdisk", "-q", str(path)], input=table, text=True, check=True)
    subprocess.run(
        ["mkfs.vfat", "--offset", str(BOOT_START), "-n", "BOOTFS", str(path), str(sectors // 2)],
        check=True,
        capture_output=True,
    )
    src = path.parent / "boot-src"
    src.mkdir(exist_ok=True)
    for name, text in boot_files.items():
        (src / name).write_text(text)
        fat("mcopy", "-i", f"{path}@@{BOOT_START * SECTOR}", str(src / name), "::/")
    return path


def read(fat, image: Path, name: str) -> str:
    return fat("mtype", "-i", f"{image}@@{BOOT_START * SECTOR}", f"::/{name}")


def flash(
    repo: Path, image: Path, target: Path | str, *args: str, check: bool = True
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["bash", str(repo / "device/flash.sh"), str(image), str(target), *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    if check:
        assert result.returncode == 0, result.stderr + result.stdout
    return result


@pytest.fixture
def config(tmp_path: Path) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(CONFIG)
    return p


def test_firstrun_variant(repo: Path, tmp_path: Path, fat, config: Path) -> None:
    image = make_image(
        tmp_path / "rpios.img", fat, {"cmdline.txt": CMDLINE + "\n", "config.txt": "arm_64bit=1\n"}
    )
    target = tmp_path / "card.img"
    out = flash(
        repo,
        image,
        target,
        "--config",
        str(config),
        "--device-id",
        "pi-cam-1",
        "--wifi",
        "Home Net:it's-a-secret",
        "--wifi-country",
        "GB",
    )
    assert "provisioning: firstrun" in out.stdout
    assert target.stat().st_size == image.stat().st_size
    cmdline = read(fat, target, "cmdline.txt")
    assert cmdline.count("\n") == 1  # still one line
    assert (
        cmdline.strip()
        == CMDLINE
        + " systemd.run=/boot/firmware/lookout/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target"
    )
    assert read(fat, target, "lookout/firstrun.sh") == (repo / "device/firstboot/firstrun.sh").read_text()
    assert read(fat, target, "lookout/device/install.sh") == (repo / "device/install.sh").read_text()
    assert (
        read(fat, target, "lookout/systemd/lookout.service") == (repo / "systemd/lookout.service").read_text()
    )
    assert (
        read(fat, target, "lookout/models/blazeface-short/model.toml")
        == (repo / "models/blazeface-short/model.toml").read_text()
    )
    # device id replaces the top-level key only; the [mqtt] table is untouched
    cfg = read(fat, target, "lookout/config.toml")
    assert cfg.startswith('device_id = "pi-cam-1"\n')
    assert 'device_id = "from-config"' not in cfg and 'device_id = "table-key-stays"' in cfg
    # settings, shell-quoted, read back by bash exactly as given
    env_file = tmp_path / "flash.env"
    env_file.write_text(read(fat, target, "lookout/flash.env"))
    shown = subprocess.run(
        [
            "bash",
            "-c",
            f'. "{env_file}"; printf "%s|" "$LOOKOUT_DEVICE_ID" "$LOOKOUT_HOSTNAME" "$LOOKOUT_WIFI_SSID" "$LOOKOUT_WIFI_PSK" "$LOOKOUT_WIFI_COUNTRY"',
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert shown == "pi-cam-1|pi-cam-1|Home Net|it's-a-secret|GB|"
    assert read(fat, image, "cmdline.txt") == CMDLINE + "\n"  # the source image is untouched


def test_reflash_in_place_keeps_a_single_hook(repo: Path, tmp_path: Path, fat, config: Path) -> None:
    image = make_image(tmp_path / "rpios.img", fat, {"cmdline.txt": CMDLINE + "\n"})
    flash(repo, image, image, "--config", str(config))
    flash(repo, image, image, "--config", str(config), "--device-id", "pi-2")
    cmdline = read(fat, image, "cmdline.txt")
    assert cmdline.count("systemd.run=") == 1
    assert 'device_id = "pi-2"' in read(fat, image, "lookout/config.toml")


def test_cloud_init_variant(repo: Path, tmp_path: Path, fat, config: Path) -> None:
    boot = {
        "cmdline.txt": CMDLINE + "\n",
        "user-data": "#cloud-config\n# Raspberry Pi OS default\n",
        "meta-data": "instance-id: rpios-image\n",
        "network-config": "network:\n  version: 2\n",
    }
    image = make_image(tmp_path / "trixie.img", fat, boot)
    target = tmp_path / "card.img"
    out = flash(
        repo,
        image,
        target,
        "--config",
        str(config),
        "--device-id",
        "pi-cam-2",
        "--wifi",
        "Home Net:it's-a-secret",
        "--wifi-country",
        "DE",
    )
    assert "provisioning: cloud-init" in out.stdout
    assert read(fat, target, "cmdline.txt") == CMDLINE + "\n"  # no systemd.run hook with cloud-init
    user_data = read(fat, target, "user-data")
    assert user_data.startswith("#cloud-config\n")
    assert "hostname: 'pi-cam-2'" in user_data
    assert "/boot/firmware/lookout/device/firstboot/lookout-firstboot.service" in user_data
    assert "[systemctl, start, --no-block, lookout-firstboot.service]" in user_data
    assert "do_wifi_country DE" in user_data
    meta = read(fat, target, "meta-data")
    assert meta.startswith("instance-id: 'lookout-pi-cam-2-") and "rpios-image" not in meta
    net = read(fat, target, "network-config")
    assert "'Home Net':" in net and "password: 'it''s-a-secret'" in net and "regulatory-domain: DE" in net
    assert read(fat, target, "lookout/user-data.orig") == boot["user-data"]
    assert "LOOKOUT_WIFI_PSK" not in read(
        fat, target, "lookout/flash.env"
    )  # the key is in network-config only
    assert (
        read(fat, target, "lookout/device/firstboot/firstboot.sh")
        == (repo / "device/firstboot/firstboot.sh").read_text()
    )


def test_cloud_init_detected_from_cmdline(repo: Path, tmp_path: Path, fat, config: Path) -> None:
    image = make_image(tmp_path / "nocloud.img", fat, {"cmdline.txt": CMDLINE + " ds=nocloud\n"})
    out = flash(repo, image, tmp_path / "card.img", "--config", str(config))
    assert "provisioning: cloud-init" in out.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device-id", "bad id!"], "--device-id"),
        (["--wifi", "no-colon"], "--wifi must be SSID:PSK"),
        (["--wifi", "net:short"], "8 to 63"),
        (["--wifi", "net:longenough", "--wifi-country", "gb"], "--wifi-country"),
    ],
)
def test_bad_arguments_are_one_line_errors(
    repo: Path, tmp_path: Path, fat, config: Path, args, message
) -> None:
    image = make_image(tmp_path / "rpios.img", fat, {"cmdline.txt": CMDLINE + "\n"})
    result = flash(repo, image, tmp_path / "card.img", "--config", str(config), *args, check=False)
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "card.img").exists()


def test_image_without_boot_partition_is_refused(repo: Path, tmp_path: Path, tool, config: Path) -> None:
    tool("sfdisk", "fdisk")
    image = tmp_path / "linux-only.img"
    subprocess.run(["truncate", "-s", "8M", str(image)], check=True)
    subprocess.run(
        ["sfdisk", "-q", str(image)], input="label: dos\nstart=2048, type=83\n", text=True, check=True
    )
    result = flash(repo, image, image, "--config", str(config), check=False)
    assert result.returncode == 2 and "no FAT boot partition" in result.stderr


def _mounted_block_device() -> tuple[str, str] | None:
    """(device, mountpoint) of a mounted block device, preferring the one holding /."""
    found = []
    for line in Path("/proc/mounts").read_text().splitlines():
        dev, mnt = line.split()[:2]
        if dev.startswith("/dev/") and Path(dev).is_block_device():
            found.append((dev, mnt))
    found.sort(key=lambda dm: dm[1] != "/")
    return found[0] if found else None


def test_mounted_system_disk_is_refused(repo: Path, tmp_path: Path, fat, config: Path) -> None:
    mounted = _mounted_block_device()
    if mounted is None:
        pytest.skip("no block device is mounted on this machine (container on overlayfs): nothing to refuse")
    dev, _mnt = mounted
    image = make_image(tmp_path / "rpios.img", fat, {"cmdline.txt": CMDLINE + "\n"})
    # --dry-run: even if the refusal were broken, nothing would be written to the disk.
    result = flash(repo, image, dev, "--config", str(config), "--dry-run", "--yes", check=False)
    assert result.returncode == 2, result.stdout
    assert "refusing" in result.stderr or "partition" in result.stderr
    assert "dry run" not in result.stdout


# --- TLS files, --edgetpu, and no secret left on the boot partition -----------------------------------
PASSWORD = "pw-never-on-fat-Zq81"
TLS_CONFIG = """# a fleet device
model = "blazeface-short"

[runtime]
type = "edgetpu"

[mqtt]
url = "mqtts://broker.example:8883"
username = "pi-cam-9"
password = "{password}"

[mqtt.tls]
ca_file = "pki/ca.crt"   # relative to this file
cert_file = "{cert}"
key_file = 'pki/pi-cam-9.key'
"""


@pytest.fixture
def tls_config(tmp_path: Path, tool) -> dict[str, Path]:
    """A config naming a CA, a client certificate and key made here with openssl (EC, one day)."""
    openssl = tool("openssl", "openssl")
    pki = tmp_path / "cfg" / "pki"
    pki.mkdir(parents=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"]
    subprocess.run([openssl, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=test CA"],
                   cwd=pki, check=True, capture_output=True)  # fmt: skip
    subprocess.run([openssl, "req", "-x509", *ec, "-keyout", "pi-cam-9.key", "-out", "pi-cam-9.crt",
                    "-subj", "/CN=pi-cam-9"], cwd=pki, check=True, capture_output=True)  # fmt: skip
    cfg = tmp_path / "cfg" / "pi.toml"
    cfg.write_text(TLS_CONFIG.format(password=PASSWORD, cert=pki / "pi-cam-9.crt"))
    return {"config": cfg, "ca": pki / "ca.crt", "cert": pki / "pi-cam-9.crt", "key": pki / "pi-cam-9.key"}


def test_tls_files_and_edgetpu_travel_with_the_config(repo: Path, tmp_path: Path, fat, tls_config) -> None:
    import tomllib

    image = make_image(tmp_path / "rpios.img", fat, {"cmdline.txt": CMDLINE + "\n"})
    target = tmp_path / "card.img"
    out = flash(repo, image, target, "--config", str(tls_config["config"]), "--device-id", "pi-cam-9")
    assert "runtime.type is edgetpu" in out.stdout and "ca.crt client.crt client.key" in out.stdout
    assert PASSWORD not in out.stdout + out.stderr
    cfg_text = read(fat, target, "lookout/config.toml")
    cfg = tomllib.loads(cfg_text)
    assert cfg["device_id"] == "pi-cam-9" and cfg["runtime"]["type"] == "edgetpu"
    assert cfg["mqtt"]["tls"] == {
        "ca_file": "/etc/lookout/tls/ca.crt",
        "cert_file": "/etc/lookout/tls/client.crt",
        "key_file": "/etc/lookout/tls/client.key",
    }
    assert "# relative to this file" in cfg_text  # the user's comments stay
    for name, src in (("ca.crt", "ca"), ("client.crt", "cert"), ("client.key", "key")):
        assert read(fat, target, f"lookout/tls/{name}") == tls_config[src].read_text()
    env_file = tmp_path / "flash.env"
    env_file.write_text(read(fat, target, "lookout/flash.env"))
    args = subprocess.run(["bash", "-c", f'. "{env_file}"; printf %s "$LOOKOUT_INSTALL_ARGS"'],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert args == "--edgetpu"
    # the card's config is a valid lookout config
    from app.config import validate_config

    assert str(validate_config(cfg).mqtt.tls.key_file) == "/etc/lookout/tls/client.key"


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        ('[mqtt.tls]\nca_file = "missing.crt"\n', "ca_file missing.crt not found"),
        ('[mqtt.tls]\nkey_file = "k.key"\n', "cert_file and key_file go together"),
    ],
)
def test_bad_tls_settings_are_one_line_errors(repo: Path, tmp_path: Path, fat, tls, message) -> None:
    (tmp_path / "k.key").write_text("key")
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[mqtt]\nurl = "mqtts://b:8883"\n' + tls)
    image = make_image(tmp_path / "rpios.img", fat, {"cmdline.txt": CMDLINE + "\n"})
    result = flash(repo, image, tmp_path / "card.img", "--config", str(cfg), check=False)
    assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "card.img").exists()


def _ids(root: Path, db: str, name: str) -> int:
    for line in (root / "etc" / db).read_text().splitlines():
        if line.split(":")[0] == name:
            return int(line.split(":")[2])
    raise AssertionError(f"{name} not in {db}")


def test_first_boot_moves_config_and_keys_into_etc_and_erases_the_boot_copies(
    repo: Path, tmp_path: Path, fat, tls_config, tool
) -> None:
    """flash.sh writes the card; first boot runs (in a staged root) on exactly what the card holds."""
    tool("systemd-sysusers", "systemd")
    boot = {
        "cmdline.txt": CMDLINE + " ds=nocloud\n",
        "user-data": "#cloud-config\n",
        "meta-data": "instance-id: x\n",
    }
    image = make_image(tmp_path / "rpios.img", fat, boot)
    target = tmp_path / "card.img"
    flash(repo, image, target, "--config", str(tls_config["config"]), "--device-id", "pi-cam-9")
    assert "[bash, /boot/firmware/lookout/device/firstboot/secure-config.sh]" in read(
        fat, target, "user-data"
    )

    root = tmp_path / "root"
    firmware = root / "boot/firmware"
    firmware.mkdir(parents=True)
    fat("mcopy", "-s", "-i", f"{target}@@{BOOT_START * SECTOR}", "::/lookout", str(firmware))
    bundle = firmware / "lookout"
    card_config = (bundle / "config.toml").read_text()
    assert PASSWORD in card_config  # on the FAT partition until first boot...
    keep = {"config": tmp_path / "config.link", "key": tmp_path / "key.link"}
    os.link(bundle / "config.toml", keep["config"])  # second names for the same bytes: was it overwritten?
    os.link(bundle / "tls/client.key", keep["key"])
    sizes = {k: p.stat().st_size for k, p in keep.items()}

    def first_boot() -> None:
        r = subprocess.run(["bash", str(bundle / "device/firstboot/firstboot.sh"), "--root", str(root)],
                           capture_output=True, text=True, timeout=300)  # fmt: skip
        assert r.returncode == 0, (bundle / "install.log").read_text()[-3000:]

    first_boot()
    etc = root / "etc/lookout"
    gid, uid = _ids(root, "group", "lookout"), _ids(root, "passwd", "lookout")

    def mode_owner(p: Path) -> tuple[int, int, int]:
        st = p.stat()
        return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid

    assert (etc / "config.toml").read_text() == card_config
    assert mode_owner(etc / "config.toml") == (0o640, 0, gid)
    assert mode_owner(etc / "tls") == (0o750, 0, gid)
    assert mode_owner(etc / "tls/client.key") == (0o600, uid, gid)
    assert mode_owner(etc / "tls/ca.crt") == (0o644, 0, 0) and mode_owner(etc / "tls/client.crt") == (
        0o644,
        0,
        0,
    )
    assert (etc / "tls/client.key").read_text() == tls_config["key"].read_text()
    # ...and gone from it after: unlinked, and the bytes overwritten with zeros first
    assert not (bundle / "config.toml").exists() and not (bundle / "tls").exists()
    for k, p in keep.items():  # shred rounds up to whole blocks: the slack is zeroed too
        data = p.read_bytes()
        assert set(data) == {0} and len(data) >= sizes[k], f"the boot copy of the {k} was not overwritten"
    secrets = [PASSWORD.encode(), tls_config["key"].read_bytes().split(b"\n")[1]]
    for f in firmware.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert not any(s in data for s in secrets), f"a secret is still in {f}"
    # install.sh ran on top and kept the config; the one-shot is done
    assert (root / "etc/systemd/system/lookout.service").is_file() and (bundle / "installed").exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants/lookout-firstboot.service").exists()
    # a second boot (a retry) changes nothing
    first_boot()
    assert (etc / "config.toml").read_text() == card_config and mode_owner(etc / "config.toml") == (
        0o640,
        0,
        gid,
    )


PSK = "psk-canary-Wq73-never-on-fat"


@pytest.mark.parametrize("mode", ["cloud-init", "firstrun"])
def test_first_boot_erases_the_wifi_passphrase_from_the_boot_partition(
    repo: Path, tmp_path: Path, fat, config: Path, tool, mode: str
) -> None:
    """The passphrase flash.sh put on the card (cloud-init's network-config, or flash.env on the legacy
    path) is overwritten and unlinked by first boot's secure-config.sh, run on what the card holds."""
    tool("systemd-sysusers", "systemd")
    boot = {"cmdline.txt": CMDLINE + "\n"}
    if mode == "cloud-init":  # an image customised with its own Wi-Fi: the original keeps a passphrase too
        boot |= {"user-data": "#cloud-config\n", "meta-data": "instance-id: x\n",
                 "network-config": f"network:\n  version: 2\n  # {PSK}\n"}  # fmt: skip
    image = make_image(tmp_path / "rpios.img", fat, boot)
    target = tmp_path / "card.img"
    out = flash(
        repo, image, target, "--config", str(config), "--wifi", f"Home Net:{PSK}", "--wifi-country", "GB"
    )
    assert f"provisioning: {mode}" in out.stdout
    root = tmp_path / "root"
    firmware = root / "boot/firmware"
    firmware.mkdir(parents=True)
    fat("mcopy", "-s", "-i", f"{target}@@{BOOT_START * SECTOR}", "::*", str(firmware))  # the whole partition
    holders = (
        [firmware / "network-config", firmware / "lookout/network-config.orig"]
        if mode == "cloud-init"
        else [firmware / "lookout/flash.env"]
    )
    keep = []
    for i, p in enumerate(holders):
        assert PSK in p.read_text()  # on the card until first boot...
        keep.append(tmp_path / f"psk{i}.link")
        os.link(p, keep[-1])  # a second name for the same bytes: were they overwritten?

    def secure_config() -> str:
        r = subprocess.run(["bash", str(firmware / "lookout/device/firstboot/secure-config.sh"), "--root", str(root)],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
        assert r.returncode == 0, r.stderr
        return r.stdout

    if mode == "cloud-init":
        secure_config()  # cloud-init has not taken the network config in yet: it stays
        assert (firmware / "network-config").exists()
        (root / "var/lib/cloud/instance").mkdir(parents=True)  # cloud-init's network stage ran
    assert "erased" in secure_config()
    # ...and gone after: unlinked, the bytes overwritten with zeros first, nowhere on the partition
    for p, link in zip(holders, keep, strict=True):
        assert not p.exists() or PSK not in p.read_text()
        assert set(link.read_bytes()) == {0}, f"{p} was not overwritten"
    for f in firmware.rglob("*"):
        assert not (f.is_file() and PSK.encode() in f.read_bytes()), f"the passphrase is still in {f}"
    if mode == "cloud-init":  # later boots: cloud-init keeps the Wi-Fi it wrote, never re-reads a seed
        cfg = (root / "etc/cloud/cloud.cfg.d/99-lookout-network.cfg").read_text()
        assert "network: {config: disabled}" in cfg
    else:  # flash.env keeps every other setting for firstboot.sh
        shown = subprocess.run(["bash", "-c", f'. "{firmware}/lookout/flash.env"; echo "$LOOKOUT_WIFI_SSID|${{LOOKOUT_WIFI_PSK:-}}"'],
                               capture_output=True, text=True, check=True).stdout  # fmt: skip
        assert shown == "Home Net|\n"
    assert secure_config() == ""  # a second boot finds nothing left to do
