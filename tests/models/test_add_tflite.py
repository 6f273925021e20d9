"""`lookout models add --from-tflite`: Coral's MobileNet pair added, run with the Edge TPU fallback, rebuilt."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from app.zoo import load_manifest

CATS = {"tiger cat", "tabby, tabby cat", "Egyptian cat"}


def _cli(
    cmd: list[str], env: dict[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=timeout)


def _run(cmd, env, models: Path, runtime: str, photos: Path, tmp: Path) -> tuple[dict, list[dict]]:
    out = tmp / f"{runtime}.jsonl"
    res = _cli(
        cmd, env, "run", "--models-dir", str(models), "--model", "mine", "--runtime", runtime,
        "--source", str(photos), "--max-frames", "2", "--no-mqtt", "--output", str(out),
        "--state-dir", str(tmp / "state"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    return summary, [json.loads(line) for line in out.read_text().splitlines()]


def test_add_mobilenet_pair_run_on_edgetpu_fallback_then_build(
    tmp_path: Path, coral_dir: Path, lookout_cmd: list[str], clean_env: dict[str, str]
) -> None:
    models = tmp_path / "models"
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("cat.bmp", "parrot.jpg"):
        shutil.copy(coral_dir / name, photos)
    res = _cli(
        lookout_cmd, clean_env, "models", "--models-dir", str(models), "add", "mine",
        "--from-tflite", str(coral_dir / "mobilenet_v1_0.25_128_quant.tflite"),
        "--edgetpu", str(coral_dir / "mobilenet_v1_0.25_128_quant_edgetpu.tflite"),
        "--task", "classification", "--labels", str(coral_dir / "imagenet_labels.txt"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    m = load_manifest("mine", models)
    assert m.decoder == "classify" and len(m.labels) == 1001 and set(m.artifacts) == {"tflite", "edgetpu"}
    assert (m.input.mean, m.input.std) == (
        [128.0] * 3,
        [128.0] * 3,
    )  # uint8 q(1/128, 128): pixels as they are
    assert "mobilenet_v1_0.25_128_quant.tflite" in m.provenance.origin and "20" in m.provenance.origin
    for key in m.artifacts:
        m.verify_artifact(key)

    summary, frames = _run(lookout_cmd, clean_env, models, "edgetpu", photos, tmp_path)
    assert summary["runtime"] == "tflite" and summary["fallback"]["from"] == "edgetpu"
    assert "libedgetpu" in summary["fallback"]["reason"]
    top1 = {f["source"]: f["detections"][0]["label"] for f in frames}
    assert top1["cat.bmp"] in CATS and top1["parrot.jpg"] == "macaw", top1

    res = _cli(
        lookout_cmd, clean_env, "models", "--models-dir", str(models), "build", "mine", "--only", "pte"
    )
    assert res.returncode == 0, res.stderr
    assert load_manifest("mine", models).artifacts["pte"].derived_from == "tflite"
    summary, frames = _run(lookout_cmd, clean_env, models, "executorch", photos, tmp_path)
    assert summary["runtime"] == "executorch" and summary["fallback"] is None
    assert {f["source"]: f["detections"][0]["label"] for f in frames} == top1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--from-tflite", "{coral}/cat.bmp", "--task", "classification", "--labels", "{coral}/imagenet_labels.txt"),
         "is not a .tflite model"),
        (("--from-tflite", "{coral}/mobilenet_v1_0.25_128_quant.tflite",
          "--edgetpu", "{coral}/movenet_single_pose_lightning_ptq_edgetpu.tflite",
          "--task", "classification", "--labels", "{coral}/imagenet_labels.txt"), "is not compiled from"),
        (("--from-tflite", "{coral}/mobilenet_v1_0.25_128_quant.tflite",
          "--edgetpu", "{coral}/mobilenet_v1_0.25_128_quant.tflite",
          "--task", "classification", "--labels", "{coral}/imagenet_labels.txt"), "has no edgetpu-custom-op"),
        (("--from-tflite", "{coral}/movenet_single_pose_lightning_ptq.tflite", "--task", "detection",
          "--labels", "{coral}/coco_labels.txt"), "unknown output layout for task 'detection'"),
        (("--from-tflite", "{coral}/mobilenet_v1_0.25_128_quant.tflite", "--task", "classification",
          "--labels", "{coral}/coco_labels.txt"), "1001 classes but the labels file has"),
        (("--from-tflite", "{coral}/mobilenet_v1_0.25_128_quant_edgetpu.tflite", "--task", "classification",
          "--labels", "{coral}/imagenet_labels.txt"), "is compiled for the Edge TPU"),
    ],
)  # fmt: skip
def test_add_refuses_what_it_cannot_describe_in_one_line(
    args: tuple[str, ...], message: str, tmp_path: Path, coral_dir: Path, lookout_cmd, clean_env
) -> None:
    models = tmp_path / "models"
    argv = [a.format(coral=coral_dir) for a in args]
    res = _cli(lookout_cmd, clean_env, "models", "--models-dir", str(models), "add", "bad", *argv)
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith("INFO:")]
    assert len(lines) == 1 and message in lines[0], res.stderr
    assert not (models / "bad").exists()


@pytest.mark.parametrize(
    ("shape", "version", "experimental"),
    [((1, 6, 100), "v8", False), ((1, 100, 7), "v5", True)],  # 2 labels: 4 + C = 6 (v8), 5 + C = 7 (v5)
)
def test_yolo_v5_is_added_with_a_note_that_its_decoder_is_experimental(shape, version, experimental) -> None:
    from app.modelbuild.add_tflite import TensorDesc, add_output_layout

    out = TensorDesc("out", shape, "float32", 0.0, 0)
    layout = add_output_layout("detection", [out], ["cat", "dog"], (640, 640), None)
    assert (layout.decoder, layout.options["version"], layout.experimental) == ("yolo", version, experimental)
