"""MediaPipe's pose detector (BlazePose detection stage) as a whole-person detector.

pose_detection.tflite (224x224) outputs regressors (1, 2254, 12) and score logits (1, 2254, 1) on SSD
anchors of strides 8, 16, 32, 32, 32 (2 per cell). Per anchor: a face box (cx, cy, w, h) and four
keypoints (x, y): 0 hip centre, 1 a point whose distance from the hip centre is the body's half extent,
2 shoulder centre, 3 the upper body's extent point; all in input pixels relative to the anchor centre.
Decoding follows MediaPipe's pose detection graph (sigmoid scores clipped to +-100, weighted NMS at
IoU 0.3 on the face boxes, keypoints averaged with the boxes). The person box is MediaPipe's body
region: a square centred on the hip centre with half side |keypoint 1 - keypoint 0| * box_scale (1.25, as MediaPipe scales it),
clipped to the frame.
"""

from __future__ import annotations

import numpy as np

from app.detection import Detection, Keypoint, iou_many
from app.vision.decoders import Decoder
from app.vision.decoders.blazeface import AnchorOptions, decode_boxes, sigmoid_scores, ssd_anchor_centres
from app.vision.preprocess import Transform

POSE_DETECTOR_ANCHORS = AnchorOptions(224, (8, 16, 32, 32, 32))
POSE_DETECTOR_KEYPOINTS = ("hip_centre", "body_extent", "shoulder_centre", "upper_body_extent")


def weighted_clusters(
    boxes: np.ndarray, scores: np.ndarray, values: np.ndarray, iou_threshold: float, limit: int
) -> list[tuple[float, np.ndarray]]:
    """MediaPipe's WEIGHTED NMS over `boxes`, averaging every row of `values` of a cluster by score.

    Returns (top score, weighted mean of values) per cluster, best first."""
    order = np.argsort(-scores, kind="stable")
    out: list[tuple[float, np.ndarray]] = []
    while order.size and len(out) < limit:
        member = iou_many(boxes[order[0]], boxes[order]) > iou_threshold
        member[0] = True
        idx = order[member]
        w = scores[idx].astype(np.float64)
        out.append((float(scores[order[0]]), (values[idx] * w[:, None]).sum(axis=0) / w.sum()))
        order = order[~member]
    return out


class BlazePoseDetector(Decoder):
    name = "blazepose"

    def __init__(
        self,
        labels: list[str],
        score_threshold: float = 0.5,
        iou_threshold: float = 0.3,
        box_scale: float = 1.25,
        max_detections: int = 10,
    ) -> None:
        super().__init__(labels or ["person"], score_threshold)
        self.iou_threshold = float(iou_threshold)
        self.box_scale = float(box_scale)
        self.max_detections = int(max_detections)
        self.anchors = ssd_anchor_centres(POSE_DETECTOR_ANCHORS)

    def __call__(
        self, outputs: list[np.ndarray], transform: Transform, score_threshold: float | None = None
    ) -> list[Detection]:
        n = len(self.anchors)
        self.check(len(outputs) >= 2, f"expected 2 outputs (regressors, scores), got {len(outputs)}")
        reg, cls = np.asarray(outputs[0]), np.asarray(outputs[1])
        self.check(reg.size == n * 12, f"regressors shape {reg.shape}, expected (1, {n}, 12)")
        self.check(cls.size == n, f"scores shape {cls.shape}, expected (1, {n}, 1)")
        scores = sigmoid_scores(cls.reshape(n))
        keep = np.flatnonzero(scores >= self.threshold(score_threshold))
        if keep.size == 0:
            return []
        size = POSE_DETECTOR_ANCHORS.input_size
        raw = reg.reshape(n, 12)[keep].astype(np.float64)
        anchors = self.anchors[keep].astype(np.float64)
        faces = decode_boxes(raw, anchors, size)
        points = raw[:, 4:] / size + np.tile(anchors, 4)  # 4 keypoints (x, y), relative to the anchor
        found = []
        for score, v in weighted_clusters(
            faces, scores[keep], points, self.iou_threshold, self.max_detections
        ):
            pts = v.reshape(4, 2)
            r = float(np.hypot(*(pts[1] - pts[0]))) * self.box_scale
            # the input is square (letterboxed), so a square in input units is a square in the frame
            box = np.array([[pts[0, 0] - r, pts[0, 1] - r, pts[0, 0] + r, pts[0, 1] + r]])
            px = transform.to_source(box)[0]
            kp = transform.to_source(np.concatenate([pts, pts], axis=1))[:, :2]
            if px[2] <= px[0] or px[3] <= px[1]:
                continue
            points = tuple(
                Keypoint(name, float(p[0]), float(p[1]), score)
                for name, p in zip(POSE_DETECTOR_KEYPOINTS, kp, strict=True)
            )
            found.append(Detection(self.label(0), score, tuple(float(c) for c in px), points))
        return found
