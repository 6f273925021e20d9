"""How Coral wrote its MoveNet reference keypoints for squat.bmp, redone here; run it for the figures.

libcoral (Grouper release, 2021-07-26, test_data 104342d) `movenet_test.cc` + `coral/test_utils.cc`: the
BMP's pixels as RGB, TFLite's RESIZE_BILINEAR op on float (align_corners false, half_pixel_centers TRUE)
in a plain interpreter, each value cast to uint8 by truncation, the model on a plain interpreter, the
float output (y, x, score per keypoint, normalised) printed with 6 significant digits.

    .venv/bin/python tests/models/coral_reference.py ../shared/coral   # the figures in docs/models.md
"""

from __future__ import annotations

import csv
from pathlib import Path

import flatbuffers
import numpy as np

REPO = Path(__file__).resolve().parents[2]
REFERENCES = (
    "movenet_single_pose_lightning_ptq_reference.csv",
    "movenet_single_pose_lightning_ptq_edgetpu_reference.csv",
)
# The step every value of both reference CSVs is a whole multiple of (least squares over the 102 values;
# each lies within 1.3e-4 of a step of it). MoveNet's output is int8 (zero point -128), dequantised.
REFERENCE_STEP = 0.0039537149


def _resize_model(h: int, w: int, c: int, out_h: int, out_w: int, half_pixel_centers: bool) -> bytes:
    """A one-op .tflite: float32 image -> RESIZE_BILINEAR (size a constant) -> float32."""
    from ai_edge_litert import schema_py_generated as fb

    def tensor(name: str, shape: list[int], dtype: int, buffer: int) -> fb.TensorT:
        t = fb.TensorT()
        t.name, t.shape, t.type, t.buffer = name, shape, dtype, buffer
        return t

    code = fb.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = fb.BuiltinOperator.RESIZE_BILINEAR
    code.version = 1
    size = fb.BufferT()
    size.data = np.array([out_h, out_w], np.int32).view(np.uint8).tolist()
    options = fb.ResizeBilinearOptionsT()
    options.alignCorners, options.halfPixelCenters = False, half_pixel_centers
    op = fb.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1], [2]
    op.builtinOptionsType, op.builtinOptions = fb.BuiltinOptions.ResizeBilinearOptions, options
    graph = fb.SubGraphT()
    graph.tensors = [
        tensor("image", [1, h, w, c], fb.TensorType.FLOAT32, 0),
        tensor("size", [2], fb.TensorType.INT32, 1),
        tensor("resized", [1, out_h, out_w, c], fb.TensorType.FLOAT32, 2),
    ]
    graph.inputs, graph.outputs, graph.operators = [0], [2], [op]
    model = fb.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [graph]
    model.buffers = [fb.BufferT(), size, fb.BufferT()]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def resize_bilinear(image: np.ndarray, height: int, width: int, *, half_pixel_centers: bool) -> np.ndarray:
    """HxWxC image -> height x width x C float32 by LiteRT's builtin RESIZE_BILINEAR kernel (no XNNPACK)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    h, w, c = image.shape
    it = Interpreter(
        model_content=_resize_model(h, w, c, height, width, half_pixel_centers),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], image[None].astype(np.float32))
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])[0].copy()


def coral_input(frame_bgr: np.ndarray, size: int = 192) -> np.ndarray:
    """libcoral's CopyResizedImage for a uint8 input tensor: RGB, half-pixel bilinear on float, truncated."""
    rgb = np.ascontiguousarray(frame_bgr[..., ::-1])
    return resize_bilinear(rgb, size, size, half_pixel_centers=True).astype(np.uint8)


