"""Fixtures for the runtime tests: the real BlazeFace manifest, detection on real photos, scratch model folders."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from app.detection import Detection


@pytest.fixture(scope="session")
def short_manifest(models_dir: Path):
    from app.zoo import load_manifest

    return load_manifest("blazeface-short", models_dir)


@pytest.fixture(scope="session")
def detect_faces() -> Callable[..., list[Detection]]:
    """detect_faces(opened, manifest, frame_bgr) -> detections."""
    return detect


def detect(opened, manifest, frame_bgr: np.ndarray) -> list[Detection]:
    """Preprocess with the manifest's normalisation, infer on the opened runtime, decode with its decoder."""
    from app.vision.decoders import make_decoder
    from app.vision.preprocess import Preprocessor

    inp = manifest.input
    pre = Preprocessor(
        opened.runtime.input_spec, inp.width, inp.height, inp.color, inp.resize, inp.mean, inp.std
    )
    decoder = make_decoder(manifest.decoder, list(manifest.labels), **manifest.decoder_options)
    tensor, transform = pre(frame_bgr)
    return decoder(opened.runtime.infer(tensor), transform)


@pytest.fixture
def scratch_model(tmp_path: Path, short_manifest) -> Callable[..., Path]:
    """Copy blazeface-short's manifest and the given artifacts' files into tmp; returns the folder."""

    def make(*keys: str) -> Path:
        d = tmp_path / "blazeface-short"
        d.mkdir(exist_ok=True)
        shutil.copy(short_manifest.path, d / "model.toml")
        for key in keys:
            shutil.copy(short_manifest.artifact_path(key), d)
        return d

    return make


@pytest.fixture(scope="session")
def build_so(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Path]:
    """Compile a tiny C shared library (a stand-in libedgetpu at the dlopen boundary); skip without a compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    root = tmp_path_factory.mktemp("so")

    def build(name: str, source: str) -> Path:
        if cc is None:
            pytest.skip("no C compiler to build the test shared library")
        src = root / f"{name}.c"
        src.write_text(source)
        out = root / f"{name}.so"
        subprocess.run([cc, "-shared", "-fPIC", "-o", str(out), str(src)], check=True, capture_output=True)
        return out

    return build
