"""`lookout models add --from-torch`: a small real detector exported to every format, checked on a known answer.

One network (tests/models/tiny_nets.py) is converted once per module: the exports are compared with eager
torch by `add` itself, decoded by the YOLO decoder on each runtime, and benchmarked by `lookout bench`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.zoo import load_manifest

NETS = Path(__file__).with_name("tiny_nets.py")
ARTIFACTS = {"tflite": "fp32", "tflite-int8": "int8", "pte": "fp32", "ptl": "fp32", "onnx": "fp32"}


@pytest.fixture(scope="module")
def added(
    tmp_path_factory: pytest.TempPathFactory, lookout_cmd: list[str], coral_dir: Path
) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("torch")
    labels = tmp / "labels.txt"
    labels.write_text("bright\n")
    calibration = tmp / "calibration"
    calibration.mkdir()
    for name in ("squat.bmp", "parrot.jpg", "bird.bmp"):
        shutil.copy(coral_dir / name, calibration)
    res = subprocess.run(
        [*lookout_cmd, "models", "--models-dir", str(tmp / "models"), "add", "squares",
         "--from-torch", f"{NETS}:bright_squares", "--input", "1x3x64x64", "--task", "detection",
         "--labels", str(labels), "--mean", "127.5", "--std", "127.5", "--calibration", str(calibration)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    return tmp / "models", res.stdout


def test_every_artifact_is_exported_and_agrees_with_eager_torch(added: tuple[Path, str]) -> None:
    models, out = added
    m = load_manifest("squares", models)
    assert {k: a.precision for k, a in m.artifacts.items()} == ARTIFACTS
    assert m.decoder == "yolo" and m.decoder_options == {"version": "v8"} and m.labels == ["bright"]
    for key in m.artifacts:
        m.verify_artifact(key)
    rows = {ln.split()[0]: ln.split() for ln in out.splitlines() if ln.split() and ln.split()[0] in ARTIFACTS}
    assert set(rows) == set(ARTIFACTS), out
    for key, precision in ARTIFACTS.items():
        if precision == "fp32":
            assert float(rows[key][2]) <= 1e-5, rows[key]  # max |diff|
        else:
            assert float(rows[key][3]) <= 0.01, rows[key]  # relative to the largest output (box px)
    assert "edgetpu_compiler -s" in out and "squares_int8.tflite" in out
    assert "6 inputs from" in m.artifacts["tflite-int8"].origin  # 3 calibration photos, each mirrored too
    assert "tiny_nets.py:bright_squares" in m.provenance.origin


@pytest.mark.parametrize(("runtime", "artifact"), [("tflite", None), ("tflite", "tflite-int8"),
                                                   ("executorch", None), ("torchscript-lite", None),
                                                   ("onnxruntime", None)])  # fmt: skip
def test_yolo_decoder_finds_the_square_on_each_export(runtime, artifact, added, run_model) -> None:
    models, _ = added
    frame = np.zeros((128, 128, 3), np.uint8)
    frame[32:64, 64:96] = 255  # one white 32 px square: cell (row 1, column 2) of the 4x4 grid at 64 px
    found = run_model("squares", runtime, artifact, models)(frame)
    assert len(found) == 1 and found[0].label == "bright", found
    np.testing.assert_allclose(found[0].box, (64, 32, 96, 64), atol=1.0)
    assert found[0].score > (0.85 if artifact else 0.99)  # int8: the output step of its scores
    assert run_model("squares", runtime, artifact, models)(np.zeros((128, 128, 3), np.uint8)) == []


def test_bench_shows_fp32_exports_agree(added: tuple[Path, str], tmp_path: Path, lookout_cmd) -> None:
    models, _ = added
    env = dict(os.environ, LOOKOUT_MODELS_DIR=str(models), XDG_STATE_HOME=str(tmp_path))
    out = tmp_path / "bench.json"
    res = subprocess.run(
        [*lookout_cmd, "bench", "--model", "squares", "--runtime", "tflite,executorch,torchscript-lite",
         "--frames", "20", "--warmup", "2", "--json", str(out)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    results = {r["runtime"]: r for r in json.loads(out.read_text())["results"]}
    for runtime in ("executorch", "torchscript-lite"):
        assert results[runtime].get("error") is None
        assert results[runtime]["agreement"]["max_abs_diff"] < 1e-3, results[runtime]


def test_missing_convert_extra_is_one_line_naming_it(tmp_path: Path, lookout_cmd: list[str]) -> None:
    (tmp_path / "labels.txt").write_text("bright\n")
    # the interpreter's import system reports litert_torch as absent (as on a device without the extra)
    code = (
        "import sys; sys.modules['litert_torch'] = None; from app.cli import main; "
        f"sys.exit(main(['models', '--models-dir', {str(tmp_path)!r}, 'add', 'x', '--from-torch', "
        f"{str(NETS) + ':bright_squares'!r}, '--input', '1x3x64x64', '--task', 'detection', "
        f"'--labels', {str(tmp_path / 'labels.txt')!r}]))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "'convert' extra" in res.stderr and "litert_torch" in res.stderr


def test_factory_errors_are_one_line(tmp_path: Path, lookout_cmd: list[str]) -> None:
    (tmp_path / "labels.txt").write_text("bright\n")
    for factory, message in (
        (f"{NETS}:not_a_module", "not a torch.nn.Module"),
        (f"{NETS}:nope", "no callable"),
    ):
        res = subprocess.run(
            [*lookout_cmd, "models", "--models-dir", str(tmp_path), "add", "x", "--from-torch", factory,
             "--input", "1x3x64x64", "--task", "detection", "--labels", str(tmp_path / "labels.txt")],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert res.returncode == 2 and res.stderr.count("\n") == 1 and message in res.stderr, res.stderr
