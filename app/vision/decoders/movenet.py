"""MoveNet single-person pose: 17 COCO keypoints, and a person box around the confident ones.

Output (1, 1, 17, 3): per keypoint (y, x, score), y and x normalised to the model input. The model
always returns one pose, person or not, so a person is reported only when at least `min_keypoints`
keypoints reach `keypoint_threshold` and their mean score reaches `score_threshold`. The box spans the
confident keypoints, widened by `margin` of its size on each side (keypoints sit inside the body's
outline: the top of the head and the feet are beyond them), clipped to the frame.
"""

from __future__ import annotations

import numpy as np

from app.detection import Detection, Keypoint
from app.vision.decoders import Decoder
from app.vision.preprocess import Transform

COCO_KEYPOINTS = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)


def points_to_source(transform: Transform, xy: np.ndarray) -> np.ndarray:
    """(N, 2) points normalised to the model input -> frame pixels (clipped to the frame)."""
    boxes = np.concatenate([xy, xy], axis=1)
    return transform.to_source(boxes)[:, :2]


class MoveNetDecoder(Decoder):
    name = "movenet"

    def __init__(
        self,
        labels: list[str],
        score_threshold: float = 0.3,
        keypoint_threshold: float = 0.3,
        min_keypoints: int = 5,
        margin: float = 0.1,
    ) -> None:
        super().__init__(labels or ["person"], score_threshold)
        self.keypoint_threshold = float(keypoint_threshold)
        self.min_keypoints = int(min_keypoints)
        self.margin = float(margin)

    def __call__(
        self, outputs: list[np.ndarray], transform: Transform, score_threshold: float | None = None
    ) -> list[Detection]:
        self.check(len(outputs) >= 1, "expected one (1, 1, 17, 3) output")
        out = np.asarray(outputs[0], dtype=np.float64)
        self.check(out.size == 17 * 3, f"output shape {out.shape}, expected (1, 1, 17, 3)")
        kp = out.reshape(17, 3)
        scores = kp[:, 2]
        xy = points_to_source(transform, kp[:, [1, 0]])
        good = scores >= self.keypoint_threshold
        confident = scores[good]
        if good.sum() < self.min_keypoints or confident.mean() < self.threshold(score_threshold):
            return []
        x0, y0 = xy[good].min(axis=0)
        x1, y1 = xy[good].max(axis=0)
        mx, my = (x1 - x0) * self.margin, (y1 - y0) * self.margin
        box = (
            max(0.0, x0 - mx),
            max(0.0, y0 - my),
            min(float(transform.frame_w), x1 + mx),
            min(float(transform.frame_h), y1 + my),
        )
        if box[2] <= box[0] or box[3] <= box[1]:
            return []
        points = tuple(
            Keypoint(name, float(p[0]), float(p[1]), float(s))
            for name, p, s in zip(COCO_KEYPOINTS, xy, scores, strict=True)
        )
        return [Detection(self.label(0), float(confident.mean()), box, points)]
