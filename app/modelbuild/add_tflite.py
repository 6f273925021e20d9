"""`lookout models add NAME --from-tflite FILE`: describe a .tflite from its tensors and write its manifest.

The input tensor gives the size and the normalisation (a quantised uint8 input means the pixels go in as
they are); the outputs, with the task and the labels, say which decoder reads them. What cannot be
described is refused in one line: a file that is not a TFLite model, an output layout no decoder of the
task knows, labels that do not fit the classes, an --edgetpu file that is not compiled from this model.
After writing, the model is run once on a blank frame through the same code `lookout run` uses.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from app.errors import ArtifactError, ConfigError
from app.runtimes.filecheck import EDGETPU_CUSTOM_OP, check_tflite, edgetpu_compiled
from app.zoo import MANIFEST, Artifact, InputSpec, Manifest, Provenance, save_manifest, sha256_file

TASKS = ("detection", "classification", "pose")


@dataclass(frozen=True)
class TensorDesc:
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int

    def same_as(self, other: TensorDesc) -> bool:
        """Same shape, type and quantisation (names may differ after compilation)."""
        return (
            self.shape == other.shape
            and self.dtype == other.dtype
            and np.isclose(self.scale, other.scale)
            and self.zero_point == other.zero_point
        )

    def text(self) -> str:
        q = f" q({self.scale:g},{self.zero_point})" if self.scale else ""
        return f"{self.dtype}{list(self.shape)}{q}"


@dataclass
class Description:
    inputs: list[TensorDesc]
    outputs: list[TensorDesc]
    precision: str


@dataclass
class Layout:
    """What the outputs are: the decoder, its options and label fix-ups."""

    decoder: str
    options: dict[str, Any] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    keypoints: list[str] = field(default_factory=list)

    @property
    def experimental(self) -> bool:
        """A decoder (or layout version) never checked on a real network's outputs (docs/models.md)."""
        return self.decoder == "ssd" or (self.decoder, self.options.get("version")) == ("yolo", "v5")


def describe_tflite(path: Path) -> Description:
    """Input and output tensors of a .tflite (read by LiteRT without allocating: a compiled Edge TPU
    model can be described on a machine without the TPU)."""
    from app.runtimes.litert import import_litert

    check_tflite(path)
    lite = import_litert()
    try:
        it = lite.Interpreter(model_path=str(path))
    except (ValueError, RuntimeError) as exc:
        raise ArtifactError(f"{path}: not a loadable TFLite model: {str(exc).splitlines()[0]}") from None

    def desc(d: dict[str, Any]) -> TensorDesc:
        scale, zero = d.get("quantization", (0.0, 0))
        return TensorDesc(
            str(d["name"]), tuple(int(s) for s in d["shape"]), np.dtype(d["dtype"]).name, scale, zero
        )

    inputs = [desc(d) for d in it.get_input_details()]
    outputs = [desc(d) for d in it.get_output_details()]
    int8 = inputs and inputs[0].dtype in ("uint8", "int8")
    return Description(inputs, outputs, "int8" if int8 else "fp32")


