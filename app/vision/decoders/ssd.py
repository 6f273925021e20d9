"""SSD with TFLite_Detection_PostProcess outputs (Coral SSD MobileNet, EfficientDet-Lite).

Outputs (default order): boxes (1, N, 4) as ymin, xmin, ymax, xmax normalised to the input;
classes (1, N) class ids as floats; scores (1, N); count (1,) valid rows. The op has already done
NMS. Some exports list the four tensors in another order: pass ``order``. Coral's label files
and models may disagree by one (a background class): ``label_offset`` is added to every id.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.detection import Detection
from app.vision.decoders import Decoder
from app.vision.preprocess import Transform

DEFAULT_ORDER = ("boxes", "classes", "scores", "count")


class SSDDecoder(Decoder):
    name = "ssd"

    def __init__(
        self,
        labels: list[str],
        score_threshold: float = 0.5,
        label_offset: int = 0,
        order: Sequence[str] = DEFAULT_ORDER,
        max_detections: int = 100,
    ) -> None:
        if sorted(order) != sorted(DEFAULT_ORDER):
            raise ValueError(f"order must name each of {', '.join(DEFAULT_ORDER)} once, got {list(order)}")
        super().__init__(labels, score_threshold)
        self.label_offset = int(label_offset)
        self.order = tuple(order)
        self.max_detections = int(max_detections)

    def __call__(
        self, outputs: list[np.ndarray], transform: Transform, score_threshold: float | None = None
    ) -> list[Detection]:
        self.check(len(outputs) == 4, f"expected 4 outputs {self.order}, got {len(outputs)}")
        named = dict(zip(self.order, outputs, strict=True))
        boxes = np.asarray(named["boxes"]).reshape(-1, 4)
        classes = np.asarray(named["classes"]).reshape(-1)
        scores = np.asarray(named["scores"]).reshape(-1)
        self.check(
            len(classes) == len(boxes) == len(scores),
            f"boxes {named['boxes'].shape}, classes {named['classes'].shape}, scores {named['scores'].shape} disagree",
        )
        count = (
            int(np.asarray(named["count"]).reshape(-1)[0]) if np.asarray(named["count"]).size else len(boxes)
        )
        n = max(0, min(count, len(boxes), self.max_detections))
        keep = np.flatnonzero(scores[:n] >= self.threshold(score_threshold))
        if keep.size == 0:
            return []
        yxyx = boxes[keep]
        xyxy = yxyx[:, [1, 0, 3, 2]]
        ids = np.rint(classes[keep]).astype(np.int64) + self.label_offset
        return self.detections(xyxy, scores[keep], ids, transform)
