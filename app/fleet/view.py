"""Live terminal view of the fleet registry (rich): one row per device, sortable, alerts highlighted."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from app.errors import ConfigError
from app.fleet.table import COLUMNS, cells, row_tone, summary

# sort key -> (row field, descending by default)
SORT_KEYS: dict[str, tuple[str, bool]] = {
    "id": ("device_id", False),
    "device": ("device_id", False),
    "online": ("online", False),
    "state": ("state", False),
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


TONE_STYLES = {"": "", "good": "green", "bad": "red", "warn": "yellow", "accent": "magenta", "muted": "dim"}
ROW_STYLES = {"": "", "bad": "bold red", "warn": "yellow"}


def render(rows: list[dict[str, Any]], stats: dict[str, Any], p90_alert_ms: float) -> Any:
    """A rich Table for the registry rows (already sorted); every cell is a Text, so no markup runs."""
    from rich.table import Table
    from rich.text import Text

    caption = summary(rows, stats, p90_alert_ms)
    t = Table(title="Lookout fleet", caption=caption, expand=True, header_style="bold")
    table = [(r, cells(r)) for r in rows]
    id_width = max([len(COLUMNS[0].header), *(len(c[0].text) for _, c in table)])
    for i, col in enumerate(COLUMNS):  # the device id is never cut; the other columns give way first
        t.add_column(
            col.header,
            no_wrap=True,
            justify="right" if col.numeric else "left",
            min_width=id_width if i == 0 else None,
        )
    for r, row_cells in table:
        t.add_row(
            *(Text(c.text, style=TONE_STYLES[c.tone]) for c in row_cells), style=ROW_STYLES[row_tone(r)]
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
