"""The demo video: real photos, readable by OpenCV, deterministic, face where the recipe says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.vision import demo


def test_demo_video_reads_back(demo_video: Path) -> None:
    cap = cv2.VideoCapture(str(demo_video))
    assert cap.isOpened()
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(30.0)
    n = 0
    first = None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        first = frame if first is None else first
        n += 1
    assert n == 300
    assert first.shape == (480, 640, 3)
    # mp4v is lossy: the decoded frame is close to what was drawn, not equal
    assert np.abs(first.astype(int) - demo.demo_frame(0).astype(int)).mean() < 6


def test_frames_are_deterministic_and_pictures_change() -> None:
    np.testing.assert_array_equal(demo.demo_frame(17), demo.demo_frame(17))
    assert not np.array_equal(demo.demo_frame(0), demo.demo_frame(60))  # panning
    assert demo.recipe_hash() == demo.recipe_hash() != demo.recipe_hash(seconds=5)


def test_face_stays_in_frame_then_no_face_stretch() -> None:
    boxes = [demo.demo_face_box(i) for i in range(300)]
    face = [b for b in boxes if b is not None]
    assert 150 <= len(face) < 300 and boxes[-1] is None
    for x0, y0, x1, y1 in face:
        assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 480
    widths = [b[2] - b[0] for b in face]
    assert max(widths) > 1.5 * min(widths)  # zoomed


def test_demo_video_path_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    p1 = demo.demo_video_path()
    assert p1.parent == tmp_path / "lookout" and p1.name == f"demo-{demo.recipe_hash()}.mp4"
    stamp = p1.stat().st_mtime_ns
    assert demo.demo_video_path() == p1 and p1.stat().st_mtime_ns == stamp  # not regenerated
    assert not [p for p in p1.parent.iterdir() if p != p1]  # no temp files left


def test_script_writes_the_video(tmp_path: Path, repo_root: Path) -> None:
    out = tmp_path / "d.mp4"
    r = subprocess.run(
        [
            sys.executable,
            str(repo_root / "scripts" / "make_demo_video.py"),
            "--out",
            str(out),
            "--seconds",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 30
