"""PyTorch Mobile's lite interpreter (``.ptl``): deprecated upstream, still what many mobile apps ship.

A ``.ptl`` file does not record its input shape, so the config carries ``input_shape`` (select.py
fills it from the model manifest: NHWC ``[1, height, width, 3]``, the layout the builder keeps) and
``load`` runs one inference on zeros to check the model accepts it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from app.errors import ArtifactError, RuntimeUnavailable
from app.runtimes.base import Runtime, RuntimeConfig, TensorSpec
from app.runtimes.filecheck import check_zip, first_line


class TorchScriptLiteConfig(RuntimeConfig):
    type: Literal["torchscript-lite"] = "torchscript-lite"
    threads: int = Field(
        default=1, ge=1, le=64, description="torch intra-op threads (process-wide: torch.set_num_threads)"
    )
    input_shape: tuple[int, ...] | None = Field(
        default=None,
        description="NHWC input shape; the .ptl file does not record it (default: from the model manifest)",
    )


class TorchScriptLiteRuntime(Runtime):
    """torch.jit.mobile lite interpreter on the CPU."""

    name: ClassVar[str] = "torchscript-lite"
    config_model: ClassVar[type[RuntimeConfig]] = TorchScriptLiteConfig
    default_artifact: ClassVar[str] = "ptl"
    requires: ClassVar[tuple[str, ...]] = ("torch",)

    def __init__(self) -> None:
        self._module: Any = None
        self._torch: Any = None

    def load(self, artifact: Path, options: RuntimeConfig) -> TensorSpec:
        artifact = Path(artifact)
        check_zip(artifact, "PyTorch lite-interpreter .ptl")
        shape = getattr(options, "input_shape", None)
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
