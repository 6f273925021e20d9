"""Read a .tflite flatbuffer (via the `tflite` package) into a plain list of ops with numpy constants.

Quantisation parameters are kept per tensor (per-channel scales included); sparse constants (TFLite's
DENSIFY input format: dense and CSR dimensions, optional blocks) are densified here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.errors import ArtifactError

_NP_TYPES = {
    "FLOAT32": np.float32,
    "FLOAT16": np.float16,
    "INT32": np.int32,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "INT64": np.int64,
}
_ACT = {0: "none", 1: "relu", 2: "relu_n1_to_1", 3: "relu6", 4: "tanh"}


@dataclass
class TensorInfo:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    data: np.ndarray | None = None  # constant data, or None for activations
    scale: float | None = None  # per-tensor quantisation (the first scale when per-channel)
    zero_point: int | None = None
    scales: np.ndarray | None = None  # all scales / zero points (per-channel when more than one)
    zero_points: np.ndarray | None = None
    quant_axis: int = 0

    def dequantized(self) -> np.ndarray:
        """Constant data as float32: (q - zero_point) * scale for quantised integers, per channel."""
        assert self.data is not None
        if self.dtype not in ("INT8", "UINT8", "INT16", "INT32") or self.scales is None:
            return self.data.astype(np.float32)
        shape = [1] * self.data.ndim
        if self.scales.size > 1 and self.data.ndim:
            shape[self.quant_axis] = -1
        scale = self.scales.astype(np.float32).reshape(shape)
        zero = self.zero_points.astype(np.float32).reshape(shape) if self.zero_points is not None else 0.0
        return ((self.data.astype(np.float32) - zero) * scale).astype(np.float32)


@dataclass
class Op:
    kind: str  # builtin op name, e.g. CONV_2D
    inputs: list[int]
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    tensors: dict[int, TensorInfo]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]

    def name(self, idx: int) -> str:
        return self.tensors[idx].name


def _enum_names(enum_cls: Any) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def _options(tfl: Any, op: Any, kind: str) -> dict[str, Any]:
    table = op.BuiltinOptions()
    if table is None:
        return {}

    def load(cls: Any) -> Any:
        o = cls()
        o.Init(table.Bytes, table.Pos)
        return o

    pad = {0: "SAME", 1: "VALID"}
    if kind == "CONV_2D":
        o = load(tfl.Conv2DOptions)
        return {
            "padding": pad[o.Padding()],
            "stride": (o.StrideH(), o.StrideW()),
            "dilation": (o.DilationHFactor(), o.DilationWFactor()),
            "act": _ACT[o.FusedActivationFunction()],
        }
    if kind == "DEPTHWISE_CONV_2D":
        o = load(tfl.DepthwiseConv2DOptions)
        return {
            "padding": pad[o.Padding()],
            "stride": (o.StrideH(), o.StrideW()),
            "dilation": (o.DilationHFactor(), o.DilationWFactor()),
            "multiplier": o.DepthMultiplier(),
            "act": _ACT[o.FusedActivationFunction()],
        }
    if kind in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        o = load(tfl.Pool2DOptions)
        return {
            "padding": pad[o.Padding()],
            "stride": (o.StrideH(), o.StrideW()),
            "kernel": (o.FilterHeight(), o.FilterWidth()),
            "act": _ACT[o.FusedActivationFunction()],
        }
    if kind in ("ADD", "MUL", "SUB"):
        cls = {"ADD": tfl.AddOptions, "MUL": tfl.MulOptions, "SUB": tfl.SubOptions}[kind]
        return {"act": _ACT[load(cls).FusedActivationFunction()]}
    if kind == "CONCATENATION":
        o = load(tfl.ConcatenationOptions)
        return {"axis": o.Axis(), "act": _ACT[o.FusedActivationFunction()]}
    if kind == "RESIZE_BILINEAR":
        o = load(tfl.ResizeBilinearOptions)
        return {"align_corners": bool(o.AlignCorners()), "half_pixel_centers": bool(o.HalfPixelCenters())}
    if kind == "SOFTMAX":
        return {"beta": float(load(tfl.SoftmaxOptions).Beta())}
    if kind == "PACK":
        o = load(tfl.PackOptions)
        return {"axis": o.Axis(), "count": o.ValuesCount()}
    if kind == "UNPACK":
        o = load(tfl.UnpackOptions)
        return {"axis": o.Axis(), "num": o.Num()}
    if kind == "DEPTH_TO_SPACE":
        return {"block": load(tfl.DepthToSpaceOptions).BlockSize()}
    if kind == "DIV":
        return {"act": _ACT[load(tfl.DivOptions).FusedActivationFunction()]}
    if kind == "RESIZE_NEAREST_NEIGHBOR":
        o = load(tfl.ResizeNearestNeighborOptions)
        return {"align_corners": bool(o.AlignCorners()), "half_pixel_centers": bool(o.HalfPixelCenters())}
    return {}


def _index_vector(tfl: Any, kind: int, table: Any) -> np.ndarray:
    cls = {1: tfl.Int32Vector, 2: tfl.Uint16Vector, 3: tfl.Uint8Vector}.get(kind)
    if cls is None or table is None:
        raise ArtifactError(f"unsupported sparse index vector type {kind}")
    v = cls()
    v.Init(table.Bytes, table.Pos)
    return v.ValuesAsNumpy().astype(np.int64)


def densify(tfl: Any, sparsity: Any, values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A sparse constant (TFLite SparsityParameters) as a dense array of `shape`.

    Walks the traversal order level by level (dense levels enumerate, CSR levels follow their segments
    and indices), which yields the stored values in order, then maps block dimensions back."""
    order = [int(x) for x in sparsity.TraversalOrderAsNumpy()]
    block_map = [int(x) for x in sparsity.BlockMapAsNumpy()] if sparsity.BlockMapLength() else []
    rank = len(shape)
    prev = np.zeros(1, np.int64)
    idx: list[np.ndarray] = []
    block_size: list[int] = []
    for level in range(sparsity.DimMetadataLength()):
        dm = sparsity.DimMetadata(level)
        if dm.Format() == 0:  # DENSE
            n = int(dm.DenseSize())
            idx = [np.repeat(a, n) for a in idx]
            idx.append(np.tile(np.arange(n), prev.size))
            prev = (prev[:, None] * n + np.arange(n)[None, :]).reshape(-1)
            if level >= rank:
                block_size.append(n)
        else:  # SPARSE_CSR
            seg = _index_vector(tfl, dm.ArraySegmentsType(), dm.ArraySegments())
            ind = _index_vector(tfl, dm.ArrayIndicesType(), dm.ArrayIndices())
            counts = seg[prev + 1] - seg[prev]
            pos = np.concatenate(
                [np.arange(a, b) for a, b in zip(seg[prev], seg[prev + 1], strict=True)] or [[]]
            )
            pos = pos.astype(np.int64)
            idx = [np.repeat(a, counts) for a in idx]
            idx.append(ind[pos])
            prev = pos
            if level >= rank:
                raise ArtifactError("sparse block dimensions stored as CSR are not supported")
    if prev.size != values.size:
        raise ArtifactError(f"sparse tensor: {values.size} values for {prev.size} positions")
    orig = [np.zeros(values.size, np.int64) for _ in range(rank)]
    for level, dim in enumerate(order[:rank]):
        orig[dim] = idx[level]
    for k, t in enumerate(order[rank:]):
        dim = block_map[t - rank]
        orig[dim] = orig[dim] * block_size[k] + idx[rank + k]
    dense = np.zeros(shape, values.dtype)
    dense[tuple(orig)] = values
    return dense


