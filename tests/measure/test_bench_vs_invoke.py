"""Independent check: `lookout bench`'s tflite p50 vs a plain Interpreter.invoke loop (same tensor, threads)."""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from app.zoo import load_manifest

ROUNDS, QUERIES, WARMUP, THREADS = 5, 300, 10, 1  # 5 interleaved rounds: the median shrugs off a load spike


def plain_invoke_p50_ms(model_path: Path, x: np.ndarray) -> float:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(model_path), num_threads=THREADS)
    it.allocate_tensors()
    index = it.get_input_details()[0]["index"]
    it.set_tensor(index, x)
    for _ in range(WARMUP):
        it.invoke()
    lat = []
    for _ in range(QUERIES):
        t0 = time.perf_counter_ns()
        it.invoke()
        lat.append(time.perf_counter_ns() - t0)
    return float(np.median(lat)) / 1e6


@pytest.mark.slow
def test_bench_p50_agrees_with_plain_invoke(
    lookout_cmd, clean_env, models_dir: Path, astronaut_bgr, tmp_path: Path
) -> None:
    import cv2

    m = load_manifest("blazeface-short", models_dir)
    model_path = m.verify_artifact("tflite")
    # the same tensor the bench times: the astronaut (square, so letterbox = resize), RGB, (p - 127.5) / 127.5
    rgb = cv2.cvtColor(cv2.resize(astronaut_bgr, (m.input.width, m.input.height)), cv2.COLOR_BGR2RGB)
    x = ((rgb.astype(np.float32) - 127.5) / 127.5)[None]
    bench, plain = [], []
    for i in range(ROUNDS):  # interleaved, so both see the same machine load
        out = tmp_path / f"b{i}.json"
        cmd = [*lookout_cmd, "bench", "--model", "blazeface-short", "--runtime", "tflite", "--frames", str(QUERIES),
               "--warmup", str(WARMUP), "--threads", str(THREADS), "--json", str(out)]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True, env=clean_env, timeout=300)
        bench.append(json.loads(out.read_text())["results"][0]["latency_ms"]["p50"])
        plain.append(plain_invoke_p50_ms(model_path, x))
    b, p = statistics.median(bench), statistics.median(plain)
    print(
        f"\nbench tflite p50 {b:.3f} ms vs plain invoke loop {p:.3f} ms: ratio {b / p:.3f} (rounds {bench} / {plain})"
    )
    assert abs(b / p - 1) <= 0.10
