"""ExecuTorch: a ``.pte`` program (XNNPACK-delegated) run by ExecuTorch's Python runtime bindings.

Threads: ExecuTorch's XNNPACK backend runs on one process-wide pthreadpool. Its size is set with
``executorch.extension.pybindings.portable_lib._unsafe_reset_threadpool`` (experimental API, unsafe
while another method executes), so every ExecuTorch runtime in the process shares the last-set count;
resets and executions are serialised by a module lock. The input is NHWC float32 like the .tflite
model (the model builder keeps the TFLite layout); outputs come in the program's output order.
"""

from __future__ import annotations

import importlib
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from app.errors import ArtifactError, RuntimeUnavailable
from app.hostroots import HostRoots
from app.measure.hostinfo import arm_cpu_features
from app.runtimes.base import Runtime, RuntimeConfig, Substitute, TensorSpec
from app.runtimes.filecheck import check_pte, first_line

if TYPE_CHECKING:
    from app.zoo import Manifest

DOT_PRODUCT = "asimddp"  # /proc/cpuinfo feature: ARMv8.2 SDOT/UDOT (Pi 5's Cortex-A76 has it, Pi 4's A72 not)
FP32_ARTIFACT = "pte"

#: executorch ScalarType codes (runtime/core/portable_type/scalar_type.h) -> numpy dtype names
SCALAR_TYPES = {
    0: "uint8",
    1: "int8",
    2: "int16",
    3: "int32",
    4: "int64",
    5: "float16",
    6: "float32",
    7: "float64",
    11: "bool",
}
_POOL_LOCK = threading.Lock()
_pool_threads: int | None = None  # the last size set, where the bindings cannot tell


class ExecuTorchConfig(RuntimeConfig):
    type: Literal["executorch"] = "executorch"
    threads: int = Field(
        default=1,
        ge=1,
        le=64,
        description="XNNPACK threadpool size; process-wide in ExecuTorch (the last runtime loaded sets it)",
    )
    method: str = Field(default="forward", description="program method to run")


def _bindings() -> Any:
    """ExecuTorch's pybindings module (the objects behind ``executorch.runtime``).

    ``executorch.runtime`` reaches them through ``portable_lib``, which also imports ``executorch.exir``
    (the whole export stack, seconds of imports, figures in docs/runtimes.md; and dependencies a device
    install leaves out). Importing the extension directly after torch gives the same
    ``_load_program``/``ExecuTorchProgram`` objects far sooner: ``_C`` since ExecuTorch 1.1,
    ``_portable_lib`` in 1.0 (the Raspberry Pi's, beside PyPI's last aarch64 CPU torch);
    portable_lib is the fallback should the extension move.
    """
    try:
        import torch  # noqa: F401 - the extension links against libtorch's kernels
    except ImportError as exc:
        raise RuntimeUnavailable(
            f"ExecuTorch needs torch ({first_line(exc)}): pip install torch executorch"
        ) from None
    for name in ("_C", "_portable_lib"):
        try:
            return importlib.import_module(f"executorch.extension.pybindings.{name}")
        except ImportError:
            continue
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from executorch.extension.pybindings import portable_lib as bindings
    except ImportError as exc:
        raise RuntimeUnavailable(
            f"ExecuTorch is not installed or broken ({first_line(exc)}): pip install executorch"
        ) from None
    return bindings


def _layout(shape: tuple[int, ...]) -> Literal["NHWC", "NCHW"]:
    return "NCHW" if len(shape) == 4 and shape[1] in (1, 3) and shape[3] not in (1, 3) else "NHWC"


def set_threads(n: int) -> int:
    """Resize ExecuTorch's shared threadpool to n threads (if different); returns the count in effect."""
    global _pool_threads
    b = _bindings()
    with _POOL_LOCK:
        count = getattr(b, "_threadpool_get_thread_count", None)  # absent in ExecuTorch 1.0
        current = count() if count else _pool_threads
        if current != n:
            b._unsafe_reset_threadpool(n)
            _pool_threads = n
        return int(count()) if count else n


