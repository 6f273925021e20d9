"""Export a rebuilt torch module: ExecuTorch .pte (XNNPACK fp32 and PT2E int8), lite-interpreter .ptl, ONNX."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from app.errors import ArtifactError


def _example(shape: tuple[int, ...]) -> tuple[torch.Tensor]:
    return (torch.zeros(shape, dtype=torch.float32),)


def _lower_to_pte(exported: torch.export.ExportedProgram, out: Path) -> None:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    program = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch()
    out.write_bytes(program.buffer)


def export_pte(net: torch.nn.Module, input_shape: tuple[int, ...], out: Path) -> None:
    """torch.export + XNNPACK partitioner, fp32."""
    with torch.no_grad():
        exported = torch.export.export(net.eval(), _example(input_shape))
    _lower_to_pte(exported, out)


def _minmax_config(config: object) -> object:
    """The XNNPACK symmetric config with min-max activation observers instead of histogram ones.

    The histogram observer minimises L2 error and so clips the rare large positive score logits (faces)."""
    import dataclasses

    from torchao.quantization.pt2e import MinMaxObserver

    act = dataclasses.replace(
        config.input_activation, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12)
    )
    return dataclasses.replace(config, input_activation=act, output_activation=act)


def _clamp_output_observers(prepared: torch.fx.GraphModule, clamp_min: dict[int, float]) -> None:
    """Raise the observed minimum on the path to output #i (through reshape/permute/cat) to a floor."""
    out_node = next(n for n in prepared.graph.nodes if n.op == "output")
    results = out_node.args[0]
    passthrough = ("permute", "reshape", "view", "cat", "clone", "_unsafe_view")
    for index, floor in clamp_min.items():
        todo = [results[index]]
        while todo:
            node = todo.pop()
            if not isinstance(node, torch.fx.Node):
                continue
            if node.op == "call_module":
                obs = getattr(prepared, node.target)
                if hasattr(obs, "min_val") and obs.min_val.numel():
                    obs.min_val.clamp_(min=floor)
                todo += list(node.args)
            elif node.op == "call_function" and any(p in str(node.target) for p in passthrough):
                for a in node.args:
                    todo += a if isinstance(a, list | tuple) else [a]


def export_pte_int8(
    net: torch.nn.Module,
    input_shape: tuple[int, ...],
    calibration: Iterable[np.ndarray],
    out: Path,
    clamp_min: dict[int, float] | None = None,
) -> int:
    """PT2E static int8 (XNNPACKQuantizer, per-channel symmetric weights), calibrated; returns #samples.

    clamp_min {output index: floor}: raise the observed minimum of that output's producers to the floor
    (see tflite_int8.quantize_tflite_int8 and docs/models.md, "Score-logit floor": a finer score step)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(
        _minmax_config(get_symmetric_quantization_config(is_per_channel=True))
    )
    with torch.no_grad():
        graph = torch.export.export(net.eval(), _example(input_shape)).module()
        prepared = prepare_pt2e(graph, quantizer)
        n = 0
        for x in calibration:
            prepared(torch.from_numpy(x))
            n += 1
        if n == 0:
            raise ArtifactError("no calibration images for the int8 export")
        _clamp_output_observers(prepared, clamp_min or {})
        converted = convert_pt2e(prepared)
        exported = torch.export.export(converted, _example(input_shape))
    _lower_to_pte(exported, out)
    return n


def export_ptl(net: torch.nn.Module, input_shape: tuple[int, ...], out: Path) -> None:
    """torch.jit.trace + _save_for_lite_interpreter (optimize_for_mobile is not used: it fails on this wheel)."""
    with torch.no_grad():
        traced = torch.jit.trace(net.eval(), _example(input_shape), strict=False)
    traced._save_for_lite_interpreter(str(out))


def export_onnx(
    net: torch.nn.Module, input_shape: tuple[int, ...], out: Path, output_names: list[str]
) -> None:
    """ONNX (opset 17) via the TorchScript exporter; needs the `onnx` package."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ArtifactError("the onnx package is not installed: ONNX export skipped") from None
    with torch.no_grad():
        torch.onnx.export(
            net.eval(),
            _example(input_shape),
            str(out),
            input_names=["input"],
            output_names=output_names,
            opset_version=17,
            dynamo=False,
        )
