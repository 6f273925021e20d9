"""The demo video: real photos panned and zoomed across a 640x480 frame.

The photos ship with the package (app/vision/photos, pixel-identical to scikit-image's), so the
demo works on a device install without scikit-image. About the first 65 % is the astronaut photo
(one real face, kept wholly in view while a virtual camera pans and zooms), the rest is coffee and
then chelsea (a cat), each held still: no human face. Frames are a pure function of the recipe,
written with OpenCV (mp4v). ``demo_video_path()`` caches the file under $XDG_CACHE_HOME/lookout
(or ~/.cache/lookout), named by a hash of the recipe.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import threading
from pathlib import Path

import numpy as np

from app.errors import LookoutError
from app.vision import photos

WIDTH, HEIGHT = 640, 480
FACE_BOX = (179.0, 81.0, 273.0, 176.0)  # x0, y0, x1, y1 of the face in the 512x512 astronaut photo
RECIPE = {
    "version": 3,
    "size": [WIDTH, HEIGHT],
    "codec": "mp4v",
    "astronaut_share": 0.65,
    "zoom": [0.9, 1.7],
    "centre": [226.0, 175.0],
    "pan": [85.0, 35.0],
    "background": [40, 40, 40],
    # no-face stills: (zoom relative to fitting the whole photo, centre x offset); chosen where
    # BlazeFace short scores stay <= 0.4 (it gives 0.5-0.65 on the cup or the cat at other framings)
    "stills": {"coffee": [1.0, 60.0], "chelsea": [1.2, 60.0]},
}
_lock = threading.Lock()


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lookout"


def recipe_hash(seconds: float = 10, fps: int = 30) -> str:
    text = json.dumps({**RECIPE, "seconds": seconds, "fps": fps}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def demo_video_path() -> Path:
    """The cached demo video (10 s, 30 fps), generated on first use."""
    path = cache_dir() / f"demo-{recipe_hash()}.mp4"
    with _lock:
        if not path.is_file():
            make_demo_video(path)
    return path


def _camera(i: int, n: int) -> tuple[str, float, float, float]:
    """(photo, zoom, centre x, centre y) of frame i of n: photo point c lands on the frame centre."""
    n_astro = round(n * RECIPE["astronaut_share"])
    if i < n_astro:
        t = i / max(1, n_astro - 1)
        z0, z1 = RECIPE["zoom"]
        zoom = z0 + (z1 - z0) * 0.5 * (1 - math.cos(2 * math.pi * t))  # out -> in -> out
        cx = RECIPE["centre"][0] + RECIPE["pan"][0] * math.sin(2 * math.pi * t)
        cy = RECIPE["centre"][1] + RECIPE["pan"][1] * math.sin(4 * math.pi * t)
        return "astronaut", zoom, cx, cy
    photo = "coffee" if i - n_astro < (n - n_astro) // 2 else "chelsea"
    h, w = (400, 600) if photo == "coffee" else (300, 451)
    zf, dx = RECIPE["stills"][photo]
    return photo, min(WIDTH / w, HEIGHT / h) * zf, w / 2 + dx, h / 2


def demo_face_box(i: int, seconds: float = 10, fps: int = 30) -> tuple[float, float, float, float] | None:
    """Where the astronaut's face is in frame i (pixels), or None in the no-face stretch."""
    photo, zoom, cx, cy = _camera(i, round(seconds * fps))
    if photo != "astronaut":
        return None
    x0, y0, x1, y1 = FACE_BOX
    return (
        zoom * (x0 - cx) + WIDTH / 2,
        zoom * (y0 - cy) + HEIGHT / 2,
        zoom * (x1 - cx) + WIDTH / 2,
        zoom * (y1 - cy) + HEIGHT / 2,
    )


def demo_frame(i: int, seconds: float = 10, fps: int = 30) -> np.ndarray:
    """Frame i of the demo (BGR, 640x480), before encoding."""
    import cv2

    photo, zoom, cx, cy = _camera(i, round(seconds * fps))
    m = np.array([[zoom, 0, WIDTH / 2 - zoom * cx], [0, zoom, HEIGHT / 2 - zoom * cy]], dtype=np.float64)
    bg = tuple(RECIPE["background"])
    return cv2.warpAffine(
        photos.photo(photo),
        m,
        (WIDTH, HEIGHT),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=bg,
    )


def make_demo_video(path: Path, seconds: float = 10, fps: int = 30) -> Path:
    """Write the demo video to `path` (atomically) and check OpenCV can read it back."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = round(seconds * fps)
    if n < 2:
        raise LookoutError(f"demo video: {seconds} s at {fps} fps is fewer than 2 frames")
    fd, tmp_name = tempfile.mkstemp(suffix=".mp4", prefix=".demo-", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (WIDTH, HEIGHT))
        if not writer.isOpened():
            raise LookoutError(f"demo video: OpenCV cannot write mp4v to {path}")
        for i in range(n):
            writer.write(demo_frame(i, seconds, fps))
        writer.release()
        cap = cv2.VideoCapture(str(tmp))
        ok, _ = cap.read()
        cap.release()
        if not ok:
            raise LookoutError(f"demo video: OpenCV cannot read back {path}")
        tmp.chmod(0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
