"""Frame (HxWx3 uint8 BGR) -> model input tensor, plus the mapping of boxes back to the frame.

Per-frame work is three OpenCV/numpy passes into preallocated buffers: resize into the
letterbox region, colour swap, normalise (and quantise) into the tensor. Buffers are built once
per frame size; the padding of a letterboxed tensor is written once and never touched again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from app.errors import ConfigError
from app.runtimes.base import TensorSpec

Color = Literal["rgb", "bgr"]
Resize = Literal["letterbox", "stretch"]


@dataclass(frozen=True, slots=True)
class Transform:
    """How a frame was placed in the model input: scale and padding, both in input pixels.

    Input pixel u = x * scale_x + pad_x for a frame pixel x (same for y).
    """

    frame_w: int
    frame_h: int
    input_w: int
    input_h: int
    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float

    def to_source(self, boxes: np.ndarray) -> np.ndarray:
        """Nx4 boxes (x0, y0, x1, y1) normalised to the model input -> frame pixels, clipped to the frame."""
        b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        out = np.empty_like(b)
        out[:, 0::2] = (b[:, 0::2] * self.input_w - self.pad_x) / self.scale_x
        out[:, 1::2] = (b[:, 1::2] * self.input_h - self.pad_y) / self.scale_y
        np.clip(out[:, 0::2], 0.0, self.frame_w, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0.0, self.frame_h, out=out[:, 1::2])
        return out

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """Inverse of to_source (without clipping): frame-pixel boxes -> normalised input coordinates."""
        b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        out = np.empty_like(b)
        out[:, 0::2] = (b[:, 0::2] * self.scale_x + self.pad_x) / self.input_w
        out[:, 1::2] = (b[:, 1::2] * self.scale_y + self.pad_y) / self.input_h
        return out

    @property
    def frame_box(self) -> tuple[float, float, float, float]:
        return (0.0, 0.0, float(self.frame_w), float(self.frame_h))


def placement(frame_w: int, frame_h: int, input_w: int, input_h: int, resize: Resize) -> Transform:
    """Where a frame lands in the input: centred letterbox (aspect kept) or stretch."""
    if resize == "stretch":
        return Transform(frame_w, frame_h, input_w, input_h, input_w / frame_w, input_h / frame_h, 0.0, 0.0)
    s = min(input_w / frame_w, input_h / frame_h)
    nw = min(input_w, max(1, round(frame_w * s)))
    nh = min(input_h, max(1, round(frame_h * s)))
    px, py = (input_w - nw) // 2, (input_h - nh) // 2
    # exact per-axis scale of the resized region, so boxes map back to the pixel
    return Transform(frame_w, frame_h, input_w, input_h, nw / frame_w, nh / frame_h, float(px), float(py))


class _Plan:
    """Buffers and views for one frame size."""

    __slots__ = ("roi_views", "size", "small", "tensors", "transform")

    def __init__(self, pre: Preprocessor, frame_w: int, frame_h: int, ring: int) -> None:
        t = placement(frame_w, frame_h, pre.width, pre.height, pre.resize)
        self.transform = t
        nw = round(t.scale_x * frame_w)
        nh = round(t.scale_y * frame_h)
        x0, y0 = int(t.pad_x), int(t.pad_y)
        self.size = (nw, nh)
        self.small = np.empty((nh, nw, 3), np.uint8)
        self.tensors = [pre.new_tensor() for _ in range(ring)]
        self.roi_views = [pre.region(x, x0, y0, nw, nh) for x in self.tensors]


class Preprocessor:
    """Turns BGR frames into input tensors matching `spec` (layout, dtype, quantisation).

    The returned tensor is one of `ring` preallocated buffers reused in turn: it stays valid
    until `ring` more frames have been preprocessed (the pipeline keeps at most queue_size + 2
    tensors alive, so pass ring >= queue_size + 2).
    """

    def __init__(
        self,
        spec: TensorSpec,
        width: int,
        height: int,
        color: str = "rgb",
        resize: str = "letterbox",
        mean: tuple[float, ...] | list[float] = (127.5,) * 3,
        std: tuple[float, ...] | list[float] = (127.5,) * 3,
        ring: int = 4,
    ) -> None:
        if color not in ("rgb", "bgr"):
            raise ConfigError(f"input color {color!r} is not one of rgb, bgr")
        if resize not in ("letterbox", "stretch"):
            raise ConfigError(f"input resize {resize!r} is not one of letterbox, stretch")
        if len(spec.shape) != 4 or spec.shape[0] != 1:
            raise ConfigError(
                f"input tensor {spec.name!r} has shape {spec.shape}; expected a 4-d image batch of 1"
            )
        ch = spec.shape[3] if spec.layout == "NHWC" else spec.shape[1]
        if ch != 3 or spec.hw != (height, width):
            raise ConfigError(
                f"input tensor {spec.name!r} shape {spec.shape} ({spec.layout}) does not match the manifest input {width}x{height}x3"
            )
        if spec.dtype not in ("float32", "int8", "uint8"):
            raise ConfigError(
                f"input tensor {spec.name!r} has dtype {spec.dtype}; supported: float32, int8, uint8"
            )
        if spec.dtype == "int8" and not spec.quantized:
            raise ConfigError(f"input tensor {spec.name!r} is {spec.dtype} without a quantisation scale")
        mean_a, std_a = np.asarray(mean, np.float64).reshape(-1), np.asarray(std, np.float64).reshape(-1)
        if mean_a.size not in (1, 3) or std_a.size not in (1, 3) or np.any(std_a == 0):
            raise ConfigError(
                f"input mean {list(mean)} / std {list(std)} must have 1 or 3 values, std non-zero"
            )
        self.spec, self.width, self.height = spec, width, height
        self.color, self.resize = color, resize
        self.mean = np.broadcast_to(mean_a, (3,)).copy()
        self.std = np.broadcast_to(std_a, (3,)).copy()
        self.ring = max(1, ring)
        self._dtype = np.dtype(spec.dtype)
        self._nchw = spec.layout == "NCHW"
        self._lut = self._build_lut()
        uniform = np.all(self.mean == self.mean[0]) and np.all(self.std == self.std[0])
        self._scalar = (np.float32(self.mean[0]), np.float32(1.0 / self.std[0])) if uniform else None
        self._plans: dict[tuple[int, int], _Plan] = {}
        self._plan: _Plan | None = None
        self._key: tuple[int, int] = (0, 0)
        self._i = 0
        # planar NCHW needs an HWC staging buffer per frame size
        self._stage: dict[tuple[int, int], np.ndarray] = {}

    # --- setup -----------------------------------------------------------------------------------
    def _build_lut(self) -> np.ndarray:
        """(1, 256, 3) table pixel value -> tensor value per channel, in the tensor's channel order."""
        mean, std = self.mean, self.std  # in the model's channel order (the table runs after the swap)
        v = (np.arange(256, dtype=np.float64)[:, None] - mean[None, :]) / std[None, :]
        if self.spec.quantized or self._dtype == np.uint8:  # uint8 without a scale: plain pixel values
            info = np.iinfo(self._dtype)
            q = np.round(v / float(self.spec.scale or 1.0)) + int(self.spec.zero_point or 0)
            table = np.clip(q, info.min, info.max).astype(self._dtype)
        else:
            table = v.astype(np.float32)
        return np.ascontiguousarray(table[None, :, :])

    def _pad_value(self) -> np.ndarray:
        """Tensor value of a black (0) pixel, per channel."""
        return self._lut[0, 0, :]

    def new_tensor(self) -> np.ndarray:
        x = np.empty(self.spec.shape, self._dtype)
        pad = self._pad_value()
        if self._nchw:
            x[...] = pad[None, :, None, None]
        else:
            x[...] = pad[None, None, None, :]
        return x

    def region(self, x: np.ndarray, x0: int, y0: int, nw: int, nh: int) -> np.ndarray:
        """View of the tensor where the resized frame goes (HWC view for NHWC, CHW view for NCHW)."""
        if self._nchw:
            return x[0, :, y0 : y0 + nh, x0 : x0 + nw]
        return x[0, y0 : y0 + nh, x0 : x0 + nw, :]

    # --- per frame -------------------------------------------------------------------------------
    def _get_plan(self, w: int, h: int) -> _Plan:
        if (w, h) == self._key and self._plan is not None:
            return self._plan
        plan = self._plans.get((w, h))
        if plan is None:
            if len(self._plans) >= 8:  # a source that changes size often: keep memory bounded
                self._plans.clear()
            plan = self._plans[(w, h)] = _Plan(self, w, h, self.ring)
        self._plan, self._key = plan, (w, h)
        return plan

    def __call__(self, frame_bgr: np.ndarray) -> tuple[np.ndarray, Transform]:
        """Preprocess one frame; returns (input tensor, transform)."""
        if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.dtype != np.uint8:
            raise ValueError(f"frame must be HxWx3 uint8 BGR, got {frame_bgr.shape} {frame_bgr.dtype}")
        h, w = frame_bgr.shape[:2]
        plan = self._get_plan(w, h)
        i = self._i
        self._i = (i + 1) % self.ring
        small = plan.small
        if plan.size == (w, h):
            np.copyto(small, frame_bgr)
        else:
            cv2.resize(frame_bgr, plan.size, dst=small, interpolation=cv2.INTER_LINEAR)
        if self.color == "rgb":
            cv2.cvtColor(small, cv2.COLOR_BGR2RGB, dst=small)
        self._normalise(small, plan.roi_views[i])
        return plan.tensors[i], plan.transform

    def _normalise(self, src: np.ndarray, dst: np.ndarray) -> None:
        if self._nchw:
            key = src.shape[:2]
            stage = self._stage.get(key)
            if stage is None:
                stage = self._stage[key] = np.empty((*key, 3), self._dtype)
            self._to_hwc(src, stage)
            np.copyto(dst, stage.transpose(2, 0, 1))
        else:
            self._to_hwc(src, dst)

    def _to_hwc(self, src: np.ndarray, dst: np.ndarray) -> None:
        if self._scalar is not None and self._dtype == np.float32 and dst.flags.c_contiguous:
            mean, inv_std = self._scalar
            np.subtract(src, mean, out=dst)
            np.multiply(dst, inv_std, out=dst)
        else:
            cv2.LUT(src, self._lut, dst=dst)
