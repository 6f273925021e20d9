"""Model zoo: manifests (models/<name>/model.toml), artifact lookup, sha256 verification, import.

A manifest names a model's task, decoder, input normalisation, output order and its artifacts (one per
runtime format) with their sha256 and provenance. See docs/models.md.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
)

from app.errors import ArtifactError
from app.finite import MODEL_CONFIG
from app.runtimes.filecheck import EDGETPU_CUSTOM_OP
from app.tomlwrite import toml_key, toml_value

MANIFEST = "model.toml"
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")

log = logging.getLogger(__name__)


def check_model_name(name: str) -> str:
    """`name` if it is a model name (one folder of the models directory, no path), else ArtifactError."""
    if not isinstance(name, str) or not MODEL_NAME.match(name) or ".." in name:
        raise ArtifactError(
            f"model {name!r}: give a model name from the models directory "
            "(letters, digits, '.', '_', '+', '-'; no paths)"
        )
    return name


def _inside_model_folder(value: str) -> str:
    """A manifest's file reference: relative, no '..', so it stays inside the model's folder."""
    p = PurePosixPath(value)
    if value and (p.is_absolute() or ".." in p.parts or "\\" in value or "\x00" in value):
        raise ValueError(f"{value!r} must be a file name inside the model folder")
    return value


InFolder = Annotated[str, AfterValidator(_inside_model_folder)]


class _Strict(BaseModel):
    model_config = MODEL_CONFIG


class InputSpec(_Strict):
    """How a frame becomes the model's float input: (pixel - mean) / std, channels in `color` order."""

    width: int = Field(ge=1)
    height: int = Field(ge=1)
    color: Literal["rgb", "bgr"] = "rgb"
    resize: Literal["letterbox", "stretch"] = "letterbox"
    mean: list[float] = Field(default_factory=lambda: [0.0, 0.0, 0.0], min_length=3, max_length=3)
    std: list[float] = Field(default_factory=lambda: [1.0, 1.0, 1.0], min_length=3, max_length=3)


class Artifact(_Strict):
    """One file of a model for one runtime format."""

    file: InFolder
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    format: Literal["tflite", "pte", "ptl", "onnx"]
    precision: Literal["fp32", "fp16", "int8"]
    derived_from: str = ""
    build_input_sha256: str = ""
    origin: str = ""


class Provenance(_Strict):
    origin: str
    licence: str
    licence_file: InFolder = ""
    built_by: str = ""
    notes: str = ""


class Manifest(_Strict):
    """A parsed model.toml; `dir` is the folder it was loaded from."""

    name: str
    task: Literal["detection", "classification", "pose"]
    decoder: str = Field(description="a decoder registered in the entry-point group lookout.decoders")
    labels: list[str]
    outputs: list[str] = Field(default_factory=list)
    keypoints: list[str] = Field(default_factory=list)  # names of the decoder's keypoints, in order
    input: InputSpec
    decoder_options: dict[str, Any] = Field(default_factory=dict)
    artifacts: dict[str, Artifact] = Field(default_factory=dict)
    provenance: Provenance
    _dir: Path = PrivateAttr(default=Path("."))

    @field_validator("decoder")
    @classmethod
    def _registered_decoder(cls, name: str) -> str:
        from app import plugins

        known = plugins.names(plugins.DECODERS)
        if name not in known:
            raise ValueError(f"{name!r} is not registered in lookout.decoders ({', '.join(known) or 'none'})")
        return name

    @property
    def dir(self) -> Path:
        return self._dir

    @property
    def path(self) -> Path:
        return self._dir / MANIFEST

    def artifact(self, key: str) -> Artifact:
        try:
            return self.artifacts[key]
        except KeyError:
            have = ", ".join(sorted(self.artifacts)) or "none"
            raise ArtifactError(
                f"model {self.name!r} has no artifact {key!r} (available: {have}) in {self.path}"
            ) from None

    def file_path(self, name: str) -> Path:
        """`name` (a file the manifest names) under this model's folder; ArtifactError when it resolves
        outside it (a symlink out of the folder)."""
        path = self._dir / name
        if not path.resolve().is_relative_to(self._dir.resolve()):
            raise ArtifactError(f"{path} resolves outside the model folder {self._dir} (model {self.name!r})")
        return path

    def artifact_path(self, key: str) -> Path:
        """Path of artifact `key`; ArtifactError naming the available keys when absent."""
        return self.file_path(self.artifact(key).file)

    def verify_artifact(self, key: str) -> Path:
        """Path of artifact `key` after checking it exists and its sha256 matches the manifest."""
        art = self.artifact(key)
        path = self.file_path(art.file)
        if not path.is_file():
            raise ArtifactError(f"missing file {path} (artifact {key!r} of model {self.name!r})")
        got = sha256_file(path)
        if got != art.sha256:
            raise ArtifactError(f"sha256 mismatch for {path}: expected {art.sha256} got {got}")
        return path


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _manifest_file(name_or_dir: str | Path, models_dir: Path) -> Path:
    """A model name (a str without a separator) is always models_dir/<name>, never relative to the working
    directory; a Path or a str with a separator is a local folder or model.toml (CLI and config only:
    remote commands give names, see check_model_name)."""
    if isinstance(name_or_dir, str) and "/" not in name_or_dir and "\\" not in name_or_dir:
        return Path(models_dir) / name_or_dir / MANIFEST
    p = Path(name_or_dir)
    if p.suffix == ".toml" and p.is_file():
        return p
    return p / MANIFEST


