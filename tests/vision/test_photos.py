"""The photos shipped for the demo: the same pixels as scikit-image's, and a demo without scikit-image."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.errors import LookoutError
from app.vision import photos


@pytest.mark.parametrize("name", photos.NAMES)
def test_shipped_photo_is_scikit_image_photo(name: str) -> None:
    from skimage import data

    expected = np.ascontiguousarray(getattr(data, name)()[..., ::-1])  # RGB -> BGR
    got = photos.photo(name)
    assert got.dtype == np.uint8 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_unknown_photo_is_a_clear_error() -> None:
    with pytest.raises(LookoutError, match="no shipped photo 'camera'"):
        photos.photo("camera")


def test_demo_source_without_scikit_image(tmp_path: Path, repo_root: Path) -> None:
    """A device install has no scikit-image: the demo source still opens and yields its first frame."""
    code = """
import sys, threading
sys.modules["skimage"] = None  # `import skimage` now raises ImportError, as where it is not installed
from app.config import OpenCVSource, ReconnectConfig
from app.vision.demo import demo_frame
from app.vision.sources import open_source
src = open_source(OpenCVSource(uri="demo", loop=False), ReconnectConfig(initial_s=0.05, max_s=0.1))
frame = src.read(threading.Event())
src.close()
assert frame is not None and frame.shape == (480, 640, 3), frame
assert abs(frame.astype(int) - demo_frame(0).astype(int)).mean() < 6  # mp4v is lossy
print("ok", "skimage" in sys.modules and sys.modules["skimage"] is not None)
"""
    env = {"XDG_CACHE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=repo_root, env=env, capture_output=True, text=True, timeout=240
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ok", "False"]
    assert list((tmp_path / "lookout").glob("demo-*.mp4"))
