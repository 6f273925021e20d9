"""`lookout models import`: only a compiled Edge TPU model is accepted."""

from __future__ import annotations

import subprocess
from pathlib import Path

from app.zoo import load_manifest, sha256_file


def _cli(cmd: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cmd, "models", *args], env=env, capture_output=True, text=True, timeout=120)


def test_import_rejects_a_plain_tflite(
    zoo_copy: Path, lookout_cmd: list[str], clean_env: dict[str, str]
) -> None:
    plain = zoo_copy / "blazeface-short" / "face_detection_short_range.tflite"
    res = _cli(lookout_cmd, clean_env, "--models-dir", str(zoo_copy), "import", "blazeface-short", str(plain))
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "edgetpu-custom-op" in res.stderr and str(plain) in res.stderr
    assert "edgetpu" not in load_manifest("blazeface-short", zoo_copy).artifacts


def test_import_accepts_a_file_with_the_custom_op(
    zoo_copy: Path, tmp_path: Path, lookout_cmd: list[str], clean_env: dict[str, str]
) -> None:
    # A .tflite flatbuffer that carries the Edge TPU custom op name, as edgetpu_compiler output does.
    src = (zoo_copy / "blazeface-short" / "face_detection_short_range_int8.tflite").read_bytes()
    compiled = tmp_path / "face_detection_short_range_int8_edgetpu.tflite"
    compiled.write_bytes(src + b"edgetpu-custom-op\x00")
    res = _cli(
        lookout_cmd, clean_env, "--models-dir", str(zoo_copy), "import", "blazeface-short", str(compiled)
    )
    assert res.returncode == 0, res.stderr
    m = load_manifest("blazeface-short", zoo_copy)
    art = m.artifacts["edgetpu"]
    assert art.sha256 == sha256_file(compiled) and art.derived_from == "tflite-int8"
    assert m.verify_artifact("edgetpu").read_bytes() == compiled.read_bytes()
    res = _cli(lookout_cmd, clean_env, "--models-dir", str(zoo_copy), "verify")
    assert res.returncode == 0, res.stderr
