"""Child process of the Edge TPU probe: load the delegate (and the model with it), print one JSON line.

Run as ``python -m app.runtimes.edgetpu_probe --delegate LIB [--device usb:0] [--model FILE]``.
libedgetpu can segfault when it was built against another TensorFlow Lite version; doing this in a
short-lived child keeps such a crash out of the service. Exit code 0 = the delegate works.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _emit(ok: bool, kind: str, error: str = "") -> int:
    sys.stdout.write(json.dumps({"ok": ok, "kind": kind, "error": error}) + "\n")
    sys.stdout.flush()
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="edgetpu_probe")
    p.add_argument("--delegate", required=True)
    p.add_argument("--device", default="")
    p.add_argument("--model", default="")
    a = p.parse_args(argv)
    try:
        from app.runtimes.litert import import_litert

        lite = import_litert()
    except Exception as exc:
        return _emit(False, "litert", str(exc))
    options = {"device": a.device} if a.device else {}
    try:
        delegate = lite.load_delegate(a.delegate, options)
    except OSError as exc:  # dlopen failed: not found, bad ELF, missing dependency
        return _emit(False, "library", str(exc))
    except AttributeError as exc:  # loaded, but it is not a TFLite delegate plugin
        return _emit(False, "symbol", str(exc))
    except Exception as exc:  # the plugin returned no delegate: libedgetpu found no (matching) device
        return _emit(False, "delegate", str(exc))
    if a.model:
        try:
            it = lite.Interpreter(model_path=a.model, experimental_delegates=[delegate])
            it.allocate_tensors()
            d = it.get_input_details()[0]
            import numpy as np

            it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
            it.invoke()
        except Exception as exc:
            return _emit(False, "model", str(exc))
    return _emit(True, "ok")


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # skip interpreter teardown: some delegate builds crash in their destructors
    os._exit(code)
