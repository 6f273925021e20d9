"""Run an artifact directly with its library and compare it with the original .tflite on a real photo.

Used by `lookout models build --check`, the tests and docs/models.md's numbers. The BlazeFace decode
here is a minimal best-anchor decode for checking the build, not the app's decoder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.zoo import Manifest

# BlazeFace SSD anchors: (input size, strides); 2 anchors per cell on the first stride, 6 after.
_ANCHOR_LAYOUT = {"short": (128, (8, 16, 16, 16)), "back": (256, (16, 32, 32, 32))}


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


def anchors(variant: str) -> np.ndarray:
    """(896, 2) anchor centres in [0, 1] for the BlazeFace variant."""
    size, strides = _ANCHOR_LAYOUT[variant]
    out = []
    i = 0
    while i < len(strides):
        same = [s for s in strides[i:] if s == strides[i]]
        per_cell = 2 * len(same)
        fm = size // strides[i]
        for y in range(fm):
            for x in range(fm):
                out += [((x + 0.5) / fm, (y + 0.5) / fm)] * per_cell
        i += len(same)
    return np.array(out, np.float32)


def best_face(outputs: list[np.ndarray], m: Manifest, src_hw: tuple[int, int]) -> tuple[float, np.ndarray]:
    """(sigmoid score, box x0,y0,x1,y1 in source pixels) of the best anchor, undoing the letterbox."""
    reg, cls = (outputs[m.outputs.index("regressors")], outputs[m.outputs.index("classificators")])
    size = m.input.width
    a = anchors(m.decoder_options["variant"])
    i = int(np.argmax(cls.reshape(-1)))
    r = reg.reshape(-1, reg.shape[-1])[i]
    cx, cy = r[0] / size + a[i, 0], r[1] / size + a[i, 1]
    w, h = r[2] / size, r[3] / size
    box = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]) * size  # model input pixels
    sh, sw = src_hw
    s = min(size / sw, size / sh)
    ox, oy = (size - round(sw * s)) // 2, (size - round(sh * s)) // 2
    box = (box - [ox, oy, ox, oy]) / s
    score = float(1 / (1 + np.exp(-np.clip(cls.reshape(-1)[i], -100, 100))))
    return score, box


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


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
