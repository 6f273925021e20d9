"""Event snapshots: the frame as a JPEG within a size budget, boxes drawn or not, optionally kept on disk.

Encoding steps the JPEG quality down until the image fits `max_bytes`; when even the lowest quality
does not fit, the image is halved (at most twice). Drawing works on a copy: the frame belongs to the
pipeline and may be shared with other readers.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.detection import Detection

log = logging.getLogger(__name__)

QUALITIES = (90, 80, 70, 60, 50, 40, 30)
MAX_HALVINGS = 2
BOX_BGR = (0, 200, 255)


@dataclass(frozen=True)
class Snapshot:
    jpeg: bytes
    quality: int
    width: int
    height: int


def draw_boxes(frame: np.ndarray, detections: Iterable[Detection]) -> np.ndarray:
    """A copy of `frame` with each detection's box and "label score" drawn on it."""
    import cv2

    img = frame.copy()
    h, w = img.shape[:2]
    thick = max(1, round(min(h, w) / 240))
    for d in detections:
        x0, y0, x1, y1 = (round(v) for v in d.box)
        x0, x1 = max(0, min(w - 1, x0)), max(0, min(w - 1, x1))
        y0, y1 = max(0, min(h - 1, y0)), max(0, min(h - 1, y1))
        cv2.rectangle(img, (x0, y0), (x1, y1), BOX_BGR, thick, cv2.LINE_AA)
        text = f"{d.label} {d.score:.2f}"
        scale = 0.45 * thick
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        ty = y0 - 4 if y0 - th - base - 4 >= 0 else min(h - 1, y1 + th + 4)
        cv2.rectangle(img, (x0, ty - th - base), (min(w - 1, x0 + tw + 4), ty + base), BOX_BGR, -1)
        cv2.putText(img, text, (x0 + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick, cv2.LINE_AA)
    return img


def encode_jpeg(frame: np.ndarray, max_bytes: int, qualities: Sequence[int] = QUALITIES) -> Snapshot | None:
    """The best-quality JPEG of `frame` (BGR) that fits `max_bytes`, or None when nothing fits."""
    import cv2

    img = frame
    for _ in range(MAX_HALVINGS + 1):
        for q in qualities:
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(q)])
            if ok and buf.size <= max_bytes:
                return Snapshot(buf.tobytes(), int(q), img.shape[1], img.shape[0])
        h, w = img.shape[:2]
        if min(h, w) < 32:
            break
        img = cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    return None


def safe_name(text: str) -> str:
    """A label as a file-name part: [A-Za-z0-9_-] only, at most 40 characters."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text)[:40] or "_"


class SnapshotStore:
    """Keeps the newest `keep` snapshots as files in `folder` (older ones are deleted)."""

    def __init__(self, folder: Path, keep: int) -> None:
        self.folder = Path(folder)
        self.keep = keep

    def save(self, jpeg: bytes, ts: float, labels: Sequence[str]) -> Path | None:
        """Write `<UTC time>-<labels>.jpg` atomically and prune; None (logged) on an OS error."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(ts)) + f"{ts % 1:.3f}"[1:]
        path = self.folder / f"{stamp}Z-{'+'.join(safe_name(x) for x in labels)}.jpg"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(jpeg)
            tmp.replace(path)
            self.prune()
        except OSError as exc:
            log.warning("snapshot not saved in %s: %s", self.folder, exc.strerror or exc)
            return None
        return path

    def prune(self) -> int:
        """Delete all but the newest `keep` snapshots (names sort by time); returns how many."""
        files = sorted(self.folder.glob("*.jpg"))
        old = files[: max(0, len(files) - self.keep)]
        for f in old:
            f.unlink(missing_ok=True)
        return len(old)
