"""The same weights on both stacks: LiteRT (original .tflite) and ExecuTorch (.pte) agree on a real photo."""

from __future__ import annotations

import numpy as np
import pytest

from app.runtimes.executorch import ExecuTorchConfig
from app.runtimes.litert import LiteRTConfig
from app.runtimes.selection import open_runtime
from app.runtimes.torchlite import TorchScriptLiteConfig


def _input(manifest, spec, frame):
    from app.vision.preprocess import Preprocessor

    inp = manifest.input
    return Preprocessor(spec, inp.width, inp.height, inp.color, inp.resize, inp.mean, inp.std)(frame)[0]


def _max_rel(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute difference relative to the reference output's largest magnitude."""
    return float(np.abs(a - b).max() / max(float(np.abs(a).max()), 1e-12))


@pytest.mark.parametrize(
    ("cfg", "key"), [(ExecuTorchConfig(), "pte"), (TorchScriptLiteConfig(), "ptl")], ids=["executorch", "ptl"]
)
def test_raw_outputs_agree(short_manifest, astronaut_bgr, cfg, key):
    if key not in short_manifest.artifacts:
        pytest.skip(f"artifact {key!r} not built (lookout models build)")
    pytest.importorskip("torch")
    ref = open_runtime(LiteRTConfig(), short_manifest)
    other = open_runtime(cfg.model_copy(update={"artifact": key}), short_manifest)
    try:
        x = _input(short_manifest, ref.runtime.input_spec, astronaut_bgr)
        a, b = ref.runtime.infer(x), other.runtime.infer(x.copy())
        assert [o.shape for o in a] == [o.shape for o in b]
        rel = [_max_rel(p, q) for p, q in zip(a, b, strict=True)]
        print(f"max relative difference tflite vs {key}: {rel}")
        assert max(rel) <= 1e-3, rel
        assert np.abs(a[1]).max() > 1.0  # a real photo gives non-trivial logits
    finally:
        ref.runtime.close()
        other.runtime.close()


def test_executorch_threads_are_set():
    """ExecuTorch's XNNPACK threadpool takes the configured count (process-wide)."""
    pytest.importorskip("executorch")
    from app.runtimes.executorch import set_threads

    assert set_threads(2) == 2
    assert set_threads(1) == 1
