"""Intel/AMD RAPL through powercap: ``/sys/class/powercap/intel-rapl:N/energy_uj``.

The counter wraps at ``max_energy_range_uj``; reads undo the wrap (at least one read per wrap period
is needed, i.e. minutes to hours). Power is the energy delta over time between reads. ``energy_uj`` is
readable by root only on many kernels (since the PLATYPUS fix); then the meter is unavailable and says so.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from app.measure.power.base import PowerMeter, SysfsValue, UnavailableMeter, os_reason


class RaplPowerMeter(PowerMeter):
    has_energy = True

    def __init__(self, zone_dir: Path, rate_hz: float = 200.0) -> None:
        self._energy = SysfsValue(zone_dir / "energy_uj")
        self._range_uj = int((zone_dir / "max_energy_range_uj").read_text().split()[0])
        try:
            name = (zone_dir / "name").read_text().strip()
        except OSError:
            name = zone_dir.name
        self.rate_hz = rate_hz
        self.source = f"rapl:{name} ({zone_dir.name})"
        self._lock = threading.Lock()
        self._last_raw = self._energy.read_int()
        self._total_uj = 0
        self._prev_power: tuple[int, float] | None = None

    def read_energy_j(self) -> float | None:
        """Cumulative joules since the meter was opened, wrap-around undone."""
        try:
            raw = self._energy.read_int()
        except (OSError, ValueError, IndexError) as exc:
            self.last_error = str(exc)
            return None
        with self._lock:
            delta = raw - self._last_raw
            if delta < 0:  # wrapped at max_energy_range_uj
                delta += self._range_uj
            self._last_raw = raw
            self._total_uj += delta
            return self._total_uj / 1e6

    def read_power_w(self) -> float | None:
        """Mean power since the previous read_power_w call (None on the first call)."""
        e = self.read_energy_j()
        t = time.perf_counter_ns()
        if e is None:
            return None
        prev, self._prev_power = self._prev_power, (t, e)
        if prev is None or t <= prev[0]:
            return None
        return (e - prev[1]) / ((t - prev[0]) / 1e9)

    def close(self) -> None:
        self._energy.close()


def open_meter(cfg: Any, root: Path | None = None, **_roots: Any) -> PowerMeter:
    base = Path(root) if root is not None else Path(cfg.root)
    zone_dir = base / cfg.zone
    label = f"rapl:{cfg.zone}"
    if not zone_dir.is_dir():
        return UnavailableMeter(f"{label} unavailable: no powercap zone {zone_dir}")
    try:
        return RaplPowerMeter(zone_dir, cfg.rate_hz)
    except PermissionError as exc:
        return UnavailableMeter(
            f"{label} unavailable: {os_reason(exc, zone_dir / 'energy_uj')} (root-only on this kernel)"
        )
    except OSError as exc:
        return UnavailableMeter(f"{label} unavailable: {os_reason(exc, exc.filename or zone_dir)}")
    except (ValueError, IndexError):
        return UnavailableMeter(f"{label} unavailable: unreadable counter in {zone_dir}")
