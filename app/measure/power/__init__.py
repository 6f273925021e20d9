"""Power meters (one plugin module per meter type), background sampling and energy per inference.

``make_meter(cfg, root=..., run=..., bus=...)`` opens the meter described by a config model from
app/config.py (NoMeter, HwmonMeter, Ina2xxI2CMeter, RpiPmicMeter, RaplMeter). The keyword arguments
override the OS boundary (sysfs root, command runner, SMBus object) for tests. A meter that cannot be
opened comes back as an unavailable meter whose readings are None and whose ``source`` says why.
"""

from __future__ import annotations

import importlib
from typing import Any

from app.measure.power.base import PowerMeter, Runner, UnavailableMeter
from app.measure.power.energy import EnergyAccumulator
from app.measure.power.sampler import PowerSampler

#: meter config `type` -> module implementing open_meter(cfg, **roots)
METERS = {
    "none": "app.measure.power.none",
    "hwmon": "app.measure.power.hwmon",
    "ina2xx_i2c": "app.measure.power.ina2xx_i2c",
    "rpi_pmic": "app.measure.power.rpi_pmic",
    "rapl": "app.measure.power.rapl",
}

__all__ = [
    "METERS",
    "EnergyAccumulator",
    "PowerMeter",
    "PowerSampler",
    "Runner",
    "UnavailableMeter",
    "make_meter",
]


def make_meter(cfg: Any, **roots: Any) -> PowerMeter:
    """Open the meter for `cfg` (None = no meter). Never raises for missing hardware."""
    kind = getattr(cfg, "type", "none") if cfg is not None else "none"
    module = METERS.get(kind)
    if module is None:
        return UnavailableMeter(f"{kind}: unknown power meter type; known: {', '.join(METERS)}")
    try:
        return importlib.import_module(module).open_meter(cfg, **roots)
    except Exception as exc:  # a meter plugin must not take the service down
        return UnavailableMeter(f"{kind} unavailable: {type(exc).__name__}: {exc}")
