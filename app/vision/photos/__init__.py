"""Real photos shipped with the package (see README.md): the demo video's pictures, no scikit-image needed."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from app.errors import LookoutError

FOLDER = Path(__file__).resolve().parent
NAMES = ("astronaut", "coffee", "chelsea")


@functools.cache
def photo(name: str) -> np.ndarray:
    """The named photo as a BGR HxWx3 uint8 array (like an OpenCV frame); read once, then cached."""
    import cv2

    if name not in NAMES:
        raise LookoutError(f"no shipped photo {name!r} (have: {', '.join(NAMES)})")
    path = FOLDER / f"{name}.png"
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise LookoutError(f"{path}: missing or not a readable PNG (reinstall lookout)")
    img.setflags(write=False)
    return img
