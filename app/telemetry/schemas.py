"""JSON Schemas (draft 2020-12) of every MQTT payload, GENERATED from the typed contract (contract.py).

The files in app/telemetry/schemas/ ship as package data for other consumers (Node-RED, a broker plugin,
a monitor in another language). They are written by ``make schemas`` (``python -m app.telemetry.schemas
--write``); ``--check`` and tests/telemetry/test_contract.py fail when a checked-in file differs from what
the models generate. Inside Lookout, validation is the models': ``validate(kind, payload)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from app.telemetry import contract
from app.telemetry.contract import ContractError, command_kind

DRAFT = "https://json-schema.org/draft/2020-12/schema"
KINDS = tuple(contract.KINDS)
SchemaError = ContractError  # the name the command router and older callers use

__all__ = ["KINDS", "SchemaError", "command_kind", "generate", "render", "schema", "validate"]


class _Generator(GenerateJsonSchema):
    """Pydantic's generator without per-field titles and without `"default": null` noise."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def default_schema(self, schema: Any) -> Any:
        out = super().default_schema(schema)
        if isinstance(out, dict) and "default" in out and out["default"] is None:
            del out["default"]
        return out


def generate(kind: str) -> dict[str, Any]:
    """The JSON Schema of `kind`, from its model: $id with the version, v required on device payloads."""
    cls = contract.model_for(kind)
    body = cls.model_json_schema(by_alias=True, schema_generator=_Generator)
    body.pop("title", None)
    doc: dict[str, Any] = {"$schema": DRAFT, "$id": contract.schema_id(kind), "title": cls.topic, **body}
    required = list(doc.get("required", []))
    if cls.sent_by_device and "v" not in required:
        doc["required"] = ["v", *required]
    extra = getattr(cls, "schema_extra", None)
    if extra is not None:
        doc.update(extra())
    return doc


def render(kind: str) -> str:
    """The schema file's text (stable: sorted nowhere, indented, newline at the end)."""
    return json.dumps(generate(kind), indent=2, ensure_ascii=False) + "\n"


def schema_dir() -> Path:
    return Path(str(resources.files("app.telemetry").joinpath("schemas")))


def schema(kind: str) -> dict[str, Any]:
    """The shipped (checked-in) schema document of `kind`."""
    contract.model_for(kind)
    return json.loads((schema_dir() / f"{kind}.json").read_text(encoding="utf-8"))


def drifted(folder: Path | None = None) -> list[str]:
    """Kinds whose file in `folder` differs from the generated schema (or is missing), plus stray files."""
    folder = folder or schema_dir()
    out = [
        k
        for k in KINDS
        if not (folder / f"{k}.json").is_file()
        or (folder / f"{k}.json").read_text(encoding="utf-8") != render(k)
    ]
    out += sorted(p.stem for p in folder.glob("*.json") if p.stem not in contract.KINDS)
    return out


def write_all(folder: Path | None = None) -> list[Path]:
    """(Re)generate every schema file; remove files of kinds that no longer exist."""
    folder = folder or schema_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for stray in folder.glob("*.json"):
        if stray.stem not in contract.KINDS:
            stray.unlink()
    written = []
    for kind in KINDS:
        path = folder / f"{kind}.json"
        path.write_text(render(kind), encoding="utf-8")
        written.append(path)
    return written


def validate(kind: str, payload: Any) -> None:
    """Raise ContractError (one line) unless `payload` is a valid `kind` payload (the model decides;
    a missing `v` is filled in as the producer does, another version is refused)."""
    contract.build(kind, payload)


def is_valid(kind: str, payload: Any) -> bool:
    try:
        contract.build(kind, payload)
    except ContractError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m app.telemetry.schemas", description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="regenerate app/telemetry/schemas/*.json")
    ap.add_argument("--check", action="store_true", help="exit 1 when a checked-in schema differs")
    args = ap.parse_args(argv)
    if args.write:
        for path in write_all():
            print(path)
        return 0
    stale = drifted()
    if stale:
        print(f"schemas differ from the models: {', '.join(stale)}; run `make schemas`", file=sys.stderr)
        return 1
    print(f"{len(KINDS)} schemas match the models")
    return 0


if __name__ == "__main__":
    sys.exit(main())
