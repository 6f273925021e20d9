"""The fleet table as data: columns, cell texts and their tones, alert counts, the summary line.

One owner for what the fleet table shows, used by the terminal view (rich styles per tone) and the web
page (CSS classes per tone), so both show the same columns with the same formatting and highlights.
A simulated device's readings (scripts/fleet_load.py: `is_simulated`) carry a `sim` mark in their cells.
Cell texts are printable (control characters from the network written as visible escapes,
app.inert.printable); each renderer makes them inert for its medium (rich Text, HTML escaping).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, NamedTuple

from app.inert import printable

TEXT_LIMIT = 48  # characters of one network string shown in a cell

# Tones: "" plain, "good", "bad", "warn", "accent" (a fallback runtime), "muted".
ALERT_ORDER = (
    "offline",
    "stopped",
    "stale",
    "p90",
    "throttled",
    "under-voltage",
    "throttled-since-boot",
    "under-voltage-since-boot",
    "fallback",
    "spool-growing",
)


class Column(NamedTuple):
    header: str
    key: str  # the row field it shows (and the web page's sort key via view.SORT_KEYS)
    numeric: bool


COLUMNS: tuple[Column, ...] = (
    Column("device", "device_id", False),
    Column("state", "state", False),
    Column("runtime", "runtime", False),
    Column("model", "model", False),
    Column("fps", "fps", True),
    Column("p90 ms", "infer_p90_ms", True),
    Column("power W", "power_w", True),
    Column("mJ/inf", "energy_mj_per_inference", True),
    Column("temp °C", "temp_c", True),
    Column("spool", "spool_depth", True),
    Column("det/min", "detections_per_min", True),
    Column("present", "presence", False),
    Column("last event", "last_event", False),
    Column("gaps", "seq_gaps", True),
    Column("seen", "age_s", True),
    Column("alerts", "alerts", False),
)


class Cell(NamedTuple):
    text: str
    tone: str = ""


def num(v: Any, fmt: str = ".1f") -> str:
    """A number formatted, or an em dash for null/unmeasured (never 0)."""
    return format(v, fmt) if isinstance(v, int | float) and not isinstance(v, bool) else "—"


# The status `version` of a simulated device (scripts/fleet_load.py publishes it): its rates and latencies
# are a synthetic load profile, not a measurement.
SIM_VERSION = "fleet_load (simulated device)"
SIM_MARK = "sim"


def is_simulated(row: dict[str, Any]) -> bool:
    """True for a device that says it is simulated (its status version): the one rule the table, the
    device page and /metrics share."""
    return row.get("version") == SIM_VERSION


def _reading(row: dict[str, Any], key: str, sim: bool, fmt: str = ".1f", tone: str = "") -> Cell:
    """A number a device reports; a simulated device's is marked `sim` (muted), never shown bare."""
    text = num(row.get(key), fmt)
    if sim and text != "—":
        return Cell(f"{text} {SIM_MARK}", tone or "muted")
    return Cell(text, tone)


def presence_text(presence: Any) -> str:
    """`face 2, person 1` from a presence {label: {count, ...}} (`face ending`: count 0, end pending);
    "none" when empty, — when unknown. Labels are network strings: printable, and cut."""
    if not isinstance(presence, dict):
        return "—"
    items = []
    for label, v in sorted(presence.items()):
        count = v.get("count") if isinstance(v, dict) else None
        name = printable(label, TEXT_LIMIT)
        items.append(f"{name} ending" if count == 0 else f"{name} {num(count, 'd')}")
    return printable(", ".join(items), 2 * TEXT_LIMIT) or "none"


def event_text(event: Any) -> str:
    """`face end, 12 s ago` from a registry row's last_event; — when there was none."""
    if not isinstance(event, dict):
        return "—"
    label = printable(event.get("label"), TEXT_LIMIT)
    return f"{label} {printable(event.get('type'), 8)}, {num(event.get('age_s'), '.0f')} s ago"


def snapshot_text(row: dict[str, Any], now: float) -> str:
    """`snapshot 20 s ago`: the age of the latest snapshot (received), which can be older than the last event."""
    return (
        f"snapshot {num(max(0.0, now - row['snapshot_at']), '.0f')} s ago" if row.get("snapshot_at") else ""
    )


def row_tone(row: dict[str, Any]) -> str:
    """The whole row: bad when offline/stale/stopped, warn with any other alert."""
    alerts = row.get("alerts") or []
    if not row.get("online") or "stale" in alerts:
        return "bad"
    return "warn" if alerts else ""


def cells(row: dict[str, Any]) -> list[Cell]:
    """The table cells of one registry row, in COLUMNS order."""
    alerts = row.get("alerts") or []
    runtime = printable(row.get("runtime") or "—", TEXT_LIMIT)
    if row.get("fallback"):
        runtime += " (fallback)"
    sim = is_simulated(row)
    hot = row.get("throttled") or row.get("under_voltage")
    present = Cell(presence_text(row.get("presence")), "accent" if row.get("presence") else "")
    if row.get("state") == "offline" and row.get("presence"):  # its retained presence outlives the device
        present = Cell(f"{present.text} (last known)", "muted")
    return [
        Cell(printable(row.get("device_id"), TEXT_LIMIT)),
        Cell(printable(row.get("state") or "unknown", TEXT_LIMIT), "good" if row.get("online") else "bad"),
        Cell(runtime, "accent" if row.get("fallback") else ""),
        Cell(printable(row.get("model") or "—", TEXT_LIMIT)),
        _reading(row, "fps", sim),
        _reading(row, "infer_p90_ms", sim, tone="bad" if "p90" in alerts else ""),
        _reading(row, "power_w", sim, ".2f"),
        _reading(row, "energy_mj_per_inference", sim, ".2f"),
        _reading(row, "temp_c", sim, tone="bad" if hot else ""),
        Cell(num(row.get("spool_depth"), "d"), "bad" if row.get("spool_growing") else ""),
        Cell(num(row.get("detections_per_min"), "d")),
        present,
        Cell(event_text(row.get("last_event"))),
        Cell(num(row.get("seq_gaps"), "d")),
        Cell(f"{num(row.get('age_s'), '.0f')} s"),
        Cell(", ".join(alerts), "bad" if alerts else ""),
    ]


def alert_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How many devices carry each alert, in a fixed order (alerts with no device left out)."""
    c = Counter(a for r in rows for a in (r.get("alerts") or []))
    known = {a: c[a] for a in ALERT_ORDER if c[a]}
    return known | {a: n for a, n in sorted(c.items()) if a not in known}


def summary(rows: list[dict[str, Any]], stats: dict[str, Any], p90_alert_ms: float) -> str:
    """The one-line caption: devices online, messages, malformed, lag, alert threshold, connection, and
    what the monitor knows it missed."""
    online = sum(1 for r in rows if r.get("online"))
    lag = stats.get("lag_ms", {})
    missed = stats.get("missed") or {}
    return (
        f"{online}/{len(rows)} online · msgs {sum(stats.get('received', {}).values())}"
        f" · malformed {stats.get('malformed_total', 0)}"
        f" · unsupported version {stats.get('unsupported_version_total', 0)}"
        f" · lag p99 {num(lag.get('p99_ms'), '.0f')} ms"
        f" · p90 alert > {p90_alert_ms:g} ms · {'connected' if stats.get('connected') else 'DISCONNECTED'}"
        + (f" · MISSED: broker dropped {missed['broker_dropped']}" if missed.get("broker_dropped") else "")
        + (
            f" · MISSED: {missed['devices_without_status']} without status"
            if missed.get("devices_without_status")
            else ""
        )
    )
