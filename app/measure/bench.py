"""`lookout bench`: each runtime measured in its own subprocess, then compared side by side.

The parent writes the agreement images (the shipped photos astronaut, coffee, chelsea) to a temp .npz, runs
``python -m app.measure.bench_worker`` once per runtime (sequentially, never in parallel), reads each
worker's JSON line and raw-output dump, and computes agreement against the first listed runtime:
``max_abs_diff`` over raw outputs on the same images and ``mean_iou`` of detections (greedy matching;
a detection without a partner counts as IoU 0; images where neither side detects anything are skipped).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.detection import iou
from app.errors import ConfigError, RuntimeUnavailable

AGREEMENT_IMAGES = ("astronaut", "coffee", "chelsea")
RESULT_KEYS = (
    "runtime",
    "load_s",
    "first_inference_ms",
    "latency_ms",
    "throughput_fps",
    "rss_mb",
    "model_bytes",
    "power",
    "energy_mj_per_inference",
    "agreement",
)
LATENCY_KEYS = ("p50", "p90", "p99", "mean", "min", "max")


@dataclass
class BenchOptions:
    model: str
    runtimes: list[str]
    frames: int | None = None
    duration_s: float | None = None
    warmup: int | None = None
    threads: int | None = None
    config: str | None = None
    worker_timeout_s: float = 900.0
    idle_s: float = 1.0


def write_agreement_images(path: Path) -> None:
    """The real photos every runtime is compared on, as BGR (like OpenCV frames)."""
    from app.vision.photos import photo

    imgs = {name: np.ascontiguousarray(photo(name)) for name in AGREEMENT_IMAGES}
    np.savez(path, **imgs)


def parse_runtimes(text: str) -> list[str]:
    """'tflite,executorch' -> names, validated against the registry (no heavy imports)."""
    from app.runtimes.base import discover

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError("--runtime: give at least one runtime, e.g. tflite,executorch")
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ConfigError(f"--runtime: {sorted(dupes)[0]!r} listed twice")
    known = discover()
    for n in names:
        if n not in known:
            raise RuntimeUnavailable(f"unknown runtime {n!r}; registered: {', '.join(sorted(known))}")
    return names


def run_worker(
    opts: BenchOptions, runtime: str, images: Path, dump: Path, min_q: int, min_d: float, warmup: int
) -> dict[str, Any]:
    cmd = [
        sys.executable, "-m", "app.measure.bench_worker",
        "--model", opts.model, "--runtime", runtime, "--images", str(images), "--dump", str(dump),
        "--min-queries", str(min_q), "--min-duration", str(min_d), "--warmup", str(warmup),
        "--idle-s", str(opts.idle_s),
    ]  # fmt: skip
    if opts.threads is not None:
        cmd += ["--threads", str(opts.threads)]
    if opts.config:
        cmd += ["--config", str(opts.config)]
    spawn = time.time()
    cmd += ["--spawn-time", repr(spawn)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=opts.worker_timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return {"runtime": runtime, "error": f"worker timed out after {opts.worker_timeout_s:g} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    try:
        result = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return {"runtime": runtime, "error": f"worker crashed (exit {proc.returncode}): {tail}"}
    return result


def empty_result(runtime: str, error: str, power_source: str) -> dict[str, Any]:
    """All keys present, every number null, for a runtime that could not be measured."""
    return {
        "runtime": runtime,
        "error": error,
        "load_s": None,
        "first_inference_ms": None,
        "latency_ms": dict.fromkeys(LATENCY_KEYS),
        "throughput_fps": None,
        "rss_mb": None,
        "model_bytes": None,
        "power": {"source": power_source, "mean_w": None},
        "energy_mj_per_inference": None,
        "agreement": {"reference": None, "max_abs_diff": None, "mean_iou": None},
    }


def load_outputs(dump: Path) -> dict[str, list[np.ndarray]]:
    """{image: [outputs in graph order]} from a worker dump."""
    out: dict[str, list[tuple[int, np.ndarray]]] = {}
    with np.load(dump) as z:
        for key in z.files:
            if key.startswith("out/"):
                _, img, k = key.split("/")
                out.setdefault(img, []).append((int(k), z[key]))
    return {img: [a for _, a in sorted(v, key=lambda t: t[0])] for img, v in out.items()}


def max_abs_diff(
    ref: dict[str, list[np.ndarray]], got: dict[str, list[np.ndarray]]
) -> tuple[float | None, str | None]:
    """Largest |ref - got| over all images and outputs; (None, reason) when shapes cannot be compared."""
    worst = 0.0
    for img, ref_outs in ref.items():
        outs = got.get(img)
        if outs is None or len(outs) != len(ref_outs):
            return None, f"output count differs on {img}"
        for k, (a, b) in enumerate(zip(ref_outs, outs, strict=True)):
            if a.size != b.size:
                return None, f"output {k} shape {a.shape} vs {b.shape}"
            worst = max(worst, float(np.max(np.abs(a.reshape(-1) - b.reshape(-1)))) if a.size else 0.0)
    return worst, None


def mean_iou(ref: dict[str, list[dict]], got: dict[str, list[dict]]) -> float | None:
    """Greedy IoU matching per image and label; unmatched detections on either side count 0."""
    scores: list[float] = []
    for img in ref.keys() | got.keys():
        a, b = list(ref.get(img, [])), list(got.get(img, []))
        pairs = sorted(
            (
                (iou(tuple(x["box"]), tuple(y["box"])), i, j)
                for i, x in enumerate(a)
                for j, y in enumerate(b)
                if x["label"] == y["label"]
            ),
            reverse=True,
        )
        used_a: set[int] = set()
        used_b: set[int] = set()
        for v, i, j in pairs:
            if v > 0 and i not in used_a and j not in used_b:
                used_a.add(i)
                used_b.add(j)
                scores.append(v)
        scores += [0.0] * (len(a) - len(used_a) + len(b) - len(used_b))
    return float(np.mean(scores)) if scores else None


def run_bench(opts: BenchOptions, progress: Any = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Measure every runtime; returns (report JSON, {runtime: latency ns array} for plots)."""
    from app.config import load_config
    from app.measure.hostinfo import host_info
    from app.measure.power import make_meter

    cfg = load_config(opts.config)
    from app.zoo import load_manifest

    load_manifest(opts.model, cfg.models_dir)  # fail early, one line, on an unknown model
    meter = make_meter(cfg.meter)
    power_source = meter.source
    meter.close()
    min_q = opts.frames if opts.frames is not None else cfg.bench.min_queries
    min_d = opts.duration_s if opts.duration_s is not None else cfg.bench.min_duration_s
    warmup = opts.warmup if opts.warmup is not None else cfg.bench.warmup
    results: list[dict[str, Any]] = []
    latencies: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="lookout-bench-") as tmp:
        images = Path(tmp) / "images.npz"
        write_agreement_images(images)
        ref_outs: dict[str, list[np.ndarray]] | None = None
        ref_dets: dict[str, list[dict]] | None = None
        ref_name = opts.runtimes[0]
        for rt_name in opts.runtimes:
            if progress:
                progress(rt_name)
            dump = Path(tmp) / f"{rt_name}.npz"
            res = run_worker(opts, rt_name, images, dump, min_q, min_d, warmup)
            if "error" in res:
                results.append(empty_result(rt_name, res["error"], power_source))
                continue
            dets = res.pop("detections", {})
            outs = load_outputs(dump)
            with np.load(dump) as z:
                latencies[rt_name] = z["latency_ns"]
            if rt_name == ref_name:
                ref_outs, ref_dets = outs, dets
                res["agreement"] = {
                    "reference": ref_name,
                    "max_abs_diff": None,
                    "mean_iou": None,
                    "note": "reference runtime",
                }
            elif ref_outs is None or ref_dets is None:
                res["agreement"] = {
                    "reference": ref_name,
                    "max_abs_diff": None,
                    "mean_iou": None,
                    "note": f"reference {ref_name} failed",
                }
            else:
                diff, why = max_abs_diff(ref_outs, outs)
                res["agreement"] = {
                    "reference": ref_name,
                    "max_abs_diff": diff,
                    "mean_iou": mean_iou(ref_dets, dets),
                }
                if why:
                    res["agreement"]["note"] = why
            res["detections"] = {k: len(v) for k, v in dets.items()}
            results.append(res)
    report = {"model": opts.model, "host": host_info(opts.runtimes, power_source), "results": results}
    report["settings"] = {"min_queries": min_q, "min_duration_s": min_d, "warmup": warmup, "threads": opts.threads,
                          "scenario": "single-stream (MLPerf): warm-up excluded, p90 headline"}  # fmt: skip
    return report, latencies


def save_json(report: dict[str, Any], path: str | os.PathLike[str]) -> None:
    Path(path).write_text(json.dumps(report, indent=2) + "\n")
