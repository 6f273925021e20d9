"""Live terminal view of the fleet registry (rich): one row per device, sortable, alerts highlighted."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from app.errors import ConfigError

# sort key -> (row field, descending by default)
SORT_KEYS: dict[str, tuple[str, bool]] = {
    "id": ("device_id", False),
    "device": ("device_id", False),
    "online": ("online", False),
    "runtime": ("runtime", False),
    "model": ("model", False),
    "fps": ("fps", True),
    "p90": ("infer_p90_ms", True),
    "power": ("power_w", True),
    "energy": ("energy_mj_per_inference", True),
    "temp": ("temp_c", True),
    "spool": ("spool_depth", True),
    "det": ("detections_per_min", True),
    "gaps": ("seq_gaps", True),
    "seen": ("age_s", False),
    "alerts": ("alerts", True),
}


def sort_rows(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Sort registry rows by a SORT_KEYS name; missing values last. Alerted devices first for 'alerts'."""
    if key not in SORT_KEYS:
        raise ConfigError(f"--sort {key!r}: expected one of {', '.join(SORT_KEYS)}")
    field, desc = SORT_KEYS[key]

    def k(r: dict[str, Any]) -> tuple:
        v = r.get(field)
        if field == "alerts":
            v = len(v or [])
        if v is None or isinstance(v, dict | list):
            return (1, 0, r["device_id"])
        if isinstance(v, bool | int | float):
            return (0, -v if desc else v, r["device_id"])
        return (0, str(v), r["device_id"])

    return sorted(rows, key=k)


def _f(v: Any, fmt: str = ".1f") -> str:
    return format(v, fmt) if isinstance(v, int | float) and not isinstance(v, bool) else "—"


def render(rows: list[dict[str, Any]], stats: dict[str, Any], p90_alert_ms: float) -> Any:
    """A rich Table for the registry rows (already sorted)."""
    from rich.table import Table
    from rich.text import Text

    online = sum(r["online"] for r in rows)
    lag = stats.get("lag_ms", {})
    caption = (
        f"{online}/{len(rows)} online · msgs {sum(stats.get('received', {}).values())}"
        f" · malformed {stats.get('malformed_total', 0)} · lag p99 {_f(lag.get('p99_ms'), '.0f')} ms"
        f" · p90 alert > {p90_alert_ms:g} ms · {'connected' if stats.get('connected') else 'DISCONNECTED'}"
    )
    t = Table(title="Lookout fleet", caption=caption, expand=True, header_style="bold")
    for name in ("device", "state", "runtime", "model", "fps", "p90 ms", "power W", "mJ/inf", "temp °C",
                 "spool", "det/min", "gaps", "seen", "alerts"):  # fmt: skip
        t.add_column(
            name,
            no_wrap=True,
            justify="right" if name not in ("device", "state", "runtime", "model", "alerts") else "left",
        )
    for r in rows:
        alerts = r.get("alerts") or []
        style = "bold red" if "offline" in alerts or "stale" in alerts else ("yellow" if alerts else "")
        runtime = str(r.get("runtime") or "—")
        if r.get("fallback"):
            runtime += " (fallback)"
        power = _f(r.get("power_w"), ".2f")
        src = str(r.get("power_source") or "")
        if src.startswith("simulated"):
            power += " sim"
        t.add_row(
            r["device_id"],
            Text(r["state"], style="green" if r["online"] else "red"),
            Text(runtime, style="magenta" if r.get("fallback") else ""),
            str(r.get("model") or "—"),
            _f(r.get("fps")),
            Text(_f(r.get("infer_p90_ms")), style="red" if "p90" in alerts else ""),
            power,
            _f(r.get("energy_mj_per_inference"), ".2f"),
            Text(_f(r.get("temp_c")), style="red" if r.get("throttled") or r.get("under_voltage") else ""),
            Text(_f(r.get("spool_depth"), "d"), style="red" if r.get("spool_growing") else ""),
            _f(r.get("detections_per_min"), "d"),
            _f(r.get("seq_gaps"), "d"),
            f"{_f(r.get('age_s'), '.0f')} s",
            Text(", ".join(alerts), style="bold red" if alerts else ""),
            style=style,
        )
    return t


def live(
    snapshot: Callable[[], list[dict[str, Any]]],
    stats: Callable[[], dict[str, Any]],
    sort: str,
    p90_alert_ms: float,
    refresh_s: float = 1.0,
) -> None:
    """Redraw until Ctrl-C."""
    from rich.live import Live

    sort_rows([], sort)  # validate the key before taking over the terminal
    with Live(render([], stats(), p90_alert_ms), refresh_per_second=4, screen=False) as lv:
        while True:
            lv.update(render(sort_rows(snapshot(), sort), stats(), p90_alert_ms))
            time.sleep(refresh_s)
