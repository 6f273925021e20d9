"""Fakes at the OS boundary for the measurement tests: sysfs trees and an in-memory SMBus with INA chips."""

from __future__ import annotations

import errno
import math
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


class FakeIna219:
    """INA219 register model (datasheet SBOS448): the analog side is set with shunt_v / bus_v."""

    PGA_MV = (40, 80, 160, 320)

    def __init__(self) -> None:
        self.shunt_v = 0.0
        self.bus_v = 0.0
        self.reset()

    def reset(self) -> None:
        self.config = 0x399F
        self.calibration = 0

    def _shunt_raw(self) -> int:
        limit_mv = self.PGA_MV[(self.config >> 11) & 0x3]
        raw = round(self.shunt_v / 10e-6)
        lim = limit_mv * 100
        return max(-lim, min(lim, raw))

    def _current_raw(self) -> tuple[int, bool]:
        c = math.trunc(self._shunt_raw() * self.calibration / 4096)
        return c, not -32768 <= c <= 32767

    def _bus_raw(self) -> int:
        return min(int(self.bus_v / 0.004), 0x1FFF)

    def read(self, reg: int) -> int:
        if reg == 0x00:
            return self.config
        if reg == 0x01:
            return self._shunt_raw() & 0xFFFF
        if reg == 0x02:
            _, ovf = self._current_raw()
            return (self._bus_raw() << 3) | 0x2 | int(ovf)
        if reg == 0x03:
            c, ovf = self._current_raw()
            return 0xFFFF if ovf else min(0xFFFF, abs(c) * self._bus_raw() // 5000)
        if reg == 0x04:
            c, ovf = self._current_raw()
            return 0x7FFF if ovf else c & 0xFFFF
        if reg == 0x05:
            return self.calibration
        raise OSError(errno.EIO, "Input/output error")

    def write(self, reg: int, value: int) -> None:
        if reg == 0x00:
            if value & 0x8000:
                self.reset()
            else:
                self.config = value & 0x3FFF
        elif reg == 0x05:
            self.calibration = value & 0xFFFE
        else:
            raise OSError(errno.EIO, "Input/output error")


class FakeIna260:
    """INA260 register model (datasheet SBOS656): fixed LSBs, ID registers."""

    def __init__(self) -> None:
        self.current_a = 0.0
        self.bus_v = 0.0
        self.config = 0x6127

    def read(self, reg: int) -> int:
        if reg == 0x00:
            return self.config
        if reg == 0x01:
            return round(self.current_a / 0.00125) & 0xFFFF
        if reg == 0x02:
            return round(self.bus_v / 0.00125)
        if reg == 0x03:
            return round(abs(self.current_a * self.bus_v) / 0.010)
        if reg == 0xFE:
            return 0x5449
        if reg == 0xFF:
            return 0x2270
        raise OSError(errno.EIO, "Input/output error")

    def write(self, reg: int, value: int) -> None:
        if reg == 0x00:
            self.config = value
        else:
            raise OSError(errno.EIO, "Input/output error")


class FakeSMBus:
    """smbus2.SMBus-like: block transfers are MSB first; word transfers little-endian like SMBus."""

    def __init__(self, devices: dict[int, object]) -> None:
        self.devices = devices
        self.transfers = 0

    def _dev(self, addr: int):
        self.transfers += 1
        if addr not in self.devices:
            raise OSError(errno.EREMOTEIO, "Remote I/O error")
        return self.devices[addr]

    def read_i2c_block_data(self, addr: int, reg: int, length: int) -> list[int]:
        v = self._dev(addr).read(reg)
        return [v >> 8, v & 0xFF][:length]

    def write_i2c_block_data(self, addr: int, reg: int, data: list[int]) -> None:
        self._dev(addr).write(reg, (data[0] << 8) | data[1])

    def read_word_data(self, addr: int, reg: int) -> int:
        v = self._dev(addr).read(reg)
        return ((v & 0xFF) << 8) | (v >> 8)

    def write_word_data(self, addr: int, reg: int, value: int) -> None:
        self._dev(addr).write(reg, ((value & 0xFF) << 8) | (value >> 8))


class WordOnlySMBus:
    """A bus adapter offering only SMBus word transfers (no block reads)."""

    def __init__(self, bus: FakeSMBus) -> None:
        self._bus = bus

    def read_word_data(self, addr: int, reg: int) -> int:
        return self._bus.read_word_data(addr, reg)

    def write_word_data(self, addr: int, reg: int, value: int) -> None:
        self._bus.write_word_data(addr, reg, value)


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def ina219() -> FakeIna219:
    return FakeIna219()


@pytest.fixture
def ina260() -> FakeIna260:
    return FakeIna260()


@pytest.fixture
def smbus_factory():
    """make(devices, word_only=False) -> an SMBus-like object holding the fake chips by address."""

    def make(devices: dict[int, object], word_only: bool = False):
        bus = FakeSMBus(devices)
        return WordOnlySMBus(bus) if word_only else bus

    return make


@pytest.fixture
def tree():
    """write(root, {relative path: text}) -> root."""
    return write_tree
