#!/usr/bin/env python3
"""Write the Lookout demo video (scikit-image photos panned and zoomed, 640x480, mp4v).

Usage: python scripts/make_demo_video.py --out demo.mp4 [--seconds 10] [--fps 30]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.errors import LookoutError
from app.vision.demo import make_demo_video


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="output .mp4 path")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--fps", type=int, default=30)
    args = ap.parse_args(argv)
    try:
        path = make_demo_video(args.out, args.seconds, args.fps)
    except LookoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
