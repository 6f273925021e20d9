"""Run an artifact directly with its library and compare it with the original .tflite on a real photo.

Used by the tests and for docs/models.md's numbers. The check decodes only the best anchor (no NMS), with
the decoder's own anchors, box decoding and letterbox mapping.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.vision.decoders.blazeface import VARIANTS, decode_boxes, sigmoid_scores, ssd_anchor_centres
from app.vision.preprocess import placement
from app.zoo import Manifest


def run_artifact(path: Path, fmt: str, x: np.ndarray) -> list[np.ndarray]:
    """Outputs of the artifact at `path` for NHWC float32 input `x`, as float32, in graph order."""
    if fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(path), num_threads=1)
        it.allocate_tensors()
        d = it.get_input_details()[0]
        if d["dtype"] != np.float32:
            s, z = d["quantization"]
            info = np.iinfo(d["dtype"])
            x = np.clip(np.round(x / s + z), info.min, info.max).astype(d["dtype"])
        it.set_tensor(d["index"], x)
        it.invoke()
        outs = []
        for o in it.get_output_details():
            y = it.get_tensor(o["index"])
            if o["dtype"] != np.float32:
                s, z = o["quantization"]
                y = (y.astype(np.float32) - z) * s
            outs.append(y.astype(np.float32))
        return outs
    import torch

    if fmt == "pte":
        from executorch.runtime import Runtime

        method = Runtime.get().load_program(str(path)).load_method("forward")
        return [o.numpy().astype(np.float32) for o in method.execute([torch.from_numpy(x)])]
    if fmt == "ptl":
        from torch.jit.mobile import _load_for_lite_interpreter

        with torch.no_grad():
            return [o.numpy() for o in _load_for_lite_interpreter(str(path))(torch.from_numpy(x))]
    if fmt == "onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return [np.asarray(o, np.float32) for o in sess.run(None, {sess.get_inputs()[0].name: x})]
    raise ValueError(f"unknown format {fmt}")


def best_face(outputs: list[np.ndarray], m: Manifest, src_hw: tuple[int, int]) -> tuple[float, np.ndarray]:
    """(sigmoid score, box x0,y0,x1,y1 in source pixels) of the best anchor, undoing the letterbox."""
    reg, cls = (outputs[m.outputs.index("regressors")], outputs[m.outputs.index("classificators")])
    opts = VARIANTS[m.decoder_options["variant"]]
    logits = cls.reshape(-1)
    i = int(np.argmax(logits))
    anchor = ssd_anchor_centres(opts)[i : i + 1]
    box = decode_boxes(reg.reshape(-1, reg.shape[-1])[i : i + 1], anchor, opts.input_size)
    sh, sw = src_hw
    to_source = placement(sw, sh, m.input.width, m.input.height, m.input.resize).to_source
    return float(sigmoid_scores(logits[i])), to_source(box)[0].astype(np.float64)


def compare(m: Manifest, key: str, photo: str = "astronaut") -> dict[str, float]:
    """Max abs and relative (to the reference's max |value|) output differences vs the original .tflite,
    plus the best-anchor score on `photo`."""
    from app.modelbuild.images import photo_rgb, to_input

    rgb = photo_rgb(photo)
    x = to_input(rgb, m)
    ref = run_artifact(m.verify_artifact("tflite"), "tflite", x)
    got = run_artifact(m.verify_artifact(key), m.artifacts[key].format, x)
    diffs = [float(np.abs(r - g).max()) for r, g in zip(ref, got, strict=True)]
    rels = [d / float(np.abs(r).max()) for d, r in zip(diffs, ref, strict=True)]
    score, box = best_face(got, m, rgb.shape[:2])
    return {"max_abs": max(diffs), "max_rel": max(rels), "score": score, "box": box.round(1).tolist()}
