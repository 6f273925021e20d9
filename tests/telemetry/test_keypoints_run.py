"""Keypoints reach MQTT: `lookout run` with a pose model on a photo of a person publishes detections
whose keypoints the shipped detections schema accepts."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from app.telemetry import contract
from app.zoo import load_manifest

from ..service.live_device import start_run, stop_run
from .conftest import wait_until

DEVICE = "pose-dev"


def shipped_validator(kind: str) -> Draft202012Validator:
    doc = json.loads(resources.files("app.telemetry").joinpath("schemas", f"{kind}.json").read_text())
    return Draft202012Validator(doc)


def write_config(tmp_path: Path, url: str, photos: Path, model: str) -> Path:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'device_id = "{DEVICE}"\nmodel = "{model}"\nstate_dir = "{tmp_path / "state"}"\n'
        '[runtime]\ntype = "tflite"\nthreads = 1\n'
        f'[source]\ntype = "images"\nfolder = "{photos}"\nloop = true\n'
        "[pipeline]\nfps = 10.0\n"
        f'[mqtt]\nurl = "{url}"\nreconnect_max_s = 1.0\n'
    )
    return cfg


@pytest.mark.parametrize("model", ["movenet-lightning", "person-detector"])
def test_run_publishes_the_keypoints_of_a_pose_model(
    model: str, broker, collect, coral_dir: Path, models_dir: Path, clean_env, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(coral_dir / "squat.bmp", photos / "squat.bmp")  # one person, whole body
    sub = collect(broker, [f"lookout/{DEVICE}/detections"])
    cfg = write_config(tmp_path, broker.url, photos, model)
    proc = start_run(clean_env, "--config", str(cfg))
    try:
        wait_until(
            lambda: proc.poll() is not None or any(m.json()["detections"] for m in sub.on("/detections")),
            90,
            "a detection",
        )
    finally:
        err = stop_run(proc)
    assert proc.returncode == 0, err[-2000:]
    validator = shipped_validator("detections")
    with_people = [m.json() for m in sub.on("/detections") if m.json()["detections"]]
    assert with_people, err[-2000:]
    for payload in with_people:
        assert not list(validator.iter_errors(payload))
        contract.parse("detections", payload)
        for det in payload["detections"]:
            assert det["label"] == "person"
            names = [k["name"] for k in det["keypoints"]]
            assert names and set(names) <= set(load_manifest(model, models_dir).keypoints)
            assert all(0 <= k["score"] <= 1 for k in det["keypoints"])