def read_labels(path: Path) -> list[str]:
    """One label per line; a leading index ("0 person" or "0: person") is dropped; blank lines skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--labels {path}: cannot read: {exc}") from None
    labels = []
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        head, _, rest = line.partition(" ")
        if head.rstrip(":").isdigit() and rest.strip():
            line = rest.strip()
        labels.append(line)
    if not labels:
        raise ConfigError(f"--labels {path}: no labels in the file")
    return labels


def _size(t: TensorDesc) -> int:
    return int(np.prod(t.shape)) if t.shape else 1


def layout_for(task: str, outs: list[TensorDesc], labels: list[str], input_hw: tuple[int, int]) -> Layout:
    """The decoder that reads these outputs for `task`; ArtifactError naming the layout otherwise."""
    shapes = ", ".join(o.text() for o in outs)
    if task == "classification":
        if len(outs) == 1 and len(outs[0].shape) in (2, 4) and _size(outs[0]) == outs[0].shape[-1]:
            n = outs[0].shape[-1]
            if n == len(labels):
                return Layout("classify", {}, labels)
            if n == len(labels) + 1:
                return Layout("classify", {}, ["background", *labels])
            if n == len(labels) - 1:
                return Layout("classify", {"label_offset": 1}, labels)
            raise ArtifactError(
                f"classification output has {n} classes but the labels file has {len(labels)}"
            )
    elif task == "pose":
        if len(outs) == 1 and outs[0].shape[-2:] == (17, 3) and _size(outs[0]) == 51:
            from app.vision.decoders.movenet import COCO_KEYPOINTS

            return Layout("movenet", {}, labels, list(COCO_KEYPOINTS))
    elif task == "detection":
        by_shape = sorted(outs, key=lambda o: -len(o.shape))
        if len(outs) == 4 and by_shape[0].shape[-1] == 4 and len(by_shape[0].shape) == 3:
            order = _ssd_order(outs)
            opts: dict[str, Any] = (
                {} if order == ("boxes", "classes", "scores", "count") else {"order": order}
            )
            return Layout("ssd", opts, labels)
        if len(outs) == 2 and all(len(o.shape) == 3 for o in outs):
            wide, narrow = sorted(outs, key=lambda o: -o.shape[-1])
            n = wide.shape[1]
            if narrow.shape[-1] == 1 and narrow.shape[1] == n:
                if wide.shape[-1] == 16 and n == 896 and input_hw in ((128, 128), (256, 256)):
                    variant = "short" if input_hw == (128, 128) else "back"
                    return Layout("blazeface", {"variant": variant}, labels)
                if wide.shape[-1] == 12 and n == 2254 and input_hw == (224, 224):
                    from app.vision.decoders.blazepose import POSE_DETECTOR_KEYPOINTS

                    return Layout("blazepose", {}, labels, list(POSE_DETECTOR_KEYPOINTS))
        if len(outs) == 1 and len(outs[0].shape) == 3:
            a, b = outs[0].shape[1:]
            c = len(labels)
            if c + 4 in (a, b):
                return Layout("yolo", {"version": "v8"}, labels)
            if c + 5 in (a, b):
                return Layout("yolo", {"version": "v5"}, labels)
    else:
        raise ConfigError(f"--task {task!r} is not one of {', '.join(TASKS)}")
    raise ArtifactError(f"unknown output layout for task {task!r}: {shapes} (with {len(labels)} labels)")


def add_output_layout(
    task: str, outs: list[TensorDesc], labels: list[str], input_hw: tuple[int, int], decoder: str | None
) -> Layout:
    """layout_for, refusing a --decoder that does not read these outputs."""
    layout = layout_for(task, outs, labels, input_hw)
    if decoder and decoder != layout.decoder:
        raise ArtifactError(
            f"--decoder {decoder} does not read these outputs ({', '.join(o.text() for o in outs)}); "
            f"they fit {layout.decoder!r}"
        )
    return layout


def _ssd_order(outs: list[TensorDesc]) -> tuple[str, ...]:
    """Order of TFLite_Detection_PostProcess outputs, by shape and name (TF2 exports reorder them)."""
    names = []
    for o in outs:
        n = o.name.lower()
        if len(o.shape) == 3:
            names.append("boxes")
        elif _size(o) == 1:
            names.append("count")
        elif "class" in n:
            names.append("classes")
        elif "score" in n:
            names.append("scores")
        else:
            names.append("")
    if names.count("") == 2:  # unnamed (1, N) pair: the post-process op's own order, classes first
        names[names.index("")] = "classes"
        names[names.index("")] = "scores"
    elif names.count("") == 1:
        names[names.index("")] = "classes" if "classes" not in names else "scores"
    if sorted(names) != sorted(("boxes", "classes", "scores", "count")):
        raise ArtifactError(f"cannot tell the SSD outputs apart: {', '.join(o.text() for o in outs)}")
    return tuple(names)


def default_normalisation(inp: TensorDesc) -> tuple[list[float], list[float], str]:
    """(mean, std, note): for integer inputs the values that put the pixels in unchanged."""
    if inp.dtype == "uint8" and inp.scale:
        return [float(inp.zero_point)] * 3, [1.0 / inp.scale] * 3, "pixels as they are (uint8 input)"
    if inp.dtype == "uint8":
        return [0.0] * 3, [1.0] * 3, "pixels as they are (uint8 input, no quantisation)"
    if inp.dtype == "int8" and inp.scale:
        return [128.0 + inp.zero_point * 1.0] * 3, [1.0 / inp.scale] * 3, "pixel - 128 (int8 input)"
    return [127.5] * 3, [127.5] * 3, "assumed (pixel - 127.5) / 127.5 for a float input: pass --mean/--std"


def check_edgetpu_pair(cpu: Path, cpu_desc: Description, compiled: Path) -> None:
    """The compiled file holds the Edge TPU op and has the CPU model's input and output tensors. A check of
    the interface only (a heuristic): another network with the same tensors would pass."""
    check_tflite(compiled)
    if not edgetpu_compiled(compiled):
        raise ArtifactError(f"--edgetpu {compiled} is not an Edge TPU model: it has no {EDGETPU_CUSTOM_OP}")
    tpu = describe_tflite(compiled)
    pairs = list(zip(cpu_desc.inputs, tpu.inputs, strict=False)) + list(
        zip(cpu_desc.outputs, tpu.outputs, strict=False)
    )
    same = len(cpu_desc.inputs) == len(tpu.inputs) and len(cpu_desc.outputs) == len(tpu.outputs)
    if not same or not all(a.same_as(b) for a, b in pairs):
        a = ", ".join(t.text() for t in cpu_desc.inputs + cpu_desc.outputs)
        b = ", ".join(t.text() for t in tpu.inputs + tpu.outputs)
        raise ArtifactError(
            f"--edgetpu {compiled} is not compiled from {cpu.name}: its tensors {b} differ from {a}"
        )


def input_spec(task: str, width: int, height: int, mean: list[float], std: list[float]) -> InputSpec:
    """How frames become the input of an added model: classifiers see the whole frame stretched,
    detectors and pose models a letterboxed one (no distortion)."""
    resize = "stretch" if task == "classification" else "letterbox"
    return InputSpec(width=width, height=height, color="rgb", resize=resize, mean=mean, std=std)


def write_manifest(
    dest: Path,
    name: str,
    task: str,
    layout: Layout,
    outputs: list[str],
    spec: InputSpec,
    artifacts: dict[str, Artifact],
    provenance: Provenance,
) -> Manifest:
    """The manifest of an added model, saved as dest/model.toml."""
    manifest = Manifest(
        name=name,
        task=task,
        decoder=layout.decoder,
        labels=layout.labels,
        outputs=outputs,
        keypoints=layout.keypoints,
        input=spec,
        decoder_options=layout.options,
        artifacts=artifacts,
        provenance=provenance,
    )
    manifest._dir = dest
    save_manifest(manifest)
    return manifest


def add_from_tflite(
    name: str,
    models_dir: Path,
    file: Path,
    task: str,
    labels_file: Path,
    edgetpu: Path | None = None,
    decoder: str | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    origin: str | None = None,
    licence: str = "unknown (not given to `lookout models add`)",
) -> tuple[Manifest, list[str]]:
    """Write models_dir/NAME/ (the files and model.toml); returns the manifest and notes to print."""
    file = Path(file)
    dest = Path(models_dir) / name
    if (dest / MANIFEST).exists():
        raise ConfigError(f"model {name!r} already exists in {models_dir} (remove {dest} first)")
    if not file.is_file():
        raise ArtifactError(f"--from-tflite {file}: no such file")
    if edgetpu_compiled(file):
        raise ArtifactError(
            f"--from-tflite {file} is compiled for the Edge TPU: give the CPU model and pass this one as --edgetpu"
        )
    desc = describe_tflite(file)
    if len(desc.inputs) != 1 or len(desc.inputs[0].shape) != 4 or desc.inputs[0].shape[3] != 3:
        shapes = ", ".join(t.text() for t in desc.inputs)
        raise ArtifactError(f"{file}: expected one NHWC image input with 3 channels, got {shapes}")
    inp = desc.inputs[0]
    labels = read_labels(labels_file)
    layout = add_output_layout(task, desc.outputs, labels, (inp.shape[1], inp.shape[2]), decoder)
    if edgetpu is not None:
        check_edgetpu_pair(file, desc, Path(edgetpu))
    notes = []
    d_mean, d_std, note = default_normalisation(inp)
    if mean is None or std is None:
        notes.append(f"input normalisation: {note}")
    if layout.experimental:
        notes.append(
            f"the {layout.decoder} decoder for this layout is experimental: it has only been checked on "
            "hand-built tensors, not on a real model (docs/models.md, 'Decoders and what they were checked "
            "on'); compare a few results by hand"
        )
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    dest.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copyfile(file, dest / file.name)
        artifacts = {
            "tflite": Artifact(
                file=file.name,
                sha256=sha256_file(dest / file.name),
                format="tflite",
                precision=desc.precision,
                origin=f"added by `lookout models add --from-tflite` from {file} at {when}",
            )
        }
        if edgetpu is not None:
            tpu = Path(edgetpu)
            shutil.copyfile(tpu, dest / tpu.name)
            artifacts["edgetpu"] = Artifact(
                file=tpu.name,
                sha256=sha256_file(dest / tpu.name),
                format="tflite",
                precision="int8",
                derived_from="tflite",
                origin=f"edgetpu_compiler output of the tflite artifact, added from {tpu} at {when}",
            )
        manifest = write_manifest(
            dest,
            name,
            task,
            layout,
            [o.name for o in desc.outputs],
            input_spec(task, inp.shape[2], inp.shape[1], mean or d_mean, std or d_std),
            artifacts,
            Provenance(
                origin=origin or f"{file} (as given to `lookout models add`), added {when}",
                licence=licence,
                built_by="lookout models add --from-tflite",
            ),
        )
        smoke_test(manifest)
    except Exception:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return manifest, notes


def smoke_test(manifest: Manifest) -> None:
    """Run the CPU artifact once on a grey frame and decode it: the manifest must describe a working model."""
    from app.runtimes.litert import LiteRTConfig, LiteRTRuntime
    from app.vision.decoders import make_decoder
    from app.vision.preprocess import Preprocessor

    rt = LiteRTRuntime()
    spec = rt.load(manifest.verify_artifact("tflite"), LiteRTConfig())
    try:
        inp = manifest.input
        pre = Preprocessor(spec, inp.width, inp.height, inp.color, inp.resize, inp.mean, inp.std)
        decoder = make_decoder(manifest.decoder, list(manifest.labels), **manifest.decoder_options)
        tensor, transform = pre(np.full((inp.height, inp.width, 3), 128, np.uint8))
        decoder(rt.infer(tensor), transform)
    finally:
        rt.close()
