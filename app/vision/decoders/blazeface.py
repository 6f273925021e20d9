"""MediaPipe BlazeFace (face_detection_short_range / back): SSD anchors, box decoding, weighted NMS.

Follows MediaPipe's face detection graph: SsdAnchorsCalculator (fixed_anchor_size, offset 0.5,
aspect ratio 1 plus the interpolated one), TensorsToDetectionsCalculator (reverse_output_order,
x/y/w/h scale = input size, sigmoid of logits clipped to +-100) and NonMaxSuppressionCalculator
(WEIGHTED, IoU > 0.3). Outputs: regressors (1, 896, 16) and classificators (1, 896, 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.detection import Detection
from app.vision.decoders import Decoder
from app.vision.decoders.nms import weighted_nms
from app.vision.preprocess import Transform


@dataclass(frozen=True)
class AnchorOptions:
    input_size: int
    strides: tuple[int, ...]
    anchor_offset: float = 0.5
    aspect_ratios: tuple[float, ...] = (1.0,)
    interpolated_scale_aspect_ratio: float = 1.0


VARIANTS = {
    "short": AnchorOptions(128, (8, 16, 16, 16)),
    "back": AnchorOptions(256, (16, 32, 32, 32)),
}
SCORE_CLIP = 100.0


def ssd_anchor_centres(opts: AnchorOptions) -> np.ndarray:
    """(N, 2) anchor centres (x, y), normalised; fixed anchor size (w = h = 1), MediaPipe's order."""
    centres = []
    i = 0
    while i < len(opts.strides):
        # layers sharing a stride share one feature map; their anchors are interleaved per cell
        j = i
        per_cell = 0
        while j < len(opts.strides) and opts.strides[j] == opts.strides[i]:
            per_cell += len(opts.aspect_ratios) + (1 if opts.interpolated_scale_aspect_ratio > 0 else 0)
            j += 1
        fm = int(np.ceil(opts.input_size / opts.strides[i]))
        ys, xs = np.meshgrid(np.arange(fm), np.arange(fm), indexing="ij")
        cx = (xs.reshape(-1) + opts.anchor_offset) / fm
        cy = (ys.reshape(-1) + opts.anchor_offset) / fm
        cell = np.stack([cx, cy], axis=1)
        centres.append(np.repeat(cell, per_cell, axis=0))
        i = j
    return np.concatenate(centres).astype(np.float32)


def decode_boxes(raw: np.ndarray, anchors: np.ndarray, input_size: int) -> np.ndarray:
    """(N, >=4) raw regressors of (N, 2) anchor centres -> (N, 4) normalised (x0, y0, x1, y1); anchor w = h = 1."""
    s = float(input_size)
    cx = raw[:, 0] / s + anchors[:, 0]
    cy = raw[:, 1] / s + anchors[:, 1]
    hw = raw[:, 2] / s / 2.0
    hh = raw[:, 3] / s / 2.0
    return np.stack([cx - hw, cy - hh, cx + hw, cy + hh], axis=1)


def sigmoid_scores(logits: np.ndarray) -> np.ndarray:
    """Scores of raw classificator logits, clipped to +-SCORE_CLIP; float64, so exp(100) does not overflow."""
    clipped = np.clip(np.asarray(logits, dtype=np.float64), -SCORE_CLIP, SCORE_CLIP)
    return 1.0 / (1.0 + np.exp(-clipped))


class BlazeFaceDecoder(Decoder):
    name = "blazeface"

    def __init__(
        self,
        labels: list[str],
        variant: str = "short",
        score_threshold: float = 0.5,
        iou_threshold: float = 0.3,
        max_detections: int = 100,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"variant {variant!r} is not one of {', '.join(VARIANTS)}")
        super().__init__(labels or ["face"], score_threshold)
        self.variant = variant
        self.opts = VARIANTS[variant]
        self.iou_threshold = float(iou_threshold)
        self.max_detections = int(max_detections)
        self.anchors = ssd_anchor_centres(self.opts)

    def __call__(
        self, outputs: list[np.ndarray], transform: Transform, score_threshold: float | None = None
    ) -> list[Detection]:
        n = len(self.anchors)
        self.check(len(outputs) >= 2, f"expected 2 outputs (regressors, classificators), got {len(outputs)}")
        reg, cls = np.asarray(outputs[0]), np.asarray(outputs[1])
        if reg.shape[-1] == 1 and cls.shape[-1] != 1:  # tolerate a runtime that lists them the other way
            reg, cls = cls, reg
        self.check(reg.size == n * 16, f"regressors shape {reg.shape}, expected (1, {n}, 16)")
        self.check(cls.size == n, f"classificators shape {cls.shape}, expected (1, {n}, 1)")
        scores = sigmoid_scores(cls.reshape(n))
        keep = np.flatnonzero(scores >= self.threshold(score_threshold))
        if keep.size == 0:
            return []
        boxes = decode_boxes(reg.reshape(n, 16)[keep], self.anchors[keep], self.opts.input_size)
        boxes, kept_scores = weighted_nms(boxes, scores[keep], self.iou_threshold, self.max_detections)
        return self.detections(boxes, kept_scores, None, transform)
