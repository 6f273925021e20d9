"""Non-finite numbers (NaN, ±inf) are refused wherever a number comes in: one rule per input path.

- Config file, `run` flags and `cmd/config` commands all go through the pydantic config models, which
  use `MODEL_CONFIG` (`allow_inf_nan=False`). TOML has `nan`/`inf` literals; JSON parsers accept
  `NaN`, `Infinity` and `1e999`; JSON Schema cannot tell NaN from a number, so the models decide.
- Other command-line numbers use `finite_float` as their argparse type.
- Payloads from the network: the payload contract (app/telemetry/contract.py) refuses NaN/Infinity
  literals and turns a 1e999 into null with a reason. JSON we print goes through `json_safe`.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

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


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float (NaN, ±inf, e.g. parsed from 1e999) replaced by None, so
    that json.dumps(..., allow_nan=False) succeeds: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
