"""Fixtures for the model zoo tests: a throw-away copy of a real model folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture
def zoo_copy(tmp_path: Path, models_dir: Path) -> Path:
    """tmp models dir holding a copy of models/blazeface-short (real files)."""
    root = tmp_path / "models"
    shutil.copytree(models_dir / "blazeface-short", root / "blazeface-short")
    return root