class ExecuTorchRuntime(Runtime[ExecuTorchConfig]):
    """ExecuTorch program on the CPU (XNNPACK for the delegated parts, portable kernels for the rest)."""

    name: ClassVar[str] = "executorch"
    config_model: ClassVar[type[RuntimeConfig]] = ExecuTorchConfig
    default_artifact: ClassVar[str] = "pte"
    requires: ClassVar[tuple[str, ...]] = ("executorch", "torch")

    def __init__(self, roots: HostRoots | None = None) -> None:
        super().__init__(roots)
        self._program: Any = None
        self._method: Any = None
        self._torch: Any = None
        self.threads_in_effect: int | None = None

    def unusable_reason(
        self, options: ExecuTorchConfig, manifest: Manifest, *, probe: bool = True
    ) -> str | None:
        """The libraries, and for an int8 program the Arm dot product its XNNPACK kernels use."""
        why = super().unusable_reason(options, manifest, probe=probe)
        if why:
            return why
        key = options.artifact or self.default_artifact
        art = manifest.artifacts.get(key)
        features = arm_cpu_features(self.roots.base)
        if (
            art is not None
            and art.precision == "int8"
            and features is not None
            and DOT_PRODUCT not in features
        ):
            return (
                f"artifact {key!r} is int8 and ExecuTorch's XNNPACK runs it with the ARMv8.2 dot product "
                f"({DOT_PRODUCT}), which this CPU lacks (a Raspberry Pi 4's Cortex-A72): the process would die "
                "with SIGILL"
            )
        return None

    def substitute(self, options: ExecuTorchConfig, manifest: Manifest, reason: str) -> Substitute | None:
        """The model's fp32 program on the same runtime, when an int8 one cannot run on this CPU."""
        if DOT_PRODUCT in reason and FP32_ARTIFACT in manifest.artifacts:
            return Substitute(
                self.name, options.model_copy(update={"artifact": FP32_ARTIFACT}), FP32_ARTIFACT
            )
        return None

    def load(self, artifact: Path, options: ExecuTorchConfig) -> TensorSpec:
        artifact = Path(artifact)
        check_pte(artifact)  # foreign bytes can abort the process inside ExecuTorch's logger
        b = _bindings()
        import torch

        self._torch = torch
        method_name = options.method
        self.threads_in_effect = set_threads(int(options.threads))
        try:  # what executorch.runtime.Runtime.load_program does for a path
            program = b._load_program(
                str(artifact),
                enable_etdump=False,
                debug_buffer_size=0,
                program_verification=b.Verification.InternalConsistency,
            )
        except RuntimeError as exc:
            raise ArtifactError(
                f"{artifact}: corrupt or truncated ExecuTorch program ({first_line(exc)})"
            ) from None
        names = {program.get_method_name(i) for i in range(program.num_methods())}
        if method_name not in names:
            have = ", ".join(sorted(names)) or "none"
            raise ArtifactError(f"{artifact}: no method {method_name!r} in the program (has: {have})")
        try:
            method = program.load_method(method_name)
        except RuntimeError as exc:
            raise ArtifactError(
                f"{artifact}: cannot load method {method_name!r} ({first_line(exc)}); a backend or operator may be missing"
            ) from None
        meta = method.method_meta()
        if meta.num_inputs() != 1:
            raise ArtifactError(f"{artifact}: expected one input tensor, the program has {meta.num_inputs()}")
        self.input_spec = self._spec(meta.input_tensor_meta(0), "input")
        self.output_specs = [
            self._spec(meta.output_tensor_meta(i), f"output_{i}") for i in range(meta.num_outputs())
        ]
        self._program, self._method = program, method
        return self.input_spec

    @staticmethod
    def _spec(info: Any, name: str) -> TensorSpec:
        shape = tuple(int(s) for s in info.sizes())
        return TensorSpec(
            name=name,
            shape=shape,
            dtype=SCALAR_TYPES.get(int(info.dtype()), str(info.dtype())),
            layout=_layout(shape),
        )

    def infer(self, x: np.ndarray) -> list[np.ndarray]:
        t = self._torch.from_numpy(np.ascontiguousarray(x))
        with _POOL_LOCK:
            outs = self._method([t])
        return [o.numpy() if o.dtype == self._torch.float32 else o.float().numpy() for o in outs]

    def close(self) -> None:
        self._method = None
        self._program = None
