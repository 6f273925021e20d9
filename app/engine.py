"""An Engine is one loaded model on one runtime, with its preprocessing and decoder: what the pipeline runs.

The service can hold two at once (hot swap): the new one is built and warmed beside the old one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.detection import Detection

log = logging.getLogger(__name__)

# Tensors in flight beyond the queue: one being written, one being inferred, one spare.
RING_EXTRA = 3


@dataclass
class Engine:
    """A warmed model: preprocess -> infer -> decode. Not thread-safe per stage; one thread per stage."""

    model: str
    opened: Any  # app.runtimes.select.OpenedRuntime
    decoder: Any
    preprocessor: Any
    score_threshold: float
    warmup: dict[str, Any] = field(default_factory=dict)

    @property
    def runtime(self) -> str:
        return self.opened.name

    @property
    def requested_runtime(self) -> str:
        return self.opened.requested

    @property
    def fallback(self) -> dict[str, str] | None:
        return self.opened.fallback

    def preprocess(self, frame: np.ndarray) -> tuple[np.ndarray, Any]:
        """The tensor is one of a ring of buffers, valid until `ring` more frames are preprocessed."""
        return self.preprocessor(frame)

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        return self.opened.runtime.infer(tensor)

    def decode(self, outputs: list[np.ndarray], transform: Any) -> list[Detection]:
        return self.decoder(outputs, transform, self.score_threshold)

    def close(self) -> None:
        self.opened.runtime.close()


def build_engine(
    model: str,
    runtime_cfg: Any,
    models_dir: Path,
    score_threshold: float,
    warmup: int,
    warmup_frame: np.ndarray | None = None,
    queue_size: int = 2,
) -> Engine:
    """Load the model's artifact on the runtime (with fallback), build its preprocessing and decoder, warm up.

    Raises LookoutError subclasses with one-line messages (unknown model, bad artifact, runtime missing).
    """
    from app.runtimes.select import open_runtime
    from app.vision.decoders import make_decoder
    from app.vision.preprocess import Preprocessor
    from app.zoo import load_manifest

    manifest = load_manifest(model, models_dir)
    opened = open_runtime(runtime_cfg, manifest)
    try:
        spec = opened.runtime.input_spec
        inp = manifest.input
        pre = Preprocessor(
            spec,
            inp.width,
            inp.height,
            inp.color,
            inp.resize,
            tuple(inp.mean),
            tuple(inp.std),
            ring=queue_size + RING_EXTRA,
        )
        decoder = make_decoder(manifest.decoder, list(manifest.labels), **manifest.decoder_options)
        engine = Engine(manifest.name, opened, decoder, pre, score_threshold)
        engine.warmup = _warm_up(engine, warmup, warmup_frame)
    except Exception:
        opened.runtime.close()
        raise
    return engine


def _warm_up(engine: Engine, n: int, frame: np.ndarray | None) -> dict[str, Any]:
    """Run n inferences outside the measured window; the first one is reported on its own."""
    if frame is None:
        frame = np.zeros((480, 640, 3), np.uint8)
    tensor, transform = engine.preprocess(frame)
    times_ms: list[float] = []
    for _ in range(max(n, 1)):
        t0 = time.perf_counter_ns()
        outputs = engine.infer(tensor)
        times_ms.append((time.perf_counter_ns() - t0) / 1e6)
    engine.decode(outputs, transform)
    log.info(
        "warm-up of %s on %s: first %.2f ms, %d runs",
        engine.model,
        engine.runtime,
        times_ms[0],
        len(times_ms),
    )
    return {
        "runs": len(times_ms),
        "first_inference_ms": round(times_ms[0], 3),
        "mean_ms": round(sum(times_ms) / len(times_ms), 3),
    }
