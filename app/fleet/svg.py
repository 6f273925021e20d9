"""Inline SVG time-series charts for the device page (drawn on the server; no JS, no library).

Every text that came from a device is made inert here (app.inert.html_text: control characters shown as
escapes, XML-escaped). Axes follow history.y_range; events (swaps, fallbacks, offline) are vertical marks
on the time axis of every panel.
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Any

from app.fleet.history import Event, Panel, values, y_range
from app.inert import html_text

W, H = 680, 180
ML, MR, MT, MB = 58, 14, 24, 22  # margins: left (y labels), right, top (title), bottom (time labels)
COLORS = ("#2563eb", "#d97706", "#dc2626")  # series 1..3 (p50, p90, p99)
EVENT_COLORS = {"swap": "#7c3aed", "fallback": "#db2777", "offline": "#dc2626", "online": "#16a34a"}
# rough advance per character (viewBox units) of the page's sans-serif: 13 px bold title, 11 px note,
# 13 px italic empty text; enough to keep long network strings (a meter's reason) inside their panel
TITLE_CH, NOTE_CH, EMPTY_CH = 8.0, 6.4, 7.4


def _cut(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max(0, max_chars - 1)].rstrip() + "…"


def _wrap(text: str, max_chars: int, max_lines: int = 3) -> list[str]:
    """Greedy word wrap; the last line is cut with an ellipsis when the text does not fit."""
    lines: list[str] = []
    words = text.split()
    while words and len(lines) < max_lines:
        line = words.pop(0)
        while words and len(line) + 1 + len(words[0]) <= max_chars:
            line += " " + words.pop(0)
        lines.append(_cut(line, max_chars))
    if words:
        lines[-1] = _cut(lines[-1] + " " + " ".join(words), max_chars)
    return lines


def _nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt_tick(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}"


def _time_ticks(t0: float, t1: float) -> list[tuple[float, str]]:
    span = t1 - t0
    steps = (60, 300, 600, 900, 1800, 3600, 7200, 3 * 3600, 6 * 3600, 12 * 3600, 86400)
    step = next((s for s in steps if span / s <= 8), 86400 * math.ceil(span / 86400 / 8))
    fmt = "%H:%M" if span <= 2 * 86400 else "%a %H:%M"
    off = time.localtime(t0).tm_gmtoff
    first = math.ceil((t0 + off) / step) * step - off
    out = []
    t = first
    while t <= t1:
        out.append((t, time.strftime(fmt, time.localtime(t))))
        t += step
    return out


def _segments(pts: list[tuple[float, float]], max_gap: float) -> list[list[tuple[float, float]]]:
    """Split a series where samples are missing for longer than max_gap (offline is not bridged)."""
    segs: list[list[tuple[float, float]]] = []
    for p in pts:
        if segs and p[0] - segs[-1][-1][0] <= max_gap:
            segs[-1].append(p)
        else:
            segs.append([p])
    return segs


def chart(
    panel: Panel,
    rows: list[dict[str, Any]],
    evts: list[Event],
    t0: float,
    t1: float,
    *,
    note: str = "",
    empty_text: str = "not measured (null)",
    threshold: float | None = None,
) -> str:
    """One panel as an <svg> element (a string)."""
    pw, ph = W - ML - MR, H - MT - MB
    series = [(label, values(rows, key)) for key, label in panel.series]
    all_vals = [v for _, pts in series for _, v in pts]
    if panel.title == "throttling":
        lo, hi = -0.1, 1.25
    else:
        # the alert threshold joins the axis only when the data come near it (else it flattens them)
        near = threshold is not None and all_vals and max(all_vals) > 0.5 * threshold
        lo, hi = y_range(all_vals + ([threshold] if near else []), panel.zero_based)
    span_t = max(t1 - t0, 1.0)

    def x(t: float) -> float:
        return ML + (t - t0) / span_t * pw

    def y(v: float) -> float:
        return MT + ph - (v - lo) / (hi - lo) * ph

    title = html_text(panel.title + (f" ({panel.unit})" if panel.unit else ""))
    parts = [
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{title}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<text class="title" x="{ML}" y="15">{title}</text>',
    ]
    if note:  # right of the title, cut to the room left (the whole note on hover)
        room = int((W - MR - ML - TITLE_CH * len(title) - 16) / NOTE_CH)
        parts.append(
            f'<text class="note" x="{W - MR}" y="15" text-anchor="end">{html_text(_cut(note, room))}'
            f"<title>{html_text(note)}</title></text>"
        )
    parts.append(f'<rect class="plot" x="{ML}" y="{MT}" width="{pw}" height="{ph}"/>')
    if panel.title == "throttling":
        for v, lab in ((0, "no"), (1, "yes")):
            parts.append(f'<line class="grid" x1="{ML}" x2="{ML + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}"/>')
            parts.append(
                f'<text class="ytick" x="{ML - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{lab}</text>'
            )
    else:
        for v in _nice_ticks(lo, hi):
            parts.append(f'<line class="grid" x1="{ML}" x2="{ML + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}"/>')
            parts.append(
                f'<text class="ytick" x="{ML - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{_fmt_tick(v)}</text>'
            )
    for t, lab in _time_ticks(t0, t1):
        parts.append(f'<line class="grid" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{MT}" y2="{MT + ph}"/>')
        parts.append(f'<text class="xtick" x="{x(t):.1f}" y="{H - 6}" text-anchor="middle">{lab}</text>')
    if threshold is not None and all_vals and lo <= threshold <= hi:
        parts.append(
            f'<line class="threshold" x1="{ML}" x2="{ML + pw}" y1="{y(threshold):.1f}" y2="{y(threshold):.1f}">'
            f"<title>p90 alert threshold {threshold:g} ms</title></line>"
        )
    for e in evts:
        if t0 <= e.ts <= t1:
            c = EVENT_COLORS.get(e.kind, "#555")
            parts.append(
                f'<line class="event" stroke="{c}" x1="{x(e.ts):.1f}" x2="{x(e.ts):.1f}" y1="{MT}" '
                f'y2="{MT + ph}"><title>{html_text(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.ts)))} '
                f"{html_text(e.text)}</title></line>"
            )
    gaps = sorted(b["ts"] - a["ts"] for a, b in itertools.pairwise(rows))
    max_gap = max(3 * gaps[len(gaps) // 2], 30.0) if gaps else 30.0
    step = panel.title == "throttling"
    for i, (_label, pts) in enumerate(series):
        color = COLORS[i % len(COLORS)] if len(series) > 1 else COLORS[0]
        if step:
            color = ("#d97706", "#dc2626")[i % 2]
        for seg in _segments(pts, max_gap):
            if len(seg) == 1:
                parts.append(
                    f'<circle cx="{x(seg[0][0]):.1f}" cy="{y(seg[0][1]):.1f}" r="2.5" fill="{color}"/>'
                )
                continue
            coords = []
            for j, (t, v) in enumerate(seg):
                if step and j:
                    coords.append(f"{x(t):.1f},{y(seg[j - 1][1]):.1f}")
                coords.append(f"{x(t):.1f},{y(v):.1f}")
            parts.append(f'<polyline class="series" stroke="{color}" points="{" ".join(coords)}"/>')
    if len(series) > 1:
        lx = ML + pw
        for i, (label, _pts) in reversed(list(enumerate(series))):
            color = ("#d97706", "#dc2626")[i % 2] if step else COLORS[i % len(COLORS)]
            text = html_text(label)
            lx -= 12 + 7 * len(text) + 14
            parts.append(f'<rect x="{lx:.0f}" y="{MT + 5}" width="10" height="10" fill="{color}"/>')
            parts.append(f'<text class="legend" x="{lx + 14:.0f}" y="{MT + 14}">{text}</text>')
    if not all_vals:  # wrapped inside the plot: a reason can be long
        lines = _wrap(empty_text, int((pw - 16) / EMPTY_CH))
        y0 = MT + ph / 2 + 5 - 8 * (len(lines) - 1)
        spans = "".join(
            f'<tspan x="{ML + pw / 2:.0f}" y="{y0 + 16 * i:.0f}">{html_text(line)}</tspan>'
            for i, line in enumerate(lines)
        )
        parts.append(
            f'<text class="empty" text-anchor="middle">{spans}<title>{html_text(empty_text)}</title></text>'
        )
    parts.append("</svg>")
    return "".join(parts)
