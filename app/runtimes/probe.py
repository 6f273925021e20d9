"""Open one runtime for real, in its own process: ``python -m app.runtimes.probe NAME --model M``.

What `lookout doctor` reports as a working runtime: its Python modules really import (not merely
found on disk) and, when the model has the runtime's default artifact, the runtime loads it through
the same path as `lookout run` (sha256 verified) and runs one inference. A child process keeps a
library that crashes (SIGSEGV, SIGILL on an older CPU) or hangs away from doctor itself. Prints one
JSON line: ``{"ok": bool, "state": str, "detail": str, "versions": {distribution: version}}``, where
`state` is "ran" (ok: it ran the model once), "not run" (its modules import, but there was nothing of
this model's to run: no model given, no artifact for the runtime, or an unreadable manifest; not ok, and
doctor does not count it as a working pipeline runtime) or "failed".
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def versions(modules: list[str]) -> dict[str, str]:
    """Installed distribution versions providing these top-level modules ({} for unknown ones)."""
    owners = importlib.metadata.packages_distributions()
    out: dict[str, str] = {}
    for mod in modules:
        for dist in owners.get(mod.split(".")[0], []):
            try:
                out[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
    return out


def versions_in_use(runtime_cls: type) -> dict[str, str]:
    """`versions` of the runtime's required modules this process has imported: the libraries in use
    (LiteRT: the one package of ai_edge_litert / tflite_runtime / tensorflow that was loaded)."""
    return versions([m for m in getattr(runtime_cls, "requires", ()) if m in sys.modules])


RAN, NOT_RUN, FAILED = "ran", "not run", "failed"


def _label(vers: dict[str, str]) -> str:
    return ", ".join(f"{d} {v}" for d, v in vers.items()) or "imported"


def _result(state: str, detail: str, vers: dict[str, str]) -> dict[str, Any]:
    return {"ok": state == RAN, "state": state, "detail": detail, "versions": vers}


def _not_run(vers: dict[str, str], why: str) -> dict[str, Any]:
    """Imported, but nothing of the model's ran: "ai-edge-litert 2.3.0 imported; <why>, not run"."""
    names = ", ".join(f"{d} {v}" for d, v in vers.items())
    return _result(NOT_RUN, f"{names + ' ' if names else ''}imported; {why}, not run", vers)


def probe(name: str, model: str | None, models_dir: Path, artifact: str | None = None) -> dict[str, Any]:
    """Import the runtime's modules, then run `model`'s `artifact` (default: the runtime's) once."""
    from app.errors import LookoutError
    from app.runtimes.base import _find_spec, get_runtime_class

    cls = get_runtime_class(name)
    ok, why = cls.availability()
    if not ok:
        return _result(FAILED, why, {})
    found = [m for m in cls.requires if _find_spec(m) is not None]
    for mod in found:
        try:
            importlib.import_module(mod)
        except Exception as exc:  # found on disk but broken: the reason doctor must show
            return _result(FAILED, f"import {mod} failed: {type(exc).__name__}: {exc}", {})
    vers = versions(found)
    if model is None:
        return _not_run(vers, "no model given")
    from app.hostroots import HostRoots
    from app.runtimes.selection import open_runtime
    from app.zoo import load_manifest

    key = artifact or cls.default_artifact
    try:
        manifest = load_manifest(model, models_dir)
    except LookoutError as exc:
        return _not_run(vers, f"the model does not load ({exc})")
    if key not in manifest.artifacts:
        return _not_run(vers, f"no {key!r} artifact for model {manifest.name}")
    fields = cls.config_model.model_fields
    cfg = cls.config_model(artifact=artifact, **({"fallback": "fail"} if "fallback" in fields else {}))
    try:
        opened = open_runtime(cfg, manifest, HostRoots.from_env())
    except LookoutError as exc:
        return _result(FAILED, f"{_label(vers)}: {exc}", vers)
    if opened.name != name:  # the plugin substituted another runtime: this one did not run
        opened.runtime.close()
        why = (opened.fallback or {}).get("reason", f"{opened.name} would run instead")
        return _result(FAILED, f"{_label(vers)}: {why}", vers)
    try:
        spec = opened.runtime.input_spec
        outs = opened.runtime.infer(np.zeros(spec.shape, dtype=spec.dtype))
    except Exception as exc:
        detail = f"{_label(vers)}: inference failed: {type(exc).__name__}: {exc}"
        return _result(FAILED, detail, vers)
    finally:
        opened.runtime.close()
    shapes = " ".join("x".join(map(str, o.shape)) for o in outs)
    detail = f"{_label(vers)}; ran {manifest.name}:{key} once (outputs {shapes})"
    return _result(RAN, detail, vers)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.runtimes.probe")
    p.add_argument("runtime")
    p.add_argument("--model", help="run this model's artifact for the runtime once")
    p.add_argument("--models-dir", type=Path, default=None)
    p.add_argument("--artifact", help="the model's artifact key to run (default: the runtime's)")
    args = p.parse_args(argv)
    from app.config import default_models_dir
    from app.errors import LookoutError

    try:
        result = probe(args.runtime, args.model, args.models_dir or default_models_dir(), args.artifact)
    except LookoutError as exc:
        result = _result(FAILED, str(exc), {})
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
