"""Rebuild a parsed .tflite graph as a torch.nn.Module with the same weights and NHWC in/out semantics.

Inside, 4-D activations are kept NCHW (torch's native layout); the input is permuted from NHWC at the
start, and tensors are permuted back to NHWC wherever TFLite semantics depend on the layout (RESHAPE,
graph outputs). Constant DEQUANTIZE ops (fp16 or int8 weights) are folded to float32 at build time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from app.errors import ArtifactError
from app.modelbuild.tflite_graph import Graph, TensorInfo


def _activation(x: torch.Tensor, act: str) -> torch.Tensor:
    if act == "none":
        return x
    if act == "relu":
        return F.relu(x)
    if act == "relu6":
        return F.hardtanh(x, 0.0, 6.0)
    if act == "relu_n1_to_1":
        return F.hardtanh(x, -1.0, 1.0)
    if act == "tanh":
        return torch.tanh(x)
    raise ArtifactError(f"unsupported fused activation {act}")


def _same_pad(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow SAME padding (before, after) for one spatial dim."""
    eff = (k - 1) * d + 1
    out = -(-size // s)
    total = max((out - 1) * s + eff - size, 0)
    return total // 2, total - total // 2


def _nchw_const(a: np.ndarray, ref_ndim: int) -> torch.Tensor:
    """A constant operand laid out to broadcast against an NCHW activation (when ref is 4-D)."""
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    if ref_ndim == 4:
        if t.ndim == 4:
            t = t.permute(0, 3, 1, 2).contiguous()
        elif t.ndim == 1:
            t = t.reshape(-1, 1, 1)
        elif t.ndim == 3:
            t = t.permute(2, 0, 1).contiguous()
    return t


class Conv(nn.Module):
    """CONV_2D / DEPTHWISE_CONV_2D with TF SAME/VALID padding and fused activation."""

    def __init__(
        self, weight: torch.Tensor, bias: torch.Tensor | None, groups: int, opts: dict, in_hw: tuple
    ) -> None:
        super().__init__()
        out_c, _, kh, kw = weight.shape
        sh, sw = opts["stride"]
        dh, dw = opts["dilation"]
        self.conv = nn.Conv2d(
            weight.shape[1] * groups, out_c, (kh, kw), (sh, sw), 0, (dh, dw), groups, bias is not None
        )
        with torch.no_grad():
            self.conv.weight.copy_(weight)
            if bias is not None:
                self.conv.bias.copy_(bias)
        pad = (0, 0, 0, 0)
        if opts["padding"] == "SAME":
            t, b = _same_pad(in_hw[0], kh, sh, dh)
            left, r = _same_pad(in_hw[1], kw, sw, dw)
            pad = (left, r, t, b)
        if pad[0] == pad[1] and pad[2] == pad[3]:
            self.conv.padding = (pad[2], pad[0])
            self.pad: tuple[int, ...] = ()
        else:
            self.pad = pad
        self.act = opts["act"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad:
            x = F.pad(x, self.pad)
        return _activation(self.conv(x), self.act)


class Binary(nn.Module):
    """ADD / MUL / SUB; a constant operand is held as a buffer."""

    def __init__(self, kind: str, act: str, const: torch.Tensor | None, const_first: bool) -> None:
        super().__init__()
        self.kind, self.act, self.const_first = kind, act, const_first
        self.has_const = const is not None
        if const is not None:
            self.register_buffer("const", const)

    def forward(self, a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        if self.has_const:
            a, b = (self.const, a) if self.const_first else (a, self.const)
        if self.kind == "ADD":
            y = a + b
        elif self.kind == "MUL":
            y = a * b
        else:
            y = a - b
        return _activation(y, self.act)


class Act(nn.Module):
    def __init__(self, act: str) -> None:
        super().__init__()
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _activation(x, self.act)


class PReLU(nn.Module):
    """PRELU with per-channel alpha, via F.prelu (faster under XNNPACK than torch.where; docs/models.md)."""

    def __init__(self, alpha: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(alpha.reshape(-1), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.prelu(x, self.weight)


class Pad(nn.Module):
    def __init__(self, pads: tuple[int, ...], value: float = 0.0) -> None:
        super().__init__()
        self.pads, self.value = pads, value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.pads, value=self.value)


class Pool(nn.Module):
    def __init__(self, kind: str, opts: dict, in_hw: tuple) -> None:
        super().__init__()
        self.kind = kind
        self.kernel, self.stride, self.act = opts["kernel"], opts["stride"], opts["act"]
        pad = (0, 0, 0, 0)
        if opts["padding"] == "SAME":
            t, b = _same_pad(in_hw[0], self.kernel[0], self.stride[0], 1)
            left, r = _same_pad(in_hw[1], self.kernel[1], self.stride[1], 1)
            pad = (left, r, t, b)
        self.pad = pad if any(pad) else ()
        if self.pad and kind == "AVERAGE_POOL_2D":
            raise ArtifactError("AVERAGE_POOL_2D with SAME padding is not supported by the rebuild")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad:
            x = F.pad(x, self.pad, value=float("-inf"))
        if self.kind == "MAX_POOL_2D":
            y = F.max_pool2d(x, self.kernel, self.stride)
        else:
            y = F.avg_pool2d(x, self.kernel, self.stride)
        return _activation(y, self.act)


class Reshape(nn.Module):
    """RESHAPE with NHWC semantics: 4-D inputs are permuted to NHWC first, 4-D outputs back to NCHW."""

    def __init__(self, shape: tuple[int, ...], in_4d: bool) -> None:
        super().__init__()
        self.shape, self.in_4d = shape, in_4d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_4d:
            x = x.permute(0, 2, 3, 1)
        y = x.reshape(self.shape)
        if len(self.shape) == 4:
            y = y.permute(0, 3, 1, 2)
        return y


class Concat(nn.Module):
    def __init__(self, axis: int, ndim: int, act: str) -> None:
        super().__init__()
        axis = axis % ndim
        self.axis = (0, 2, 3, 1)[axis] if ndim == 4 else axis
        self.act = act

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return _activation(torch.cat(xs, dim=self.axis), self.act)


class Resize(nn.Module):
    def __init__(self, size: tuple[int, int], mode: str, opts: dict) -> None:
        super().__init__()
        self.size, self.mode = size, mode
        self.align = opts["align_corners"]
        if mode == "bilinear" and not (opts["align_corners"] or opts["half_pixel_centers"]):
            raise ArtifactError("RESIZE_BILINEAR without half_pixel_centers/align_corners is not supported")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "nearest":
            return F.interpolate(x, size=self.size, mode="nearest")
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=self.align)


class TFLiteNet(nn.Module):
    """The rebuilt network: forward(NHWC float32 input) -> tuple of outputs in the .tflite graph's order."""

    def __init__(
        self, steps: list[tuple[nn.Module, list[int], int]], inp: int, outs: list[int], out_4d: list[bool]
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList([s[0] for s in steps])
        self.wiring = [(s[1], s[2]) for s in steps]
        self.inp, self.outs, self.out_4d = inp, outs, out_4d

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        env: dict[int, torch.Tensor] = {self.inp: x.permute(0, 3, 1, 2)}
        for layer, (ins, out) in zip(self.layers, self.wiring, strict=True):
            env[out] = layer(*[env[i] for i in ins])
        return tuple(
            env[o].permute(0, 2, 3, 1) if f else env[o] for o, f in zip(self.outs, self.out_4d, strict=True)
        )


def _dequant(t: TensorInfo) -> np.ndarray:
    assert t.data is not None
    if t.dtype in ("INT8", "UINT8") and t.scale is not None:
        return (t.data.astype(np.float32) - float(t.zero_point or 0)) * t.scale
    return t.data.astype(np.float32)


def build_module(graph: Graph) -> TFLiteNet:
    """Translate every op of `graph` into a torch step; ArtifactError on an op the rebuild lacks."""
    consts: dict[int, np.ndarray] = {
        i: t.data.astype(np.float32) if t.dtype in ("FLOAT32", "FLOAT16") else t.data
        for i, t in graph.tensors.items()
        if t.data is not None
    }
    steps: list[tuple[nn.Module, list[int], int]] = []
    shape = {i: t.shape for i, t in graph.tensors.items()}
    if len(graph.inputs) != 1:
        raise ArtifactError(f"the rebuild supports one input, the model has {len(graph.inputs)}")

    def w(i: int) -> np.ndarray:
        if i not in consts:
            raise ArtifactError(f"tensor {graph.name(i)} should be constant")
        return consts[i]

    for op in graph.ops:
        k, ins, out = op.kind, op.inputs, op.outputs[0]
        o: dict[str, Any] = op.options
        if k == "DEQUANTIZE" and ins[0] in consts:
            consts[out] = _dequant(graph.tensors[ins[0]])
            continue
        in_hw = shape[ins[0]][1:3] if len(shape[ins[0]]) == 4 else ()
        if k == "CONV_2D":
            wt = torch.from_numpy(w(ins[1])).permute(0, 3, 1, 2).contiguous()  # OHWI -> OIHW
            b = torch.from_numpy(w(ins[2])) if len(ins) > 2 and ins[2] >= 0 else None
            steps.append((Conv(wt, b, 1, o, in_hw), [ins[0]], out))
        elif k == "DEPTHWISE_CONV_2D":
            wt = (
                torch.from_numpy(w(ins[1]))[0].permute(2, 0, 1).unsqueeze(1).contiguous()
            )  # 1HW(C*m) -> (C*m)1HW
            b = torch.from_numpy(w(ins[2])) if len(ins) > 2 and ins[2] >= 0 else None
            groups = shape[ins[0]][3]
            steps.append((Conv(wt, b, groups, o, in_hw), [ins[0]], out))
        elif k in ("ADD", "MUL", "SUB"):
            a_c, b_c = ins[0] in consts, ins[1] in consts
            if a_c and b_c:
                raise ArtifactError(f"{k} of two constants ({graph.name(out)}) is not supported")
            var = ins[1] if a_c else ins[0]
            const = None
            if a_c or b_c:
                const = _nchw_const(consts[ins[0] if a_c else ins[1]], len(shape[var]))
            steps.append((Binary(k, o["act"], const, a_c), [var] if const is not None else ins[:2], out))
        elif k in ("RELU", "RELU6", "RELU_N1_TO_1", "TANH"):
            steps.append((Act(k.lower()), [ins[0]], out))
        elif k == "PRELU":
            steps.append((PReLU(torch.from_numpy(w(ins[1]))), [ins[0]], out))
        elif k in ("PAD", "PADV2"):
            p = w(ins[1]).astype(int)
            value = float(w(ins[2]).reshape(-1)[0]) if k == "PADV2" and len(ins) > 2 else 0.0
            if len(shape[ins[0]]) == 4:
                if p[0].any():
                    raise ArtifactError("PAD on the batch dimension is not supported")
                pads = (p[2, 0], p[2, 1], p[1, 0], p[1, 1], p[3, 0], p[3, 1])  # W, H, C in NCHW
            else:
                pads = tuple(int(v) for pair in p[::-1] for v in pair)
            steps.append((Pad(tuple(int(v) for v in pads), value), [ins[0]], out))
        elif k in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            steps.append((Pool(k, o, in_hw), [ins[0]], out))
        elif k == "RESHAPE":
            steps.append((Reshape(shape[out], len(shape[ins[0]]) == 4), [ins[0]], out))
        elif k == "CONCATENATION":
            steps.append((Concat(o["axis"], len(shape[out]), o["act"]), list(ins), out))
        elif k in ("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"):
            mode = "bilinear" if k == "RESIZE_BILINEAR" else "nearest"
            steps.append((Resize(tuple(shape[out][1:3]), mode, o), [ins[0]], out))
        else:
            raise ArtifactError(f"op {k} ({graph.name(out)}) is not supported by the torch rebuild")
    out_4d = [len(shape[i]) == 4 for i in graph.outputs]
    net = TFLiteNet(steps, graph.inputs[0], graph.outputs, out_4d)
    return net.eval().requires_grad_(False)
