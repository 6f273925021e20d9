"""Every runtime available here finds the astronaut's face (and nothing on coffee/chelsea) with BlazeFace short."""

from __future__ import annotations

import numpy as np
import pytest

from app.detection import iou
from app.runtimes.base import get_runtime_class
from app.runtimes.selection import open_runtime

# (runtime, artifact key, minimum score on the astronaut face)
CASES = [
    ("tflite", "tflite", 0.9),
    ("tflite", "tflite-int8", 0.85),
    ("executorch", "pte", 0.9),
    ("executorch", "pte-int8", 0.85),
    ("torchscript-lite", "ptl", 0.9),
    ("onnxruntime", "onnx", 0.9),
]


@pytest.fixture(scope="module")
def opened_cache():
    cache: dict = {}
    yield cache
    for o in cache.values():
        o.runtime.close()


def _open(cache: dict, manifest, runtime: str, key: str):
    cls = get_runtime_class(runtime)
    ok, why = cls.availability()
    if not ok:
        pytest.skip(f"runtime {runtime} unavailable here: {why}")
    if key not in manifest.artifacts:
        pytest.skip(f"artifact {key!r} not built (lookout models build)")
    if (runtime, key) not in cache:
        cfg = cls.config_model(threads=1, artifact=key)
        cache[(runtime, key)] = open_runtime(cfg, manifest)
    return cache[(runtime, key)]


@pytest.mark.parametrize(("runtime", "key", "min_score"), CASES, ids=[f"{r}-{k}" for r, k, _ in CASES])
def test_astronaut_one_face(
    opened_cache, short_manifest, astronaut_bgr, astronaut_face, detect_faces, runtime, key, min_score
):
    opened = _open(opened_cache, short_manifest, runtime, key)
    assert opened.name == runtime and opened.fallback is None
    dets = detect_faces(opened, short_manifest, astronaut_bgr)
    assert len(dets) == 1, dets
    assert dets[0].label == "face"
    assert iou(dets[0].box, astronaut_face) >= 0.9, dets[0]
    assert dets[0].score >= min_score, dets[0]


@pytest.mark.parametrize(("runtime", "key", "min_score"), CASES, ids=[f"{r}-{k}" for r, k, _ in CASES])
def test_no_face_photos(
    opened_cache, short_manifest, no_face_photos_bgr, detect_faces, runtime, key, min_score
):
    opened = _open(opened_cache, short_manifest, runtime, key)
    for name, photo in no_face_photos_bgr.items():
        assert detect_faces(opened, short_manifest, photo) == [], name


def test_outputs_in_graph_order(opened_cache, short_manifest, astronaut_bgr):
    """Contract: [regressors (1, 896, 16), classificators (1, 896, 1)], float32, for every runtime here."""
    for runtime, key, _ in CASES:
        try:
            opened = _open(opened_cache, short_manifest, runtime, key)
        except pytest.skip.Exception:
            continue
        x = np.zeros(opened.runtime.input_spec.shape, opened.runtime.input_spec.dtype)
        outs = opened.runtime.infer(x)
        assert [o.shape for o in outs] == [(1, 896, 16), (1, 896, 1)], (runtime, key)
        assert all(o.dtype == np.float32 for o in outs), (runtime, key)
