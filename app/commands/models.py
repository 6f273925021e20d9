"""`lookout models list | build | verify | import`: the model zoo from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.commands.actions import Actions, option
from app.config import default_models_dir
from app.errors import ArtifactError, LookoutError
from app.zoo import Manifest, import_edgetpu, load_manifest, scan_models


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list, build, verify and import model artifacts")
    models_dir = option(
        "--models-dir", type=Path, default=None, help="models folder (default: the checkout's models/)"
    )
    sub = Actions(parser, "models_verb", (models_dir,))
    sub.add("list", help="table of models and their artifacts")
    b = sub.add("build", help="build derived artifacts (cached by content hash)")
    b.add_argument("names", nargs="*", metavar="NAME")
    b.add_argument("--force", action="store_true", help="rebuild even when up to date")
    b.add_argument("--only", action="append", metavar="KEY", help="artifact key(s) to build, e.g. pte")
    v = sub.add("verify", help="check every artifact's sha256 (exit 2 on any mismatch)")
    v.add_argument("names", nargs="*", metavar="NAME")
    i = sub.add("import", help="add a compiled *_edgetpu.tflite to a model as artifact 'edgetpu'")
    i.add_argument("name", metavar="NAME")
    i.add_argument("file", type=Path, metavar="FILE")
    parser.set_defaults(func=run)


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
        print(f"{folder}: {why}", file=sys.stderr)


def _size(n: int) -> str:
    return f"{n / 1024:.0f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"


def _list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"models in {_models_dir(args)}")
    for col in ("name", "task", "input", "artifacts (key: precision, size)"):
        table.add_column(col)
    scan = scan_models(_models_dir(args))
    for m in scan.manifests:
        arts = []
        for key, art in m.artifacts.items():
            p = m.dir / art.file
            size = _size(p.stat().st_size) if p.is_file() else "missing"
            arts.append(f"{key}: {art.precision}, {size}")
        table.add_row(m.name, m.task, f"{m.input.width}x{m.input.height}", "\n".join(arts))
    for folder in scan.broken:
        table.add_row(folder, "[red]unreadable[/]", "", "see the error below")
    Console().print(table)
    _report_broken(scan.broken)
    return 0


def _build(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from app.modelbuild.build import RECIPES, build_model

    keys = args.only or list(RECIPES)
    unknown = [k for k in keys if k not in RECIPES]
    if unknown:
        raise LookoutError(f"unknown artifact key(s) {', '.join(unknown)}; buildable: {', '.join(RECIPES)}")
    manifests, broken = _select(args)
    _report_broken(broken)
    results = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        transient=True,
    ) as progress:
        task = progress.add_task("building", total=len(manifests) * len(keys))

        def step(name: str, key: str) -> None:
            progress.update(task, description=f"{name} {key}")

        for m in manifests:
            for r in build_model(m, keys, force=args.force, on_step=step):
                progress.advance(task)
                results.append(r)
    for r in results:
        if r.status == "built":
            print(f"{r.model} {r.key}: built in {r.seconds:.1f} s ({_size(r.size)})")
        elif r.status == "up to date":
            print(f"{r.model} {r.key}: up to date")
        else:
            print(
                f"{r.model} {r.key}: {r.status}: {r.reason}",
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
                print(f"{m.name} {key}: {exc}", file=sys.stderr)
    unreadable = f"; {len(broken)} model(s) unreadable" if broken else ""
    failed = f" ({bad} failed)" if bad else ""
    print(f"{total - bad} artifacts verified{failed}{unreadable}")
    return 2 if bad or broken else 0


def _import(args: argparse.Namespace) -> int:
    m = load_manifest(args.name, _models_dir(args))
    art = import_edgetpu(m, args.file)
    print(f"{m.name}: imported {art.file} as artifact 'edgetpu' (sha256 {art.sha256})")
    return 0


def run(args: argparse.Namespace) -> int:
    return {"list": _list, "build": _build, "verify": _verify, "import": _import}[args.models_verb](args)
