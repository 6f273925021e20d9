"""Non-finite numbers (NaN, ±inf) are refused wherever a number comes in: one rule per input path.

- Config file, `run` flags and `cmd/config` commands all go through the pydantic config models, which
  use `MODEL_CONFIG` (`allow_inf_nan=False`). TOML has `nan`/`inf` literals; JSON parsers accept
  `NaN`, `Infinity` and `1e999`; JSON Schema cannot tell NaN from a number, so the models decide.
- Other command-line numbers use `finite_float` as their argparse type.
"""

from __future__ import annotations

import argparse
import math

from pydantic import ConfigDict

#: The model config of every config table: unknown keys and non-finite numbers are errors.
MODEL_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False)


def finite_float(text: str) -> float:
    """argparse type: a float that is neither NaN nor infinite."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value
