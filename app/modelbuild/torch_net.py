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
from app.modelbuild.tflite_graph import Graph, Op


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
    """A constant operand laid out to broadcast against an NCHW activation (when ref is 4-D).

    Non-scalar constants become 4-D with standard strides, laid out in numpy: XNNPACK mis-sized a
    broadcast against a 3-D operand, and ExecuTorch reads a dim order from the strides of size-1 dims."""
    a = np.asarray(a, dtype=np.float32)
    if ref_ndim == 4:
        if a.ndim == 4:
            a = a.transpose(0, 3, 1, 2)
        elif a.ndim == 1:
            a = a.reshape(1, -1, 1, 1)
        elif a.ndim == 3:
            a = a.transpose(2, 0, 1)[None]
        elif a.ndim == 2:  # (W, C) in NHWC
            a = a.T[None, :, None, :]
    return torch.from_numpy(np.array(a, order="C", copy=True))  # a copy has canonical strides


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
    """ADD / MUL / SUB / DIV / FLOOR_DIV; a constant operand is held as a buffer."""

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
        elif self.kind == "SUB":
            y = a - b
        elif self.kind == "DIV":
            y = a / b
        else:  # FLOOR_DIV (integer indices)
            return torch.div(a, b, rounding_mode="floor")
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
    """RESHAPE on a tensor held in TFLite's own (NHWC) layout."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(self.shape)


class Concat(nn.Module):
    def __init__(self, axis: int, act: str) -> None:
        super().__init__()
        self.axis, self.act = axis, act

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return _activation(torch.cat(xs, dim=self.axis), self.act)


class ToLayout(nn.Module):
    """NCHW <-> NHWC permutation of a 4-D tensor; a reshape when there is one channel (the same memory
    order: ExecuTorch's XNNPACK delegate mis-sized the output of a permute of a 1-channel tensor)."""

    def __init__(self, to_nchw: bool) -> None:
        super().__init__()
        self.to_nchw = to_nchw
        self.perm = (0, 3, 1, 2) if to_nchw else (0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, a, b, c = x.shape
        if self.to_nchw and c == 1:
            return x.reshape(n, 1, a, b)
        if not self.to_nchw and a == 1:
            return x.reshape(n, b, c, 1)
        return x.permute(self.perm)


class Const(nn.Module):
    """A constant operand of an op that takes it as a tensor input (indices, concatenated constants)."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("value", value)

    def forward(self) -> torch.Tensor:
        return self.value


class Unary(nn.Module):
    """Elementwise ops without weights: LOGISTIC, SQRT, CAST, SOFTMAX (last axis or channels)."""

    def __init__(self, kind: str, dim: int = -1, beta: float = 1.0, to: str = "float") -> None:
        super().__init__()
        self.kind, self.dim, self.beta, self.to = kind, dim, beta, to

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "LOGISTIC":
            return torch.sigmoid(x)
        if self.kind == "SQRT":
            return torch.sqrt(x)
        if self.kind == "SOFTMAX":
            return torch.softmax(x * self.beta if self.beta != 1.0 else x, dim=self.dim)
        return x.float() if self.to == "float" else x.long()  # CAST


class FakeQuant(nn.Module):
    """QUANTIZE of a float activation: round and clamp to the int grid, back to float (keeps its clipping)."""

    def __init__(self, scale: float, zero_point: int, qmin: int, qmax: int) -> None:
        super().__init__()
        self.scale, self.zero_point, self.qmin, self.qmax = scale, zero_point, qmin, qmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = torch.clamp(torch.round(x / self.scale) + self.zero_point, self.qmin, self.qmax)
        return (q - self.zero_point) * self.scale


class ArgMax(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.argmax(x, dim=self.dim)


class GatherND(nn.Module):
    """GATHER_ND: the last axis of `indices` indexes the leading axes of `params`."""

    def forward(self, params: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        return params[tuple(indices.long().unbind(-1))]


class Pack(nn.Module):
    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.stack(xs, dim=self.axis)


class Unpack(nn.Module):
    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(torch.unbind(x, dim=self.axis))


class DepthToSpace(nn.Module):
    """TF DEPTH_TO_SPACE on an NCHW tensor (channel order (i, j, c) as in NHWC, unlike pixel_shuffle)."""

    def __init__(self, block: int) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        b = self.block
        y = x.reshape(n, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2)
        return y.reshape(n, c // (b * b), h * b, w * b)


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


Key = int | tuple[str, int]  # a tensor index, or ("nchw" | "nhwc", index) for a permuted copy


class TFLiteNet(nn.Module):
    """The rebuilt network: forward(NHWC float32 input) -> tuple of outputs in the .tflite graph's order."""

    def __init__(
        self, steps: list[tuple[nn.Module, list[Key], list[Key]]], inp: int, outs: list[Key]
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList([s[0] for s in steps])
        self.wiring = [(s[1], s[2]) for s in steps]
        self.inp, self.outs = inp, outs

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        env: dict[Key, torch.Tensor] = {self.inp: x}
        for layer, (ins, outs) in zip(self.layers, self.wiring, strict=True):
            y = layer(*[env[i] for i in ins])
            if len(outs) == 1:
                env[outs[0]] = y
            else:
                for o, t in zip(outs, y, strict=True):
                    env[o] = t
        return tuple(env[o] for o in self.outs)


_UNARY_SAME_LAYOUT = ("RELU", "RELU6", "RELU_N1_TO_1", "TANH", "LOGISTIC", "SQRT", "CAST", "DEQUANTIZE")
_QRANGE = {"INT8": (-128, 127), "UINT8": (0, 255), "INT16": (-32768, 32767)}


def _const_tensor(a: np.ndarray) -> torch.Tensor:
    """Float constants as float32, integer ones as int64 (torch's index type)."""
    if np.issubdtype(a.dtype, np.floating):
        return torch.from_numpy(np.array(a, dtype=np.float32, order="C", copy=True))
    return torch.from_numpy(np.array(a, dtype=np.int64, order="C", copy=True))


class _Builder:
    """Translates ops in order, tracking which activations are held NCHW (4-D tensors produced by
    convolution-like ops) and which in TFLite's own layout; permutes are inserted only where an op
    needs the other one."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.shape = {i: t.shape for i, t in graph.tensors.items()}
        self.consts: dict[int, np.ndarray] = {}
        for i, t in graph.tensors.items():
            if t.data is None:
                continue
            quantised = t.scales is not None and t.dtype in ("INT8", "UINT8", "INT16", "INT32")
            floating = t.dtype in ("FLOAT32", "FLOAT16")
            self.consts[i] = t.dequantized() if quantised or floating else t.data
        self.steps: list[tuple[nn.Module, list[Key], list[Key]]] = []
        self.nchw: set[int] = set()  # activations held NCHW
        self.views: dict[Key, Key] = {}

    def w(self, i: int) -> np.ndarray:
        if i not in self.consts:
            raise ArtifactError(f"tensor {self.graph.name(i)} should be constant")
        return self.consts[i]

    def add(self, module: nn.Module, ins: list[Key], outs: list[int], nchw: bool = False) -> None:
        self.steps.append((module, ins, list(outs)))
        for o in outs:
            (self.nchw.add if nchw else self.nchw.discard)(o)

    def plain(self, i: int) -> Key:
        """Key of tensor i in TFLite's layout (constants become Const steps)."""
        if i in self.consts:
            key: Key = ("const", i)
            if key not in self.views:
                self.steps.append((Const(_const_tensor(self.consts[i])), [], [key]))
                self.views[key] = key
            return key
        if i not in self.nchw:
            return i
        key = ("nhwc", i)
        if key not in self.views:
            self.steps.append((ToLayout(False), [i], [key]))
            self.views[key] = key
        return key

    def as_nchw(self, i: int) -> Key:
        """Key of 4-D activation i held NCHW."""
        if i in self.nchw:
            return i
        if i in self.consts:
            raise ArtifactError(f"tensor {self.graph.name(i)} is a constant where an activation is expected")
        key = ("nchw", i)
        if key not in self.views:
            self.steps.append((ToLayout(True), [i], [key]))
            self.views[key] = key
        return key

    def layout_of(self, ins: list[int]) -> bool:
        """True when every activation among `ins` is held NCHW (so an elementwise op can stay NCHW)."""
        act = [i for i in ins if i not in self.consts]
        return bool(act) and all(i in self.nchw for i in act)

    def op(self, op: Op) -> None:
        k, ins, outs = op.kind, op.inputs, op.outputs
        out = outs[0]
        o: dict[str, Any] = op.options
        shape = self.shape
        t_out = self.graph.tensors[out]
        if k in ("DEQUANTIZE", "DENSIFY") and ins[0] in self.consts:
            self.consts[out] = (
                self.consts[ins[0]].astype(np.float32) if k == "DEQUANTIZE" else self.consts[ins[0]]
            )
            return
        in_hw = shape[ins[0]][1:3] if len(shape[ins[0]]) == 4 else ()
        if k == "CONV_2D":
            wt = torch.from_numpy(self.w(ins[1]).astype(np.float32)).permute(0, 3, 1, 2).contiguous()
            b = torch.from_numpy(self.w(ins[2]).astype(np.float32)) if len(ins) > 2 and ins[2] >= 0 else None
            self.add(Conv(wt, b, 1, o, in_hw), [self.as_nchw(ins[0])], [out], nchw=True)
        elif k == "DEPTHWISE_CONV_2D":
            wt = (
                torch.from_numpy(self.w(ins[1]).astype(np.float32))[0]
                .permute(2, 0, 1)
                .unsqueeze(1)
                .contiguous()
            )
            b = torch.from_numpy(self.w(ins[2]).astype(np.float32)) if len(ins) > 2 and ins[2] >= 0 else None
            groups = shape[ins[0]][3]
            self.add(Conv(wt, b, groups, o, in_hw), [self.as_nchw(ins[0])], [out], nchw=True)
        elif k in ("ADD", "MUL", "SUB", "DIV", "FLOOR_DIV"):
            a_c, b_c = ins[0] in self.consts, ins[1] in self.consts
            if a_c and b_c:
                raise ArtifactError(f"{k} of two constants ({self.graph.name(out)}) is not supported")
            var = ins[1] if a_c else ins[0]
            nchw = (
                len(shape[out]) == 4
                and self.layout_of(ins[:2])
                and all(len(shape[i]) == 4 for i in ins[:2] if i not in self.consts)
            )
            const = None
            if a_c or b_c:
                c = self.consts[ins[0] if a_c else ins[1]]
                const = (
                    _nchw_const(c, 4) if nchw and np.issubdtype(c.dtype, np.floating) else _const_tensor(c)
                )
            if const is not None:
                keys = [self.as_nchw(var) if nchw else self.plain(var)]
            else:
                keys = [self.as_nchw(i) if nchw else self.plain(i) for i in ins[:2]]
            act = o.get("act", "none")
            self.add(Binary(k, act, const, a_c), keys, [out], nchw=nchw)
        elif k in _UNARY_SAME_LAYOUT or k == "QUANTIZE":
            nchw = ins[0] in self.nchw
            key = ins[0] if ins[0] not in self.consts else self.plain(ins[0])
            if k in ("RELU", "RELU6", "RELU_N1_TO_1", "TANH"):
                module: nn.Module = Act(k.lower())
            elif k == "QUANTIZE" and t_out.scale is not None and t_out.dtype in _QRANGE:
                module = FakeQuant(t_out.scale, int(t_out.zero_point or 0), *_QRANGE[t_out.dtype])
            elif k in ("QUANTIZE", "DEQUANTIZE"):
                module = nn.Identity()
            elif k == "CAST":
                to_float = t_out.dtype in ("FLOAT32", "FLOAT16") or t_out.scale is not None
                module = Unary("CAST", to="float" if to_float else "long")
            else:
                module = Unary(k)
            self.add(module, [key], [out], nchw=nchw)
        elif k == "SOFTMAX":
            self.add(Unary("SOFTMAX", dim=-1, beta=o.get("beta", 1.0)), [self.plain(ins[0])], [out])
        elif k == "PRELU":
            self.add(PReLU(torch.from_numpy(self.w(ins[1]))), [self.as_nchw(ins[0])], [out], nchw=True)
        elif k in ("PAD", "PADV2"):
            p = self.w(ins[1]).astype(int)
            value = float(self.w(ins[2]).reshape(-1)[0]) if k == "PADV2" and len(ins) > 2 else 0.0
            if len(shape[ins[0]]) == 4:
                if p[0].any():
                    raise ArtifactError("PAD on the batch dimension is not supported")
                pads = (p[2, 0], p[2, 1], p[1, 0], p[1, 1], p[3, 0], p[3, 1])  # W, H, C in NCHW
                self.add(Pad(tuple(int(v) for v in pads), value), [self.as_nchw(ins[0])], [out], nchw=True)
            else:
                pads = tuple(int(v) for pair in p[::-1] for v in pair)
                self.add(Pad(pads, value), [self.plain(ins[0])], [out])
        elif k in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            self.add(Pool(k, o, in_hw), [self.as_nchw(ins[0])], [out], nchw=True)
        elif k in ("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"):
            mode = "bilinear" if k == "RESIZE_BILINEAR" else "nearest"
            self.add(Resize(tuple(shape[out][1:3]), mode, o), [self.as_nchw(ins[0])], [out], nchw=True)
        elif k == "DEPTH_TO_SPACE":
            self.add(DepthToSpace(int(o["block"])), [self.as_nchw(ins[0])], [out], nchw=True)
        elif k == "RESHAPE":
            self.add(Reshape(tuple(shape[out])), [self.plain(ins[0])], [out])
        elif k == "CONCATENATION":
            ndim = len(shape[out])
            axis = o["axis"] % ndim
            nchw = ndim == 4 and self.layout_of(list(ins))
            if nchw:
                keys = [self.as_nchw(i) for i in ins]
                axis = (0, 2, 3, 1)[axis]
            else:
                keys = [self.plain(i) for i in ins]
            self.add(Concat(axis, o["act"]), keys, [out], nchw=nchw)
        elif k == "ARG_MAX":
            dim = int(self.w(ins[1]).reshape(-1)[0])
            self.add(ArgMax(dim), [self.plain(ins[0])], [out])
        elif k == "GATHER_ND":
            self.add(GatherND(), [self.plain(ins[0]), self.plain(ins[1])], [out])
        elif k == "PACK":
            self.add(Pack(int(o["axis"])), [self.plain(i) for i in ins], [out])
        elif k == "UNPACK":
            self.add(Unpack(int(o["axis"])), [self.plain(ins[0])], list(outs))
        else:
            raise ArtifactError(f"op {k} ({self.graph.name(out)}) is not supported by the torch rebuild")


def build_module(graph: Graph) -> TFLiteNet:
    """Translate every op of `graph` into a torch step; ArtifactError on an op the rebuild lacks.

    Quantised constants are dequantised and the network runs in float32 (QUANTIZE ops of activations
    keep their rounding and clipping); the input is the float value of the .tflite's input tensor."""
    if len(graph.inputs) != 1:
        raise ArtifactError(f"the rebuild supports one input, the model has {len(graph.inputs)}")
    b = _Builder(graph)
    for op in graph.ops:
        b.op(op)
    outs = [b.plain(i) for i in graph.outputs]
    net = TFLiteNet(b.steps, graph.inputs[0], outs)
    return net.eval().requires_grad_(False)
