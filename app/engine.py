"""An Engine is one loaded model on one runtime, with its preprocessing and decoder: what the pipeline runs.

The service can hold two at once (hot swap): the new one is built and warmed beside the old one.
`model_io` is the one place a manifest becomes a preprocessor and a decoder (the engine and `lookout
bench` both use it), so both decode with the same score threshold: the manifest's, unless the config
sets one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from app.detection import Detection

if TYPE_CHECKING:
    from app.config import LookoutConfig
    from app.hostroots import HostRoots
    from app.runtimes.base import RuntimeConfig, TensorSpec
    from app.runtimes.selection import OpenedRuntime
    from app.vision.decoders import Decoder
    from app.vision.preprocess import Preprocessor, Transform
    from app.zoo import Manifest

log = logging.getLogger(__name__)

# Tensors in flight beyond the queue: one being written, one being inferred, one spare.
RING_EXTRA = 3


@dataclass
class Engine:
    """A warmed model: preprocess -> infer -> decode. Not thread-safe per stage; one thread per stage."""

    model: str
    opened: OpenedRuntime
    decoder: Decoder
    preprocessor: Preprocessor
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

    @property
    def score_threshold(self) -> float:
        return self.decoder.score_threshold

    @score_threshold.setter
    def score_threshold(self, value: float) -> None:
        self.decoder.score_threshold = float(value)

    def preprocess(self, frame: np.ndarray) -> tuple[np.ndarray, Transform]:
        """The tensor is one of a ring of buffers, valid until `ring` more frames are preprocessed."""
        return self.preprocessor(frame)

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        return self.opened.runtime.infer(tensor)

    def decode(self, outputs: list[np.ndarray], transform: Transform) -> list[Detection]:
        return self.decoder(outputs, transform)

    def close(self) -> None:
        self.opened.runtime.close()


def model_io(
    manifest: Manifest, input_spec: TensorSpec, score_threshold: float | None, ring: int = 1
) -> tuple[Preprocessor, Decoder]:
    """The manifest's preprocessing for this input tensor, and its decoder.

    The decoder's score threshold is the manifest's (`[decoder_options] score_threshold`); a config
    value overrides it only when one is set (not None).
    """
    from app.vision.decoders import make_decoder
    from app.vision.preprocess import Preprocessor

    inp = manifest.input
    pre = Preprocessor(
        input_spec, inp.width, inp.height, inp.color, inp.resize, tuple(inp.mean), tuple(inp.std), ring=ring
    )
    options = dict(manifest.decoder_options)
    if score_threshold is not None:
        options["score_threshold"] = score_threshold
    return pre, make_decoder(manifest.decoder, list(manifest.labels), **options)


def build_engine(
    model: str,
    runtime_cfg: RuntimeConfig,
    models_dir: Path,
    *,
    score_threshold: float | None,
    warmup: int,
    warmup_frame: np.ndarray | None = None,
    queue_size: int = 2,
    roots: HostRoots | None = None,
) -> Engine:
    """Load the model's artifact on the runtime (or its plugin's substitute), build its preprocessing
    and decoder, warm up.

    Raises LookoutError subclasses with one-line messages (unknown model, bad artifact, runtime missing).
    """
    from app.runtimes.selection import open_runtime
    from app.zoo import load_manifest

    manifest = load_manifest(model, models_dir)
    opened = open_runtime(runtime_cfg, manifest, roots)
    try:
        pre, decoder = model_io(
            manifest, opened.runtime.input_spec, score_threshold, ring=queue_size + RING_EXTRA
        )
        engine = Engine(manifest.name, opened, decoder, pre)
        engine.warmup = _warm_up(engine, warmup, warmup_frame)
    except Exception:
        opened.runtime.close()
        raise
    return engine


def engine_for(cfg: LookoutConfig, roots: HostRoots, score_threshold: float | None) -> Engine:
    """The engine a config describes (model, runtime, warm-up, queue size) with this threshold override."""
    return build_engine(
        cfg.model,
        cfg.runtime,
        cfg.models_dir,
        score_threshold=score_threshold,
        warmup=cfg.pipeline.warmup,
        queue_size=cfg.pipeline.queue_size,
        roots=roots,
    )


def _warm_up(engine: Engine, n: int, frame: np.ndarray | None) -> dict[str, Any]:
    """Run n inferences outside the measured window; the first one is reported on its own."""
    if frame is None:
        frame = np.zeros((480, 640, 3), np.uint8)
    tensor, transform = engine.preprocess(frame)
    times_ms: list[float] = []
    outputs: list[np.ndarray] = []
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
