"""Read a .tflite flatbuffer (via the `tflite` package) into a plain list of ops with numpy constants."""

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
    scale: float | None = None
    zero_point: int | None = None


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
    if kind == "RESIZE_NEAREST_NEIGHBOR":
        o = load(tfl.ResizeNearestNeighborOptions)
        return {"align_corners": bool(o.AlignCorners()), "half_pixel_centers": bool(o.HalfPixelCenters())}
    return {}


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
            info.data = np.frombuffer(buf.DataAsNumpy().tobytes(), dtype=np_type).reshape(shape)
        q = t.Quantization()
        if q is not None and q.ScaleLength() == 1:
            info.scale = float(q.Scale(0))
            info.zero_point = int(q.ZeroPoint(0)) if q.ZeroPointLength() else 0
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
