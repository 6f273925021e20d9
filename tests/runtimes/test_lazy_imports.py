"""Runtime modules import cheaply; LiteRT inference never pulls in torch."""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = """
import json, sys
import numpy as np
from pathlib import Path
from app.runtimes.base import discover
reg = discover()
after_discover = sorted(m for m in ("torch", "executorch", "ai_edge_litert", "onnxruntime") if m in sys.modules)
from app.runtimes.litert import LiteRTConfig, LiteRTRuntime
rt = LiteRTRuntime()
spec = rt.load(Path(sys.argv[1]), LiteRTConfig())
out = rt.infer(np.zeros(spec.shape, np.float32))
print(json.dumps({
    "registered": sorted(k for k, v in reg.items() if v.cls is not None),
    "after_discover": after_discover,
    "torch_after_infer": "torch" in sys.modules,
    "litert_after_infer": "ai_edge_litert" in sys.modules,
    "shapes": [list(o.shape) for o in out],
}))
"""


def test_litert_does_not_import_torch(short_manifest):
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(short_manifest.artifact_path("tflite"))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"tflite", "edgetpu", "executorch", "torchscript-lite", "onnxruntime"} <= set(got["registered"])
    assert got["after_discover"] == []
    assert got["torch_after_infer"] is False and got["litert_after_infer"] is True
    assert got["shapes"] == [[1, 896, 16], [1, 896, 1]]
