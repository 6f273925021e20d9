"""LiteRT (TensorFlow Lite) on the CPU with XNNPACK and a thread count.

The interpreter comes from ``ai_edge_litert``, else ``tflite_runtime``, else ``tensorflow.lite``
(``import_litert``, shared with the Edge TPU runtime). Quantised inputs are described by the input
spec's scale/zero point; quantised outputs are dequantised to float32. Outputs are returned in the
graph's output order (the subgraph's output list).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
from pydantic import Field

from app.errors import ArtifactError, RuntimeUnavailable
from app.hostroots import HostRoots
from app.runtimes.base import Runtime, RuntimeConfig, TensorSpec, _find_spec
from app.runtimes.filecheck import check_cpu_tflite, check_tflite, first_line

LITERT_MODULES = ("ai_edge_litert", "tflite_runtime", "tensorflow")


@dataclass(frozen=True, slots=True)
class LiteRTModule:
    """The pieces of whichever LiteRT package is installed."""

    package: str
    Interpreter: Any
    load_delegate: Any


def import_litert() -> LiteRTModule:
    """Import the LiteRT interpreter: ai_edge_litert, else tflite_runtime, else tensorflow.lite."""
    try:
        from ai_edge_litert import interpreter as ai

        return LiteRTModule("ai_edge_litert", ai.Interpreter, ai.load_delegate)
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter as tr  # type: ignore[import-not-found]

        return LiteRTModule("tflite_runtime", tr.Interpreter, tr.load_delegate)
    except ImportError:
        pass
    try:
        import tensorflow as tf  # type: ignore[import-not-found]

        return LiteRTModule("tensorflow", tf.lite.Interpreter, tf.lite.experimental.load_delegate)
    except ImportError:
        raise RuntimeUnavailable(
            "LiteRT is not installed: none of ai_edge_litert, tflite_runtime, tensorflow (pip install ai-edge-litert)"
        ) from None


def _spec(d: dict[str, Any]) -> TensorSpec:
    dtype = np.dtype(d["dtype"]).name
    scale, zero = d.get("quantization", (0.0, 0))
    quant = dtype in ("int8", "uint8", "int16") and scale
    return TensorSpec(
        name=str(d["name"]),
        shape=tuple(int(s) for s in d["shape"]),
        dtype=dtype,
        layout="NHWC",
        scale=float(scale) if quant else None,
        zero_point=int(zero) if quant else None,
    )


class LiteRTOptions(RuntimeConfig):
    """Options of every LiteRT-based runtime (the CPU one and the Edge TPU one)."""

    xnnpack: bool = Field(default=True, description="apply LiteRT's default XNNPACK CPU delegate")


class LiteRTConfig(LiteRTOptions):
    type: Literal["tflite"] = "tflite"


OptionsT = TypeVar("OptionsT", bound=LiteRTOptions)


class LiteRTBase(Runtime[OptionsT]):
    """A LiteRT interpreter (XNNPACK applied by the default op resolver); subclasses add delegates."""

    requires: ClassVar[tuple[str, ...]] = LITERT_MODULES
    #: True for runtimes whose delegate executes accelerator custom ops (a compiled Edge TPU model).
    delegates_custom_ops: ClassVar[bool] = False

    def __init__(self, roots: HostRoots | None = None) -> None:
        super().__init__(roots)
        self._it: Any = None
        self._in_index = 0
        self._outs: list[tuple[int, float | None, int]] = []
        self._delegates: list[Any] = []
        self.artifact: Path | None = None

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """Any one of the LiteRT packages is enough."""
        for mod in LITERT_MODULES:
            if _find_spec(mod) is not None:
                return True, f"ok ({mod})"
        return False, "python module ai_edge_litert (or tflite_runtime, tensorflow) not installed"

    def _delegates_for(self, lite: LiteRTModule, options: OptionsT) -> list[Any]:
        """Delegates to attach (none on the CPU; the Edge TPU runtime adds libedgetpu)."""
        return []

    def _op_resolver(self, lite: LiteRTModule, options: OptionsT) -> dict[str, Any]:
        if options.xnnpack or lite.package == "tensorflow":
            return {}
        from ai_edge_litert.interpreter import OpResolverType

        return {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}

    def load(self, artifact: Path, options: OptionsT) -> TensorSpec:
        artifact = Path(artifact)
        check_tflite(artifact) if self.delegates_custom_ops else check_cpu_tflite(artifact)
        lite = import_litert()
        self._delegates = self._delegates_for(lite, options)
        extra = self._op_resolver(lite, options) if lite.package == "ai_edge_litert" else {}
        try:
            it = lite.Interpreter(
                model_path=str(artifact),
                num_threads=int(options.threads),
                experimental_delegates=self._delegates or None,
                **extra,
            )
            it.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ArtifactError(f"{artifact}: cannot load .tflite model: {first_line(exc)}") from None
        inputs = it.get_input_details()
        if len(inputs) != 1:
            raise ArtifactError(f"{artifact}: expected one input tensor, the model has {len(inputs)}")
        self._it = it
        self.artifact = artifact
        self._in_index = int(inputs[0]["index"])
        self.input_spec = _spec(inputs[0])
        self.output_specs = [_spec(d) for d in it.get_output_details()]
        self._outs = [
            (int(d["index"]), s.scale, int(s.zero_point or 0))
            for d, s in zip(it.get_output_details(), self.output_specs, strict=True)
        ]
        return self.input_spec

    def infer(self, x: np.ndarray) -> list[np.ndarray]:
        it = self._it
        it.set_tensor(self._in_index, x)
        it.invoke()
        out = []
        for index, scale, zero in self._outs:
            y = it.get_tensor(index)
            if scale is not None:
                y = (y.astype(np.float32) - np.float32(zero)) * np.float32(scale)
            elif y.dtype != np.float32:
                y = y.astype(np.float32)
            out.append(y)
        return out

    def close(self) -> None:
        self._it = None
        self._delegates = []


class LiteRTRuntime(LiteRTBase[LiteRTConfig]):
    """LiteRT on the CPU."""

    name: ClassVar[str] = "tflite"
    config_model: ClassVar[type[RuntimeConfig]] = LiteRTConfig
    default_artifact: ClassVar[str] = "tflite"
