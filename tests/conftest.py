"""Shared fixtures: a real mosquitto broker, the repo's models, real photos."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.telemetry.broker import Broker, mosquitto_path, start_broker

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"
ASTRONAUT_FACE = (179.0, 81.0, 273.0, 176.0)  # x0, y0, x1, y1 in the 512x512 astronaut photo


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return MODELS


@pytest.fixture(scope="session")
def astronaut_face() -> tuple[float, float, float, float]:
    """Ground-truth face box in skimage's astronaut photo (x0, y0, x1, y1)."""
    return ASTRONAUT_FACE


@pytest.fixture
def broker() -> Iterator[Broker]:
    """A fresh Debian mosquitto on a free 127.0.0.1 port, stopped by PID afterwards."""
    if not mosquitto_path():
        pytest.fail("mosquitto is not installed: `make test` installs it (apt-get install mosquitto)")
    b = start_broker("mosquitto")
    try:
        yield b
    finally:
        b.stop()


def _bgr(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[..., ::-1])


@pytest.fixture(scope="session")
def astronaut_bgr() -> np.ndarray:
    """scikit-image's astronaut photo (512x512, one face), BGR like OpenCV frames."""
    from skimage import data

    return _bgr(data.astronaut())


@pytest.fixture(scope="session")
def no_face_photos_bgr() -> dict[str, np.ndarray]:
    """Real photos with no human face: coffee and chelsea (a cat)."""
    from skimage import data

    return {"coffee": _bgr(data.coffee()), "chelsea": _bgr(data.chelsea())}


@pytest.fixture(scope="session")
def lookout_cmd() -> list[str]:
    """Command prefix that runs the CLI of this checkout in a subprocess."""
    return [sys.executable, "-m", "app"]


@pytest.fixture
def clean_env(tmp_path: Path) -> dict[str, str]:
    """Environment for CLI subprocesses: no user config, state under tmp_path."""
    env = {k: v for k, v in os.environ.items() if k != "LOOKOUT_CONFIG"}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="session")
def demo_video() -> Path:
    """The demo video (real photos panned and zoomed), generated once and cached."""
    from app.vision.demo import demo_video_path

    return demo_video_path()
