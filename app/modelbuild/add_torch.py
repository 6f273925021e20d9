"""`lookout models add NAME --from-torch FILE.py:FACTORY --input 1x3xHxW`: a PyTorch model into the zoo.

The factory's module is exported once per runtime: ExecuTorch .pte (XNNPACK, fp32), lite-interpreter
.ptl, .tflite through litert-torch (fp32), a full-integer .tflite calibrated on the --calibration images
(ai-edge-quantizer; the Edge TPU compiler's input) and .onnx. Every artifact takes NHWC float input like
the rest of the zoo: a permute to the factory's NCHW is put in front of the network. Each artifact is then
run on the calibration images and compared with eager torch (the agreement table).

The converters are heavy (litert-torch pulls JAX and transformers): they live in the `convert` extra and
are imported here only; a device never installs them.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from app.errors import ArtifactError, ConfigError, LookoutError
from app.modelbuild.add_tflite import (
    add_output_layout,
    default_normalisation,
    describe_tflite,
    input_spec,
    read_labels,
    smoke_test,
    write_manifest,
)
from app.vision.sources import IMAGE_SUFFIXES
from app.zoo import MANIFEST, Artifact, InputSpec, Manifest, Provenance, sha256_file

CONVERT_MODULES = ("litert_torch", "ai_edge_quantizer", "onnx", "executorch.exir", "torch")
AGREEMENT_IMAGES = 8


def require_convert_extra() -> None:
    """One-line error naming the extra when a converter is missing."""
    for mod in CONVERT_MODULES:
        try:
            found = importlib.util.find_spec(mod) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise LookoutError(
                f"--from-torch needs the 'convert' extra (python module {mod} is missing): "
                "pip install 'lookout[convert]' --constraint constraints.txt"
            )


def parse_input(text: str) -> tuple[int, int, int, int]:
    """'1x3x224x224' -> (1, 3, 224, 224); one RGB image (NCHW) only."""
    try:
        dims = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        dims = ()
    if len(dims) != 4 or dims[0] != 1 or dims[1] != 3 or min(dims) < 1:
        raise ConfigError(f"--input {text!r}: expected 1x3xHxW (one RGB image, NCHW)")
    return dims  # type: ignore[return-value]


def load_factory(spec: str) -> Any:
    """Import FILE.py and call FACTORY() -> torch.nn.Module (in eval mode)."""
    import torch

    file, sep, name = spec.rpartition(":")
    if not sep or not file or not name:
        raise ConfigError(f"--from-torch {spec!r}: expected FILE.py:FACTORY")
    path = Path(file)
    if not path.is_file():
        raise ConfigError(f"--from-torch {spec!r}: no such file {path}")
    mod_spec = importlib.util.spec_from_file_location(f"lookout_user_model_{path.stem}", path)
    if mod_spec is None or mod_spec.loader is None:
        raise ConfigError(f"--from-torch {spec!r}: cannot import {path}")
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules[mod_spec.name] = module
    try:
        mod_spec.loader.exec_module(module)
    except Exception as exc:
        raise ConfigError(
            f"--from-torch {spec!r}: importing {path} failed: {type(exc).__name__}: {exc}"
        ) from None
    factory = getattr(module, name, None)
    if not callable(factory):
        raise ConfigError(f"--from-torch {spec!r}: {path} has no callable {name!r}")
    net = factory()
    if not isinstance(net, torch.nn.Module):
        raise ConfigError(
            f"--from-torch {spec!r}: {name}() returned {type(net).__name__}, not a torch.nn.Module"
        )
    return net.eval().requires_grad_(False)


def nhwc_wrapper(net: Any) -> Any:
    """The network behind an NHWC float input, returning a tuple of outputs."""
    import torch

    class NHWC(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            y = self.inner(x.permute(0, 3, 1, 2))
            return tuple(y) if isinstance(y, list | tuple) else (y,)

    return NHWC(net).eval()


def calibration_images(folder: Path | None, spec: InputSpec) -> list[np.ndarray]:
    """NHWC float inputs: each image of `folder` whole and mirrored; scikit-image photos when no folder."""
    from app.modelbuild.images import CALIBRATION_PHOTOS, photo_rgb, to_input

    if folder is None:
        rgbs: Iterator[np.ndarray] = (photo_rgb(n) for n in CALIBRATION_PHOTOS)
    else:
        if not Path(folder).is_dir():
            raise ConfigError(f"--calibration {folder}: not a folder")
        files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ConfigError(f"--calibration {folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        rgbs = (_read_rgb(p) for p in files)
    out = []
    for rgb in rgbs:
        rgb = np.ascontiguousarray(rgb)
        out += [to_input(rgb, spec), to_input(np.ascontiguousarray(rgb[:, ::-1]), spec)]
        if len(out) >= 64:
            break
    return out


def _read_rgb(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ConfigError(f"--calibration: cannot read image {path}")
    return img[..., ::-1]


@dataclass
class AgreementRow:
    key: str
    precision: str
    max_abs: float
    max_rel: float
    top1: float | None  # share of images whose arg-max of output 0 matches eager torch (classification)


def agreement(
    manifest: Manifest, eager: list[list[np.ndarray]], inputs: list[np.ndarray], task: str
) -> list[AgreementRow]:
    """Each artifact against eager torch on the same inputs."""
    from app.modelbuild.check import run_artifact

    rows = []
    for key, art in manifest.artifacts.items():
        path = manifest.verify_artifact(key)
        diffs, rels, same = [], [], []
        for x, ref in zip(inputs, eager, strict=True):
            got = run_artifact(path, art.format, x)
            if len(got) != len(ref):
                raise ArtifactError(f"{path}: {len(got)} outputs, eager torch gives {len(ref)}")
            for r, g in zip(ref, got, strict=True):
                d = float(np.abs(r.reshape(-1) - g.reshape(-1)).max())
                diffs.append(d)
                rels.append(d / max(float(np.abs(r).max()), 1e-12))
            same.append(int(np.argmax(ref[0])) == int(np.argmax(got[0])))
        top1 = float(np.mean(same)) if task == "classification" else None
        rows.append(AgreementRow(key, art.precision, max(diffs), max(rels), top1))
    return rows


def print_agreement(rows: list[AgreementRow]) -> None:
    print(f"{'artifact':<12} {'precision':<9} {'max |diff|':>11} {'relative':>10} {'top-1 same':>10}")
    for r in rows:
        top1 = f"{r.top1:.0%}" if r.top1 is not None else "-"
        print(f"{r.key:<12} {r.precision:<9} {r.max_abs:>11.3g} {r.max_rel:>10.3g} {top1:>10}")


def add_from_torch(
    name: str,
    models_dir: Path,
    factory: str,
    input_shape: str,
    task: str,
    labels_file: Path,
    decoder: str | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    calibration: Path | None = None,
    origin: str | None = None,
    licence: str = "unknown (not given to `lookout models add`)",
) -> tuple[Manifest, list[str], list[AgreementRow]]:
    """Export every artifact into models_dir/NAME/, write the manifest; returns it, notes, agreement rows."""
    require_convert_extra()
    import torch

    from app.modelbuild import export
    from app.modelbuild.tflite_int8 import quantize_tflite_int8

    _, _, h, w = parse_input(input_shape)
    dest = Path(models_dir) / name
    if (dest / MANIFEST).exists():
        raise ConfigError(f"model {name!r} already exists in {models_dir} (remove {dest} first)")
    labels = read_labels(labels_file)
    net = nhwc_wrapper(load_factory(factory))
    shape = (1, h, w, 3)
    notes = []
    if mean is None or std is None:
        from app.modelbuild.add_tflite import TensorDesc

        d_mean, d_std, note = default_normalisation(TensorDesc("input", shape, "float32", 0.0, 0))
        mean, std = mean or d_mean, std or d_std
        notes.append(f"input normalisation: {note}")
    spec = input_spec(task, w, h, mean, std)
    inputs = calibration_images(calibration, spec)
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    made = f"exported from {factory} by `lookout models add --from-torch` at {when}"
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with torch.no_grad():
            eager = [[t.numpy().astype(np.float32) for t in net(torch.from_numpy(x))] for x in inputs]
        files = {
            "tflite": (f"{name}.tflite", "tflite", "fp32", "litert-torch conversion (fp32)"),
            "tflite-int8": (
                f"{name}_int8.tflite",
                "tflite",
                "int8",
                f"ai-edge-quantizer static_wi8_ai8 (full integer, int8 I/O), min-max calibration on "
                f"{len(inputs)} inputs from {calibration or 'scikit-image photos'}",
            ),
            "pte": (f"{name}.pte", "pte", "fp32", "torch.export + ExecuTorch XNNPACK partitioner (fp32)"),
            "ptl": (f"{name}.ptl", "ptl", "fp32", "torch.jit.trace + _save_for_lite_interpreter"),
            "onnx": (f"{name}.onnx", "onnx", "fp32", "torch.onnx.export opset 17"),
        }
        _export_tflite(net, shape, dest / files["tflite"][0])
        desc = describe_tflite(dest / files["tflite"][0])
        layout = add_output_layout(task, desc.outputs, labels, (h, w), decoder)
        out_names = [o.name for o in desc.outputs]
        quantize_tflite_int8(dest / files["tflite"][0], inputs, dest / files["tflite-int8"][0])
        export.export_pte(net, shape, dest / files["pte"][0])
        export.export_ptl(net, shape, dest / files["ptl"][0])
        export.export_onnx(net, shape, dest / files["onnx"][0], out_names)
        artifacts = {
            key: Artifact(
                file=f,
                sha256=sha256_file(dest / f),
                format=fmt,
                precision=prec,
                derived_from="tflite" if key == "tflite-int8" else "",
                origin=f"{how}; {made}",
            )
            for key, (f, fmt, prec, how) in files.items()
        }
        manifest = write_manifest(
            dest,
            name,
            task,
            layout,
            out_names,
            spec,
            artifacts,
            Provenance(
                origin=origin or f"{factory} (as given to `lookout models add`), added {when}",
                licence=licence,
                built_by="lookout models add --from-torch",
                notes="Every artifact takes NHWC float input (a permute to NCHW precedes the network).",
            ),
        )
        n = AGREEMENT_IMAGES
        rows = agreement(manifest, eager[:n], inputs[:n], task)
        smoke_test(manifest)
    except Exception:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    stem = dest / files["tflite-int8"][0]
    notes.append(
        f"for a Coral: edgetpu_compiler -s {stem} (Coral's apt package edgetpu-compiler, x86-64), then "
        f"lookout models import {name} {stem.with_name(stem.stem + '_edgetpu.tflite').name}"
    )
    return manifest, notes, rows


def _export_tflite(net: Any, shape: tuple[int, ...], out: Path) -> None:
    """fp32 .tflite through litert-torch."""
    import litert_torch
    import torch

    edge = litert_torch.convert(net, (torch.zeros(shape, dtype=torch.float32),))
    edge.export(str(out))
