"""`lookout fleet report`: index.html with per-device PNG charts, the fleet table and a runtime comparison."""

from __future__ import annotations

import html
import re
import statistics
import time
from pathlib import Path
from typing import Any

from app.errors import ConfigError
from app.fleet.history import PANELS, events, values, y_range
from app.fleet.runtimes import bench_rows, compare, n_devices
from app.fleet.store import Store
from app.fleet.table import SIM_MARK, is_simulated
from app.inert import chart_text, html_text

COLORS = ("#2563eb", "#d97706", "#dc2626")
EVENT_COLORS = {"swap": "#7c3aed", "fallback": "#db2777", "offline": "#dc2626", "online": "#16a34a"}

TABLE_COLUMNS = (
    ("device_id", "device"),
    ("state", "state"),
    ("runtime", "runtime"),
    ("model", "model"),
    ("fps", "fps"),
    ("infer_p90_ms", "p90 ms"),
    ("power_w", "power W"),
    ("power_source", "power source"),
    ("energy_mj_per_inference", "mJ/inference"),
    ("temp_c", "temp °C"),
    ("spool_depth", "spool"),
    ("detections_per_min", "det/min"),
    ("seq_gaps", "seq gaps"),
)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def has_metrics(rows: list[dict[str, Any]]) -> bool:
    """Whether any sample carries a metric (a device that only announced its status has none)."""
    return any(r.get(k) is not None for r in rows for k in ("fps", "infer_p90_ms", "temp_c", "power_w"))


def device_chart(
    device_id: str, rows: list[dict[str, Any]], path: Path, p90_alert_ms: float
) -> dict[str, Any]:
    """Panels over time (fps, inference p50/p90/p99, power with its source, energy, temperature, and
    throttling when reported) for one device, swaps/fallbacks/offline marked on the time axis, as a PNG.
    Returns what was drawn: the y limits per panel and the events marked."""
    import matplotlib

    matplotlib.use("Agg")
    import textwrap
    from datetime import datetime

    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    panels = [p for p in PANELS if p.title != "throttling" or any(values(rows, k) for k, _ in p.series)]
    evts = events(rows)
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 1.65 * len(panels) + 0.9), sharex=True)
    ylim: dict[str, tuple[float, float]] = {}
    sources = sorted({str(r["power_source"]) for r in rows if r.get("power_source")})
    for ax, panel in zip(axes, panels, strict=True):
        title = panel.title + (f" ({panel.unit})" if panel.unit else "")
        if panel.title in ("power", "energy per inference") and sources:
            title += " — source: " + "; ".join(sources)
        ax.set_title(chart_text(textwrap.shorten(title, 110, placeholder=" …")), fontsize=8.5, loc="left")
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
        drawn = []
        for i, (key, label) in enumerate(panel.series):
            pts = values(rows, key)
            if pts:
                drawn += [v for _, v in pts]
                ax.plot([datetime.fromtimestamp(t) for t, _ in pts], [v for _, v in pts], linewidth=1.1,
                        marker="." if len(pts) < 40 else None, color=COLORS[i % len(COLORS)], label=label,
                        drawstyle="steps-post" if panel.title == "throttling" else "default")  # fmt: skip
        if not drawn:
            ax.text(
                0.5,
                0.5,
                "not measured (null)",
                transform=ax.transAxes,
                ha="center",
                va="center",
                color="gray",
            )
        near = panel.title == "inference latency" and drawn and max(drawn) > 0.5 * p90_alert_ms
        lo, hi = y_range(drawn + ([p90_alert_ms] if near else []), panel.zero_based)
        if panel.title == "throttling":
            lo, hi = -0.1, 1.2
            ax.set_yticks([0, 1], ["no", "yes"])
        ax.set_ylim(lo, hi)
        ylim[panel.title] = (lo, hi)
        if near:
            ax.axhline(p90_alert_ms, color="red", linestyle="--", linewidth=0.8)
        if len(panel.series) > 1 and drawn:
            ax.legend(fontsize=7, loc="upper left", ncols=len(panel.series), frameon=False)
        for ev in evts:
            ax.axvline(datetime.fromtimestamp(ev.ts), color=EVENT_COLORS.get(ev.kind, "gray"), linestyle="--",
                       linewidth=1.0)  # fmt: skip
    top = axes[0]
    span = max((rows[-1]["ts"] - rows[0]["ts"]) if rows else 1.0, 1.0)
    placed: list[float] = []
    for ev in evts:  # labels of events close in time are stacked, not drawn over each other
        k = sum(1 for t in placed if abs(ev.ts - t) < 0.15 * span)
        placed.append(ev.ts)
        top.annotate(chart_text(textwrap.shorten(ev.text, 48, placeholder="…")), (datetime.fromtimestamp(ev.ts), 1.0),
                     xycoords=("data", "axes fraction"), xytext=(3, -9 - 10 * k), textcoords="offset points",
                     fontsize=7, color=EVENT_COLORS.get(ev.kind, "gray"),
                     bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none", "pad": 0.5})  # fmt: skip
    locator = mdates.AutoDateLocator()
    axes[-1].xaxis.set_major_locator(locator)
    axes[-1].xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    sim = " (simulated: synthetic numbers)" if is_simulated(rows[-1]) else ""
    fig.suptitle(chart_text(textwrap.shorten(device_id, 80)) + sim, fontsize=11, x=0.01, ha="left")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=80)
    plt.close(fig)
    return {"ylim": ylim, "events": evts}


