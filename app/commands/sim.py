"""`lookout sim`: a small fleet on this machine (embedded broker, N real services, live fleet view)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from app.finite import finite_float
from app.inert import rich_text


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sim", help="simulate a small fleet on this machine", description=__doc__)
    p.add_argument("--devices", type=int, default=3, help="number of simulated devices (default 3)")
    p.add_argument("--duration", type=finite_float, default=60.0, help="seconds to run (default 60)")
    p.add_argument("--broker", help="use this broker (mqtt://host:port) instead of an embedded one")
    p.add_argument("--models-dir", help="models directory")
    p.add_argument(
        "--broker-kind",
        choices=("auto", "mosquitto", "amqtt"),
        default="auto",
        help="embedded broker: mosquitto when on PATH (auto), else amqtt (MQTT 3.1.1 only)",
    )
    p.add_argument(
        "--bench-frames", type=int, default=100, help="frames per runtime in the closing bench (0: skip)"
    )
    p.add_argument("--json", help="write the summary (devices + bench) as JSON here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from app.config import default_models_dir
    from app.errors import ConfigError
    from app.sim import Simulation, failed

    if not 1 <= args.devices <= 32:
        raise ConfigError(f"--devices {args.devices}: expected 1..32")
    if args.duration <= 0:
        raise ConfigError(f"--duration {args.duration}: expected a positive number of seconds")
    console = Console(width=None if sys.stdout.isatty() else 160)
    models_dir = Path(args.models_dir) if args.models_dir else default_models_dir()
    sim = Simulation(args.devices, args.duration, args.broker, models_dir, args.broker_kind)
    try:
        sim.start(lambda msg: console.print(_line(msg)))
        interrupted = _watch(sim, args.duration, console)
        console.print()
        console.print("[bold]sim[/] stopping devices (SIGTERM: drain, flush, report)")
        sim.stop_devices()
        sim.wait_for_delivery()
        rows = sim.summary()
    finally:
        sim.close()  # no process, port or temporary file left behind, whatever happened
    console.print(_summary_table(rows))
    bench = None
    if args.bench_frames and not interrupted:
        bench = _bench(args.bench_frames, console)
    if args.json:
        Path(args.json).write_text(json.dumps({"devices": rows, "bench": bench}, indent=2) + "\n")
    problems = failed(rows)
    for line in problems:
        console.print(_line(line, "FAIL", "red"))
    if interrupted:
        return 130
    return 1 if problems else 0


def _line(msg: str, tag: str = "sim", style: str = "bold") -> Text:
    """A tagged line whose message (paths, URLs, device reports) is shown as data, not rich markup."""
    return Text.assemble((tag, style), " ", rich_text(msg))


def _watch(sim, duration: float, console: Console) -> bool:
    """Show the fleet view until the duration ends; True when interrupted by Ctrl-C."""
    from rich.live import Live

    from app.fleet.view import render, sort_rows

    def view():
        rows = sort_rows(sim.registry.snapshot(), "device")
        return render(rows, sim.monitor.stats.as_dict(), sim.registry.p90_alert_ms)

    deadline = time.monotonic() + duration
    try:
        with Live(view(), console=console, refresh_per_second=2, transient=False) as live:
            while time.monotonic() < deadline:
                time.sleep(0.5)
                live.update(view())
                if all(d.proc is not None and d.proc.poll() is not None for d in sim.devices):
                    break
    except KeyboardInterrupt:
        return True
    return False


def _summary_table(rows: list[dict]) -> Table:
    t = Table(title="simulated fleet: summary", caption_justify="left")
    for col in (
        "device",
        "model",
        "runtime",
        "frames",
        "fps",
        "p90 infer ms",
        "fallback",
        "published",
        "received",
        "lost",
    ):
        t.add_column(col, no_wrap=True)
    notes = []
    for r in rows:
        runtime = r["runtime"] or "-"
        if r["requested_runtime"] != runtime:
            runtime = f"{r['requested_runtime']} → {runtime}"
        fb = r["fallback"]
        if fb:
            notes.append(f"{r['device_id']} fallback {fb['from']} → {fb['to']}: {fb['reason']}")
        lost_style = "red" if r["lost"] else "green"
        t.add_row(
            rich_text(r["device_id"]),
            rich_text(r["model"]),
            rich_text(runtime),
            str(r["frames"]),
            f"{r['fps']:.1f}" if r["fps"] is not None else "-",
            f"{r['infer_p90_ms']:.2f}" if r["infer_p90_ms"] is not None else "-",
            "yes" if fb else "-",
            str(r["published"]),
            str(r["received"]),
            rich_text(r["lost"], style=lost_style),
        )
    sources = sorted({str(r["power_source"]) for r in rows})
    notes.append("power: " + "; ".join(sources) + " (measured where a meter exists, never estimated)")
    t.caption = Text("\n").join(map(rich_text, notes))
    return t


def _bench(frames: int, console: Console) -> dict | None:
    from app.commands.bench import render_table
    from app.measure.bench import BenchOptions, run_bench

    console.print(f"[bold]sim[/] side-by-side bench of the runtimes ({frames} frames each, one process each)")
    runtimes = ["tflite", "executorch", "torchscript-lite"]
    report, _ = run_bench(BenchOptions(model="blazeface-short", runtimes=runtimes, frames=frames))
    console.print(render_table(report))
    return report
