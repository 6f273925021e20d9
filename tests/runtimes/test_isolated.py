"""A runtime in a child process: same outputs as in-process, errors carried across, a dead worker reported."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.errors import ArtifactError, LookoutError
from app.runtimes.base import get_runtime_class
from app.runtimes.selection import open_runtime


def cfg(runtime: str, **kw):
    return get_runtime_class(runtime).config_model(**kw)


@pytest.mark.parametrize("runtime", ["tflite", "executorch"])
def test_isolated_outputs_equal_in_process(
    runtime, short_manifest, astronaut_bgr, detect_faces, astronaut_face
):
    direct = open_runtime(cfg(runtime), short_manifest)
    isolated = open_runtime(cfg(runtime, isolate=True), short_manifest)
    try:
        assert type(isolated.runtime).__name__ == "IsolatedRuntime"
        assert isolated.runtime.input_spec == direct.runtime.input_spec
        x = np.random.default_rng(0).uniform(-1, 1, direct.runtime.input_spec.shape).astype(np.float32)
        for a, b in zip(direct.runtime.infer(x), isolated.runtime.infer(x), strict=True):
            assert a.shape == b.shape and a.dtype == b.dtype == np.float32
            np.testing.assert_array_equal(a, b)
        faces = detect_faces(isolated, short_manifest, astronaut_bgr)
        assert len(faces) == 1
    finally:
        direct.runtime.close()
        isolated.runtime.close()


def test_isolated_bad_artifact_raises_artifact_error(short_manifest, tmp_path: Path):
    from app.runtimes.isolated import IsolatedRuntime

    bad = tmp_path / "bad.pte"
    bad.write_bytes(os.urandom(4096))
    rt = IsolatedRuntime("executorch")
    with pytest.raises(ArtifactError) as err:
        rt.load(bad, cfg("executorch"))
    assert "bad.pte" in str(err.value)
    assert "\n" not in str(err.value)


def test_dead_worker_is_an_error_not_a_crash(short_manifest):
    opened = open_runtime(cfg("tflite", isolate=True), short_manifest)
    rt = opened.runtime
    x = np.zeros(rt.input_spec.shape, np.float32)
    rt.infer(x)
    os.kill(rt._proc.pid, signal.SIGKILL)
    with pytest.raises(LookoutError, match="worker died"):
        rt.infer(x)
    rt.close()


def test_isolated_worker_never_loads_torch_into_parent(models_dir: Path):
    """In a fresh interpreter (pytest's own may have torch already): the lite interpreter runs, torch stays out."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "import numpy as np\n"
        "from app.runtimes.base import get_runtime_class\n"
        "from app.runtimes.selection import open_runtime\n"
        "from app.zoo import load_manifest\n"
        f"m = load_manifest('blazeface-short', Path({str(models_dir)!r}))\n"
        "cfg = get_runtime_class('torchscript-lite').config_model(isolate=True)\n"
        "rt = open_runtime(cfg, m).runtime\n"
        "out = rt.infer(np.zeros(rt.input_spec.shape, np.float32))\n"
        "rt.close()\n"
        "print('OUT', [o.shape for o in out], 'TORCH', 'torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "TORCH False" in proc.stdout
    assert "(1, 896, 16)" in proc.stdout  # it did run the model
