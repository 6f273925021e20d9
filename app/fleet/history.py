"""Reading a device's history: swap/fallback events, chart panels, axis ranges, downsampling.

Shared by the web pages (SVG) and the static report (matplotlib), so both mark the same events and
draw the same axes: a rate, latency, power or energy axis starts at zero (a 1 % dip must not look like
a cliff); a temperature axis spans at least 10 °C.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from app.errors import ConfigError
from app.fleet.store import parse_duration

# the windows the device page offers; the API accepts any duration parse_duration does
WINDOWS = ("1h", "24h", "7d")
MAX_SINCE_S = 90 * 86400.0


class Event(NamedTuple):
    ts: float
    kind: str  # "swap" | "fallback" | "offline" | "online"
    text: str


class Panel(NamedTuple):
    title: str
    unit: str
    series: tuple[tuple[str, str], ...]  # (row key, legend label)
    zero_based: bool


PANELS: tuple[Panel, ...] = (
    Panel("fps", "frames/s", (("fps", "fps"),), True),
    Panel(
        "inference latency",
        "ms",
        (("infer_p50_ms", "p50"), ("infer_p90_ms", "p90"), ("infer_p99_ms", "p99")),
        True,
    ),
    Panel("power", "W", (("power_w", "power"),), True),
    Panel("energy per inference", "mJ", (("energy_mj_per_inference", "energy"),), True),
    Panel("temperature", "°C", (("temp_c", "temperature"),), False),
    Panel("throttling", "", (("throttled", "throttled"), ("under_voltage", "under-voltage")), True),
)


def parse_since(text: str) -> float:
    """A history window ('1h', '24h', '7d', ...) in seconds, at most 90 days (ConfigError otherwise)."""
    try:
        s = parse_duration(text)
    except ConfigError:
        s = -1.0
    if not 0 < s <= MAX_SINCE_S:
        raise ConfigError(
            f"since={text!r}: expected a duration such as 1h, 24h or 7d (s/m/h/d/w), at most 90d"
        )
    return s


def _label(fallback: Any) -> str:
    if isinstance(fallback, dict):
        reason = str(fallback.get("reason") or "")
        text = f"fallback {fallback.get('from')} → {fallback.get('to')}"
        return f"{text}: {reason}" if reason else text
    return f"fallback: {fallback}"


def events(rows: list[dict[str, Any]]) -> list[Event]:
    """Swaps (runtime or model changed), fallbacks (a fallback appeared) and online/offline changes
    between consecutive samples of one device (oldest first)."""
    out: list[Event] = []
    prev: dict[str, Any] | None = None
    for r in rows:
        if prev is not None:
            old = (prev.get("model"), prev.get("runtime"))
            new = (r.get("model"), r.get("runtime"))
            if old != new and None not in old and None not in new:
                what = (
                    f"{old[1]} → {new[1]}" if old[0] == new[0] else f"{old[0]}/{old[1]} → {new[0]}/{new[1]}"
                )
                out.append(Event(r["ts"], "swap", f"swap {what}"))
            if r.get("fallback") and r.get("fallback") != prev.get("fallback"):
                out.append(Event(r["ts"], "fallback", _label(r["fallback"])))
            if bool(prev.get("online")) != bool(r.get("online")):
                state = "online" if r.get("online") else "offline"
                out.append(Event(r["ts"], state, f"{state} ({r.get('state')})"))
        elif r.get("fallback"):
            out.append(Event(r["ts"], "fallback", _label(r["fallback"])))
        prev = r
    return out


def values(rows: list[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    """(ts, value) points of one column; nulls (unmeasured) are left out, booleans become 0/1."""
    pts = []
    for r in rows:
        v = r.get(key)
        if isinstance(v, bool):
            pts.append((r["ts"], 1.0 if v else 0.0))
        elif isinstance(v, int | float) and math.isfinite(v):
            pts.append((r["ts"], float(v)))
    return pts


def y_range(vals: list[float], zero_based: bool) -> tuple[float, float]:
    """The axis range for a panel: from 0 for non-negative quantities, else at least 10 units wide."""
    if not vals:
        return (0.0, 1.0)
    lo, hi = min(vals), max(vals)
    if zero_based and lo >= 0:
        return (0.0, hi * 1.15 if hi > 0 else 1.0)
    mid, half = (lo + hi) / 2, max((hi - lo) / 2 * 1.15, 5.0)
    return (mid - half, mid + half)


def downsample(rows: list[dict[str, Any]], max_points: int) -> list[dict[str, Any]]:
    """At most ~max_points rows, evenly spaced in time: per bucket the row with the highest inference
    p90 (spikes stay visible); rows that start an event are always kept."""
    if len(rows) <= max_points or max_points < 2:
        return rows
    t0, t1 = rows[0]["ts"], rows[-1]["ts"]
    width = (t1 - t0) / max_points or 1.0
    keep = {id(r) for r in _event_rows(rows)}
    buckets: dict[int, dict[str, Any]] = {}
    out_events = []
    for r in rows:
        if id(r) in keep:
            out_events.append(r)
            continue
        b = int((r["ts"] - t0) / width)
        cur = buckets.get(b)
        if cur is None or (r.get("infer_p90_ms") or 0) > (cur.get("infer_p90_ms") or 0):
            buckets[b] = r
    return sorted([*buckets.values(), *out_events], key=lambda r: r["ts"])


def _event_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ts = {e.ts for e in events(rows)}
    prev_ts = {rows[i - 1]["ts"] for i in range(1, len(rows)) if rows[i]["ts"] in ts}
    return [r for r in rows if r["ts"] in ts or r["ts"] in prev_ts]
