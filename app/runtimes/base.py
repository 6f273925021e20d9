"""The runtime contract every inference backend implements, and the plugin registry.

A runtime is a class in its own module, registered under the entry-point group
``lookout.runtimes``. Its module must import cheaply: heavy libraries (torch, executorch,
LiteRT) are imported inside ``load()``, never at module import.

Contract:
  ``load(artifact, options)`` -> input ``TensorSpec`` (also kept as ``.input_spec``; ``.output_specs``
  lists the outputs), ``options`` being the runtime's own typed config; ``infer(x)`` -> list of float32
  ndarrays, dequantised, in the order of the model graph's outputs (the build script keeps the same order
  for every artifact of a model); ``close()`` frees the interpreter.

Whether a runtime can run here, and what to run instead when it cannot, is the plugin's own decision:
``unusable_reason`` and ``substitute`` (the Edge TPU plugin falls back to the model's CPU artifact).
Selection (app/runtimes/selection.py) and `lookout doctor` both ask through these two hooks, so a
third-party accelerator plugin falls back the same way without touching the core.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, Field

from app.finite import MODEL_CONFIG
from app.hostroots import HostRoots

if TYPE_CHECKING:
    from app.zoo import Manifest

Layout = Literal["NHWC", "NCHW"]


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """Shape, dtype, layout and quantisation of one tensor. scale/zero_point are None for float tensors."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    layout: Layout = "NHWC"
    scale: float | None = None
    zero_point: int | None = None

    @property
    def quantized(self) -> bool:
        return self.scale is not None and self.dtype in ("int8", "uint8")

    @property
    def hw(self) -> tuple[int, int]:
        """(height, width) of an image tensor."""
        if self.layout == "NHWC":
            return self.shape[1], self.shape[2]
        return self.shape[2], self.shape[3]


class RuntimeConfig(BaseModel):
    """Options common to every runtime; each runtime subclasses it with a Literal `type`."""

    model_config = MODEL_CONFIG
    type: str = Field(description="the runtime's registered name (each subclass narrows it to a Literal)")
    threads: int = Field(default=1, ge=1, le=64, description="CPU threads for inference")
    artifact: str | None = Field(default=None, description="manifest artifact key; default per runtime")
    isolate: bool = Field(
        default=False,
        description="run the runtime in a child process (imports and crashes stay there; tensors via shared memory)",
    )


#: Options every runtime has and that mean the same to each: kept when the runtime type changes.
SHARED_RUNTIME_OPTIONS = ("threads", "isolate")

C = TypeVar("C", bound=RuntimeConfig)


def switch_runtime(
    new_type: str,
    current: RuntimeConfig | dict[str, Any],
    configured: RuntimeConfig | dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The runtime table to use when switching to `new_type`: the --runtime flag, a hot swap, a bench
    run and a plugin's substitute all decide through this one rule.

    Same type: the current table unchanged. Otherwise start from the configured table when it is of
    that type (so an Edge TPU's device, delegate and fallback survive a swap away and back), else from
    the type's defaults, and carry the options every runtime shares (threads, isolate) from the current
    one. Another type's own keys (its artifact key, an Edge TPU device) never cross over.
    """
    cur = current.model_dump() if isinstance(current, RuntimeConfig) else dict(current)
    conf = configured.model_dump() if isinstance(configured, RuntimeConfig) else dict(configured or cur)
    if cur.get("type", "tflite") == new_type:
        return {**cur, "type": new_type}
    base = conf if conf.get("type", "tflite") == new_type else {}
    shared = {k: cur[k] for k in SHARED_RUNTIME_OPTIONS if k in cur}
    return {**base, **shared, "type": new_type}


@dataclass(frozen=True, slots=True)
class Substitute:
    """What to run instead of a runtime that cannot run here: a registered runtime, its options, an artifact."""

    runtime: str
    options: RuntimeConfig
    artifact: str


class Runtime(ABC, Generic[C]):
    """Base class of inference runtimes; `C` is the runtime's own config model."""

    name: ClassVar[str]
    config_model: ClassVar[type[RuntimeConfig]]
    default_artifact: ClassVar[str]
    #: Python modules whose presence `lookout doctor` checks (found without importing them).
    requires: ClassVar[tuple[str, ...]] = ()

    input_spec: TensorSpec
    output_specs: list[TensorSpec]

    def __init__(self, roots: HostRoots | None = None) -> None:
        self.roots = roots or HostRoots.from_env()

    @abstractmethod
    def load(self, artifact: Path, options: C) -> TensorSpec:
        """Load the artifact; return the input spec. Raise ArtifactError / RuntimeUnavailable."""

    def unusable_reason(self, options: C, manifest: Manifest, *, probe: bool = True) -> str | None:
        """None when this runtime can run `manifest` here, else a one-line reason (without loading it).

        `probe` allows slower checks (a child process, opening a device). Default: the libraries exist.
        """
        ok, why = self.availability()
        return None if ok else f"runtime {self.name!r} is unavailable: {why}"

    def with_manifest(self, options: C, manifest: Manifest) -> C:
        """Fill options the artifact format cannot carry itself from the manifest. Default: none."""
        return options

    def substitute(self, options: C, manifest: Manifest, reason: str) -> Substitute | None:
        """What to run instead when this runtime cannot run (`reason`); None to fail. Default: fail.

        A plugin may raise RuntimeUnavailable itself to say why it will not substitute (a config choice).
        """
        return None

    @abstractmethod
    def infer(self, x: np.ndarray) -> list[np.ndarray]:
        """Run one inference on a tensor matching `input_spec`; return dequantised float32 outputs."""

    def close(self) -> None:
        """Release the interpreter."""

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """(True, "ok") when the runtime's libraries can be found, else (False, reason). Does not import them."""
        missing = [m for m in cls.requires if _find_spec(m) is None]
        if missing:
            return False, f"python module {' or '.join(missing)} not installed"
        return True, "ok"


def _find_spec(module: str) -> object | None:
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class RegisteredRuntime:
    """One entry of the registry: the class, or the reason it could not be imported."""

    name: str
    target: str
    cls: type[Runtime] | None
    error: str | None


def discover() -> dict[str, RegisteredRuntime]:
    """All runtimes registered under the entry-point group, including those whose module fails to import."""
    from app import plugins

    return {
        name: RegisteredRuntime(p.name, p.target, p.obj, p.error)
        for name, p in plugins.discover(plugins.RUNTIMES).items()
    }


def get_runtime_class(name: str) -> type[Runtime]:
    """The runtime class registered as `name`; a LookoutError naming the choices otherwise."""
    from app import plugins
    from app.errors import RuntimeUnavailable

    return plugins.load(plugins.RUNTIMES, name, RuntimeUnavailable)
