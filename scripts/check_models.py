#!/usr/bin/env python3
"""Each artifact against the original .tflite on the astronaut photo (docs/models.md, "Measured").

Max abs / relative output difference, best-anchor score and IoU with the face box, per model and artifact
(app/modelbuild/check.py). Artifacts whose runtime library is not installed are skipped with the reason.

    python scripts/check_models.py [--models-dir models]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.config import default_models_dir
from app.detection import iou
from app.modelbuild.check import compare
from app.zoo import list_manifests

ASTRONAUT_FACE = (179.0, 81.0, 273.0, 176.0)  # x0, y0, x1, y1 in skimage's astronaut photo


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", type=Path, default=None)
    models_dir = ap.parse_args().models_dir or default_models_dir()
    print("model | artifact | max abs | relative | score | IoU")
    for m in list_manifests(models_dir):
        if m.decoder != "blazeface":
            continue  # a face check; scripts/zoo_agreement.py compares the other models on Coral's photos
        for key, art in m.artifacts.items():
            if key == "edgetpu":
                continue  # needs the Edge TPU itself
            try:
                r = compare(m, key)
            except ImportError as exc:
                print(f"{m.name} | {key} | skipped: {exc}")
                continue
            rel = f"{r['max_rel']:.2g}"
            print(f"{m.name} | {key} ({art.precision}) | {r['max_abs']:.2g} | {rel} | {r['score']:.3f} | "
                  f"{iou(r['box'], ASTRONAUT_FACE):.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
