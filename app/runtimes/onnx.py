"""ONNX Runtime on the CPU (optional extra ``lookout[onnx]``); unavailable with a reason when not installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from app.errors import ArtifactError, RuntimeUnavailable
from app.hostroots import HostRoots
from app.runtimes.base import Runtime, RuntimeConfig, TensorSpec
from app.runtimes.filecheck import first_line, read_head

ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(float16)": "float16",
}


class OnnxConfig(RuntimeConfig):
    type: Literal["onnxruntime"] = "onnxruntime"


def _spec(node: Any) -> TensorSpec:
    shape = tuple(int(s) if isinstance(s, int) else 1 for s in node.shape)
    layout = "NCHW" if len(shape) == 4 and shape[1] == 3 and shape[3] != 3 else "NHWC"
    return TensorSpec(node.name, shape, ORT_TYPES.get(node.type, node.type), layout)


class OnnxRuntime(Runtime[OnnxConfig]):
    name: ClassVar[str] = "onnxruntime"
    config_model: ClassVar[type[RuntimeConfig]] = OnnxConfig
    default_artifact: ClassVar[str] = "onnx"
    requires: ClassVar[tuple[str, ...]] = ("onnxruntime",)

    def __init__(self, roots: HostRoots | None = None) -> None:
        super().__init__(roots)
        self._sess: Any = None

    def load(self, artifact: Path, options: OnnxConfig) -> TensorSpec:
        artifact = Path(artifact)
        read_head(artifact, "ONNX")
        try:
            import onnxruntime as ort  # type: ignore[import-not-found]
        except ImportError:
            raise RuntimeUnavailable("onnxruntime is not installed (pip install 'lookout[onnx]')") from None
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(options.threads)
        so.inter_op_num_threads = 1
        try:
            sess = ort.InferenceSession(str(artifact), so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise ArtifactError(f"{artifact}: cannot load ONNX model ({first_line(exc)})") from None
        if len(sess.get_inputs()) != 1:
            raise ArtifactError(
                f"{artifact}: expected one input tensor, the model has {len(sess.get_inputs())}"
            )
        self._sess = sess
        self._in = sess.get_inputs()[0].name
        self.input_spec = _spec(sess.get_inputs()[0])
        self.output_specs = [_spec(o) for o in sess.get_outputs()]
        return self.input_spec

    def infer(self, x: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(o, np.float32) for o in self._sess.run(None, {self._in: x})]

    def close(self) -> None:
        self._sess = None
