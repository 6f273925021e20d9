"""`lookout bench`: latency, load time, memory, power and agreement of runtimes, side by side."""

from __future__ import annotations

import argparse
from typing import Any

from app.errors import ConfigError
from app.finite import finite_float
from app.inert import rich_text


def register(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark runtimes side by side (one subprocess each)",
        description="MLPerf-style single-stream benchmark: warm-up excluded, p90 headline. "
        "Each runtime runs in its own subprocess; agreement is measured against the first runtime listed.",
    )
    p.add_argument("--model", default=None, help="model name in the zoo (default: config `model`)")
    p.add_argument(
        "--runtime",
        default="tflite",
        help="comma-separated runtimes, e.g. tflite,executorch,torchscript-lite",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--frames", type=int, default=None, help="minimum timed queries (default: config [bench] min_queries)"
    )
    g.add_argument(
        "--duration",
        type=finite_float,
        default=None,
        help="minimum timed seconds (default: config [bench] min_duration_s)",
    )
    p.add_argument(
        "--warmup", type=int, default=None, help="untimed warm-up inferences (default: config [bench] warmup)"
    )
    p.add_argument(
        "--threads", type=int, default=None, help="CPU threads per runtime (default: runtime config)"
    )
    p.add_argument("--json", dest="json_path", default=None, help="write the report as JSON to this file")
    p.add_argument("--plot", dest="plot_path", default=None, help="write a PNG chart to this file")
    p.add_argument("--config", default=None, help="config file")
    p.set_defaults(func=run)


def _check(args: argparse.Namespace) -> None:
    if args.frames is not None and args.frames < 1:
        raise ConfigError(f"--frames must be >= 1 (got {args.frames})")
    if args.duration is not None and args.duration <= 0:
        raise ConfigError(f"--duration must be > 0 (got {args.duration})")
    if args.warmup is not None and args.warmup < 0:
        raise ConfigError(f"--warmup must be >= 0 (got {args.warmup})")
    if args.threads is not None and not 1 <= args.threads <= 64:
        raise ConfigError(f"--threads must be 1..64 (got {args.threads})")
    if args.plot_path and not str(args.plot_path).lower().endswith(".png"):
        raise ConfigError(f"--plot {args.plot_path}: expected a .png file name")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from app.config import load_config
    from app.measure.bench import BenchOptions, parse_runtimes, run_bench, save_json

    _check(args)
    runtimes = parse_runtimes(args.runtime)
    model = args.model or load_config(args.config).model
    opts = BenchOptions(model, runtimes, args.frames, args.duration, args.warmup, args.threads, args.config)
    console = Console(stderr=True)
    with console.status("") as status:
        report, latencies = run_bench(opts, progress=lambda rt: status.update(f"benchmarking {rt} ..."))
    out = Console()
    if not out.is_terminal:
        out = Console(width=160)  # a log or pipe: do not squeeze the table to 80 columns
    out.print(render_table(report))
    if args.json_path:
        save_json(report, args.json_path)
        console.print(rich_text(f"wrote {args.json_path}"))
    if args.plot_path:
        from app.measure.plot import plot_report

        plot_report(report, latencies, args.plot_path)
        console.print(rich_text(f"wrote {args.plot_path}"))
    return 1 if any("error" in r for r in report["results"]) else 0


def _f(v: Any, fmt: str = "{:.2f}") -> str:
    return "—" if v is None else fmt.format(v)


def render_table(report: dict[str, Any]) -> Any:
    """The rich renderable: one row per runtime (p90 bold), errors listed under the table."""
    from rich.table import Table
    from rich.text import Text

    host = report["host"]
    s = report.get("settings", {})
    # the model name, CPU name, meter source, runtimes and errors come from the host and files: data, not markup
    t = Table(
        title=rich_text(
            f"{report['model']} · {host.get('cpu')} · {host.get('cores')} cores · single-stream, "
            f"≥{s.get('min_queries')} queries, warm-up {s.get('warmup')}"
        ),
        caption=rich_text(f"power: {host.get('power_meter')}"),
    )
    for col in ("runtime", "load s", "1st ms", "p50 ms", "p90 ms", "p99 ms", "fps", "RSS MB", "model MB",
                "W", "mJ/inf", "max|Δ|", "IoU"):  # fmt: skip
        t.add_column(
            col, justify="left" if col == "runtime" else "right", style="bold" if col == "p90 ms" else None
        )
    errors: list[Text] = []
    for r in report["results"]:
        if "error" in r:
            errors.append(rich_text(f"{r['runtime']}: {r['error']}", style="red"))
            t.add_row(rich_text(r["runtime"]), *(["—"] * 12), style="dim")
            continue
        lat, ag = r["latency_ms"], r["agreement"]
        name = r["runtime"] + (f" → {r['fallback']['to']}" if r.get("fallback") else "")
        t.add_row(
            rich_text(name),
            _f(r["load_s"]),
            _f(r["first_inference_ms"]),
            _f(lat["p50"]),
            _f(lat["p90"]),
            _f(lat["p99"]),
            _f(r["throughput_fps"], "{:.0f}"),
            _f(r["rss_mb"], "{:.0f}"),
            _f(r["model_bytes"] / 1e6 if r["model_bytes"] else None),
            _f(r["power"]["mean_w"]),
            _f(r["energy_mj_per_inference"], "{:.1f}"),
            "ref" if ag.get("note") == "reference runtime" else _f(ag["max_abs_diff"], "{:.2g}"),
            "ref" if ag.get("note") == "reference runtime" else _f(ag["mean_iou"], "{:.3f}"),
        )
    if not errors:
        return t
    from rich.console import Group

    return Group(t, *errors)
