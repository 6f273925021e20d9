"""INA219 / INA260 read directly over I2C (smbus2), at register level.

INA219 (datasheet SBOS448): calibration ``cal = trunc(0.04096 / (current_lsb * R_shunt))`` with
``current_lsb = max_expected_a / 32768``; bus voltage register bits 15..3 in 4 mV (bit 1 CNVR, bit 0 OVF);
power register LSB ``20 * current_lsb`` (current_lsb is raised to the smallest value whose
calibration fits 16 bits when the shunt is very small); the PGA is the smallest range that holds ``max_expected_a * R``.
Bit 0 of the calibration register is not stored, so conversions use the LSB implied by the value written.
INA260: integrated 2 mΩ shunt, fixed LSBs: current 1.25 mA, bus 1.25 mV, power 10 mW.

The chips' registers are big-endian; SMBus word transfers are little-endian. The bus object is a
parameter: anything with ``read_i2c_block_data``/``write_i2c_block_data`` (preferred) or
``read_word_data``/``write_word_data`` (bytes swapped here).
"""

from __future__ import annotations

import threading
from typing import Any

from app.measure.power.base import PowerMeter, UnavailableMeter

# INA219 registers
CONFIG, SHUNT_V, BUS_V, POWER, CURRENT, CALIBRATION = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05
# INA260 registers
INA260_CURRENT, INA260_BUS_V, INA260_POWER, INA260_MANUFACTURER_ID, INA260_DIE_ID = (
    0x01,
    0x02,
    0x03,
    0xFE,
    0xFF,
)
TI_MANUFACTURER_ID = 0x5449  # "TI"
INA260_DIE = 0x227  # upper 12 bits of the die ID register

RESET_BIT = 0x8000
BRNG_32V = 1 << 13
ADC_12BIT = 0x3  # 12-bit, 532 µs
MODE_SHUNT_BUS_CONTINUOUS = 0x7
PGA_RANGES_V = (0.04, 0.08, 0.16, 0.32)  # PG = 0..3 (gain /1, /2, /4, /8)
CAL_NUMERATOR = 0.04096


def swap16(w: int) -> int:
    return ((w & 0xFF) << 8) | ((w >> 8) & 0xFF)


def to_signed16(v: int) -> int:
    return v - 0x10000 if v & 0x8000 else v


class RegisterIO:
    """16-bit big-endian register access on an SMBus-like object."""

    def __init__(self, bus: Any, address: int) -> None:
        self.bus = bus
        self.address = address
        self._block = hasattr(bus, "read_i2c_block_data") and hasattr(bus, "write_i2c_block_data")
        self._lock = threading.Lock()

    def read(self, reg: int) -> int:
        with self._lock:
            if self._block:
                hi, lo = self.bus.read_i2c_block_data(self.address, reg, 2)
                return (hi << 8) | lo
            return swap16(self.bus.read_word_data(self.address, reg))

    def write(self, reg: int, value: int) -> None:
        value &= 0xFFFF
        with self._lock:
            if self._block:
                self.bus.write_i2c_block_data(self.address, reg, [value >> 8, value & 0xFF])
            else:
                self.bus.write_word_data(self.address, reg, swap16(value))


def ina219_calibration(shunt_ohms: float, max_expected_a: float) -> tuple[int, int, float]:
    """(calibration register value, config register value, current LSB in A) for an INA219."""
    shunt_max_v = max_expected_a * shunt_ohms
    pg = next((i for i, r in enumerate(PGA_RANGES_V) if shunt_max_v <= r * (1 + 1e-9)), None)
    if pg is None:
        raise ValueError(
            f"max_expected_a x shunt_ohms = {shunt_max_v * 1000:.0f} mV exceeds the INA219's 320 mV shunt range"
        )
    # datasheet choice; raised when a small shunt would need a calibration above the 16-bit register
    current_lsb = max(max_expected_a / 32768, CAL_NUMERATOR / (0xFFFE * shunt_ohms))
    cal = int(CAL_NUMERATOR / (current_lsb * shunt_ohms))
    if not 2 <= cal <= 0xFFFE:
        raise ValueError(
            f"INA219 calibration {cal} out of range for shunt {shunt_ohms} Ω, {max_expected_a} A"
        )
    cal &= 0xFFFE  # bit 0 is not stored
    config = BRNG_32V | (pg << 11) | (ADC_12BIT << 7) | (ADC_12BIT << 3) | MODE_SHUNT_BUS_CONTINUOUS
    return cal, config, CAL_NUMERATOR / (cal * shunt_ohms)


