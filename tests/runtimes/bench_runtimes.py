"""Quick per-runtime numbers for blazeface-short on the astronaut photo (not a test; run by hand).

    .venv/bin/python tests/runtimes/bench_runtimes.py [--models-dir models] [--iters 50] [--threads 1]

Each runtime runs in a fresh child process, so load_s includes importing its library (torch for
ExecuTorch and the lite interpreter). infer_mean_ms is the mean of --iters runs after 5 warm-up runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

CASES = [
    ("tflite", "tflite"),
    ("tflite", "tflite-int8"),
    ("edgetpu", "edgetpu"),
    ("executorch", "pte"),
    ("executorch", "pte-int8"),
    ("torchscript-lite", "ptl"),
    ("onnxruntime", "onnx"),
]


def child(runtime: str, key: str, models_dir: str, iters: int, threads: int) -> dict:
    import numpy as np
    from skimage import data

    from app.runtimes.base import get_runtime_class
    from app.runtimes.selection import open_runtime
    from app.vision.preprocess import Preprocessor
    from app.zoo import load_manifest

    manifest = load_manifest("blazeface-short", Path(models_dir))
    cls = get_runtime_class(runtime)
    ok, why = cls.availability()
    if not ok:
        return {"runtime": runtime, "artifact": key, "load_s": None, "infer_mean_ms": None, "reason": why}
    if key not in manifest.artifacts and runtime != "edgetpu":
        return {
            "runtime": runtime,
            "artifact": key,
            "load_s": None,
            "infer_mean_ms": None,
            "reason": "not built",
        }
    opened = open_runtime(cls.config_model(threads=threads, artifact=key), manifest)
    inp = manifest.input
    pre = Preprocessor(
        opened.runtime.input_spec, inp.width, inp.height, inp.color, inp.resize, inp.mean, inp.std
    )
    x, _ = pre(np.ascontiguousarray(data.astronaut()[..., ::-1]))
    for _ in range(5):
        opened.runtime.infer(x)
    t0 = time.perf_counter()
    for _ in range(iters):
        opened.runtime.infer(x)
    mean_ms = (time.perf_counter() - t0) / iters * 1e3
    return {
        "runtime": runtime,
        "artifact": opened.artifact_key,
        "active": opened.name,
        "load_s": round(opened.load_s, 4),
        "infer_mean_ms": round(mean_ms, 3),
        "fallback": opened.fallback,
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--models-dir", default=str(Path(__file__).resolve().parents[2] / "models"))
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--child", nargs=2, metavar=("RUNTIME", "KEY"))
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a.child[0], a.child[1], a.models_dir, a.iters, a.threads)))
        return 0
    for runtime, key in CASES:
        cmd = [sys.executable, __file__, "--child", runtime, key, "--models-dir", a.models_dir]
        cmd += ["--iters", str(a.iters), "--threads", str(a.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        print(
            lines[-1]
            if lines
            else json.dumps({"runtime": runtime, "artifact": key, "error": proc.stderr.strip()[-300:]})
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
