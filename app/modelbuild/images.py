"""Real photos for verification and int8 calibration: scikit-image samples, letterboxed and normalised."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from app.zoo import InputSpec, Manifest

# Real colour photos shipped inside scikit-image (no download): people, animals, objects, scenes.
CALIBRATION_PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "cat",
    "hubble_deep_field",
    "immunohistochemistry",
)


def photo_rgb(name: str) -> np.ndarray:
    """A scikit-image sample photo as HxWx3 uint8 RGB."""
    from skimage import data

    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3])


def to_input(rgb: np.ndarray, manifest: Manifest | InputSpec) -> np.ndarray:
    """Letterbox (or stretch) an RGB photo to the model input, normalise, NHWC float32 [1,H,W,3]."""
    import cv2

    spec = manifest.input if isinstance(manifest, Manifest) else manifest
    h, w = rgb.shape[:2]
    if spec.resize == "stretch":
        canvas = cv2.resize(rgb, (spec.width, spec.height), interpolation=cv2.INTER_AREA)
    else:
        s = min(spec.width / w, spec.height / h)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        resized = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
        canvas = np.zeros((spec.height, spec.width, 3), np.uint8)
        y0, x0 = (spec.height - nh) // 2, (spec.width - nw) // 2
        canvas[y0 : y0 + nh, x0 : x0 + nw] = resized
    if spec.color == "bgr":
        canvas = canvas[..., ::-1]
    x = (canvas.astype(np.float32) - np.float32(spec.mean)) / np.float32(spec.std)
    return x[None]


def calibration_inputs(manifest: Manifest, limit: int = 48) -> Iterator[np.ndarray]:
    """Model inputs from real photos: each whole, flipped, and crops at several scales."""
    count = 0
    for name in CALIBRATION_PHOTOS:
        img = photo_rgb(name)
        h, w = img.shape[:2]
        views = [img, img[:, ::-1]]
        for frac in (0.75, 0.5):
            ch, cw = int(h * frac), int(w * frac)
            views += [
                img[:ch, :cw],
                img[h - ch :, w - cw :],
                img[(h - ch) // 2 : (h + ch) // 2, (w - cw) // 2 : (w + cw) // 2],
            ]
        for v in views:
            yield to_input(np.ascontiguousarray(v), manifest)
            count += 1
            if count >= limit:
                return