def read_tflite(path: Path) -> Graph:
    """Parse subgraph 0 of a .tflite file; constants come back as numpy arrays."""
    import tflite as tfl

    raw = Path(path).read_bytes()
    if raw[4:8] != b"TFL3":
        raise ArtifactError(f"{path} is not a .tflite flatbuffer (no TFL3 identifier)")
    model = tfl.Model.GetRootAsModel(raw, 0)
    if model.SubgraphsLength() < 1:
        raise ArtifactError(f"{path} has no subgraph")
    g = model.Subgraphs(0)
    type_names = _enum_names(tfl.TensorType)
    op_names = _enum_names(tfl.BuiltinOperator)

    tensors: dict[int, TensorInfo] = {}
    for i in range(g.TensorsLength()):
        t = g.Tensors(i)
        dtype = type_names.get(t.Type(), str(t.Type()))
        shape = tuple(int(x) for x in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        info = TensorInfo(i, t.Name().decode(), shape, dtype)
        buf = model.Buffers(t.Buffer())
        if buf is not None and buf.DataLength() > 0:
            np_type = _NP_TYPES.get(dtype)
            if np_type is None:
                raise ArtifactError(f"{path}: unsupported constant tensor type {dtype} ({info.name})")
            values = np.frombuffer(buf.DataAsNumpy().tobytes(), dtype=np_type)
            sparsity = t.Sparsity()
            info.data = values.reshape(shape) if sparsity is None else densify(tfl, sparsity, values, shape)
        q = t.Quantization()
        if q is not None and q.ScaleLength() >= 1:
            info.scales = q.ScaleAsNumpy().astype(np.float64)
            info.zero_points = (
                q.ZeroPointAsNumpy().astype(np.int64)
                if q.ZeroPointLength()
                else np.zeros(info.scales.size, np.int64)
            )
            info.quant_axis = int(q.QuantizedDimension())
            info.scale = float(info.scales[0])
            info.zero_point = int(info.zero_points[0])
        tensors[i] = info

    ops = []
    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        ins = [int(x) for x in op.InputsAsNumpy()] if op.InputsLength() else []
        outs = [int(x) for x in op.OutputsAsNumpy()]
        ops.append(Op(kind, ins, outs, _options(tfl, op, kind)))
    inputs = [int(x) for x in g.InputsAsNumpy()]
    outputs = [int(x) for x in g.OutputsAsNumpy()]
    return Graph(tensors, ops, inputs, outputs)