class Ina219Meter(PowerMeter):
    def __init__(
        self, io: RegisterIO, shunt_ohms: float, max_expected_a: float, rate_hz: float, bus_no: int
    ) -> None:
        self.io = io
        self.calibration, self.config, self.current_lsb = ina219_calibration(shunt_ohms, max_expected_a)
        self.power_lsb = 20.0 * self.current_lsb
        self.rate_hz = rate_hz
        self.source = f"ina2xx_i2c:ina219 (i2c-{bus_no} 0x{io.address:02x}, {shunt_ohms:g} Ω shunt)"
        self.configure()

    def configure(self) -> None:
        """Reset, then write configuration and calibration; verify they read back."""
        self.io.write(CONFIG, RESET_BIT)
        self.io.write(CONFIG, self.config)
        self.io.write(CALIBRATION, self.calibration)
        got = (self.io.read(CONFIG), self.io.read(CALIBRATION))
        if got != (self.config, self.calibration):
            raise OSError(
                f"INA219 at 0x{self.io.address:02x} did not keep configuration/calibration (read {got})"
            )

    def read_bus_v(self) -> float | None:
        raw = self.io.read(BUS_V)
        return None if raw & 0x1 else (raw >> 3) * 0.004

    def read_shunt_v(self) -> float:
        return to_signed16(self.io.read(SHUNT_V)) * 10e-6

    def read_current_a(self) -> float:
        return to_signed16(self.io.read(CURRENT)) * self.current_lsb

    def read_power_w(self) -> float | None:
        try:
            bus = self.io.read(BUS_V)
            if bus & 0x1:  # OVF: power/current overflowed
                self.last_error = "INA219 math overflow (OVF): raise max_expected_a"
                return None
            cal = self.io.read(CALIBRATION)
            if cal != self.calibration:  # the chip was reset (brown-out): calibrate again
                self.configure()
                return None
            return self.io.read(POWER) * self.power_lsb
        except OSError as exc:
            self.last_error = str(exc)
            return None


class Ina260Meter(PowerMeter):
    CURRENT_LSB_A = 0.00125
    BUS_LSB_V = 0.00125
    POWER_LSB_W = 0.010

    def __init__(self, io: RegisterIO, rate_hz: float, bus_no: int) -> None:
        self.io = io
        maker = io.read(INA260_MANUFACTURER_ID)
        die = io.read(INA260_DIE_ID) >> 4
        if maker != TI_MANUFACTURER_ID or die != INA260_DIE:
            raise OSError(
                f"device at 0x{io.address:02x} is not an INA260 (manufacturer 0x{maker:04x}, die 0x{die:03x})"
            )
        self.rate_hz = rate_hz
        self.source = f"ina2xx_i2c:ina260 (i2c-{bus_no} 0x{io.address:02x})"

    def read_bus_v(self) -> float:
        return self.io.read(INA260_BUS_V) * self.BUS_LSB_V

    def read_current_a(self) -> float:
        return to_signed16(self.io.read(INA260_CURRENT)) * self.CURRENT_LSB_A

    def read_power_w(self) -> float | None:
        try:
            return self.io.read(INA260_POWER) * self.POWER_LSB_W
        except OSError as exc:
            self.last_error = str(exc)
            return None


def open_meter(cfg: Any, bus: Any | None = None, **_roots: Any) -> PowerMeter:
    label = f"ina2xx_i2c:{cfg.chip}"
    where = f"i2c-{cfg.bus} 0x{cfg.address:02x}"
    if bus is None:
        try:
            from smbus2 import SMBus
        except ImportError:
            return UnavailableMeter(f"{label} unavailable: python module smbus2 not installed")
        try:
            bus = SMBus(cfg.bus)
        except OSError as exc:
            return UnavailableMeter(
                f"{label} unavailable: cannot open /dev/i2c-{cfg.bus}: {(exc.strerror or str(exc)).lower()}"
            )
    io = RegisterIO(bus, cfg.address)
    try:
        if cfg.chip == "ina219":
            return Ina219Meter(io, cfg.shunt_ohms, cfg.max_expected_a, cfg.rate_hz, cfg.bus)
        return Ina260Meter(io, cfg.rate_hz, cfg.bus)
    except ValueError as exc:
        return UnavailableMeter(f"{label} unavailable: {exc}")
    except OSError as exc:
        return UnavailableMeter(
            f"{label} unavailable at {where}: {exc.strerror.lower() if exc.strerror else exc}"
        )
