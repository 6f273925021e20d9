#!/usr/bin/env python3
"""Pipeline overhead benchmark: ratios measured in one run (not a timed test).

1. Invoke-bound: BlazeFace back (256x256), LiteRT, 1 thread, the 640x480 demo video decoded as fast as
   possible. Target: pipeline fps >= 0.90 x the bare invoke rate (invoke on a prepared tensor, tight loop).
2. Decode and invoke comparable: BlazeFace short (128x128), LiteRT, 1 thread. Target: pipeline fps >=
   1.25 x a straightforward sequential loop (read -> preprocess -> invoke -> decode, one frame at a time).
3. Events and snapshots: BlazeFace short, the same pipeline with the event recorder as its sink (presence
   per frame; at each start a JPEG snapshot, events and the presence state written to a real spool by
   an unconnected Telemetry) against the pipeline with an empty sink. Target: >= 0.97 (< 3 % of fps).
   end_after_s is short so that every pass of the looping demo (300 frames) ends and starts a presence:
   one snapshot per 300 frames, the rate of the demo played at its own speed.

Each figure is the median of --repeats interleaved runs (case 3: of per-repeat ABBA ratios).
Usage: python scripts/bench_pipeline.py [--repeats N] [--cases invoke,decode,events] [--json F]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

from app.config import OpenCVSource, ReconnectConfig, default_models_dir, validate_runtime
from app.engine import build_engine
from app.measure.latency import StageHistograms
from app.pipeline import STAGES, Pipeline
from app.vision.demo import demo_video_path
from app.vision.sources import open_source


def engine_for(model: str, threads: int):
    cfg = validate_runtime({"type": "tflite", "threads": threads})
    return build_engine(model, cfg, default_models_dir(), score_threshold=None, warmup=20)


def source(video: Path):
    return open_source(OpenCVSource(uri=str(video), loop=True, realtime=False), ReconnectConfig())


def bare_invoke_fps(engine, frames: int) -> float:
    frame = next(iter_frames(engine, 1))
    tensor, _ = engine.preprocess(frame)
    infer = engine.infer
    t0 = time.perf_counter()
    for _ in range(frames):
        infer(tensor)
    return frames / (time.perf_counter() - t0)


def iter_frames(engine, n: int):
    src = source(demo_video_path())
    stop = threading.Event()
    try:
        for _ in range(n):
            yield src.read(stop)
    finally:
        src.close()


def sequential_fps(engine, frames: int) -> float:
    src = source(demo_video_path())
    stop = threading.Event()
    t0 = time.perf_counter()
    for _ in range(frames):
        frame = src.read(stop)
        tensor, transform = engine.preprocess(frame)
        engine.decode(engine.infer(tensor), transform)
    fps = frames / (time.perf_counter() - t0)
    src.close()
    return fps


def pipeline_fps(engine, frames: int, sink=None, cpu: list[float] | None = None) -> float:
    """Frames per second of the pipeline; appends the process CPU seconds per frame to `cpu` if given."""
    src = source(demo_video_path())
    sink = sink or (lambda r: None)
    pipe = Pipeline(src, engine, sink, StageHistograms(STAGES), live=False, max_frames=frames)
    t0, c0 = time.perf_counter(), time.process_time()
    pipe.start()
    pipe.join()
    fps = pipe.frames / (time.perf_counter() - t0)
    if cpu is not None:
        cpu.append((time.process_time() - c0) / pipe.frames)
    src.close()
    assert pipe.frames == frames, pipe.frames
    return fps


def compare(model: str, ref_name: str, reference, frames: int, repeats: int, target: str) -> dict:
    """Median fps of the reference loop and of the pipeline, interleaved so machine load hits both alike."""
    engine = engine_for(model, 1)
    ref, pipe = [], []
    try:
        for _ in range(repeats):
            ref.append(reference(engine, frames))
            pipe.append(pipeline_fps(engine, frames))
    finally:
        engine.close()
    case = {
        "model": model,
        ref_name: round(statistics.median(ref), 1),
        "pipeline_fps": round(statistics.median(pipe), 1),
    }
    case["ratio"] = round(case["pipeline_fps"] / case[ref_name], 3)
    case["target"] = target
    return case


def events_fps(engine, frames: int, state_dir: Path, cpu: list[float]) -> tuple[float, dict]:
    """Pipeline fps with the event recorder as the sink, publishing into a real spool (no broker)."""
    from app.config import EventsConfig, MqttConfig, SnapshotConfig, SpoolConfig
    from app.events.recorder import EventRecorder
    from app.telemetry.mqtt import Telemetry

    tele = Telemetry(MqttConfig(url="mqtt://127.0.0.1:9"), SpoolConfig(), "bench", state_dir)
    rec = EventRecorder(
        EventsConfig(end_after_s=0.02), SnapshotConfig(), tele, model_labels=lambda: engine.decoder.labels
    ).start()
    try:
        fps = pipeline_fps(engine, frames, rec.on_frame, cpu)
    finally:
        rec.close()
        tele.spool.close()
    return fps, rec.stats()


def snapshot_cost(frames: int, repeats: int) -> dict:
    """Pipeline fps with events + snapshots against an empty sink. Each repeat runs the two ways in
    ABBA order (plain, events, events, plain) and gives one ratio, so slow drifts of the machine's load
    cancel; the headline is the median of those ratios (with its min and max). The process CPU time per
    frame (every thread, the recorder's worker included) is reported too."""
    engine = engine_for("blazeface-short", 1)
    plain, with_events, ratios, stats, cpu_plain, cpu_events = [], [], [], [], [], []
    try:
        with tempfile.TemporaryDirectory(prefix="lookout-bench-") as tmp:
            for i in range(repeats):
                a1 = pipeline_fps(engine, frames, cpu=cpu_plain)
                b1, st1 = events_fps(engine, frames, Path(tmp) / f"{i}a", cpu_events)
                b2, st2 = events_fps(engine, frames, Path(tmp) / f"{i}b", cpu_events)
                a2 = pipeline_fps(engine, frames, cpu=cpu_plain)
                plain += [a1, a2]
                with_events += [b1, b2]
                stats += [st1, st2]
                ratios.append((b1 + b2) / (a1 + a2))
    finally:
        engine.close()
    med = statistics.median
    case = {
        "model": "blazeface-short",
        "pipeline_fps": round(med(plain), 1),
        "with_events_and_snapshots_fps": round(med(with_events), 1),
        "ratio": round(med(ratios), 3),
        "ratio_min_max": [round(min(ratios), 3), round(max(ratios), 3)],
        "target": ">= 0.97",
        "snapshots_per_run": med(s["snapshots"] for s in stats),
        "events_per_run": med(s["events"] for s in stats),
        "snapshot_encode_ms": round(med(s["snapshot_encode_ms"] or 0.0 for s in stats), 2),
        "snapshot_kb": round(med(s["snapshot_bytes"] / max(1, s["snapshots"]) for s in stats) / 1024, 1),
        "cpu_us_per_frame": round(med(cpu_plain) * 1e6, 1),
        "with_events_cpu_us_per_frame": round(med(cpu_events) * 1e6, 1),
    }
    case["cpu_ratio"] = round(case["with_events_cpu_us_per_frame"] / case["cpu_us_per_frame"], 3)
    return case


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cases", default="invoke,decode,events", help="which cases, comma-separated")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    cases = set(args.cases.split(","))
    demo_video_path()  # generate once, outside the timings

    result = {}
    if "invoke" in cases:
        result["invoke_bound"] = compare(
            "blazeface-back", "bare_invoke_fps", bare_invoke_fps, 600, args.repeats, ">= 0.90"
        )
    if "decode" in cases:
        result["decode_comparable"] = compare(
            "blazeface-short", "sequential_fps", sequential_fps, 2000, args.repeats, ">= 1.25"
        )
    if "events" in cases:
        result["events_snapshots"] = snapshot_cost(2000, args.repeats)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
