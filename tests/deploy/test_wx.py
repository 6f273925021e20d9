"""MemoryDenyWriteExecute=yes in lookout.service: the default runtime stack needs no W+X memory.

The kernel's PR_SET_MDWE (Linux >= 6.3) enforces W^X on the calling process, as systemd's seccomp
filter does: a ctypes callback (libffi closure, as tflite's load_delegate error reporter uses) and a
LiteRT/XNNPACK BlazeFace inference must still work under it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = r"""
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
    print("NO-MDWE", ctypes.get_errno()); sys.exit(3)
import mmap
try:  # the control: W+X memory is now refused
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    print("WX-ALLOWED"); sys.exit(4)
except OSError:
    pass
callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda x: x + 1)
assert callback(41) == 42
import numpy as np
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path=sys.argv[1], num_threads=2)
it.allocate_tensors()
inp = it.get_input_details()[0]
it.set_tensor(inp["index"], np.zeros(inp["shape"], inp["dtype"]))
it.invoke()
print("OK", [tuple(int(d) for d in o["shape"]) for o in it.get_output_details()])
"""


def test_litert_and_ctypes_run_under_write_xor_execute(models_dir, clean_env) -> None:
    model = models_dir / "blazeface-short/face_detection_short_range.tflite"
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(model)], capture_output=True, text=True, timeout=120, env=clean_env
    )
    if result.returncode == 3:
        pytest.skip(f"this kernel has no PR_SET_MDWE (Linux >= 6.3 needed): {result.stdout.strip()}")
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert "OK [(1, 896, 16), (1, 896, 1)]" in result.stdout
