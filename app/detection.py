"""The typed result of a decoder: one detected object in source-frame pixels, optionally with
keypoints; IoU of boxes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Keypoint:
    """One body landmark in source-frame pixels; `name` comes from the manifest's `keypoints` list."""

    name: str
    x: float
    y: float
    score: float

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "x": round(float(self.x), 1),
            "y": round(float(self.y), 1),
            "score": round(float(self.score), 4),
        }


@dataclass(frozen=True, slots=True)
class Detection:
    """One detection. `box` is (x0, y0, x1, y1) in source-frame pixels, x0 < x1, y0 < y1.

    `keypoints` is set by pose-capable decoders (MoveNet, the person detector) and None otherwise."""

    label: str
    score: float
    box: tuple[float, float, float, float]
    keypoints: tuple[Keypoint, ...] | None = None

    def to_json(self) -> dict:
        out: dict = {
            "label": self.label,
            "score": round(float(self.score), 4),
            "box": [round(float(v), 1) for v in self.box],
        }
        if self.keypoints is not None:
            out["keypoints"] = [k.to_json() for k in self.keypoints]
        return out


def iou_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (x0, y0, x1, y1) box against (N, 4) boxes; 0 where the union is empty."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.divide(inter, union, out=np.zeros_like(inter, dtype=np.float64), where=union > 0)


def iou(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes; 0.0 when they do not overlap."""
    return float(iou_many(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64).reshape(1, 4))[0])
