"""Each meter against a fixture with the real formats: sysfs trees, recorded vcgencmd output, fake SMBus."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from app.config import HwmonMeter, Ina2xxI2CMeter, NoMeter, RaplMeter, RpiPmicMeter
from app.measure.power import make_meter
from app.measure.power.rpi_pmic import parse_pmic_adc, rails_power_w

RAPL_RANGE_UJ = 262143328850  # max_energy_range_uj of a real package-0 zone


# --- none ---------------------------------------------------------------------------------------
def test_no_meter_is_null_with_reason() -> None:
    for cfg in (NoMeter(), None):
        m = make_meter(cfg)
        assert m.source == "none: no power meter configured"
        assert m.read_power_w() is None and m.read_energy_j() is None and not m.available


# --- hwmon --------------------------------------------------------------------------------------
def hwmon_tree(tree, root: Path, energy: bool = False) -> Path:
    files = {
        "hwmon0/name": "acpitz\n",
        "hwmon0/temp1_input": "27800\n",
        "hwmon1/name": "ina226\n",
        "hwmon1/power1_input": "9999000\n",
        "hwmon3/name": "ina219\n",
        "hwmon3/in1_input": "5072\n",
        "hwmon3/curr1_input": "612\n",
        "hwmon3/power1_input": "3104000\n",
        "hwmon3/shunt_resistor": "100000\n",
    }
    if energy:
        files["hwmon3/energy1_input"] = "12500000\n"
    return tree(root, files)


def test_hwmon_finds_device_by_name_and_reads_microwatts(tree, tmp_path: Path) -> None:
    root = hwmon_tree(tree, tmp_path)
    m = make_meter(HwmonMeter(name="ina219", root=root))
    assert m.available
    assert m.source == "hwmon:ina219 (hwmon3)"
    assert m.read_power_w() == pytest.approx(3.104)
    (root / "hwmon3/power1_input").write_text("2500000\n")  # the driver updates the value
    assert m.read_power_w() == pytest.approx(2.5)
    assert not m.has_energy and m.read_energy_j() is None
    other = make_meter(HwmonMeter(name="ina226"), root=root)  # root given as a parameter
    assert other.source == "hwmon:ina226 (hwmon1)" and other.read_power_w() == pytest.approx(9.999)


def test_hwmon_prefers_energy_counter(tree, tmp_path: Path) -> None:
    root = hwmon_tree(tree, tmp_path, energy=True)
    m = make_meter(HwmonMeter(name="ina219", root=root))
    assert m.has_energy and "energy1_input" in m.source
    assert m.read_energy_j() == pytest.approx(12.5)


def test_hwmon_missing_device_is_null_with_reason(tree, tmp_path: Path) -> None:
    root = hwmon_tree(tree, tmp_path)
    m = make_meter(HwmonMeter(name="ina260", root=root))
    assert not m.available and m.read_power_w() is None
    assert "no hwmon device named 'ina260'" in m.source and str(root) in m.source
    m2 = make_meter(HwmonMeter(name="ina219", root=tmp_path / "nope"))
    assert m2.read_power_w() is None and "unavailable" in m2.source


def test_hwmon_reading_failure_gives_none(tree, tmp_path: Path) -> None:
    root = hwmon_tree(tree, tmp_path)
    m = make_meter(HwmonMeter(name="ina219", root=root))
    (root / "hwmon3/power1_input").write_text("garbage\n")
    assert m.read_power_w() is None and m.last_error


# --- rapl ---------------------------------------------------------------------------------------
def rapl_tree(tree, root: Path, energy_uj: int) -> Path:
    return tree(
        root,
        {
            "intel-rapl:0/name": "package-0\n",
            "intel-rapl:0/energy_uj": f"{energy_uj}\n",
            "intel-rapl:0/max_energy_range_uj": f"{RAPL_RANGE_UJ}\n",
            "intel-rapl:0/intel-rapl:0:0/name": "core\n",
        },
    )


def test_rapl_counts_energy_across_wrap_around(tree, tmp_path: Path) -> None:
    root = rapl_tree(tree, tmp_path, RAPL_RANGE_UJ - 3_000_000)
    m = make_meter(RaplMeter(root=root))
    assert m.available and m.has_energy
    assert m.source == "rapl:package-0 (intel-rapl:0)"
    assert m.read_energy_j() == pytest.approx(0.0)
    (root / "intel-rapl:0/energy_uj").write_text(f"{RAPL_RANGE_UJ - 1_000_000}\n")
    assert m.read_energy_j() == pytest.approx(2.0)
    (root / "intel-rapl:0/energy_uj").write_text("4000000\n")  # wrapped
    assert m.read_energy_j() == pytest.approx(2.0 + 1.0 + 4.0)


def test_rapl_power_from_energy_deltas(tree, tmp_path: Path) -> None:
    root = rapl_tree(tree, tmp_path, 1_000_000)
    m = make_meter(RaplMeter(root=root))
    assert m.read_power_w() is None  # first call: no interval yet
    (root / "intel-rapl:0/energy_uj").write_text("1500000\n")
    w = m.read_power_w()
    assert w is not None and w > 0


def test_rapl_missing_zone_is_null_with_reason(tmp_path: Path) -> None:
    m = make_meter(RaplMeter(root=tmp_path, zone="intel-rapl:1"))
    assert m.read_energy_j() is None and m.read_power_w() is None
    assert m.source.startswith("rapl:intel-rapl:1 unavailable: no powercap zone")


def _open_rapl_as(uid: int, root: Path) -> tuple[str, str]:
    """Open the meter in a forked child running as `uid` (modules already imported); (source, energy)."""
    import app.measure.power.rapl  # noqa: F401 - imported before the fork

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(r)
            os.setgid(uid)
            os.setuid(uid)
            m = make_meter(RaplMeter(root=root))
            os.write(w, f"{m.source}\n{m.read_energy_j()}".encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        out = f.read()
    os.waitpid(pid, 0)
    source, energy = out.splitlines()
    return source, energy


def test_rapl_root_only_counter_is_null_with_reason(tree) -> None:
    """energy_uj mode 0400 root (as on kernels since 5.10): a non-root reader gets a reason, not a crash."""
    base = Path(tempfile.mkdtemp(prefix="lookout-rapl-"))
    try:
        os.chmod(base, 0o755)
        root = rapl_tree(tree, base, 5_000_000)
        os.chmod(root / "intel-rapl:0/energy_uj", 0o400)
        if os.geteuid() == 0:
            source, energy = _open_rapl_as(65534, root)
        else:
            m = make_meter(RaplMeter(root=root))
            source, energy = m.source, str(m.read_energy_j())
        assert energy == "None"
        assert "permission denied" in source and "energy_uj" in source and "root-only" in source
    finally:
        shutil.rmtree(base)


# --- Raspberry Pi 5 PMIC ------------------------------------------------------------------------
def test_pmic_parses_recorded_output_and_sums_rails(fixtures_dir: Path) -> None:
    text = (fixtures_dir / "pmic_read_adc_pi5.txt").read_text()
    rails = parse_pmic_adc(text)
    assert len(rails) == 14
    assert rails["EXT5V"] == {"V": pytest.approx(5.14158)} and "A" not in rails["BATT"]
    assert rails["VDD_CORE"] == {"A": pytest.approx(0.56259), "V": pytest.approx(0.7679846)}
    # independent sum over the recorded lines: every _A line times the matching _V line
    amps = {ln.split()[0][:-2]: float(ln.split("=")[1][:-1]) for ln in text.splitlines() if "current(" in ln}
    volts = {ln.split()[0][:-2]: float(ln.split("=")[1][:-1]) for ln in text.splitlines() if "volt(" in ln}
    want = math.fsum(a * volts[k] for k, a in amps.items())
    calls: list[list[str]] = []

    def run(argv: list[str]) -> str:
        calls.append(argv)
        return text

    m = make_meter(RpiPmicMeter(), run=run)
    assert m.available
    assert m.read_power_w() == pytest.approx(want)
    assert calls[-1] == ["vcgencmd", "pmic_read_adc"]
    assert "excludes USB" in m.source and "Coral" in m.source


def test_pmic_load_reads_higher_than_idle(fixtures_dir: Path) -> None:
    idle = (fixtures_dir / "pmic_read_adc_pi5.txt").read_text()
    load = (fixtures_dir / "pmic_read_adc_pi5_load.txt").read_text()
    outputs = iter([idle, idle, load])
    m = make_meter(RpiPmicMeter(), run=lambda argv: next(outputs))
    assert m.read_power_w() < m.read_power_w()


def test_pmic_absent_or_unsupported_is_null_with_reason(fixtures_dir: Path) -> None:
    def missing(argv: list[str]) -> str:
        raise FileNotFoundError(argv[0])

    m = make_meter(RpiPmicMeter(), run=missing)
    assert m.read_power_w() is None and "vcgencmd not found" in m.source
    pi4 = (fixtures_dir / "pmic_read_adc_pi4.txt").read_text()
    m = make_meter(RpiPmicMeter(), run=lambda argv: pi4)
    assert m.read_power_w() is None and "Command not registered" in m.source and "Pi 5" in m.source


def test_pmic_through_the_vcgencmd_stand_in(pi_board, fixtures_dir: Path) -> None:
    pi5, pi4 = pi_board("pi5"), pi_board("pi4")
    m = make_meter(RpiPmicMeter(vcgencmd=str(pi5.bin / "vcgencmd")))
    want = rails_power_w(parse_pmic_adc((fixtures_dir / "pmic_read_adc_pi5.txt").read_text()))
    assert m.available and m.read_power_w() == pytest.approx(want)
    m = make_meter(RpiPmicMeter(vcgencmd=str(pi4.bin / "vcgencmd")))
    assert (
        not m.available
        and m.source.startswith("rpi_pmic unavailable:")
        and "Command not registered" in m.source
    )
    pi5.hang("pmic_read_adc")
    m = make_meter(RpiPmicMeter(vcgencmd=str(pi5.bin / "vcgencmd")))
    assert not m.available and "timed out after 2 s" in m.source


def test_hwmon_meters_of_the_pi4_board_under_the_host_root(pi_board) -> None:
    from app.hostroots import HostRoots

    board = pi_board("pi4")
    host = HostRoots(board.root)
    ina219 = make_meter(HwmonMeter(name="ina219"), host=host)
    assert ina219.source == "hwmon:ina219 (hwmon2)" and ina219.read_power_w() == pytest.approx(4.572)
    ina260 = make_meter(HwmonMeter(name="ina260"), host=host)
    assert ina260.read_power_w() == pytest.approx(3.8)
    assert not make_meter(HwmonMeter(name="ina226"), host=host).available


# --- INA219 / INA260 over I2C -------------------------------------------------------------------
@pytest.mark.parametrize("word_only", [False, True])
def test_ina219_register_level(ina219, smbus_factory, word_only: bool) -> None:
    bus = smbus_factory({0x40: ina219}, word_only=word_only)
    cfg = Ina2xxI2CMeter(chip="ina219", shunt_ohms=0.1, max_expected_a=3.2)
    m = make_meter(cfg, bus=bus)
    assert m.available, m.source
    # calibration per datasheet: current_lsb = Imax/32768, cal = trunc(0.04096 / (lsb * R)), bit 0 unused
    want_cal = math.trunc(0.04096 / (3.2 / 32768 * 0.1)) & 0xFFFE
    assert ina219.calibration == want_cal
    assert (ina219.config >> 11) & 0x3 == 3  # 3.2 A x 0.1 Ω = 320 mV: PGA /8
    for shunt_v, bus_v in ((0.05, 5.0), (0.012, 5.1), (0.2, 12.0)):
        ina219.shunt_v, ina219.bus_v = shunt_v, bus_v
        true_w = shunt_v / 0.1 * bus_v
        assert m.read_power_w() == pytest.approx(true_w, rel=0.01)
        assert m.read_current_a() == pytest.approx(shunt_v / 0.1, rel=0.01)
        assert m.read_bus_v() == pytest.approx(bus_v, abs=0.004)
    assert m.source == "ina2xx_i2c:ina219 (i2c-1 0x40, 0.1 Ω shunt)"


def test_ina219_small_shunt_range_and_overflow(ina219, smbus_factory) -> None:
    m = make_meter(
        Ina2xxI2CMeter(chip="ina219", shunt_ohms=0.01, max_expected_a=2.0), bus=smbus_factory({0x40: ina219})
    )
    assert (ina219.config >> 11) & 0x3 == 0  # 20 mV fits the 40 mV range: PGA /1
    ina219.shunt_v, ina219.bus_v = 0.015, 5.0  # 1.5 A
    assert m.read_power_w() == pytest.approx(7.5, rel=0.01)
    ina219.shunt_v = 0.039  # 3.9 A > 2 A: current register overflows -> OVF
    assert m.read_power_w() is None and "overflow" in m.last_error


def test_ina219_recalibrates_after_chip_reset(ina219, smbus_factory) -> None:
    m = make_meter(Ina2xxI2CMeter(), bus=smbus_factory({0x40: ina219}))
    ina219.shunt_v, ina219.bus_v = 0.05, 5.0
    ina219.reset()  # brown-out: calibration lost, power register reads 0
    assert m.read_power_w() is None
    assert m.read_power_w() == pytest.approx(2.5, rel=0.01)


def test_ina219_impossible_range_is_null_with_reason(ina219, smbus_factory) -> None:
    m = make_meter(Ina2xxI2CMeter(shunt_ohms=1.0, max_expected_a=1.0), bus=smbus_factory({0x40: ina219}))
    assert m.read_power_w() is None and "320 mV" in m.source


@pytest.mark.parametrize("word_only", [False, True])
def test_ina260_fixed_lsbs(ina260, smbus_factory, word_only: bool) -> None:
    m = make_meter(Ina2xxI2CMeter(chip="ina260", address=0x41), bus=smbus_factory({0x41: ina260}, word_only))
    assert m.source == "ina2xx_i2c:ina260 (i2c-1 0x41)"
    ina260.current_a, ina260.bus_v = 0.75, 5.08
    assert m.read_power_w() == pytest.approx(0.75 * 5.08, abs=0.01)
    assert m.read_current_a() == pytest.approx(0.75, abs=0.00125)
    assert m.read_bus_v() == pytest.approx(5.08, abs=0.00125)


def test_i2c_wrong_address_or_chip_is_null_with_reason(ina219, smbus_factory) -> None:
    bus = smbus_factory({0x40: ina219})
    m = make_meter(Ina2xxI2CMeter(address=0x45), bus=bus)
    assert m.read_power_w() is None and "0x45" in m.source and "remote i/o" in m.source
    m = make_meter(Ina2xxI2CMeter(chip="ina260"), bus=bus)  # an INA219 has no ID registers
    assert m.read_power_w() is None and "ina260 unavailable" in m.source
