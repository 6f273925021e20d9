"""Bad artifacts give one-line ArtifactErrors naming the file and what is wrong; never a crash."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.errors import ArtifactError
from app.runtimes.litert import LiteRTConfig, LiteRTRuntime
from app.runtimes.selection import open_runtime
from app.zoo import load_manifest, sha256_file


def _random(path: Path, n: int, head: bytes = b"", seed: int = 7) -> Path:
    import numpy as np

    data = bytearray(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes())
    data[4 : 4 + len(head)] = head
    path.write_bytes(bytes(data))
    return path


def _bad_files(tmp_path: Path, real: Path | None, suffix: str, magic: bytes) -> dict[str, Path]:
    cases = {
        "missing": tmp_path / f"missing{suffix}",
        "empty": tmp_path / f"empty{suffix}",
        "random": _random(tmp_path / f"random{suffix}", 50_000),
        "random-with-magic": _random(tmp_path / f"magic{suffix}", 50_000, magic),
    }
    cases["empty"].write_bytes(b"")
    if real is not None:
        data = real.read_bytes()
        cases["truncated"] = tmp_path / f"truncated{suffix}"
        cases["truncated"].write_bytes(data[: len(data) // 2])
    return cases


def _assert_one_line(msg: str, path: Path) -> None:
    assert str(path) in msg, msg
    assert "\n" not in msg and "Traceback" not in msg, msg


def test_tflite_bad_files(tmp_path, short_manifest):
    expect = {
        "missing": "missing file",
        "empty": "is empty",
        "random": "no TFL3",
        "random-with-magic": "cannot load .tflite model",
        "truncated": "cannot load .tflite model",
    }
    cases = _bad_files(tmp_path, short_manifest.artifact_path("tflite"), ".tflite", b"TFL3")
    for case, path in cases.items():
        with pytest.raises(ArtifactError) as err:
            LiteRTRuntime().load(path, LiteRTConfig())
        _assert_one_line(str(err.value), path)
        assert expect[case] in str(err.value), (case, str(err.value))


PTE_CHILD = """
import json, sys
from app.errors import ArtifactError
from app.runtimes.executorch import ExecuTorchConfig, ExecuTorchRuntime
out = {}
for case, path in json.loads(sys.argv[1]).items():
    try:
        ExecuTorchRuntime().load(path, ExecuTorchConfig())
        out[case] = "loaded"
    except ArtifactError as exc:
        out[case] = str(exc)
print(json.dumps(out))
"""


def test_pte_bad_files_in_child(tmp_path, short_manifest):
    """In a child process: an ExecuTorch abort would show up as a signal exit, not kill pytest."""
    pytest.importorskip("executorch")
    real = short_manifest.artifact_path("pte") if "pte" in short_manifest.artifacts else None
    cases = _bad_files(tmp_path, real, ".pte", b"ET12")
    proc = subprocess.run(
        [sys.executable, "-c", PTE_CHILD, json.dumps({k: str(v) for k, v in cases.items()})],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    expect = {
        "missing": "missing file",
        "empty": "is empty",
        "random": "not an ExecuTorch .pte program",
        "random-with-magic": "corrupt or truncated ExecuTorch program",
        "truncated": "corrupt or truncated ExecuTorch program",
    }
    for case, path in cases.items():
        _assert_one_line(got[case], path)
        assert expect[case] in got[case], (case, got[case])


def test_ptl_bad_files(tmp_path, short_manifest):
    pytest.importorskip("torch")
    from app.runtimes.torchlite import TorchScriptLiteConfig, TorchScriptLiteRuntime

    real = short_manifest.artifact_path("ptl") if "ptl" in short_manifest.artifacts else None
    cases = _bad_files(tmp_path, real, ".ptl", b"")
    expect = {
        "missing": "missing file",
        "empty": "is empty",
        "random": "not a zip archive",
        "truncated": "corrupt or truncated .ptl",
    }
    cases.pop("random-with-magic")
    cfg = TorchScriptLiteConfig(input_shape=(1, 128, 128, 3))
    for case, path in cases.items():
        with pytest.raises(ArtifactError) as err:
            TorchScriptLiteRuntime().load(path, cfg)
        _assert_one_line(str(err.value), path)
        assert expect[case] in str(err.value), (case, str(err.value))


def test_ptl_wrong_input_shape(short_manifest):
    pytest.importorskip("torch")
    if "ptl" not in short_manifest.artifacts:
        pytest.skip("artifact 'ptl' not built (lookout models build)")
    from app.runtimes.torchlite import TorchScriptLiteConfig, TorchScriptLiteRuntime

    path = short_manifest.artifact_path("ptl")
    with pytest.raises(ArtifactError, match=r"does not accept input shape \(1, 96, 96, 3\)") as err:
        TorchScriptLiteRuntime().load(path, TorchScriptLiteConfig(input_shape=(1, 96, 96, 3)))
    _assert_one_line(str(err.value), path)


def test_select_sha_mismatch(scratch_model, models_dir):
    folder = scratch_model("tflite")
    manifest = load_manifest(folder, models_dir)
    path = manifest.artifact_path("tflite")
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ArtifactError, match="sha256 mismatch") as err:
        open_runtime(LiteRTConfig(), manifest)
    _assert_one_line(str(err.value), path)


def test_select_missing_file(scratch_model, models_dir):
    manifest = load_manifest(scratch_model(), models_dir)
    with pytest.raises(ArtifactError, match="missing file") as err:
        open_runtime(LiteRTConfig(), manifest)
    _assert_one_line(str(err.value), manifest.artifact_path("tflite"))


def test_select_input_shape_mismatch(scratch_model, models_dir):
    """The 256x256 back-camera model behind a manifest that says 128x128."""
    folder = scratch_model()
    back = load_manifest("blazeface-back", models_dir).artifact_path("tflite")
    manifest = load_manifest(folder, models_dir)
    dest = manifest.artifact_path("tflite")
    shutil.copy(back, dest)
    manifest.artifacts["tflite"].sha256 = sha256_file(dest)
    with pytest.raises(ArtifactError) as err:
        open_runtime(LiteRTConfig(), manifest)
    msg = str(err.value)
    _assert_one_line(msg, dest)
    assert "(1, 256, 256, 3)" in msg and "128x128" in msg and "does not match the manifest" in msg
