#!/usr/bin/env python3
"""Agreement of every artifact of a zoo model with its original .tflite, on Coral's six test photos.

For each artifact: the largest |difference| of the raw outputs (and relative to the largest reference
value), and what the decoder reports on each photo (top-1 label, or person boxes and their IoU with the
original's). This is where the figures in docs/models.md come from:

    .venv/bin/python scripts/zoo_agreement.py person-detector mobilenet-v1-025 movenet-lightning
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.config import default_models_dir  # noqa: E402
from app.detection import iou  # noqa: E402
from app.runtimes.base import get_runtime_class  # noqa: E402
from app.runtimes.selection import open_runtime  # noqa: E402
from app.vision.decoders import make_decoder  # noqa: E402
from app.vision.preprocess import Preprocessor  # noqa: E402
from app.zoo import load_manifest  # noqa: E402

PHOTOS = ("grace_hopper.bmp", "squat.bmp", "face.jpg", "cat.bmp", "parrot.jpg", "bird.bmp")
RUNTIME_OF = {"tflite": "tflite", "pte": "executorch", "ptl": "torchscript-lite", "onnx": "onnxruntime"}


def _runner(m, key: str):
    art = m.artifacts[key]
    runtime = RUNTIME_OF["tflite" if art.format == "tflite" else art.format]
    rt = open_runtime(get_runtime_class(runtime).config_model(artifact=key), m).runtime
    inp = m.input
    pre = Preprocessor(rt.input_spec, inp.width, inp.height, inp.color, inp.resize, inp.mean, inp.std)
    return rt, pre


def _summary(m, dets) -> str:
    if m.task == "classification":
        return f"{dets[0].label.split(',')[0]} {dets[0].score:.2f}" if dets else "-"
    return f"{len(dets)} person" if dets else "none"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "coral")
    args = ap.parse_args()
    photos = args.photos if (args.photos / "squat.bmp").is_file() else Path("/work/shared/coral")
    frames = {n: cv2.imread(str(photos / n)) for n in PHOTOS}
    for name in args.models:
        m = load_manifest(name, default_models_dir())
        dec = make_decoder(m.decoder, list(m.labels), **m.decoder_options)
        ref_rt, ref_pre = _runner(m, "tflite")
        ref = {}
        for n, f in frames.items():
            t, tr = ref_pre(f)
            out = ref_rt.infer(t)
            ref[n] = (out, dec(out, tr, 0.0 if m.task == "classification" else None))
        print(f"\n## {name}")
        print("| artifact | precision | max abs | relative | " + " | ".join(PHOTOS) + " |")
        print("|---" * (4 + len(PHOTOS)) + "|")
        for key, art in m.artifacts.items():
            if key == "edgetpu":
                continue
            rt, pre = _runner(m, key)
            worst, rel, cells = 0.0, 0.0, []
            for n, f in frames.items():
                t, tr = pre(f)
                out = rt.infer(t)
                for a, b in zip(ref[n][0], out, strict=True):
                    d = float(np.abs(a.reshape(-1) - b.reshape(-1)).max())
                    worst, rel = max(worst, d), max(rel, d / max(float(np.abs(a).max()), 1e-12))
                dets = dec(out, tr, 0.0 if m.task == "classification" else None)
                cell = _summary(m, dets)
                if m.task != "classification" and dets and ref[n][1]:
                    cell += f" IoU {iou(dets[0].box, ref[n][1][0].box):.3f}"
                cells.append(cell)
            print(f"| {key} | {art.precision} | {worst:.3g} | {rel:.3g} | " + " | ".join(cells) + " |")
            rt.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