def legacy_bilinear_f64(rgb: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear WITHOUT half-pixel centres, in float64, truncated: NOT Coral's resize (that is
    coral_input); of the resizes tried, the one whose MoveNet output lands closest to the CSV."""
    hh, ww = rgb.shape[:2]
    ys, xs = np.arange(h) * (hh / h), np.arange(w) * (ww / w)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, hh - 1), np.minimum(x0 + 1, ww - 1)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    a = rgb.astype(np.float64)
    top = a[y0][:, x0] * (1 - fx) + a[y0][:, x1] * fx
    bottom = a[y1][:, x0] * (1 - fx) + a[y1][:, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.uint8)


def reference(coral_dir: Path, name: str = REFERENCES[0]) -> np.ndarray:
    """Coral's reference keypoints for squat.bmp: (17, 3) x, y, score, normalised to the image."""
    rows = list(csv.DictReader((coral_dir / name).open()))
    return np.array(
        [[float(r["keypoint_x"]), float(r["keypoint_y"]), float(r["keypoint_score"])] for r in rows]
    )


def keypoint_output_step(model: Path) -> float:
    """Scale of the int8 tensor MoveNet's final DEQUANTIZE reads: the step of every value it outputs."""
    from app.modelbuild.tflite_graph import read_tflite

    g = read_tflite(model)
    [last] = [op for op in g.ops if op.outputs == g.outputs]
    t = g.tensors[last.inputs[0]]
    if last.kind != "DEQUANTIZE" or t.dtype != "INT8" or t.zero_point != -128 or t.scale is None:
        raise ValueError(f"{model}: the output is not an int8 tensor dequantised ({last.kind}, {t.dtype})")
    return t.scale


def off_grid(values: np.ndarray, step: float) -> np.ndarray:
    """Distance of each value from the nearest whole multiple of step, in steps (0.25 on average if unrelated)."""
    q = np.asarray(values, np.float64) / step
    return np.abs(q - np.round(q))


def corals_check(got: np.ndarray, ref: np.ndarray, threshold: float = 0.4) -> tuple[int, float]:
    """libcoral's CheckPoseEstimationResults: the keypoints scoring above threshold on both sides ->
    (how many, worst |diff| in x or y). Coral requires >= 8 of 17 and each within 0.04."""
    both = (got[:, 2] > threshold) & (ref[:, 2] > threshold)
    return int(both.sum()), float(np.abs(got[both, :2] - ref[both, :2]).max()) if both.any() else 1.0


def run_movenet(x: np.ndarray, frame: np.ndarray, xnnpack: bool, models_dir: Path = REPO / "models"):
    """The zoo's CPU int8 MoveNet on input x through LiteRTRuntime and the movenet decoder (stretch
    placement, as Coral's resize) -> (manifest, person, raw outputs, (17, 3) x, y, score of the frame)."""
    from app.runtimes.litert import LiteRTConfig, LiteRTRuntime
    from app.vision.decoders import make_decoder
    from app.vision.preprocess import placement
    from app.zoo import load_manifest

    m = load_manifest("movenet-lightning", models_dir)
    rt = LiteRTRuntime()
    rt.load(m.verify_artifact("tflite"), LiteRTConfig(xnnpack=xnnpack))
    try:
        out = rt.infer(x[None])
    finally:
        rt.close()
    h, w = frame.shape[:2]
    [person] = make_decoder(m.decoder, m.labels, **m.decoder_options)(
        out, placement(w, h, 192, 192, "stretch")
    )
    return m, person, out, np.array([[k.x / w, k.y / h, k.score] for k in person.keypoints])


def _lookout_run(frame: np.ndarray, xnnpack: bool, models_dir: Path = REPO / "models") -> np.ndarray:
    """What `lookout run` does to the frame (the manifest's letterbox Preprocessor), same runtime + decoder."""
    from app.runtimes.litert import LiteRTConfig, LiteRTRuntime
    from app.vision.decoders import make_decoder
    from app.vision.preprocess import Preprocessor
    from app.zoo import load_manifest

    m = load_manifest("movenet-lightning", models_dir)
    rt = LiteRTRuntime()
    spec = rt.load(m.verify_artifact("tflite"), LiteRTConfig(xnnpack=xnnpack))
    i = m.input
    tensor, transform = Preprocessor(spec, i.width, i.height, i.color, i.resize, i.mean, i.std)(frame)
    [person] = make_decoder(m.decoder, m.labels, **m.decoder_options)(rt.infer(tensor), transform)
    rt.close()
    h, w = frame.shape[:2]
    return np.array([[k.x / w, k.y / h, k.score] for k in person.keypoints])


