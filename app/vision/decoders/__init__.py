"""Decoders: a model's raw outputs -> list[Detection] in source-frame pixels.

``make_decoder(name, labels, **options)`` builds one from a manifest's ``decoder`` and
``[decoder_options]``; ``decoder(outputs, transform, score_threshold=None)`` decodes one frame.
Decoders are plugins of the entry-point group ``lookout.decoders`` (app/plugins.py).
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from app.detection import Detection
from app.errors import ArtifactError, ConfigError
from app.vision.preprocess import Transform


class Decoder(ABC):
    """Base class: holds labels and the default score threshold."""

    name: str = ""

    def __init__(self, labels: list[str], score_threshold: float = 0.5) -> None:
        self.labels = list(labels)
        self.score_threshold = float(score_threshold)

    @abstractmethod
    def __call__(
        self, outputs: list[np.ndarray], transform: Transform, score_threshold: float | None = None
    ) -> list[Detection]:
        """Decode one frame's outputs."""

    def threshold(self, override: float | None) -> float:
        return self.score_threshold if override is None else float(override)

    def label(self, class_id: int) -> str:
        return self.labels[class_id] if 0 <= class_id < len(self.labels) else str(class_id)

    def check(self, cond: bool, what: str) -> None:
        """Raise ArtifactError naming the decoder when the model's outputs are not what it expects."""
        if not cond:
            raise ArtifactError(f"{self.name} decoder: model outputs do not match: {what}")

    def detections(
        self, boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray | None, transform: Transform
    ) -> list[Detection]:
        """Normalised input boxes -> Detections in frame pixels (boxes empty after clipping are dropped)."""
        if len(boxes) == 0:
            return []
        px = transform.to_source(boxes)
        out = []
        for k, b in enumerate(px):
            x0, y0, x1, y1 = (float(v) for v in b)
            if x1 <= x0 or y1 <= y0:
                continue
            cid = 0 if class_ids is None else int(class_ids[k])
            out.append(Detection(self.label(cid), float(scores[k]), (x0, y0, x1, y1)))
        return out


def make_decoder(name: str, labels: list[str], **options: Any) -> Decoder:
    """The decoder `name` configured with `options`; ConfigError for an unknown name or option, or a
    decoder plugin that fails to import."""
    from app import plugins

    cls = plugins.load(plugins.DECODERS, name, ConfigError)
    params = inspect.signature(cls.__init__).parameters
    unknown = [k for k in options if k not in params or k in ("self", "labels")]
    if unknown:
        allowed = [p for p in params if p not in ("self", "labels")]
        raise ConfigError(f"decoder {name!r}: unknown option {unknown[0]!r}; allowed: {', '.join(allowed)}")
    try:
        return cls(labels, **options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"decoder {name!r}: bad options: {exc}") from None
