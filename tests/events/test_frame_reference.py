"""The pipeline hands the sink the very frame the source returned (a reference, no copy per frame)."""

from __future__ import annotations

import threading

from app.config import OpenCVSource, ReconnectConfig, default_models_dir, validate_runtime
from app.engine import build_engine
from app.measure.latency import StageHistograms
from app.pipeline import STAGES, FrameResult, Pipeline
from app.vision.sources import open_source


class Recording:
    """The demo video source, remembering every frame object it hands out."""

    def __init__(self, src) -> None:
        self.src, self.frames = src, []

    def read(self, stop: threading.Event):
        frame = self.src.read(stop)
        if frame is not None:
            self.frames.append(frame)
        return frame


def test_the_sink_gets_the_source_frame_itself(demo_video) -> None:
    src = Recording(open_source(OpenCVSource(uri=str(demo_video), loop=False), ReconnectConfig()))
    engine = build_engine(
        "blazeface-short",
        validate_runtime({"type": "tflite"}),
        default_models_dir(),
        score_threshold=None,
        warmup=1,
    )
    got: list[FrameResult] = []
    try:
        pipe = Pipeline(src, engine, got.append, StageHistograms(STAGES), live=False, max_frames=40)
        pipe.start()
        pipe.join(timeout=60)
    finally:
        src.src.close()
        engine.close()
    assert len(got) == 40
    assert all(r.frame is src.frames[r.index] for r in got)  # the same object: referenced, not copied
    assert got[0].frame.shape == (480, 640, 3)
