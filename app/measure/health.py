"""Device health: process CPU % and RSS, temperatures, Raspberry Pi throttling flags.

Temperatures: every ``/sys/class/thermal/thermal_zone*/temp`` (m°C, keyed by the zone's ``type``) and
``/sys/class/apex/apex_N/temp`` of a PCIe Coral (m°C). Throttling: ``vcgencmd get_throttled`` decoded
into named flags, now (bits 0-3) and since boot (bits 16-19). Missing parts are None, and
``reasons`` says why.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from app.measure.power.base import run_command

THROTTLE_FLAGS = ("under_voltage", "arm_freq_capped", "throttled", "soft_temp_limit")
_THROTTLED = re.compile(r"throttled=(0x[0-9a-fA-F]+|\d+)")


def decode_throttled(value: int) -> dict[str, Any]:
    """{"raw": "0x50005", "now": {flag: bool}, "since_boot": {flag: bool}, "any_now", "any_since_boot"}."""
    now = {name: bool(value >> bit & 1) for bit, name in enumerate(THROTTLE_FLAGS)}
    since = {name: bool(value >> (16 + bit) & 1) for bit, name in enumerate(THROTTLE_FLAGS)}
    return {
        "raw": f"0x{value:x}",
        "now": now,
        "since_boot": since,
        "any_now": any(now.values()),
        "any_since_boot": any(since.values()),
    }


def parse_throttled(text: str) -> int:
    """The integer of `throttled=0x50005`; ValueError otherwise."""
    m = _THROTTLED.search(text)
    if not m:
        raise ValueError(f"unexpected get_throttled output: {text.strip()[:60]!r}")
    return int(m.group(1), 0)


def _read_milli(path: Path) -> float | None:
    try:
        return int(path.read_text().split()[0]) / 1000.0
    except (OSError, ValueError, IndexError):
        return None


class HealthReader:
    """Reads health figures; `root` is the filesystem root (a fixture tree in tests), `run` the command runner."""

    def __init__(
        self,
        root: Path = Path("/"),
        run: Callable[[list[str]], str] | None = None,
        vcgencmd: str = "vcgencmd",
        pid: int | None = None,
    ) -> None:
        self.root = Path(root)
        self.run = run or run_command
        self.vcgencmd = vcgencmd
        self.proc = psutil.Process(pid)
        self.proc.cpu_percent(None)  # prime: the next call reports usage since now
        self._vcgencmd_missing: str | None = None

    def temperatures(self) -> dict[str, float]:
        """{zone type or apex_N: °C}."""
        temps: dict[str, float] = {}
        zones = self.root / "sys/class/thermal"
        for zone in sorted(zones.glob("thermal_zone*"), key=lambda p: (len(p.name), p.name)):
            t = _read_milli(zone / "temp")
            if t is None:
                continue
            try:
                kind = (zone / "type").read_text().strip() or zone.name
            except OSError:
                kind = zone.name
            key = kind if kind not in temps else f"{kind}:{zone.name}"
            temps[key] = t
        for apex in sorted((self.root / "sys/class/apex").glob("apex_*")):
            t = _read_milli(apex / "temp")
            if t is not None:
                temps[apex.name] = t
        return temps

    def throttled(self) -> tuple[dict[str, Any] | None, str | None]:
        """(decoded flags, None) or (None, reason)."""
        if self._vcgencmd_missing:
            return None, self._vcgencmd_missing
        try:
            return decode_throttled(parse_throttled(self.run([self.vcgencmd, "get_throttled"]))), None
        except FileNotFoundError:
            self._vcgencmd_missing = f"{self.vcgencmd} not found (not a Raspberry Pi)"
            return None, self._vcgencmd_missing
        except (OSError, RuntimeError, ValueError) as exc:
            return None, str(exc)

    def snapshot(self) -> dict[str, Any]:
        """{"cpu_percent", "rss_mb", "temp_c", "temps", "throttled", "reasons"}."""
        reasons: dict[str, str] = {}
        with self.proc.oneshot():
            cpu = self.proc.cpu_percent(None)
            rss_mb = self.proc.memory_info().rss / (1024 * 1024)
        temps = self.temperatures()
        if not temps:
            reasons["temp_c"] = f"no readable thermal zones under {self.root / 'sys/class/thermal'}"
        throttled, why = self.throttled()
        if why:
            reasons["throttled"] = why
        return {
            "cpu_percent": cpu,
            "rss_mb": rss_mb,
            "temp_c": max(temps.values()) if temps else None,
            "temps": temps,
            "throttled": throttled,
            "reasons": reasons,
        }
