"""`lookout bench --plot`: latency distribution per runtime and energy per inference, as one PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def plot_report(report: dict[str, Any], latencies_ns: dict[str, np.ndarray], path: str | Path) -> Path:
    """Write the PNG; matplotlib (Agg) is imported here only."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [r for r in report["results"] if r["runtime"] in latencies_ns]
    names = [r["runtime"] for r in results]
    fig, (ax_lat, ax_e) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [3, 2]})
    fig.suptitle(
        f"lookout bench: {report['model']} on {report['host'].get('cpu') or 'unknown CPU'}", fontsize=12
    )

    if names:
        data = [latencies_ns[n] / 1e6 for n in names]
        pos = np.arange(1, len(names) + 1)
        parts = ax_lat.violinplot(data, positions=pos, vert=False, showextrema=False, widths=0.8)
        for body in parts["bodies"]:
            body.set_alpha(0.35)
        ax_lat.boxplot(
            data, positions=pos, vert=False, widths=0.2, showfliers=False, medianprops={"color": "black"}
        )
        for y, r in zip(pos, results, strict=True):
            p90 = r["latency_ms"]["p90"]
            ax_lat.plot([p90], [y], marker="|", markersize=22, color="crimson", markeredgewidth=2)
            ax_lat.annotate(
                f"p50 {r['latency_ms']['p50']:.2f}  p90 {p90:.2f} ms",
                (p90, y + 0.3),
                fontsize=8,
                color="crimson",
            )
        ax_lat.set_yticks(pos, names)
        hi = max(float(np.percentile(d, 99.5)) for d in data)
        lo = min(float(d.min()) for d in data)
        if hi / max(lo, 1e-9) > 8:  # runtimes an order of magnitude apart: log axis keeps both readable
            ax_lat.set_xscale("log")
            ax_lat.set_xlim(lo * 0.8, hi * 1.3)
            ticks = [
                t
                for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
                if lo * 0.8 <= t <= hi * 1.3
            ]
            ax_lat.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax_lat.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        else:
            ax_lat.set_xlim(max(0.0, lo * 0.8), hi * 1.15)
        ax_lat.set_xlabel("latency per inference (ms), warm-up excluded; red tick = p90; x cut at p99.5")
        ax_lat.set_title(f"latency distribution ({min(len(d) for d in data)}+ queries each)")
        ax_lat.grid(axis="x", alpha=0.3)
    else:
        _message(ax_lat, "no runtime produced latencies")
    failed = [r["runtime"] for r in report["results"] if "error" in r]
    if failed:
        fig.text(0.01, 0.01, f"failed (see JSON): {', '.join(failed)}", fontsize=8, color="crimson")

    energies = [(r["runtime"], r["energy_mj_per_inference"]) for r in report["results"]]
    measured = [(n, e) for n, e in energies if e is not None]
    if measured:
        src = next(
            r["power"]["source"] for r in report["results"] if r["energy_mj_per_inference"] is not None
        )
        ax_e.bar([n for n, _ in measured], [e for _, e in measured], color="seagreen")
        for i, (_, e) in enumerate(measured):
            ax_e.annotate(f"{e:.1f}", (i, e), ha="center", va="bottom", fontsize=9)
        ax_e.set_ylabel("energy per inference (mJ, gross)")
        ax_e.set_title(f"energy per inference\n{src}", fontsize=9)
        missing = [n for n, e in energies if e is None]
        if missing:
            ax_e.set_xlabel(f"not measured: {', '.join(missing)}")
    else:
        reason = report["results"][0]["power"]["source"] if report["results"] else "no results"
        _message(ax_e, f"energy per inference: not measured\n\nno power meter:\n{_wrap(reason)}")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _wrap(text: str, width: int = 44) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def _message(ax: Any, text: str) -> None:
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=11, transform=ax.transAxes,
            bbox={"boxstyle": "round", "facecolor": "whitesmoke", "edgecolor": "grey"})  # fmt: skip
