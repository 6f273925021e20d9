"""Fixtures for the model zoo tests: a throw-away copy of a real model folder, models run on real photos."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.detection import Detection

# coral_reference.py beside this file, for the test modules (importlib mode)
sys.path.insert(0, str(Path(__file__).resolve().parent))

PEOPLE = ("grace_hopper.bmp", "squat.bmp", "face.jpg")
NO_PEOPLE = ("cat.bmp", "parrot.jpg", "bird.bmp")


@pytest.fixture
def zoo_copy(tmp_path: Path, models_dir: Path) -> Path:
    """tmp models dir holding a copy of models/blazeface-short (real files)."""
    root = tmp_path / "models"
    shutil.copytree(models_dir / "blazeface-short", root / "blazeface-short")
    return root


@pytest.fixture(scope="session")
def coral_photo(coral_dir: Path) -> Callable[[str], np.ndarray]:
    """coral_photo(name) -> BGR frame of one of Coral's test photos."""

    def load(name: str) -> np.ndarray:
        img = cv2.imread(str(coral_dir / name), cv2.IMREAD_COLOR)
        assert img is not None, name
        return img

    return load


@pytest.fixture(scope="session")
def run_model(models_dir: Path) -> Callable[..., Callable[[np.ndarray], list[Detection]]]:
    """run_model(model, runtime, artifact=None, models=models_dir) -> detect(frame) on a loaded runtime."""
    from app.runtimes.base import get_runtime_class
    from app.runtimes.selection import open_runtime
    from app.vision.decoders import make_decoder
    from app.vision.preprocess import Preprocessor
    from app.zoo import load_manifest

    def make(model: str, runtime: str, artifact: str | None = None, models: Path = models_dir):
        m = load_manifest(model, models)
        cfg = get_runtime_class(runtime).config_model(artifact=artifact)
        rt = open_runtime(cfg, m).runtime
        inp = m.input
        pre = Preprocessor(rt.input_spec, inp.width, inp.height, inp.color, inp.resize, inp.mean, inp.std)
        dec = make_decoder(m.decoder, list(m.labels), **m.decoder_options)

        def detect(frame: np.ndarray) -> list[Detection]:
            tensor, transform = pre(frame)
            return dec(rt.infer(tensor), transform)

        detect.outputs = lambda frame: rt.infer(pre(frame)[0])  # type: ignore[attr-defined]
        return detect

    return make
