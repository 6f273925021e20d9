"""`lookout models list | build | verify | import | add`: the model zoo from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.commands.actions import Actions, option
from app.config import default_models_dir
from app.errors import ArtifactError, LookoutError
from app.inert import printable, rich_text
from app.zoo import Manifest, import_edgetpu, load_manifest, scan_models


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list, build, verify and import model artifacts")
    models_dir = option(
        "--models-dir", type=Path, default=None, help="models folder (default: the checkout's models/)"
    )
    sub = Actions(parser, "models_verb", (models_dir,))
    li = sub.add("list", help="table of models and their artifacts")
    li.add_argument("--json", action="store_true", help="print every model as JSON instead of a table")
    b = sub.add("build", help="build derived artifacts (cached by content hash)")
    b.add_argument("names", nargs="*", metavar="NAME")
    b.add_argument("--force", action="store_true", help="rebuild even when up to date")
    b.add_argument("--only", action="append", metavar="KEY", help="artifact key(s) to build, e.g. pte")
    v = sub.add("verify", help="check every artifact's sha256 (exit 2 on any mismatch)")
    v.add_argument("names", nargs="*", metavar="NAME")
    i = sub.add("import", help="add a compiled *_edgetpu.tflite to a model as artifact 'edgetpu'")
    i.add_argument("name", metavar="NAME")
    i.add_argument("file", type=Path, metavar="FILE")
    _register_add(sub)
    parser.set_defaults(func=run)


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 1 or 3 numbers, got {text!r}") from None
    if len(values) not in (1, 3):
        raise argparse.ArgumentTypeError(f"expected 1 or 3 numbers, got {text!r}")
    return values * 3 if len(values) == 1 else values


def _register_add(sub: Actions) -> None:
    a = sub.add(
        "add",
        help="add your own model: from a .tflite (+ its Edge TPU compile) or from a PyTorch factory",
        description="Add a model to the zoo. --from-tflite reads the tensors of FILE; --from-torch imports "
        "FILE.py:FACTORY and exports .pte, .ptl, .tflite, an int8 .tflite and .onnx (needs lookout[convert]).",
    )
    a.add_argument("name", metavar="NAME")
    src = a.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-tflite", type=Path, metavar="FILE", help="a .tflite model (CPU)")
    src.add_argument("--from-torch", metavar="FILE.py:FACTORY", help="a function returning an nn.Module")
    a.add_argument("--edgetpu", type=Path, metavar="FILE", help="the same model compiled by edgetpu_compiler")
    a.add_argument("--task", required=True, choices=("detection", "classification", "pose"))
    a.add_argument("--labels", required=True, type=Path, metavar="FILE", help="one label per line")
    a.add_argument("--decoder", help="decoder name (default: recognised from the outputs)")
    a.add_argument("--mean", type=_floats, help="input mean per channel (pixel - mean) / std")
    a.add_argument("--std", type=_floats, help="input std per channel")
    a.add_argument("--input", metavar="1x3xHxW", help="--from-torch: the factory's input shape (NCHW)")
    a.add_argument(
        "--calibration", type=Path, metavar="DIR", help="--from-torch: images for int8 and agreement"
    )
    a.add_argument("--origin", help="where the model comes from (provenance; default: the file as given)")
    a.add_argument(
        "--licence", default="unknown (not given to `lookout models add`)", help="licence of the model"
    )


def _models_dir(args: argparse.Namespace) -> Path:
    return args.models_dir or default_models_dir()


def _select(args: argparse.Namespace) -> tuple[list[Manifest], dict[str, str]]:
    """The named models (or all), and the folders whose manifest does not load (name -> why)."""
    root = _models_dir(args)
    if args.names:
        return [load_manifest(n, root) for n in args.names], {}
    scan = scan_models(root)
    if not scan.manifests and not scan.broken:
        raise LookoutError(f"no models found in {root}")
    return scan.manifests, scan.broken


def _report_broken(broken: dict[str, str]) -> None:
    for folder, why in broken.items():
        print(printable(f"{folder}: {why}"), file=sys.stderr)


def _size(n: int) -> str:
    return f"{n / 1024:.0f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"


def model_json(m: Manifest) -> dict:
    """What `models list --json` prints for one model."""
    arts = {}
    for key, art in m.artifacts.items():
        p = m.dir / art.file
        arts[key] = {
            "file": art.file,
            "format": art.format,
            "precision": art.precision,
            "bytes": p.stat().st_size if p.is_file() else None,
            "sha256": art.sha256,
            "derived_from": art.derived_from,
        }
    return {
        "name": m.name,
        "task": m.task,
        "decoder": m.decoder,
        "labels": m.labels,
        "keypoints": m.keypoints,
        "input": m.input.model_dump(),
        "outputs": m.outputs,
        "artifacts": arts,
        "path": str(m.dir),
    }


def _list(args: argparse.Namespace) -> int:
    scan = scan_models(_models_dir(args))
    if args.json:
        print(json.dumps([model_json(m) for m in scan.manifests], indent=2))
        _report_broken(scan.broken)
        return 0
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # folder names, paths and manifest fields are file contents: shown as data, never as rich markup
    table = Table(title=rich_text(f"models in {_models_dir(args)}"))
    for col in ("name", "task", "input", "artifacts (key: precision, size)"):
        table.add_column(col)
    for m in scan.manifests:
        arts = []
        for key, art in m.artifacts.items():
            p = m.dir / art.file
            size = _size(p.stat().st_size) if p.is_file() else "missing"
            arts.append(f"{key}: {art.precision}, {size}")
        row = (m.name, m.task, f"{m.input.width}x{m.input.height}")
        table.add_row(*map(rich_text, row), Text("\n").join(map(rich_text, arts)))
    for folder in scan.broken:
        table.add_row(rich_text(folder), rich_text("unreadable", style="red"), "", "see the error below")
    Console().print(table)
    _report_broken(scan.broken)
    return 0


def _build(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from app.modelbuild.build import RECIPES, build_model, recipes_for

    keys = args.only
    unknown = [k for k in keys or [] if k not in RECIPES]
    if unknown:
        raise LookoutError(f"unknown artifact key(s) {', '.join(unknown)}; buildable: {', '.join(RECIPES)}")
    manifests, broken = _select(args)
    _report_broken(broken)
    results = []
    with Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        transient=True,
    ) as progress:
        task = progress.add_task("building", total=sum(len(keys or recipes_for(m)) for m in manifests))

        def step(name: str, key: str) -> None:
            progress.update(task, description=f"{name} {key}")

        for m in manifests:
            for r in build_model(m, keys, force=args.force, on_step=step):
                progress.advance(task)
                results.append(r)
    for r in results:
        if r.status == "built":
            print(printable(f"{r.model} {r.key}: built in {r.seconds:.1f} s ({_size(r.size)})"))
        elif r.status == "up to date":
            print(printable(f"{r.model} {r.key}: up to date"))
        else:
            print(
                printable(f"{r.model} {r.key}: {r.status}: {r.reason}"),
                file=sys.stderr if r.status == "failed" else sys.stdout,
            )
    return 2 if broken or any(r.status == "failed" for r in results) else 0


def _verify(args: argparse.Namespace) -> int:
    bad = 0
    total = 0
    manifests, broken = _select(args)
    _report_broken(broken)
    for m in manifests:
        for key in m.artifacts:
            total += 1
            try:
                m.verify_artifact(key)
            except ArtifactError as exc:
                bad += 1
                print(printable(f"{m.name} {key}: {exc}"), file=sys.stderr)
    unreadable = f"; {len(broken)} model(s) unreadable" if broken else ""
    failed = f" ({bad} failed)" if bad else ""
    print(f"{total - bad} artifacts verified{failed}{unreadable}")
    return 2 if bad or broken else 0


def _import(args: argparse.Namespace) -> int:
    m = load_manifest(args.name, _models_dir(args))
    art = import_edgetpu(m, args.file)
    print(f"{m.name}: imported {art.file} as artifact 'edgetpu' (sha256 {art.sha256})")
    return 0


def _add(args: argparse.Namespace) -> int:
    root = _models_dir(args)
    if args.from_tflite is not None:
        from app.modelbuild.add_tflite import add_from_tflite

        for flag in ("input", "calibration"):
            if getattr(args, flag) is not None:
                raise LookoutError(f"--{flag} applies to --from-torch only")
        m, notes = add_from_tflite(
            args.name, root, args.from_tflite, args.task, args.labels, args.edgetpu, args.decoder,
            args.mean, args.std, args.origin, args.licence,
        )  # fmt: skip
    else:
        from app.modelbuild.add_torch import add_from_torch, print_agreement

        if args.edgetpu is not None:
            raise LookoutError(
                "--edgetpu applies to --from-tflite only (compile the tflite-int8 artifact first)"
            )
        if not args.input:
            raise LookoutError("--from-torch needs --input 1x3xHxW")
        m, notes, table = add_from_torch(
            args.name, root, args.from_torch, args.input, args.task, args.labels, args.decoder,
            args.mean, args.std, args.calibration, args.origin, args.licence,
        )  # fmt: skip
        print_agreement(table)
    for note in notes:
        print(f"note: {note}")
    arts = ", ".join(f"{k} ({a.file})" for k, a in m.artifacts.items())
    print(f"{m.name}: added to {m.dir} (task {m.task}, decoder {m.decoder}); artifacts: {arts}")
    return 0


def run(args: argparse.Namespace) -> int:
    verbs = {"list": _list, "build": _build, "verify": _verify, "import": _import, "add": _add}
    return verbs[args.models_verb](args)
