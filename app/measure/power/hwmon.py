"""INA219/INA226/INA260 through the kernel's ina2xx hwmon driver.

The device is found by its ``name`` file (hwmonN numbers change between boots). ``power1_input`` is in
µW; ``energy1_input`` (µJ, some drivers) is preferred for energy when present.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.measure.power.base import PowerMeter, SysfsValue, UnavailableMeter, os_reason


def find_hwmon(root: Path, name: str) -> Path | None:
    """The first hwmonN directory under root whose `name` file reads `name`."""
    try:
        entries = sorted(root.iterdir(), key=lambda p: (len(p.name), p.name))
    except OSError:
        return None
    for d in entries:
        try:
            if (d / "name").read_text().strip() == name:
                return d
        except OSError:
            continue
    return None


class HwmonPowerMeter(PowerMeter):
    def __init__(self, dev: Path, name: str, rate_hz: float = 200.0) -> None:
        attr_dir = dev if (dev / "power1_input").exists() else dev / "device"
        self._power = SysfsValue(attr_dir / "power1_input")
        self._power.read_int()  # fail now (permission, driver error) rather than in the sampler
        energy = attr_dir / "energy1_input"
        self._energy = SysfsValue(energy) if energy.exists() else None
        self.has_energy = self._energy is not None
        self.rate_hz = rate_hz
        self.source = f"hwmon:{name} ({dev.name})" + (" energy1_input" if self.has_energy else "")

    def read_power_w(self) -> float | None:
        try:
            return self._power.read_int() / 1e6
        except (OSError, ValueError, IndexError) as exc:
            self.last_error = str(exc)
            return None

    def read_energy_j(self) -> float | None:
        if self._energy is None:
            return None
        try:
            return self._energy.read_int() / 1e6
        except (OSError, ValueError, IndexError) as exc:
            self.last_error = str(exc)
            return None

    def close(self) -> None:
        self._power.close()
        if self._energy is not None:
            self._energy.close()


def open_meter(cfg: Any, root: Path | None = None, **_roots: Any) -> PowerMeter:
    base = Path(root) if root is not None else Path(cfg.root)
    label = f"hwmon:{cfg.name}"
    dev = find_hwmon(base, cfg.name)
    if dev is None:
        return UnavailableMeter(f"{label} unavailable: no hwmon device named {cfg.name!r} under {base}")
    try:
        return HwmonPowerMeter(dev, cfg.name, cfg.rate_hz)
    except FileNotFoundError:
        return UnavailableMeter(f"{label} unavailable: {dev} has no power1_input")
    except OSError as exc:
        return UnavailableMeter(f"{label} unavailable: {os_reason(exc, dev / 'power1_input')}")
    except (ValueError, IndexError):
        return UnavailableMeter(f"{label} unavailable: {dev}/power1_input is not a number")
