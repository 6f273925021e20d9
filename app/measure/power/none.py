"""The `none` meter: no power measurement; every power figure is null with this source."""

from __future__ import annotations

from typing import Any

from app.measure.power.base import PowerMeter, UnavailableMeter

SOURCE = "none: no power meter configured"


def open_meter(cfg: Any = None, **_roots: Any) -> PowerMeter:
    return UnavailableMeter(SOURCE)
