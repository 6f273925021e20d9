"""Power meters (one plugin module per meter type), background sampling and energy per inference.

``make_meter(cfg, root=..., run=..., bus=...)`` opens the meter described by a config model from
app/config.py (NoMeter, HwmonMeter, Ina2xxI2CMeter, RpiPmicMeter, RaplMeter). The keyword arguments
override the OS boundary (sysfs root, command runner, SMBus object) for tests. A meter that cannot be
opened comes back as an unavailable meter whose readings are None and whose ``source`` says why.
Meters are plugins of the entry-point group ``lookout.meters`` (app/plugins.py): each names its
module's ``open_meter(cfg, **roots)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app import plugins
from app.errors import LookoutError
from app.measure.power.base import PowerMeter, Runner, UnavailableMeter
from app.measure.power.energy import EnergyAccumulator
from app.measure.power.sampler import PowerSampler

if TYPE_CHECKING:
    from app.hostroots import HostRoots

__all__ = [
    "EnergyAccumulator",
    "PowerMeter",
    "PowerSampler",
    "Runner",
    "UnavailableMeter",
    "make_meter",
]


def make_meter(cfg: Any, host: HostRoots | None = None, **roots: Any) -> PowerMeter:
    """Open the meter for `cfg` (None = no meter). Never raises for missing hardware.

    `host` re-bases a configured absolute `root` (e.g. /sys/class/hwmon) under $LOOKOUT_HOST_ROOT."""
    kind = getattr(cfg, "type", "none") if cfg is not None else "none"
    if host is not None and "root" not in roots and getattr(cfg, "root", None) is not None:
        roots["root"] = host.path(cfg.root)
    try:
        open_meter = plugins.load(plugins.METERS, kind)
    except LookoutError as exc:  # unknown, or its module failed to import
        return UnavailableMeter(str(exc))
    try:
        return open_meter(cfg, **roots)
    except Exception as exc:  # a meter plugin must not take the service down
        return UnavailableMeter(f"{kind} unavailable: {type(exc).__name__}: {exc}")
