"""Full-integer int8 .tflite (the Edge TPU compiler's input) with ai-edge-quantizer and min-max calibration.

ai-edge-quantizer's default calibration merges batches with a moving average, which on BlazeFace shrank the
score output's range so far that every score came out 0.5; min-max merging keeps the real range.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from app.errors import RuntimeUnavailable


def float32_with_signature(src: Path, dest: Path, key: str = "serving_default") -> Path:
    """A float32 copy of `src` ready for the quantizer.

    fp16 weights feeding DEQUANTIZE ops (sparse ones through DENSIFY too) are folded into float32 constants (the quantizer would otherwise
    treat those weights as activations), and a signature naming the inputs and outputs is added (the
    calibrator runs signatures)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(src))
    g = model.subgraphs[0]
    codes = [flatbuffer_utils.get_builtin_code_from_operator_code(c) for c in model.operatorCodes]
    for c, code in zip(model.operatorCodes, codes, strict=True):
        c.builtinCode = code  # old files set only deprecatedBuiltinCode; the quantizer reads builtinCode
    dense: dict[int, np.ndarray] = {}  # outputs of DENSIFY ops on sparse constants (folded)
    if any(c == schema.BuiltinOperator.DENSIFY for c in codes):
        from app.modelbuild.tflite_graph import read_tflite

        parsed = read_tflite(src)
    kept = []
    for op in g.operators:
        src_t = g.tensors[op.inputs[0]]
        code = codes[op.opcodeIndex]
        if code == schema.BuiltinOperator.DENSIFY:
            values = parsed.tensors[int(op.inputs[0])].data
            dense[int(op.outputs[0])] = values
            out_t = g.tensors[op.outputs[0]]  # a constant now (the calibrator reads every tensor)
            out_t.buffer = len(model.buffers)
            model.buffers.append(schema.BufferT())
            model.buffers[-1].data = np.ascontiguousarray(values).view(np.uint8).reshape(-1)
            continue
        if code == schema.BuiltinOperator.DEQUANTIZE and src_t.type == schema.TensorType.FLOAT16:
            if int(op.inputs[0]) in dense:
                values = dense[int(op.inputs[0])].astype(np.float32)
            else:
                raw = np.asarray(model.buffers[src_t.buffer].data, dtype=np.uint8)
                values = np.frombuffer(raw.tobytes(), np.float16).astype(np.float32)
            out_t = g.tensors[op.outputs[0]]
            out_t.buffer = len(model.buffers)
            model.buffers.append(schema.BufferT())
            model.buffers[-1].data = np.ascontiguousarray(values).view(np.uint8).reshape(-1)
            continue
        kept.append(op)
    g.operators = kept
    if model.signatureDefs:
        flatbuffer_utils.write_model(model, str(dest))
        return dest

    def tmap(idx: int) -> object:
        return schema.TensorMapT(name=g.tensors[idx].name, tensorIndex=int(idx))

    sig = schema.SignatureDefT(
        inputs=[tmap(i) for i in g.inputs],
        outputs=[tmap(i) for i in g.outputs],
        signatureKey=key,
        subgraphIndex=0,
    )
    model.signatureDefs = [sig]
    flatbuffer_utils.write_model(model, str(dest))
    return dest


def score_path_tensors(src: Path, output_name: str) -> list[str]:
    """Names of the tensors that carry output `output_name` back through RESHAPE/CONCATENATION to its convs."""
    from app.modelbuild.tflite_graph import read_tflite

    graph = read_tflite(src)
    producer = {o: op for op in graph.ops for o in op.outputs}
    todo = [i for i in graph.outputs if graph.name(i) == output_name]
    names: list[str] = []
    while todo:
        idx = todo.pop()
        names.append(graph.name(idx))
        op = producer.get(idx)
        if op is not None and op.kind in ("RESHAPE", "CONCATENATION"):
            todo += [i for i in op.inputs if graph.tensors[i].data is None]
    return names


def _drop_unused_buffers(path: Path) -> None:
    """Empty the buffers of constant tensors no op uses (the folded fp16 weights), in place."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    used: set[int] = set()
    for g in model.subgraphs:
        used.update(int(i) for i in g.inputs)
        used.update(int(i) for i in g.outputs)
        for op in g.operators:
            used.update(int(i) for i in op.inputs if i >= 0)
            used.update(int(i) for i in op.outputs)
        live = {g.tensors[i].buffer for i in used}
        for i, t in enumerate(g.tensors):
            if i not in used and t.buffer not in live and t.buffer > 0:
                model.buffers[t.buffer].data = None
    flatbuffer_utils.write_model(model, str(path))


def quantize_tflite_int8(
    src: Path,
    calibration: Iterable[np.ndarray],
    out: Path,
    input_name: str | None = None,
    clamp_min: dict[str, float] | None = None,
) -> int:
    """Static int8 weights and activations (recipe static_wi8_ai8), min-max calibrated; returns #samples.

    clamp_min {output name: floor}: raise the calibrated minimum of that output (and the reshape/concat
    path feeding it) to `floor`, so that a score logit range of [-280, 3] becomes [floor, 3] and the int8
    step shrinks from ~1.1 to ~0.08 logits; values below the floor saturate (sigmoid(-16) ~ 1e-7)."""
    import importlib.util

    if importlib.util.find_spec("ai_edge_quantizer") is None:
        raise RuntimeUnavailable("ai-edge-quantizer is not installed: int8 .tflite not built")
    signed = float32_with_signature(src, out.with_suffix(".signed.tflite"))
    try:
        return _quantize(signed, calibration, out, input_name, clamp_min or {})
    finally:
        signed.unlink(missing_ok=True)  # also when calibration fails


def _quantize(
    src: Path,
    calibration: Iterable[np.ndarray],
    out: Path,
    input_name: str | None,
    clamp_min: dict[str, float],
) -> int:
    from ai_edge_quantizer import calibrator, quantizer, recipe
    from ai_edge_quantizer.utils import qsv_utils

    qt = quantizer.Quantizer(str(src))
    qt.load_quantization_recipe(recipe.static_wi8_ai8())
    if input_name is None:  # the signature's own input name (a tensor name when we added it)
        from ai_edge_litert.interpreter import Interpreter

        sig = Interpreter(model_path=str(src)).get_signature_list()["serving_default"]
        input_name = sig["inputs"][0]
    samples = [{input_name: x.astype(np.float32)} for x in calibration]
    calib = calibrator.Calibrator(str(src), num_threads=2, qsv_update_func=qsv_utils.min_max_update)
    calib.calibrate({"serving_default": samples}, qt._recipe_manager)
    qsvs = calib.get_model_qsvs()
    for output, floor in clamp_min.items():
        for name in score_path_tensors(src, output):
            if name in qsvs:
                qsvs[name]["min"] = np.maximum(qsvs[name]["min"], np.float32(floor))
    result = qt.quantize(qsvs, enable_progress_report=False)
    out.write_bytes(bytes(result.quantized_model))
    _drop_unused_buffers(out)
    return len(samples)
