"""YOLO raw heads: v5 (1, N, 5 + C) with objectness, v8 (1, 4 + C, N) transposed, no objectness.

Boxes are centre x, y, width, height in input pixels (``normalized=False``, the Ultralytics export
default) or normalised to the input (``normalized=True``). Class-wise NMS follows the score threshold.
``version="auto"`` tells v5 from v8 by the number of labels (5 + C vs 4 + C values per box).
"""

from __future__ import annotations

import numpy as np

from app.detection import Detection
from app.vision.decoders import Decoder
from app.vision.decoders.nms import class_nms
from app.vision.preprocess import Transform


class YoloDecoder(Decoder):
    name = "yolo"

    def __init__(
        self,
        labels: list[str],
        version: str = "auto",
        normalized: bool = False,
        score_threshold: float = 0.25,
        iou_threshold: float = 0.45,
        max_detections: int = 100,
    ) -> None:
        if version not in ("auto", "v5", "v8"):
            raise ValueError(f"version {version!r} is not one of auto, v5, v8")
        super().__init__(labels, score_threshold)
        self.version = version
        self.normalized = bool(normalized)
        self.iou_threshold = float(iou_threshold)
        self.max_detections = int(max_detections)

    def _rows(self, out: np.ndarray) -> tuple[np.ndarray, str]:
        """(N, K) rows, one per candidate box, and the version they follow."""
        self.check(
            out.ndim == 3 and out.shape[0] == 1,
            f"expected one (1, N, K) or (1, K, N) output, got {out.shape}",
        )
        a, b = out.shape[1], out.shape[2]
        c = len(self.labels)
        version = self.version
        if version == "auto":
            if c and c + 5 in (a, b) and c + 4 not in (a, b):
                version = "v5"
            elif c and c + 4 in (a, b):
                version = "v8"
            else:
                version = "v8" if a < b else "v5"
        width = c + (5 if version == "v5" else 4) if c else None
        if width is not None and b == width:
            rows = out[0]
        elif width is not None and a == width:
            rows = out[0].T
        else:  # no labels to go by: boxes are the long axis
            rows = out[0] if a >= b else out[0].T
        self.check(
            rows.shape[1] > (5 if version == "v5" else 4),
            f"output {out.shape} has no class scores ({version})",
        )
        return rows, version

    def __call__(
        self, outputs: list[np.ndarray], transform: Transform, score_threshold: float | None = None
    ) -> list[Detection]:
        self.check(len(outputs) >= 1, "expected one output")
        rows, version = self._rows(np.asarray(outputs[0]))
        cls_scores = rows[:, 5:] * rows[:, 4:5] if version == "v5" else rows[:, 4:]
        ids = np.argmax(cls_scores, axis=1)
        scores = cls_scores[np.arange(len(rows)), ids]
        keep = np.flatnonzero(scores >= self.threshold(score_threshold))
        if keep.size == 0:
            return []
        cx, cy, w, h = (rows[keep, k].astype(np.float64) for k in range(4))
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        if not self.normalized:
            boxes /= np.array([transform.input_w, transform.input_h] * 2, dtype=np.float64)
        sel = class_nms(boxes, scores[keep], ids[keep], self.iou_threshold, self.max_detections)
        return self.detections(boxes[sel], scores[keep][sel], ids[keep][sel], transform)
