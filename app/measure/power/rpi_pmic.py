"""Raspberry Pi 5 PMIC rails through ``vcgencmd pmic_read_adc``: power = Σ V×A over rails with both.

The PMIC only sees the rails it generates: USB and other 5 V loads (a USB Coral, for one) are not in it.
"""

from __future__ import annotations

import re
from typing import Any

from app.measure.power.base import PowerMeter, Runner, UnavailableMeter
from app.measure.vcgencmd import Vcgencmd, VcgencmdError

_LINE = re.compile(r"^\s*(\S+)_([AV])\s+(?:current|volt)\(\d+\)=([-+0-9.eE]+)[AV]\s*$")
SCOPE = "PMIC rails V×A; excludes USB/5 V loads such as a USB Coral"


def parse_pmic_adc(text: str) -> dict[str, dict[str, float]]:
    """{rail: {"A": amps, "V": volts}} from `vcgencmd pmic_read_adc` output."""
    rails: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            rails.setdefault(m.group(1), {})[m.group(2)] = float(m.group(3))
    return rails


def rails_power_w(rails: dict[str, dict[str, float]]) -> float | None:
    """Σ V×A over rails that have both; None when none has."""
    both = [r["V"] * r["A"] for r in rails.values() if "V" in r and "A" in r]
    return sum(both) if both else None


class RpiPmicPowerMeter(PowerMeter):
    def __init__(self, vc: Vcgencmd, rate_hz: float = 20.0) -> None:
        self.vc = vc
        self.rate_hz = rate_hz
        self.source = f"rpi_pmic: {SCOPE}"

    def read_rails(self) -> dict[str, dict[str, float]]:
        return parse_pmic_adc(self.vc.query("pmic_read_adc"))

    def read_power_w(self) -> float | None:
        try:
            return rails_power_w(self.read_rails())
        except (VcgencmdError, ValueError) as exc:
            self.last_error = str(exc)
            return None


def open_meter(cfg: Any, run: Runner | None = None, **_roots: Any) -> PowerMeter:
    """The PMIC meter when `vcgencmd pmic_read_adc` answers with rails (a Pi 5), else why not."""
    # Sampling wants every reading: no back-off after a timeout, each call is bounded by the timeout.
    vc = Vcgencmd(cfg.vcgencmd, run, timeout_s=2.0, backoff_s=0.0)
    label = "rpi_pmic"
    try:
        out = vc.query("pmic_read_adc")
    except VcgencmdError as exc:
        hint = "; the PMIC ADC is a Pi 5's" if "not registered" in str(exc) else ""
        return UnavailableMeter(f"{label} unavailable: {exc}{hint}")
    if rails_power_w(parse_pmic_adc(out)) is None:
        first = (out.strip().splitlines() or ["no output"])[0][:80]
        return UnavailableMeter(
            f"{label} unavailable: {cfg.vcgencmd} pmic_read_adc gave no rails ({first}); a Pi 5 is needed"
        )
    return RpiPmicPowerMeter(vc, cfg.rate_hz)
