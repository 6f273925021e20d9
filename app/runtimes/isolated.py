"""Run any runtime in a child process; tensors cross through one shared memory map.

Why: importing torch holds the GIL for long stretches (C extension initialisation; measured in
docs/pipeline.md), so loading
ExecuTorch or the lite interpreter inside a running service stalls its camera pipeline; and ExecuTorch can
abort() the whole process on a corrupt program. In a child, imports and crashes stay there. Per inference
the parent copies the input into the map, writes one byte down a pipe and blocks (GIL released) until the
child answers with one byte; outputs are copied out of the map.

Protocol (child = ``python -m app.runtimes.isolated_worker``): JSON lines to set up (runtime, artifact,
options -> specs and output shapes -> map path), then one byte per inference: b"I" -> b"K" | b"E"+JSON line.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from app.errors import ArtifactError, LookoutError, RuntimeUnavailable
from app.hostroots import HostRoots
from app.runtimes.base import Runtime, RuntimeConfig, TensorSpec

ERRORS: dict[str, type[LookoutError]] = {
    "ArtifactError": ArtifactError,
    "RuntimeUnavailable": RuntimeUnavailable,
    "LookoutError": LookoutError,
}
ALIGN = 64


def layout(shapes: list[tuple[int, ...]], dtypes: list[str]) -> tuple[list[int], int]:
    """Byte offsets of each tensor in the map (64-byte aligned) and the map's total size."""
    offsets, pos = [], 0
    for shape, dtype in zip(shapes, dtypes, strict=True):
        offsets.append(pos)
        pos += -(-int(np.prod(shape)) * np.dtype(dtype).itemsize // ALIGN) * ALIGN
    return offsets, max(pos, ALIGN)


def views(buf: Any, shapes: list[tuple[int, ...]], dtypes: list[str]) -> list[np.ndarray]:
    offsets, _ = layout(shapes, dtypes)
    return [
        np.ndarray(shape, dtype=np.dtype(dt), buffer=buf, offset=off)
        for shape, dt, off in zip(shapes, dtypes, offsets, strict=True)
    ]


def spec_to_json(s: TensorSpec) -> dict[str, Any]:
    return {
        "name": s.name,
        "shape": list(s.shape),
        "dtype": s.dtype,
        "layout": s.layout,
        "scale": s.scale,
        "zero_point": s.zero_point,
    }


def spec_from_json(d: dict[str, Any]) -> TensorSpec:
    return TensorSpec(d["name"], tuple(d["shape"]), d["dtype"], d["layout"], d["scale"], d["zero_point"])


class IsolatedRuntime(Runtime[RuntimeConfig]):
    """Wraps the runtime registered as `runtime_name`, running it in a child process."""

    name: ClassVar[str] = "isolated"
    config_model: ClassVar[type[RuntimeConfig]] = RuntimeConfig
    default_artifact: ClassVar[str] = ""

    def __init__(self, runtime_name: str, roots: HostRoots | None = None) -> None:
        super().__init__(roots)
        self.runtime_name = runtime_name
        self._proc: subprocess.Popen | None = None
        self._map: mmap.mmap | None = None
        self._input: np.ndarray | None = None
        self._outputs: list[np.ndarray] = []

    # --- set-up --------------------------------------------------------------------------------
    def load(self, artifact: Path, options: RuntimeConfig) -> TensorSpec:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "app.runtimes.isolated_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        try:
            return self._setup(artifact, options)
        except BaseException:
            self.close()
            raise

    def _setup(self, artifact: Path, options: RuntimeConfig) -> TensorSpec:
        opts = options.model_dump(mode="json")
        opts["isolate"] = False
        self._send_line(
            {
                "runtime": self.runtime_name,
                "artifact": str(artifact),
                "options": opts,
                "root": str(self.roots.base),
            }
        )
        reply = self._recv_line()
        if not reply.get("ok"):
            raise ERRORS.get(reply.get("error_type", ""), LookoutError)(
                reply.get("error", "isolated runtime failed")
            )
        self.input_spec = spec_from_json(reply["input_spec"])
        self.output_specs = [spec_from_json(d) for d in reply["output_specs"]]
        shapes = [tuple(self.input_spec.shape), *[tuple(s) for s in reply["out_shapes"]]]
        dtypes = [self.input_spec.dtype, *["float32"] * len(reply["out_shapes"])]
        _, size = layout(shapes, dtypes)
        fd, path = tempfile.mkstemp(
            prefix="lookout-tensors-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
        )
        try:
            os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
            self._send_line({"map": path, "shapes": [list(s) for s in shapes], "dtypes": dtypes})
            if not self._recv_line().get("ok"):
                raise LookoutError(f"isolated {self.runtime_name} worker could not map the tensors")
        finally:
            os.close(fd)
            os.unlink(path)  # both sides have it mapped: nothing is left behind, even after a crash
        arrays = views(self._map, shapes, dtypes)
        self._input, self._outputs = arrays[0], arrays[1:]
        return self.input_spec

    # --- inference -----------------------------------------------------------------------------
    def infer(self, x: np.ndarray) -> list[np.ndarray]:
        assert self._proc is not None and self._input is not None
        np.copyto(self._input, x.reshape(self._input.shape), casting="same_kind")
        try:
            os.write(self._proc.stdin.fileno(), b"I")  # type: ignore[union-attr]
            answer = os.read(self._proc.stdout.fileno(), 1)  # type: ignore[union-attr]
        except OSError:  # EPIPE: the worker is gone
            answer = b""
        if answer == b"K":
            return [o.copy() for o in self._outputs]
        if answer == b"E":
            raise LookoutError(self._recv_line().get("error", "inference failed"))
        code = self._proc.wait(timeout=5)
        raise LookoutError(f"isolated {self.runtime_name} worker died (exit code {code})")

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                os.write(proc.stdin.fileno(), b"Q")  # type: ignore[union-attr]
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
        self._input, self._outputs = None, []
        if self._map is not None:
            self._map.close()
            self._map = None

    # --- pipe helpers --------------------------------------------------------------------------
    def _send_line(self, obj: dict[str, Any]) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(obj).encode() + b"\n")

    def _recv_line(self) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        line = _read_line(self._proc.stdout.fileno())
        if not line:
            code = self._proc.wait(timeout=10)
            raise RuntimeUnavailable(
                f"isolated {self.runtime_name} worker exited during set-up (exit code {code})"
            )
        return json.loads(line)


def _read_line(fd: int) -> bytes:
    """Read one line byte by byte (no buffering: the same pipe then carries single bytes)."""
    out = bytearray()
    while True:
        b = os.read(fd, 1)
        if not b:
            return bytes(out)
        if b == b"\n":
            return bytes(out)
        out += b
