"""Build derived artifacts of a model from its original .tflite, idempotently, cached by content hash.

Each artifact records build_input_sha256 = sha256(source artifact bytes + recipe version string). When
the manifest already holds that key and the file's sha256 matches, the artifact is up to date and
nothing runs; `force` rebuilds regardless. Increment a recipe's version when its code changes output.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.errors import ArtifactError, RuntimeUnavailable
from app.zoo import Artifact, Manifest, build_key, save_manifest, sha256_file

SOURCE_KEY = "tflite"
SCORE_OUTPUT = "classificators"
SCORE_FLOOR = -16.0  # int8: calibrated score-logit minimum raised to this (sigmoid(-16) ~ 1e-7)

# key -> (recipe version, file suffix, format, precision)
RECIPES: dict[str, tuple[str, str, str, str]] = {
    "pte": ("pte-xnnpack-fp32-v2", ".pte", "pte", "fp32"),  # v2: canonical constant strides
    "ptl": ("ptl-jit-trace-lite-v1", ".ptl", "ptl", "fp32"),
    "pte-int8": ("pte-pt2e-xnnpack-int8-minmax-floor16-v1", "_int8.pte", "pte", "int8"),
    "tflite-int8": ("tflite-aeq-static-wi8-ai8-minmax-floor16-v2", "_int8.tflite", "tflite", "int8"),
    "onnx": ("onnx-opset17-v1", ".onnx", "onnx", "fp32"),
}
ORIGINS = {
    "pte": "torch rebuild of the .tflite (same weights), torch.export + ExecuTorch XNNPACK partitioner",
    "ptl": "torch rebuild of the .tflite (same weights), torch.jit.trace + _save_for_lite_interpreter",
    "pte-int8": "torch rebuild, PT2E static int8 (XNNPACKQuantizer, per-channel weights, min-max observers), "
    "calibrated on scikit-image photos; score-logit floor -16",
    "tflite-int8": "ai-edge-quantizer static_wi8_ai8 (full integer, int8 I/O), min-max calibration on "
    "scikit-image photos; score-logit floor -16",
    "onnx": "torch rebuild of the .tflite (same weights), torch.onnx.export opset 17",
}


INT8_SOURCE_RECIPES = ("pte", "ptl", "onnx")  # an int8 .tflite is rebuilt in float (dequantised weights)


def recipes_for(m: Manifest) -> list[str]:
    """The artifact keys `build` makes for this model: all of RECIPES from a float .tflite; from a
    quantised one (Coral's models, `models add --from-tflite`) the float torch rebuilds only."""
    if m.artifact(SOURCE_KEY).precision == "int8":
        return list(INT8_SOURCE_RECIPES)
    return list(RECIPES)


def _origin(key: str, m: Manifest) -> str:
    if m.artifact(SOURCE_KEY).precision == "int8":
        return ORIGINS[key].replace("(same weights)", "(int8 weights and activations dequantised, float32)")
    return ORIGINS[key]


@dataclass
class BuildResult:
    model: str
    key: str
    status: str  # built | up to date | skipped | failed
    seconds: float = 0.0
    size: int = 0
    reason: str = ""


def _input_shape(m: Manifest) -> tuple[int, int, int, int]:
    return (1, m.input.height, m.input.width, 3)


def score_output(m: Manifest) -> str | None:
    """Name of the output holding score logits whose int8 range gets the floor (SSD-anchor detectors)."""
    if SCORE_OUTPUT in m.outputs:
        return SCORE_OUTPUT
    if m.decoder == "blazepose" and len(m.outputs) == 2:
        return m.outputs[1]
    return None


def _make(key: str, m: Manifest, src: Path, out: Path) -> None:
    from app.modelbuild import export
    from app.modelbuild.images import calibration_inputs

    if key == "tflite-int8":
        from app.modelbuild.tflite_int8 import quantize_tflite_int8

        score = score_output(m)
        clamp = {score: SCORE_FLOOR} if score else {}
        quantize_tflite_int8(src, calibration_inputs(m), out, clamp_min=clamp)
        return
    net = torch_module(src)
    shape = _input_shape(m)
    if key == "pte":
        export.export_pte(net, shape, out)
    elif key == "ptl":
        export.export_ptl(net, shape, out)
    elif key == "pte-int8":
        score = score_output(m)
        clamp = {m.outputs.index(score): SCORE_FLOOR} if score else {}
        export.export_pte_int8(net, shape, calibration_inputs(m), out, clamp_min=clamp)
    elif key == "onnx":
        export.export_onnx(net, shape, out, m.outputs or None)
    else:
        raise ArtifactError(f"no build recipe for artifact {key!r}")


def torch_module(src: Path):  # -> TFLiteNet (torch imported lazily)
    """The .tflite at `src` rebuilt as a torch.nn.Module."""
    from app.modelbuild.tflite_graph import read_tflite
    from app.modelbuild.torch_net import build_module

    return build_module(read_tflite(src))


def build_model(
    m: Manifest,
    keys: list[str] | None = None,
    force: bool = False,
    on_step: Callable[[str, str], None] | None = None,
) -> list[BuildResult]:
    """Build (or confirm up to date) each derived artifact of `m`; saves the manifest after each build."""
    src = m.verify_artifact(SOURCE_KEY)
    stem = Path(m.artifact(SOURCE_KEY).file).stem
    results = []
    allowed = recipes_for(m)
    for key in keys or allowed:
        recipe, suffix, fmt, precision = RECIPES[key]
        if on_step:
            on_step(m.name, key)
        if key not in allowed:
            results.append(BuildResult(m.name, key, "skipped", reason="the source .tflite is already int8"))
            continue
        want = build_key(src, recipe)
        have = m.artifacts.get(key)
        if not force and have and have.build_input_sha256 == want:
            path = m.dir / have.file
            if path.is_file() and sha256_file(path) == have.sha256:
                results.append(BuildResult(m.name, key, "up to date", size=path.stat().st_size))
                continue
        out = m.dir / f"{stem}{suffix}"
        tmp = out.with_name(out.name + ".part")
        t0 = time.perf_counter()
        try:
            _make(key, m, src, tmp)
        except (ArtifactError, RuntimeUnavailable) as exc:
            tmp.unlink(missing_ok=True)
            results.append(BuildResult(m.name, key, "skipped", reason=str(exc)))
            continue
        except Exception as exc:  # a toolchain bug must not lose the other artifacts
            tmp.unlink(missing_ok=True)
            first = (str(exc).splitlines() or [""])[0]
            results.append(BuildResult(m.name, key, "failed", reason=f"{type(exc).__name__}: {first}"))
            continue
        tmp.replace(out)
        m.artifacts[key] = Artifact(
            file=out.name,
            sha256=sha256_file(out),
            format=fmt,
            precision=precision,
            derived_from=SOURCE_KEY,
            build_input_sha256=want,
            origin=_origin(key, m),
        )
        save_manifest(m)
        results.append(BuildResult(m.name, key, "built", time.perf_counter() - t0, out.stat().st_size))
    return results
