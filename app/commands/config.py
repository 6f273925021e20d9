"""`lookout config show|example|check`: the effective configuration."""

from __future__ import annotations

import argparse
from importlib import resources

from app.commands.actions import Actions, option


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="show, check or print an example configuration")
    verbs = Actions(p, "config_verb", (option("--config", help="TOML config file"),))
    verbs.add("show", help="print the effective config as TOML").set_defaults(func=_show)
    check = verbs.add(
        "check",
        help="check a config as `lookout run` would before it starts (exit 2 with the reason)",
        description="The file's rules, then what it names on this machine: model and artifact, video file "
        "or image folder, TLS files, state dir.",
    )
    check.add_argument(
        "--rules-only",
        action="store_true",
        help="only the file's own rules: for a config meant for another machine (files not here)",
    )
    check.set_defaults(func=_check)
    verbs.add("example", help="print a commented example config that validates").set_defaults(func=_example)


def example_text() -> str:
    return resources.files("app").joinpath("example_config.toml").read_text(encoding="utf-8")


def _show(args: argparse.Namespace) -> int:
    from app.config import find_config_file, load_config, to_toml
    from app.redact import redact

    path = find_config_file(args.config)
    text = to_toml(load_config(args.config))  # secrets are '**********' there; URL passwords '***' below
    print(f"# effective config from {path or 'built-in defaults'}")
    print(redact(text), end="")
    return 0


def _check(args: argparse.Namespace) -> int:
    from app.config import find_config_file, load_config
    from app.preflight import preflight

    cfg = load_config(args.config)
    if not args.rules_only:
        preflight(cfg)
    print(f"{find_config_file(args.config) or 'built-in defaults'}: ok")
    return 0


def _example(args: argparse.Namespace) -> int:
    print(example_text(), end="")
    return 0
