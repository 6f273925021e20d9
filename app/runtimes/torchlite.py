"""PyTorch Mobile's lite interpreter (``.ptl``): deprecated upstream, still what many mobile apps ship.

A ``.ptl`` file does not record its input shape, so the config carries ``input_shape`` (``with_manifest``
fills it from the model manifest: NHWC ``[1, height, width, 3]``, the layout the builder keeps) and
``load`` runs one inference on zeros to check the model accepts it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from app.errors import ArtifactError, RuntimeUnavailable
from app.hostroots import HostRoots
from app.runtimes.base import Runtime, RuntimeConfig, TensorSpec
from app.runtimes.filecheck import check_zip, first_line

if TYPE_CHECKING:
    from app.zoo import Manifest


class TorchScriptLiteConfig(RuntimeConfig):
    type: Literal["torchscript-lite"] = "torchscript-lite"
    threads: int = Field(
        default=1, ge=1, le=64, description="torch intra-op threads (process-wide: torch.set_num_threads)"
    )
    input_shape: tuple[int, ...] | None = Field(
        default=None,
        description="NHWC input shape; the .ptl file does not record it (default: from the model manifest)",
    )


class TorchScriptLiteRuntime(Runtime[TorchScriptLiteConfig]):
    """torch.jit.mobile lite interpreter on the CPU."""

    name: ClassVar[str] = "torchscript-lite"
    config_model: ClassVar[type[RuntimeConfig]] = TorchScriptLiteConfig
    default_artifact: ClassVar[str] = "ptl"
    requires: ClassVar[tuple[str, ...]] = ("torch",)

    def __init__(self, roots: HostRoots | None = None) -> None:
        super().__init__(roots)
        self._module: Any = None
        self._torch: Any = None

    def with_manifest(self, options: TorchScriptLiteConfig, manifest: Manifest) -> TorchScriptLiteConfig:
        """The .ptl file does not record its input shape: NHWC [1, height, width, 3] from the manifest."""
        if options.input_shape is not None:
            return options
        return options.model_copy(update={"input_shape": (1, manifest.input.height, manifest.input.width, 3)})

    def load(self, artifact: Path, options: TorchScriptLiteConfig) -> TensorSpec:
        artifact = Path(artifact)
        check_zip(artifact, "PyTorch lite-interpreter .ptl")
        shape = options.input_shape
        if not shape:
            raise ArtifactError(
                f"{artifact}: the .ptl format does not record its input shape; set runtime.input_shape"
            )
        try:
            import torch
            from torch.jit.mobile import _load_for_lite_interpreter
        except ImportError as exc:
            raise RuntimeUnavailable(
                f"PyTorch is not installed ({first_line(exc)}): pip install torch"
            ) from None
        torch.set_num_threads(int(options.threads))
        try:
            module = _load_for_lite_interpreter(str(artifact))
        except (RuntimeError, ValueError) as exc:
            raise ArtifactError(f"{artifact}: corrupt or truncated .ptl ({first_line(exc)})") from None
        self._module, self._torch = module, torch
        self.input_spec = TensorSpec("input", tuple(int(s) for s in shape), "float32", "NHWC")
        try:
            outs = self.infer(np.zeros(self.input_spec.shape, np.float32))
        except Exception as exc:
            raise ArtifactError(
                f"{artifact}: the model does not accept input shape {self.input_spec.shape} ({first_line(exc)})"
            ) from None
        self.output_specs = [TensorSpec(f"output_{i}", tuple(o.shape), "float32") for i, o in enumerate(outs)]
        return self.input_spec

    def infer(self, x: np.ndarray) -> list[np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            out = self._module(torch.from_numpy(np.ascontiguousarray(x)))
        outs = out if isinstance(out, list | tuple) else [out]
        return [o.detach().float().numpy() for o in outs]

    def close(self) -> None:
        self._module = None
