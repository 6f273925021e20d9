"""`lookout fleet report`: index.html with per-device PNG charts, the fleet table and a runtime comparison."""

from __future__ import annotations

import html
import re
import statistics
import time
from pathlib import Path
from typing import Any

from app.errors import ConfigError
from app.fleet.store import Store

PANELS = (
    ("fps", "fps", "frames/s"),
    ("infer_p90_ms", "inference p90", "ms"),
    ("power_w", "power", "W"),
    ("temp_c", "temperature", "°C"),
)
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


def device_chart(device_id: str, rows: list[dict[str, Any]], path: Path, p90_alert_ms: float) -> None:
    """Four panels over time (fps, inference p90, power, temperature) for one device, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from datetime import datetime

    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    times = [datetime.fromtimestamp(r["ts"]) for r in rows]
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(8, 7), sharex=True)
    for ax, (key, title, unit) in zip(axes, PANELS, strict=True):
        pts = [(t, r[key]) for t, r in zip(times, rows, strict=True) if isinstance(r[key], int | float)]
        label = title
        if key == "power_w":
            sources = sorted({str(r["power_source"]) for r in rows if r["power_source"]})
            label += f" ({'; '.join(sources)[:70]})" if sources else ""
        ax.set_title(label, fontsize=9, loc="left")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", linewidth=1)
            if key == "infer_p90_ms" and max(p[1] for p in pts) > 0.5 * p90_alert_ms:
                ax.axhline(p90_alert_ms, color="red", linestyle="--", linewidth=0.8)
        else:
            ax.text(
                0.5,
                0.5,
                "not measured (null)",
                transform=ax.transAxes,
                ha="center",
                va="center",
                color="gray",
            )
    axes[-1].xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M:%S"))
    fig.suptitle(device_id)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=80)
    plt.close(fig)


def runtime_comparison(benches: dict[str, dict]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(per device+runtime rows, per runtime summary) from the bench documents of each device."""
    rows = []
    for dev, doc in sorted(benches.items()):
        for r in doc.get("results") or []:
            if not isinstance(r, dict):
                continue
            lat = r.get("latency_ms") if isinstance(r.get("latency_ms"), dict) else {}
            rows.append(
                {
                    "device_id": dev,
                    "model": doc.get("model"),
                    "runtime": r.get("runtime"),
                    "p50_ms": lat.get("p50"),
                    "p90_ms": lat.get("p90"),
                    "throughput_fps": r.get("throughput_fps"),
                    "rss_mb": r.get("rss_mb"),
                    "energy_mj_per_inference": r.get("energy_mj_per_inference"),
                    "error": r.get("error"),
                    "simulated": bool(isinstance(doc.get("host"), dict) and doc["host"].get("simulated")),
                }
            )
    summary = []
    for rt in sorted({str(r["runtime"]) for r in rows}):
        mine = [r for r in rows if str(r["runtime"]) == rt]

        def med(key: str, mine: list[dict[str, Any]] = mine) -> float | None:
            vals = [r[key] for r in mine if isinstance(r[key], int | float)]
            return statistics.median(vals) if vals else None

        summary.append(
            {
                "runtime": rt,
                "devices": len({r["device_id"] for r in mine}),
                "median_p50_ms": med("p50_ms"),
                "median_p90_ms": med("p90_ms"),
                "median_throughput_fps": med("throughput_fps"),
                "median_energy_mj_per_inference": med("energy_mj_per_inference"),
                "errors": sum(1 for r in mine if r["error"]),
            }
        )
    return rows, summary


def comparison_chart(rows: list[dict[str, Any]], path: Path) -> bool:
    """p90 latency per runtime across devices (box per runtime). False when there is nothing to plot."""
    data = {}
    for r in rows:
        if isinstance(r["p90_ms"], int | float):
            data.setdefault(str(r["runtime"]), []).append(r["p90_ms"])
    if not data:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = sorted(data)
    ax.boxplot([data[n] for n in names], showfliers=True)
    ax.set_xticks(range(1, len(names) + 1), [f"{n}\n({len(data[n])} devices)" for n in names])
    ax.set_ylabel("inference p90, ms")
    sim = " (includes SIMULATED bench documents)" if any(r["simulated"] for r in rows) else ""
    ax.set_title(f"lookout bench across the fleet: p90 latency per runtime{sim}", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=80)
    plt.close(fig)
    return True


def _table(rows: list[dict[str, Any]], cols: list[tuple[str, str]]) -> str:
    head = "".join(f"<th>{html.escape(t)}</th>" for _, t in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(k)))}</td>" for k, _ in cols) + "</tr>" for r in rows
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
        device_chart(dev, rows, out / name, p90_alert_ms)
        charts.append((dev, name, len(rows)))
    bench_rows, summary = runtime_comparison(benches)
    has_cmp = comparison_chart(bench_rows, out / "runtimes.png")

    simulated = any(r["simulated"] for r in bench_rows) or any(
        str(r.get("power_source") or "").startswith("simulated") for r in latest
    )
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Lookout fleet report</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#eee}"
        "img{max-width:100%;border:1px solid #ddd;margin:4px 0}</style></head><body>",
        "<h1>Lookout fleet report</h1>",
        f"<p>Window: {html.escape(time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since)))} to "
        f"{html.escape(time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now)))} · {len(by_dev)} devices · "
        f"{len(samples)} history rows · database {html.escape(str(store.path))}</p>",
    ]
    if simulated:
        parts.append(
            "<p><b>Note:</b> some devices report simulated numbers (fleet_load); see power source and bench host.</p>"
        )
    parts += ["<h2>Fleet (latest sample per device)</h2>", _table(latest, list(TABLE_COLUMNS))]
    parts.append("<h2>Runtimes across the fleet (from each device's retained bench)</h2>")
    if summary:
        parts.append(
            _table(
                summary,
                [
                    ("runtime", "runtime"),
                    ("devices", "devices"),
                    ("median_p50_ms", "median p50 ms"),
                    ("median_p90_ms", "median p90 ms"),
                    ("median_throughput_fps", "median fps"),
                    ("median_energy_mj_per_inference", "median mJ/inference"),
                    ("errors", "errors"),
                ],
            )
        )
        if has_cmp:
            parts.append("<p><img src='runtimes.png' alt='p90 per runtime'></p>")
        parts.append("<details><summary>per device</summary>")
        parts.append(
            _table(
                bench_rows,
                [
                    ("device_id", "device"),
                    ("model", "model"),
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
            f"<p>Charts for {len(charted)} of {len(by_dev)} devices (alerted first; --max-charts).</p>"
        )
    for dev, name, n in charts:
        parts.append(
            f"<h3 id='{html.escape(_safe(dev))}'>{html.escape(dev)} <small>({n} samples)</small></h3>"
        )
        parts.append(f"<img src='{html.escape(name)}' alt='charts of {html.escape(dev)}'>")
    parts.append("</body></html>")
    index = out / "index.html"
    index.write_text("\n".join(parts), encoding="utf-8")
    return index
