"""The child side of IsolatedRuntime: load one runtime, then serve inferences over the shared map."""

from __future__ import annotations

import json
import mmap
import os
import sys
import traceback
from pathlib import Path

import numpy as np


def main() -> int:
    proto_out = os.dup(1)
    os.dup2(2, 1)  # anything a native library prints goes to stderr, never into the protocol pipe
    inp = sys.stdin.buffer.raw.fileno() if hasattr(sys.stdin.buffer, "raw") else 0

    from app.errors import LookoutError
    from app.hostroots import HostRoots
    from app.runtimes.base import get_runtime_class
    from app.runtimes.isolated import _read_line, spec_to_json, views

    def send(obj: dict) -> None:
        os.write(proto_out, json.dumps(obj).encode() + b"\n")

    setup = json.loads(_read_line(inp) or b"{}")
    try:
        cls = get_runtime_class(setup["runtime"])
        rt = cls(HostRoots(Path(setup.get("root", "/"))))
        spec = rt.load(Path(setup["artifact"]), cls.config_model.model_validate(setup["options"]))
        outs = rt.infer(np.zeros(spec.shape, dtype=np.dtype(spec.dtype)))
    except LookoutError as exc:
        send(
            {
                "ok": False,
                "error_type": type(exc).__name__
                if type(exc).__name__ in ("ArtifactError", "RuntimeUnavailable")
                else "LookoutError",
                "error": str(exc),
            }
        )
        return 2
    except Exception as exc:
        send({"ok": False, "error_type": "LookoutError", "error": f"{type(exc).__name__}: {exc}"})
        traceback.print_exc()
        return 2
    send(
        {
            "ok": True,
            "input_spec": spec_to_json(rt.input_spec),
            "output_specs": [spec_to_json(s) for s in rt.output_specs],
            "out_shapes": [list(o.shape) for o in outs],
        }
    )
    mapping = json.loads(_read_line(inp))
    fd = os.open(mapping["map"], os.O_RDWR)
    buf = mmap.mmap(fd, 0)
    os.close(fd)
    shapes = [tuple(s) for s in mapping["shapes"]]
    arrays = views(buf, shapes, mapping["dtypes"])
    x, out_views = arrays[0], arrays[1:]
    send({"ok": True})
    while True:
        cmd = os.read(inp, 1)
        if cmd != b"I":
            break  # b"Q" or EOF: the parent closed us
        try:
            for dst, src in zip(out_views, rt.infer(x), strict=True):
                np.copyto(dst, src.reshape(dst.shape))
            os.write(proto_out, b"K")
        except Exception as exc:
            os.write(proto_out, b"E" + json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode() + b"\n")
    rt.close()
    del x, out_views, arrays
    buf.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
