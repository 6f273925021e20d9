#!/usr/bin/env python3
"""Build the zoo's derived artifacts (.pte, .ptl, int8): a thin wrapper over `lookout models build`."""

import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main(["models", "build", *sys.argv[1:]]))
