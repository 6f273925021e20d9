"""Device health: process CPU % and RSS, temperatures, the board's model, Raspberry Pi throttling.

Temperatures: every ``/sys/class/thermal/thermal_zone*/temp`` (m°C, keyed by the zone's ``type``) and
``/sys/class/apex/apex_N/temp`` of a PCIe Coral (m°C); on a Pi where no zone is readable,
``vcgencmd measure_temp``. Throttling: ``vcgencmd get_throttled``, decoded by the payload contract's
``Throttling`` (the one shape from here to the fleet). Board: ``/proc/device-tree/model``. Everything is
read under ``root`` (``HostRoots.base``: ``/`` on a device, a fixture tree in tests). A reading that
fails is None, and ``reasons`` (keyed like the metrics fields) says why; nothing here raises.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psutil

from app.measure.power.base import Runner
from app.measure.vcgencmd import Vcgencmd, VcgencmdError
from app.telemetry.contract import Throttling

_THROTTLED = re.compile(r"throttled=(0x[0-9a-fA-F]+|\d+)\b")
_TEMP = re.compile(r"temp=(-?\d+(?:\.\d+)?)'C")


def parse_throttled(text: str) -> int:
    """The integer of `throttled=0x50005`; ValueError otherwise."""
    m = _THROTTLED.search(text)
    if not m:
        raise ValueError(f"unexpected get_throttled answer: {text.strip()[:60]!r}")
    return int(m.group(1), 0)


def parse_measure_temp(text: str) -> float:
    """°C of `temp=63.9'C`; ValueError otherwise."""
    m = _TEMP.search(text)
    if not m:
        raise ValueError(f"unexpected measure_temp answer: {text.strip()[:60]!r}")
    return float(m.group(1))


def _read_milli(path: Path) -> float | None:
    try:
        return int(path.read_text().split()[0]) / 1000.0
    except (OSError, ValueError, IndexError):
        return None


def board_model(root: Path = Path("/")) -> str | None:
    """The hardware model the firmware names (`Raspberry Pi 5 Model B Rev 1.0`), None without a device tree."""
    try:
        text = (Path(root) / "proc/device-tree/model").read_bytes().split(b"\0")[0].decode("utf-8", "replace")
    except OSError:
        return None
    return text.strip() or None


class HealthReader:
    """Reads health figures; `root` is the filesystem root, `run` the command runner (argv -> stdout)."""

    def __init__(
        self,
        root: Path = Path("/"),
        run: Runner | None = None,
        vcgencmd: str = "vcgencmd",
        pid: int | None = None,
        timeout_s: float = 1.0,
    ) -> None:
        self.root = Path(root)
        self.vc = Vcgencmd(vcgencmd, run, timeout_s=timeout_s)
        self.proc = psutil.Process(pid)
        self.proc.cpu_percent(None)  # prime: the next call reports usage since now

    def temperatures(self) -> dict[str, float]:
        """{zone type or apex_N: °C} from sysfs."""
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

    def throttled(self) -> tuple[Throttling | None, str | None]:
        """(decoded flags, None) or (None, reason)."""
        try:
            return Throttling.from_register(parse_throttled(self.vc.query("get_throttled"))), None
        except (VcgencmdError, ValueError) as exc:
            return None, str(exc)

    def firmware_temp(self) -> tuple[float | None, str | None]:
        """(°C from `vcgencmd measure_temp`, None) or (None, reason)."""
        try:
            return parse_measure_temp(self.vc.query("measure_temp")), None
        except (VcgencmdError, ValueError) as exc:
            return None, str(exc)

    def snapshot(self) -> dict[str, Any]:
        """{"cpu_percent", "rss_mb", "temp_c", "temps", "throttled", "reasons"}."""
        reasons: dict[str, str] = {}
        with self.proc.oneshot():
            cpu = self.proc.cpu_percent(None)
            rss_mb = self.proc.memory_info().rss / (1024 * 1024)
        temps = self.temperatures()
        if not temps:
            soc, why = self.firmware_temp()
            if soc is not None:
                temps["vcgencmd"] = soc
            else:
                reasons["temp_c"] = f"no readable thermal zone under {self.root / 'sys/class/thermal'}; {why}"
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
