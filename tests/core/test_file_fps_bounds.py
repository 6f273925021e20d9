"""A video file's own frame rate is bounded like every configured one (#15 item 9, for file headers).

Real AVI files written with OpenCV, their headers then made to state an absurd rate (dwRate/dwScale of
the video stream, dwMicroSecPerFrame of the file), opened through the real source: a realtime file is
paced at a rate in [FPS_MIN, FPS_MAX], never one frame per 136 years (or a wait too long for
Event.wait, which raises OverflowError).
"""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.config import FPS_MAX, FPS_MIN, OpenCVSource
from app.vision.sources import open_source


def avi_stating(path: Path, scale: int, rate: int) -> Path:
    """A 3-frame MJPG AVI whose headers say rate/scale frames per second."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 1, (32, 24))
    assert writer.isOpened()
    for i in range(3):
        writer.write(np.full((24, 32, 3), 40 * i, np.uint8))
    writer.release()
    data = bytearray(path.read_bytes())
    strh, avih = data.find(b"strh"), data.find(b"avih")
    struct.pack_into(
        "<II", data, strh + 8 + 20, scale, rate
    )  # after fccType, handler, flags, prio, lang, init
    struct.pack_into("<I", data, avih + 8, min(round(1e6 * scale / rate), 2**32 - 1))
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("scale", "rate", "want"), [(2**32 - 1, 1, FPS_MIN), (1_000_000, 1, FPS_MIN), (1, 1_000_000, FPS_MAX)]
)
def test_an_absurd_rate_in_the_header_is_bounded(tmp_path: Path, scale: int, rate: int, want: float) -> None:
    path = avi_stating(tmp_path / "v.avi", scale, rate)
    stated = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG).get(cv2.CAP_PROP_FPS)
    assert not FPS_MIN <= stated <= FPS_MAX  # the file really says so
    src = open_source(OpenCVSource(uri=str(path), realtime=True, loop=False))
    try:
        assert src.fps == want
        stop = threading.Event()
        assert src.read(stop) is not None  # paced: the next frame is due one period later
        stop.set()
        assert src.read(stop) is None
    finally:
        src.close()
