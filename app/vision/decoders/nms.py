"""Non-maximum suppression on (x0, y0, x1, y1) boxes: greedy (hard), class-wise, and MediaPipe's weighted."""

from __future__ import annotations

import numpy as np

from app.detection import iou_many


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_detections: int = 100) -> np.ndarray:
    """Greedy NMS: indices of kept boxes by decreasing score; a box is dropped if IoU > threshold with a kept one."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < max_detections:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        order = rest[iou_many(boxes[i], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def class_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    iou_threshold: float,
    max_detections: int = 100,
) -> np.ndarray:
    """NMS within each class only (boxes of different classes never suppress each other)."""
    if boxes.size == 0:
        return np.zeros(0, dtype=np.int64)
    # shift each class into its own region of the plane: no cross-class overlap is possible
    span = float(np.max(boxes) - np.min(boxes)) + 1.0
    shifted = boxes + (classes.astype(np.float64) * 2.0 * span)[:, None]
    return nms(shifted, scores, iou_threshold, max_detections)


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_detections: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's WEIGHTED NMS: each cluster (IoU > threshold with its top box, the top box included)
    becomes one box, the score-weighted mean of the cluster's corners, with the top box's score."""
    order = np.argsort(-scores, kind="stable")
    out_boxes: list[np.ndarray] = []
    out_scores: list[float] = []
    while order.size and len(out_boxes) < max_detections:
        top = int(order[0])
        member = iou_many(boxes[top], boxes[order]) > iou_threshold
        member[0] = True  # a degenerate (zero-area) top box still forms its own cluster
        idx = order[member]
        w = scores[idx].astype(np.float64)
        out_boxes.append((boxes[idx] * w[:, None]).sum(axis=0) / w.sum())
        out_scores.append(float(scores[top]))
        order = order[~member]
    if not out_boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    return np.asarray(out_boxes, np.float32), np.asarray(out_scores, np.float32)
