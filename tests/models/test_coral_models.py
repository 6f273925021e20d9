"""Coral's MobileNet and MoveNet in the zoo: decoders on the real models, their torch rebuilds, Edge TPU files."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from app.zoo import load_manifest

TOP1 = {
    "cat.bmp": {"tiger cat", "tabby, tabby cat", "Egyptian cat"},
    "parrot.jpg": {"macaw"},
    "bird.bmp": {"chickadee"},
}


@pytest.mark.parametrize("runtime", ["tflite", "executorch", "torchscript-lite"])
def test_mobilenet_top1_matches_the_photo(runtime: str, run_model, coral_photo) -> None:
    detect = run_model("mobilenet-v1-025", runtime)
    for name, want in TOP1.items():
        top = detect(coral_photo(name))
        assert top and top[0].label in want, (runtime, name, [(d.label, d.score) for d in top])
        assert top[0].box == (0.0, 0.0, float(coral_photo(name).shape[1]), float(coral_photo(name).shape[0]))


def test_mobilenet_rebuild_scores_agree(run_model, coral_photo) -> None:
    ref, pte = run_model("mobilenet-v1-025", "tflite"), run_model("mobilenet-v1-025", "executorch")
    for name in TOP1:
        a, b = ref.outputs(coral_photo(name))[0], pte.outputs(coral_photo(name))[0]
        assert np.abs(a - b).max() <= 0.05, name  # int8 model vs its float rebuild (output step 1/256)


def _coral_resize(rgb: np.ndarray, h: int, w: int) -> np.ndarray:
    """libcoral's test resize: TFLite RESIZE_BILINEAR (no half-pixel centres) on float, cast by truncation."""
    hh, ww = rgb.shape[:2]
    ys, xs = np.arange(h) * (hh / h), np.arange(w) * (ww / w)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, hh - 1), np.minimum(x0 + 1, ww - 1)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    a = rgb.astype(np.float64)
    top = a[y0][:, x0] * (1 - fx) + a[y0][:, x1] * fx
    bottom = a[y1][:, x0] * (1 - fx) + a[y1][:, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.uint8)


def test_movenet_reproduces_corals_reference_keypoints(
    models_dir: Path, coral_dir: Path, coral_photo
) -> None:
    from app.runtimes.litert import LiteRTConfig, LiteRTRuntime
    from app.vision.decoders import make_decoder
    from app.vision.preprocess import placement

    m = load_manifest("movenet-lightning", models_dir)
    rows = list(csv.DictReader((coral_dir / "movenet_single_pose_lightning_ptq_reference.csv").open()))
    ref = np.array(
        [[float(r["keypoint_x"]), float(r["keypoint_y"]), float(r["keypoint_score"])] for r in rows]
    )
    rt = LiteRTRuntime()
    rt.load(m.verify_artifact("tflite"), LiteRTConfig())
    frame = coral_photo("squat.bmp")
    x = _coral_resize(frame[..., ::-1], 192, 192)[None]
    out = rt.infer(x)
    # the decoder, on a stretch placement like Coral's, gives keypoints in frame pixels
    h, w = frame.shape[:2]
    dec = make_decoder(m.decoder, m.labels, **m.decoder_options)
    [person] = dec(out, placement(w, h, 192, 192, "stretch"))
    got = np.array([[k.x / w, k.y / h, k.score] for k in person.keypoints])
    # every keypoint within 0.021 (one heatmap cell is 1/48 = 0.0208): Coral's own test allows 0.04
    # on keypoints both sides score above 0.4
    assert np.abs(got[:, :2] - ref[:, :2]).max() <= 0.021
    assert np.abs(got[:, 2] - ref[:, 2]).max() <= 0.35
    assert [k.name for k in person.keypoints] == m.keypoints
    good = got[:, 2] >= m.decoder_options["keypoint_threshold"]
    x0, y0, x1, y1 = person.box
    assert (x0 <= got[good, 0] * w).all() and (got[good, 0] * w <= x1).all()
    assert (y0 <= got[good, 1] * h).all() and (got[good, 1] * h <= y1).all()


@pytest.mark.parametrize("runtime", ["executorch", "torchscript-lite"])
def test_movenet_rebuild_keypoints_agree(runtime: str, run_model, coral_photo) -> None:
    ref, got = run_model("movenet-lightning", "tflite"), run_model("movenet-lightning", runtime)
    for name in ("squat.bmp", "grace_hopper.bmp"):
        a, b = ref.outputs(coral_photo(name))[0][0, 0], got.outputs(coral_photo(name))[0][0, 0]
        confident = (a[:, 2] > 0.3) & (b[:, 2] > 0.3)
        assert confident.sum() >= 5, name  # the portrait shows the upper body only
        # positions of confident keypoints within 1.5 heatmap cells (1/48 each); scores within 0.35
        assert np.abs(a[confident, :2] - b[confident, :2]).max() <= 0.032, (runtime, name)
        assert np.abs(a[:, 2] - b[:, 2]).max() <= 0.35, (runtime, name)
    squat = got(coral_photo("squat.bmp"))
    assert len(squat) == 1 and squat[0].label == "person"


def test_compiled_model_forced_on_the_cpu_is_refused_in_one_line(
    tmp_path: Path, lookout_cmd: list[str], clean_env: dict[str, str], coral_dir: Path
) -> None:
    cfg = tmp_path / "lookout.toml"
    cfg.write_text('model = "mobilenet-v1-025"\n[runtime]\ntype = "tflite"\nartifact = "edgetpu"\n')
    res = subprocess.run(
        [*lookout_cmd, "run", "--config", str(cfg), "--source", str(coral_dir / "cat.bmp"), "--no-mqtt",
         "--max-frames", "1", "--state-dir", str(tmp_path / "state")],
        env=clean_env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "edgetpu-custom-op" in lines[0] and "_edgetpu.tflite" in lines[0], lines
    assert "unresolved custom op" not in res.stderr


def test_list_json_shows_the_new_models(lookout_cmd: list[str], clean_env: dict[str, str]) -> None:
    res = subprocess.run(
        [*lookout_cmd, "models", "list", "--json"], env=clean_env, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    models = {m["name"]: m for m in json.loads(res.stdout)}
    for name in ("mobilenet-v1-025", "movenet-lightning"):
        arts = models[name]["artifacts"]
        assert {"tflite", "edgetpu", "pte", "ptl", "onnx"} <= set(arts), name
        assert arts["edgetpu"]["precision"] == "int8" and arts["edgetpu"]["file"].endswith("_edgetpu.tflite")
    person = models["person-detector"]
    assert person["task"] == "detection" and person["labels"] == ["person"]
    assert {"tflite", "tflite-int8", "pte", "ptl", "onnx"} <= set(person["artifacts"])
    assert person["input"]["width"] == 224 and models["movenet-lightning"]["task"] == "pose"
    assert len(models["mobilenet-v1-025"]["labels"]) == 1001
