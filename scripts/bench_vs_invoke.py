#!/usr/bin/env python3
"""Independent check of `lookout bench`: its tflite p50 vs a plain Interpreter.invoke loop on the same
tensor and thread count, in interleaved rounds so both see the same machine load. Prints the ratio
(target: within 10 %). A benchmark, not a test: timings on a shared machine do not belong in asserts.

    .venv/bin/python scripts/bench_vs_invoke.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from app.config import default_models_dir
from app.zoo import load_manifest

QUERIES, WARMUP, THREADS = 300, 10, 1


def plain_invoke_p50_ms(model_path: Path, x: np.ndarray) -> float:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(model_path), num_threads=THREADS)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    for _ in range(WARMUP):
        it.invoke()
    lat = []
    for _ in range(QUERIES):
        t0 = time.perf_counter_ns()
        it.invoke()
        lat.append(time.perf_counter_ns() - t0)
    return float(np.median(lat)) / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    from skimage import data

    m = load_manifest("blazeface-short", default_models_dir())
    model_path = m.verify_artifact("tflite")
    # the tensor the bench times first: the astronaut (square, so letterbox = resize), RGB, (p - 127.5) / 127.5
    rgb = cv2.resize(data.astronaut(), (m.input.width, m.input.height))
    x = ((rgb.astype(np.float32) - 127.5) / 127.5)[None]
    bench, plain = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            out = Path(tmp) / f"b{i}.json"
            cmd = [sys.executable, "-m", "app", "bench", "--model", "blazeface-short", "--runtime", "tflite",
                   "--frames", str(QUERIES), "--warmup", str(WARMUP), "--threads", str(THREADS), "--json", str(out)]  # fmt: skip
            subprocess.run(cmd, check=True, capture_output=True, timeout=300)
            bench.append(json.loads(out.read_text())["results"][0]["latency_ms"]["p50"])
            plain.append(plain_invoke_p50_ms(model_path, x))
    b, p = statistics.median(bench), statistics.median(plain)
    print(
        f"bench tflite p50 {b:.3f} ms vs plain invoke loop {p:.3f} ms: ratio {b / p:.3f} (target 0.90-1.10)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