def comparison_chart(rows: list[dict[str, Any]], path: Path) -> list[str]:
    """p90 latency per runtime across devices, one box plot per model; returns the panel titles (none: no
    chart written)."""
    by_model: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        if r["p90_ms"] is not None and not r["error"]:
            # simulated documents get a panel of their own, never a box shared with measured numbers
            title = f"{r['model']} (simulated)" if r["simulated"] else r["model"]
            by_model.setdefault(title, {}).setdefault(r["runtime"], []).append(r["p90_ms"])
    if not by_model:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import textwrap

    import matplotlib.pyplot as plt

    models = sorted(by_model)[:6]
    fig, axes = plt.subplots(1, len(models), figsize=(3.6 * len(models) + 0.6, 3.6), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        data = by_model[model]
        names = sorted(data, key=lambda n: statistics.median(data[n]))
        ax.boxplot([data[n] for n in names], showfliers=True)
        ax.set_xticks(
            range(1, len(names) + 1),
            [f"{chart_text(n, 40)}\n({len(data[n])} dev.)" for n in names],
            fontsize=8,
        )
        ax.set_title(chart_text(textwrap.shorten(model, 40)), fontsize=9)
        ax.set_ylim(0, max(max(v) for v in data.values()) * 1.15)
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel("inference p90, ms")
    sim = " — simulated documents in panels of their own" if any(r["simulated"] for r in rows) else ""
    fig.suptitle(f"lookout bench across the fleet, by model{sim}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=80)
    plt.close(fig)
    return models


def _table(rows: list[dict[str, Any]], cols: list[tuple[str, str]]) -> str:
    head = "".join(f"<th>{html.escape(t)}</th>" for _, t in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html_text(_fmt(r.get(k)))}</td>" for k, _ in cols) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(
    store: Store, out: Path, since_s: float, p90_alert_ms: float = 100.0, max_charts: int = 100
) -> Path:
    """Write out/index.html, a PNG per device (at most `max_charts`, alerted devices first) and the
    runtime comparison; returns the index.html path."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"report directory {out}: {exc}") from None
    now = time.time()
    since = now - since_s
    samples = store.samples(since)
    by_dev: dict[str, list[dict[str, Any]]] = {}
    for s in samples:
        by_dev.setdefault(s["device_id"], []).append(s)
    benches = store.latest_bench(since)
    latest = [rows[-1] for _, rows in sorted(by_dev.items())]

    def priority(dev: str) -> tuple:
        last = by_dev[dev][-1]
        bad = not last["online"] or (last["infer_p90_ms"] or 0) > p90_alert_ms or bool(last["throttled"])
        return (not bad, dev)

    charted = sorted(by_dev, key=priority)[: max(0, max_charts)]
    charts = []
    for dev in sorted(charted):
        rows = by_dev[dev]
        name = f"device-{_safe(dev)}.png"
        if has_metrics(rows):
            device_chart(dev, rows, out / name, p90_alert_ms)
            charts.append((dev, name, len(rows)))
        else:
            charts.append((dev, None, len(rows)))
    results = bench_rows(benches)
    groups = compare(results, "model")
    has_cmp = bool(comparison_chart(results, out / "runtimes.png"))

    simulated = any(r["simulated"] for r in results) or any(is_simulated(r) for r in latest)
    latest = [r | {"device_id": f"{r['device_id']} ({SIM_MARK})"} if is_simulated(r) else r for r in latest]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Lookout fleet report</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#eee}"
        "img{max-width:100%;border:1px solid #ddd;margin:4px 0}</style></head><body>",
        "<h1>Lookout fleet report</h1>",
        f"<p>Window: {html.escape(time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since)))} to "
        f"{html.escape(time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now)))} · {n_devices(len(by_dev))} · "
        f"{len(samples)} history rows · database {html_text(store.location)}</p>",
    ]
    if simulated:
        parts.append(
            f"<p><b>Note:</b> some devices are simulated (fleet_load): their rows say ({SIM_MARK}), and their "
            "numbers are synthetic, not measurements; their benches are compared apart.</p>"
        )
    parts += ["<h2>Fleet (latest sample per device)</h2>", _table(latest, list(TABLE_COLUMNS))]
    parts.append("<h2>Runtimes across the fleet, by model (from each device's retained bench)</h2>")
    if groups:
        for g in groups:
            sim = " (simulated numbers)" if g["simulated"] else ""
            parts.append(f"<h3>{html_text(g['model'])} <small>{n_devices(g['devices'])}{sim}</small></h3>")
            parts.append(
                _table(
                    g["runtimes"],
                    [
                        ("runtime", "runtime"),
                        ("devices", "devices"),
                        ("median_p50_ms", "median p50 ms"),
                        ("median_p90_ms", "median p90 ms"),
                        ("median_throughput_fps", "median fps"),
                        ("median_energy_mj_per_inference", "median mJ/inference"),
                        ("median_rss_mb", "median RSS MB"),
                        ("errors", "errors"),
                    ],
                )
            )
        if has_cmp:
            parts.append("<p><img src='runtimes.png' alt='p90 per runtime, by model'></p>")
        parts.append("<details><summary>per device</summary>")
        parts.append(
            _table(
                results,
                [
                    ("device_id", "device"),
                    ("model", "model"),
                    ("board", "board"),
                    ("runtime", "runtime"),
                    ("p50_ms", "p50 ms"),
                    ("p90_ms", "p90 ms"),
                    ("throughput_fps", "fps"),
                    ("rss_mb", "RSS MB"),
                    ("energy_mj_per_inference", "mJ/inference"),
                    ("simulated", "simulated"),
                    ("error", "error"),
                ],
            )
        )
        parts.append("</details>")
    else:
        parts.append("<p>No bench results in this window (devices publish them with the bench command).</p>")
    parts.append("<h2>Devices</h2>")
    if len(charted) < len(by_dev):
        parts.append(
            f"<p>Charts for {len(charted)} of {n_devices(len(by_dev))} (alerted first; --max-charts).</p>"
        )
    for dev, name, n in charts:
        parts.append(f"<h3 id='{html_text(_safe(dev))}'>{html_text(dev)} <small>({n} samples)</small></h3>")
        if name is None:
            parts.append("<p class='nometrics'>no metrics yet (the device announced its status only)</p>")
        else:
            parts.append(f"<img src='{html_text(name)}' alt='charts of {html_text(dev)}'>")
    parts.append("</body></html>")
    index = out / "index.html"
    index.write_text("\n".join(parts), encoding="utf-8")
    return index
