"""Snapshots: a real photo as a JPEG within the size budget, boxes on a copy, a bounded folder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from app.detection import Detection
from app.events.snapshot import QUALITIES, SnapshotStore, draw_boxes, encode_jpeg, safe_name


def decode(jpeg: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "OpenCV cannot decode the snapshot"
    return img


def test_fits_at_the_best_quality_when_the_budget_allows(astronaut_bgr: np.ndarray) -> None:
    shot = encode_jpeg(astronaut_bgr, 1_000_000)
    assert shot is not None and shot.quality == QUALITIES[0]
    assert (shot.width, shot.height) == (512, 512)
    assert decode(shot.jpeg).shape == astronaut_bgr.shape


def test_quality_steps_down_to_fit(astronaut_bgr: np.ndarray) -> None:
    best = encode_jpeg(astronaut_bgr, 1_000_000)
    assert best is not None
    budget = len(best.jpeg) // 2
    shot = encode_jpeg(astronaut_bgr, budget)
    assert shot is not None
    assert len(shot.jpeg) <= budget
    assert shot.quality < QUALITIES[0] and (shot.width, shot.height) == (512, 512)
    # the best quality that fits: one step up would not
    up = QUALITIES[QUALITIES.index(shot.quality) - 1]
    ok, buf = cv2.imencode(".jpg", astronaut_bgr, [cv2.IMWRITE_JPEG_QUALITY, up])
    assert ok and buf.size > budget


def test_halves_the_image_when_the_lowest_quality_is_too_big(astronaut_bgr: np.ndarray) -> None:
    _, buf = cv2.imencode(".jpg", astronaut_bgr, [cv2.IMWRITE_JPEG_QUALITY, QUALITIES[-1]])
    shot = encode_jpeg(astronaut_bgr, buf.size - 1)
    assert shot is not None and len(shot.jpeg) < buf.size
    assert (shot.width, shot.height) == (256, 256)
    assert decode(shot.jpeg).shape == (256, 256, 3)


def test_none_when_nothing_fits(astronaut_bgr: np.ndarray) -> None:
    assert encode_jpeg(astronaut_bgr, 300) is None


def test_boxes_are_drawn_on_a_copy(astronaut_bgr: np.ndarray, astronaut_face) -> None:
    frame = astronaut_bgr.copy()
    out = draw_boxes(frame, [Detection("face", 0.93, astronaut_face)])
    assert np.array_equal(frame, astronaut_bgr)  # the pipeline's frame is untouched
    x0, y0, _, y1 = (round(v) for v in astronaut_face)
    edge = out[(y0 + y1) // 2, x0]
    assert tuple(int(v) for v in edge) == (0, 200, 255)  # the box's left edge
    assert not np.array_equal(
        out[y0 - 12 : y0 - 2, x0 : x0 + 40], astronaut_bgr[y0 - 12 : y0 - 2, x0 : x0 + 40]
    )


def test_boxes_outside_the_frame_are_clipped() -> None:
    frame = np.zeros((40, 60, 3), np.uint8)
    out = draw_boxes(frame, [Detection("x", 0.5, (-30.0, -30.0, 500.0, 500.0))])
    assert out.shape == frame.shape and out.any()


def test_store_keeps_the_newest(tmp_path: Path, astronaut_bgr: np.ndarray) -> None:
    shot = encode_jpeg(astronaut_bgr, 100_000)
    assert shot is not None
    store = SnapshotStore(tmp_path / "snapshots", keep=3)
    paths = [store.save(shot.jpeg, 1_800_000_000.0 + i, ["face", "a/b c"]) for i in range(5)]
    kept = sorted(p.name for p in (tmp_path / "snapshots").iterdir())
    assert kept == sorted(p.name for p in paths[-3:] if p)
    assert kept[-1] == "20270115T080004.000Z-face+a_b_c.jpg"
    assert decode((tmp_path / "snapshots" / kept[-1]).read_bytes()).shape == (512, 512, 3)


def test_store_failure_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert SnapshotStore(blocker / "snapshots", keep=3).save(b"\xff\xd8", 1.0, ["face"]) is None
    assert "snapshot not saved" in caplog.text


def test_safe_name() -> None:
    assert safe_name("traffic light/../x") == "traffic_light_x"
    assert safe_name("") == "_"
