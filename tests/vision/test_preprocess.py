"""Preprocessor: tensor layout/dtype/values against a plain reference, and the letterbox round trip."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import ConfigError
from app.runtimes.base import TensorSpec
from app.vision.preprocess import Preprocessor, placement


def _frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _reference(frame: np.ndarray, size: int, mean: float = 127.5, std: float = 127.5) -> np.ndarray:
    """Straightforward letterbox: resize, paste centred on black, BGR->RGB, normalise (float64)."""
    h, w = frame.shape[:2]
    s = min(size / w, size / h)
    nw, nh = round(w * s), round(h * s)
    canvas = np.zeros((size, size, 3), np.uint8)
    x0, y0 = (size - nw) // 2, (size - nh) // 2
    canvas[y0 : y0 + nh, x0 : x0 + nw] = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return (canvas[..., ::-1].astype(np.float64) - mean) / std


@pytest.mark.parametrize("hw", [(480, 640), (640, 480), (128, 128), (100, 300)])
def test_float_nhwc_matches_reference(hw: tuple[int, int]) -> None:
    frame = _frame(*hw)
    pre = Preprocessor(TensorSpec("in", (1, 128, 128, 3), "float32"), 128, 128)
    x, t = pre(frame)
    assert x.shape == (1, 128, 128, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], _reference(frame, 128), atol=1e-5)
    assert (t.frame_w, t.frame_h) == (hw[1], hw[0])


def test_nchw_is_the_transpose_of_nhwc() -> None:
    frame = _frame(480, 640, 1)
    nhwc, _ = Preprocessor(TensorSpec("in", (1, 96, 96, 3), "float32"), 96, 96)(frame)
    nchw, _ = Preprocessor(TensorSpec("in", (1, 3, 96, 96), "float32", "NCHW"), 96, 96)(frame)
    assert nchw.shape == (1, 3, 96, 96)
    np.testing.assert_array_equal(nchw[0], nhwc[0].transpose(2, 0, 1))


def test_bgr_and_per_channel_mean_std() -> None:
    frame = _frame(60, 80, 2)
    mean, std = (10.0, 20.0, 30.0), (2.0, 4.0, 8.0)
    pre = Preprocessor(
        TensorSpec("in", (1, 60, 80, 3), "float32"), 80, 60, color="bgr", resize="stretch", mean=mean, std=std
    )
    x, _ = pre(frame)
    want = (frame.astype(np.float64) - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(x[0], want, rtol=1e-6)


@pytest.mark.parametrize(
    ("dtype", "scale", "zp"), [("int8", 1 / 128, 0), ("uint8", 1 / 128, 128), ("int8", 0.0078125, -1)]
)
def test_quantised_input(dtype: str, scale: float, zp: int) -> None:
    frame = _frame(64, 64, 3)
    pre = Preprocessor(TensorSpec("in", (1, 64, 64, 3), dtype, scale=scale, zero_point=zp), 64, 64)
    q, _ = pre(frame)
    info = np.iinfo(dtype)
    norm = (frame[..., ::-1].astype(np.float64) - 127.5) / 127.5
    want = np.clip(np.round(norm / scale) + zp, info.min, info.max).astype(dtype)
    assert q.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(q[0], want)


def test_padding_is_black_and_stays_so() -> None:
    pre = Preprocessor(TensorSpec("in", (1, 128, 128, 3), "float32"), 128, 128, ring=1)
    white = np.full((480, 640, 3), 255, np.uint8)
    for _ in range(3):
        x, t = pre(white)
    pad = int(t.pad_y)
    assert pad == 16
    assert np.all(x[0, :pad] == -1.0) and np.all(x[0, -pad:] == -1.0)
    assert np.all(x[0, pad:-pad] == 1.0)


def test_ring_buffers_are_reused_in_turn() -> None:
    pre = Preprocessor(TensorSpec("in", (1, 32, 32, 3), "float32"), 32, 32, ring=3)
    a, b, c, d = (pre(_frame(32, 32, i))[0] for i in range(4))
    assert a is d and len({id(a), id(b), id(c)}) == 3


def test_bad_specs_give_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="does not match"):
        Preprocessor(TensorSpec("in", (1, 128, 128, 3), "float32"), 256, 256)
    with pytest.raises(ConfigError, match="without a quantisation scale"):
        Preprocessor(TensorSpec("in", (1, 8, 8, 3), "int8"), 8, 8)
    with pytest.raises(ConfigError, match="color"):
        Preprocessor(TensorSpec("in", (1, 8, 8, 3), "float32"), 8, 8, color="yuv")


@settings(max_examples=200, deadline=None)
@given(
    fw=st.integers(16, 2000),
    fh=st.integers(16, 2000),
    size=st.sampled_from([96, 128, 192, 256, 320]),
    resize=st.sampled_from(["letterbox", "stretch"]),
    box=st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)),
)
def test_box_round_trip(fw: int, fh: int, size: int, resize: str, box: tuple[float, ...]) -> None:
    """A box in the frame, mapped into the model input and back, lands where it was."""
    t = placement(fw, fh, size, size, resize)  # type: ignore[arg-type]
    x0, x1 = sorted((box[0] * fw, box[2] * fw))
    y0, y1 = sorted((box[1] * fh, box[3] * fh))
    src = np.array([[x0, y0, x1, y1]])
    inp = t.to_input(src)
    assert np.all(inp >= -1e-6) and np.all(inp <= 1 + 1e-6)  # inside the model input
    back = t.to_source(inp)
    np.testing.assert_allclose(back, src, atol=1e-3 * max(fw, fh))


def test_letterbox_maps_a_painted_box_back_to_the_source() -> None:
    """A white rectangle found in the tensor maps back to the rectangle painted in the frame."""
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[120:360, 200:520] = 255
    pre = Preprocessor(TensorSpec("in", (1, 256, 256, 3), "float32"), 256, 256)
    x, t = pre(frame)
    ys, xs = np.nonzero(x[0, :, :, 0] > 0.9)
    found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]) / 256.0
    np.testing.assert_allclose(t.to_source(found)[0], [200, 120, 520, 360], atol=3.0)


def test_to_source_clips_to_the_frame() -> None:
    t = placement(640, 480, 128, 128, "letterbox")
    out = t.to_source(np.array([[-0.5, -0.5, 1.5, 1.5]]))
    np.testing.assert_allclose(out[0], [0, 0, 640, 480])
