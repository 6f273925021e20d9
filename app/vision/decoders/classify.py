"""Image classification: top-k classes above a threshold; each Detection's box is the whole frame."""

from __future__ import annotations

import numpy as np

from app.detection import Detection
from app.vision.decoders import Decoder
from app.vision.preprocess import Transform


class ClassifyDecoder(Decoder):
    name = "classify"

    def __init__(
        self,
        labels: list[str],
        top_k: int = 5,
        score_threshold: float = 0.1,
        softmax: bool = False,
        label_offset: int = 0,
    ) -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        super().__init__(labels, score_threshold)
        self.top_k = int(top_k)
        self.softmax = bool(softmax)
        self.label_offset = int(label_offset)

    def __call__(
        self, outputs: list[np.ndarray], transform: Transform, score_threshold: float | None = None
    ) -> list[Detection]:
        self.check(len(outputs) >= 1, "expected one output")
        scores = np.asarray(outputs[0], dtype=np.float64).reshape(-1)
        self.check(scores.size > 0, "empty scores output")
        if self.softmax:
            e = np.exp(scores - scores.max())
            scores = e / e.sum()
        k = min(self.top_k, scores.size)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        thr = self.threshold(score_threshold)
        box = transform.frame_box
        return [
            Detection(self.label(int(i) + self.label_offset), float(scores[i]), box)
            for i in top
            if scores[i] >= thr
        ]
