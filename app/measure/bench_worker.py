"""One runtime's benchmark, in its own process: `python -m app.measure.bench_worker ...`.

Prints exactly one JSON line (the per-runtime result) on stdout; everything else the libraries print
goes to stderr. Raw outputs, detections and per-query latencies go to the --dump .npz for the parent.
MLPerf single-stream: warm-up excluded; the timed run lasts at least --min-queries queries and
--min-duration seconds; p90 is the headline.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from app.errors import LookoutError
from app.measure.latency import Histogram

if TYPE_CHECKING:
    from app.config import LookoutConfig
    from app.runtimes.base import RuntimeConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m app.measure.bench_worker")
    p.add_argument("--model", required=True)
    p.add_argument("--runtime", required=True)
    p.add_argument("--images", required=True, type=Path, help=".npz of BGR images (agreement inputs)")
    p.add_argument("--dump", required=True, type=Path, help=".npz written with outputs and latencies")
    p.add_argument("--spawn-time", type=float, required=True, help="parent's time.time() at spawn")
    p.add_argument("--min-queries", type=int, required=True)
    p.add_argument("--min-duration", type=float, required=True)
    p.add_argument("--warmup", type=int, required=True)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--config", default=None)
    p.add_argument("--idle-s", type=float, default=1.0, help="idle baseline length when a meter exists")
    return p.parse_args(argv)


def runtime_config(cfg: LookoutConfig, name: str, threads: int | None) -> RuntimeConfig:
    """The config of runtime `name` by the one switching rule (the file's table when it is that type,
    else that type's defaults with the shared options); --threads overrides."""
    from app.config import validate_runtime
    from app.runtimes.base import switch_runtime

    data = switch_runtime(name, cfg.runtime)
    # the worker is the runtime's own process already: isolating it again (a hot-swapped device's config
    # says isolate) would time the shared-memory hop and leave the runtime's memory out of rss_mb
    data["isolate"] = False
    if threads is not None:
        data["threads"] = threads
    return validate_runtime(data, f"runtime {name!r}")


def peak_rss_mb(status: Path = Path("/proc/self/status")) -> float:
    """This process's peak resident memory, MB. Linux's VmHWM, which exec resets: getrusage's ru_maxrss
    survives exec, so a worker started by a 125 MB service reported 125 MB whatever its runtime used."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux (no /proc: elsewhere)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from app.config import load_config
    from app.engine import model_io
    from app.measure.power import EnergyAccumulator, PowerSampler, make_meter
    from app.runtimes.selection import open_runtime
    from app.zoo import load_manifest

    cfg = load_config(args.config)
    manifest = load_manifest(args.model, cfg.models_dir)
    rcfg = runtime_config(cfg, args.runtime, args.threads)
    opened = open_runtime(rcfg, manifest)
    rt = opened.runtime
    load_s = time.time() - args.spawn_time  # process start (interpreter + imports) to model ready

    pre, decoder = model_io(manifest, rt.input_spec, cfg.pipeline.score_threshold)
    with np.load(args.images) as z:
        images = {k: z[k] for k in z.files}

    dump: dict[str, np.ndarray] = {}
    dets_out: dict[str, list[dict[str, Any]]] = {}
    first_ms = None
    timed_x = None
    for img_name, frame in images.items():
        x, transform = pre(frame)
        x = x.copy()
        t0 = time.perf_counter_ns()
        outs = rt.infer(x)
        dt = time.perf_counter_ns() - t0
        if first_ms is None:
            first_ms = dt / 1e6  # the very first inference of the process (includes lazy init)
            timed_x = x
        for k, o in enumerate(outs):
            dump[f"out/{img_name}/{k}"] = np.asarray(o, dtype=np.float32)
        dets_out[img_name] = [d.to_json() for d in decoder(outs, transform)]
    assert timed_x is not None

    meter = make_meter(cfg.meter)
    sampler = PowerSampler(meter).start()
    for _ in range(args.warmup):
        rt.infer(timed_x)
    idle_w = sampler.measure_idle(args.idle_s) if sampler.available else None
    acc = EnergyAccumulator(sampler, idle_w)

    hist = Histogram()
    lat: list[int] = []
    min_ns = int(args.min_duration * 1e9)
    infer, clock = rt.infer, time.perf_counter_ns
    start = clock()
    while True:
        t0 = clock()
        infer(timed_x)
        t1 = clock()
        hist.record_ns(t1 - t0)
        lat.append(t1 - t0)
        acc.add(t0, t1)
        if len(lat) >= args.min_queries and t1 - start >= min_ns:
            break
    end = clock()
    sampler.wait_for_sample_after(end)
    energy = acc.summary()
    mean_w = sampler.mean_w(start, end)
    sampler.stop()
    meter.close()

    s = hist.summary()
    duration_s = (end - start) / 1e9
    dump["latency_ns"] = np.asarray(lat, dtype=np.int64)
    np.savez(args.dump, **dump)
    result: dict[str, Any] = {
        "runtime": args.runtime,
        "load_s": load_s,
        "first_inference_ms": first_ms,
        "latency_ms": {
            "p50": s["p50_ms"],
            "p90": s["p90_ms"],
            "p99": s["p99_ms"],
            "mean": s["mean_ms"],
            "min": hist.min_ms,
            "max": s["max_ms"],
        },
        "throughput_fps": len(lat) / duration_s,
        "rss_mb": peak_rss_mb(),
        "model_bytes": opened.artifact_path.stat().st_size,
        "power": {
            "source": meter.source,
            "mean_w": mean_w,
            "idle_w": idle_w,
            "energy_mj_per_inference_net": energy["energy_mj_per_inference_net"],
        },
        "energy_mj_per_inference": energy["energy_mj_per_inference"],
        "queries": len(lat),
        "duration_s": duration_s,
        "threads": rcfg.threads,
        "artifact": opened.artifact_key,
        "detections": dets_out,
    }
    if opened.fallback:
        result["fallback"] = opened.fallback
    rt.close()
    return result


def main(argv: list[str] | None = None) -> int:
    # keep stdout for our one JSON line; native libraries' chatter goes to stderr
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    args = parse_args(argv)
    try:
        result = measure(args)
        code = 0
    except LookoutError as exc:
        result, code = {"runtime": args.runtime, "error": str(exc)}, 3
    except Exception as exc:  # report, never a traceback as the only output
        import traceback

        traceback.print_exc()
        result, code = {"runtime": args.runtime, "error": f"{type(exc).__name__}: {exc}"}, 4
    out.write(json.dumps(result) + "\n")
    out.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
