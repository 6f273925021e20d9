"""Model zoo: manifests (models/<name>/model.toml), artifact lookup, sha256 verification, import.

A manifest names a model's task, decoder, input normalisation, output order and its artifacts (one per
runtime format) with their sha256 and provenance. See docs/models.md.
"""

from __future__ import annotations

import hashlib
import shutil
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from app.errors import ArtifactError
from app.runtimes.filecheck import EDGETPU_CUSTOM_OP
from app.tomlwrite import toml_key, toml_value

MANIFEST = "model.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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

    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    format: Literal["tflite", "pte", "ptl", "onnx"]
    precision: Literal["fp32", "fp16", "int8"]
    derived_from: str = ""
    build_input_sha256: str = ""
    origin: str = ""


class Provenance(_Strict):
    origin: str
    licence: str
    licence_file: str = ""
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

    def artifact_path(self, key: str) -> Path:
        """Path of artifact `key`; ArtifactError naming the available keys when absent."""
        return self._dir / self.artifact(key).file

    def verify_artifact(self, key: str) -> Path:
        """Path of artifact `key` after checking it exists and its sha256 matches the manifest."""
        art = self.artifact(key)
        path = self._dir / art.file
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
    p = Path(name_or_dir)
    if p.suffix == ".toml" and p.is_file():
        return p
    if p.is_dir():
        return p / MANIFEST
    if isinstance(name_or_dir, str) and "/" not in name_or_dir and name_or_dir not in ("", ".", ".."):
        return Path(models_dir) / name_or_dir / MANIFEST
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
        known = ", ".join(m.name for m in list_manifests(models_dir)) if Path(models_dir).is_dir() else ""
        hint = f" (known models: {known})" if known else ""
        raise ArtifactError(f"missing manifest {path}{hint}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"bad TOML in {path}: {exc}") from None
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        raise ArtifactError(f"invalid manifest {path}: {_one_line(exc)}") from None
    manifest._dir = path.parent
    return manifest


def list_manifests(models_dir: Path) -> list[Manifest]:
    """Every models_dir/*/model.toml, sorted by name."""
    root = Path(models_dir)
    if not root.is_dir():
        return []
    return [load_manifest(p.parent, root) for p in sorted(root.glob(f"*/{MANIFEST}"))]


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