def main(coral: Path) -> None:
    import cv2

    frame = cv2.imread(str(coral / "squat.bmp"), cv2.IMREAD_COLOR)
    ref = reference(coral)
    step = keypoint_output_step(
        REPO / "models" / "movenet-lightning" / "movenet_single_pose_lightning_ptq.tflite"
    )
    values = np.concatenate([reference(coral, n).ravel() for n in REFERENCES])
    print(f"keypoint output step of the zoo's MoveNet (tflite and edgetpu): {step:.10f}")
    print(f"CSV values off a {REFERENCE_STEP} grid: max {off_grid(values, REFERENCE_STEP).max():.1e} steps")
    print(
        f"CSV values off the model's grid: max {off_grid(values, step).max():.2f}, mean {off_grid(values, step).mean():.2f} steps"
    )
    x = coral_input(frame)
    rgb = np.ascontiguousarray(frame[..., ::-1])
    rows = {
        "Coral's input, builtin kernels": run_movenet(x, frame, False)[3],
        "Coral's input, XNNPACK": run_movenet(x, frame, True)[3],
        "legacy bilinear f64, XNNPACK": run_movenet(legacy_bilinear_f64(rgb, 192, 192), frame, True)[3],
        "cv2 INTER_LINEAR stretch, XNNPACK": run_movenet(cv2.resize(rgb, (192, 192)), frame, True)[3],
        "lookout run (letterbox), XNNPACK": _lookout_run(frame, True),
        "lookout run (letterbox), builtin": _lookout_run(frame, False),
        "Coral's Edge TPU CSV (same old build)": reference(coral, REFERENCES[1]),
    }
    print(
        f"{'against the CPU reference CSV':40s} {'max|dx|':>8s} {'max|dy|':>8s} {'max|ds|':>8s}  steps x/y/s   Coral's check"
    )
    for name, got in rows.items():
        d = np.abs(got - ref).max(0)
        n, worst = corals_check(got, ref)
        s = "/".join(f"{v:.1f}" for v in d / step)
        print(f"{name:40s} {d[0]:8.4f} {d[1]:8.4f} {d[2]:8.4f}  {s:13s} {n} checked, worst {worst:.4f}")
    d = np.abs(rows["lookout run (letterbox), XNNPACK"] - rows["Coral's input, XNNPACK"]).max(0)
    print(f"lookout run vs Coral's input, same model and kernels: x {d[0]:.4f} y {d[1]:.4f} score {d[2]:.4f}")
    base = run_movenet(x, frame, False)[2][0][0, 0]
    rng, worst = np.random.default_rng(0), []
    for _ in range(20):
        xp = x.astype(np.int16)
        hit = rng.random(x.shape) < 0.01
        xp[hit] += rng.choice(np.array([-1, 1], np.int16), int(hit.sum()))
        out = run_movenet(np.clip(xp, 0, 255).astype(np.uint8), frame, False)[2][0][0, 0]
        worst.append(np.abs(out - base).max(0))
    w = np.array(worst)
    print(
        "1 % of Coral's input values moved by +-1 (20 draws, builtin): output moves by median "
        f"{np.median(w[:, :2].max(1)) / step:.1f} steps in position, {np.median(w[:, 2]) / step:.0f} in score; "
        f"worst {w[:, :2].max() / step:.1f} / {w[:, 2].max() / step:.0f}"
    )


if __name__ == "__main__":
    import sys

    main(Path(sys.argv[1]))
