"""JSON Schemas (draft 2020-12) of every MQTT payload, shipped as package data, and validation.

Kinds: status, detections, metrics, bench, cmd_swap, cmd_bench, cmd_config, cmd_reply.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from app.errors import LookoutError

KINDS = ("status", "detections", "metrics", "bench", "cmd_swap", "cmd_bench", "cmd_config", "cmd_reply")


class SchemaError(LookoutError):
    """A payload does not match its schema (one line: kind, JSON path, what is wrong)."""


def command_kind(verb: str) -> str:
    """Schema kind of a command verb's payload: swap -> cmd_swap."""
    return f"cmd_{verb}"


@functools.cache
def schema(kind: str) -> dict[str, Any]:
    """The parsed JSON Schema document of `kind`."""
    if kind not in KINDS:
        raise SchemaError(f"no schema for {kind!r}; expected one of {', '.join(KINDS)}")
    text = resources.files("app.telemetry").joinpath("schemas", f"{kind}.json").read_text(encoding="utf-8")
    return json.loads(text)


@functools.cache
def validator(kind: str) -> Any:
    """A cached jsonschema Draft202012Validator for `kind`."""
    from jsonschema import Draft202012Validator

    doc = schema(kind)
    Draft202012Validator.check_schema(doc)
    return Draft202012Validator(doc)


def validate(kind: str, payload: Any) -> None:
    """Raise SchemaError (one line) unless `payload` is valid for `kind`."""
    from jsonschema.exceptions import best_match

    err = best_match(validator(kind).iter_errors(payload))
    if err is None:
        return
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path) or "(root)"
    msg = err.message if len(err.message) <= 200 else err.message[:197] + "..."
    raise SchemaError(f"{kind} payload {where.lstrip('.')}: {msg}".replace("\n", " "))


def is_valid(kind: str, payload: Any) -> bool:
    return validator(kind).is_valid(payload)