def _one_line(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key {loc!r}")
        elif err["type"] == "missing":
            parts.append(f"missing key {loc!r}")
        else:
            parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def load_manifest(name_or_dir: str | Path, models_dir: Path) -> Manifest:
    """Load a manifest by model name (models_dir/<name>/model.toml), folder or file path."""
    path = _manifest_file(name_or_dir, models_dir)
    if not path.is_file():
        raise ArtifactError(f"missing manifest {path}{_known_hint(models_dir)}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"bad TOML in {path}: {exc}") from None
    except OSError as exc:
        raise ArtifactError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        raise ArtifactError(f"invalid manifest {path}: {_one_line(exc)}") from None
    manifest._dir = path.parent
    return manifest


@dataclass
class ModelScan:
    """The models directory: manifests that load, and for each folder whose manifest does not, why."""

    manifests: list[Manifest] = field(default_factory=list)
    broken: dict[str, str] = field(default_factory=dict)  # folder name -> one-line error


def scan_models(models_dir: Path) -> ModelScan:
    """Every models_dir/*/model.toml, sorted; a broken one is reported by folder, the rest still load."""
    scan = ModelScan()
    root = Path(models_dir)
    if not root.is_dir():
        return scan
    for p in sorted(root.glob(f"*/{MANIFEST}")):
        try:
            scan.manifests.append(load_manifest(p.parent, root))
        except ArtifactError as exc:
            scan.broken[p.parent.name] = str(exc)
    return scan


def list_manifests(models_dir: Path) -> list[Manifest]:
    """Every models_dir/*/model.toml that loads, sorted by name (broken ones logged and skipped)."""
    scan = scan_models(models_dir)
    for folder, why in scan.broken.items():
        log.warning("model %s skipped: %s", folder, why)
    return scan.manifests


def _known_hint(models_dir: Path) -> str:
    scan = scan_models(models_dir)
    parts = []
    if scan.manifests:
        parts.append("known models: " + ", ".join(m.name for m in scan.manifests))
    if scan.broken:
        parts.append("unreadable manifests: " + ", ".join(scan.broken))
    return f" ({'; '.join(parts)})" if parts else ""


# --- writing -------------------------------------------------------------------------------------
def _table(header: str, data: dict[str, Any]) -> list[str]:
    lines = [f"[{header}]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in data.items() if v is not None]
    return [*lines, ""]


def dumps_manifest(manifest: Manifest) -> str:
    """The manifest as TOML in the documented layout (top-level keys, then tables)."""
    d = manifest.model_dump()
    keys = ["name", "task", "decoder", "labels", "outputs"] + (["keypoints"] if d["keypoints"] else [])
    lines = [f"{k} = {toml_value(d[k])}" for k in keys]
    lines.append("")
    lines += _table("input", d["input"])
    lines += _table("decoder_options", d["decoder_options"])
    for key, art in d["artifacts"].items():
        lines += _table(f"artifacts.{toml_key(key)}", art)
    lines += _table("provenance", d["provenance"])
    return "\n".join(lines).rstrip() + "\n"


def save_manifest(manifest: Manifest) -> Path:
    """Write manifest.dir/model.toml atomically."""
    text = dumps_manifest(manifest)
    tmp = manifest.path.with_suffix(".toml.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(manifest.path)
    return manifest.path


def build_key(source: Path, recipe: str) -> str:
    """Build-cache key: sha256 of the source artifact's bytes followed by the recipe version string."""
    h = hashlib.sha256()
    h.update(Path(source).read_bytes())
    h.update(recipe.encode())
    return h.hexdigest()


def import_edgetpu(manifest: Manifest, file: Path) -> Artifact:
    """Copy a compiled *_edgetpu.tflite into the model folder as artifact `edgetpu` and save the manifest."""
    file = Path(file)
    if not file.is_file():
        raise ArtifactError(f"missing file {file}")
    data = file.read_bytes()
    if EDGETPU_CUSTOM_OP.encode() not in data:
        raise ArtifactError(
            f"{file} is not an Edge TPU model: it has no {EDGETPU_CUSTOM_OP} (run edgetpu_compiler on it first)"
        )
    if data[4:8] != b"TFL3":
        raise ArtifactError(f"{file} is not a .tflite flatbuffer (no TFL3 identifier)")
    dest_name = file.name if file.name.endswith("_edgetpu.tflite") else f"{file.stem}_edgetpu.tflite"
    dest = manifest.dir / dest_name
    if dest.resolve() != file.resolve():
        shutil.copyfile(file, dest)
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    art = Artifact(
        file=dest_name,
        sha256=sha256_file(dest),
        format="tflite",
        precision="int8",
        derived_from="tflite-int8" if "tflite-int8" in manifest.artifacts else "",
        origin=f"edgetpu_compiler output imported by `lookout models import` from {file.name} at {when}",
    )
    manifest.artifacts["edgetpu"] = art
    save_manifest(manifest)
    return art
