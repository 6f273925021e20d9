"""The `lookout` command line: a thin argparse root that dispatches to app/commands/<verb>.py."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import stat
import sys
from collections.abc import Sequence

from app import __version__
from app.commands import VERBS
from app.errors import LookoutError
from app.inert import printable
from app.redact import LogFormatter, redact

EXIT_SIGPIPE = 128 + 13  # what a shell reports for a tool ended by SIGPIPE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lookout",
        description="Edge-AI camera inference: one network on LiteRT, Edge TPU, ExecuTorch and PyTorch Mobile, measured.",
    )
    parser.add_argument("--version", action="version", version=f"lookout {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb in VERBS:
        try:
            module = importlib.import_module(f"app.commands.{verb}")
        except ModuleNotFoundError as exc:
            if exc.name == f"app.commands.{verb}":
                continue  # verb not built yet: not listed rather than a placeholder
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)], handlers=[handler]
    )
    if not args.verb:
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a reader that went away (`| head -1`) shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        if not _stdout_is_a_pipe():
            raise  # a socket's broken pipe is a real error
        return _reader_gone()
    except LookoutError as exc:
        print(f"lookout {args.verb}: error: {printable(redact(str(exc)))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _stdout_is_a_pipe() -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(sys.stdout.fileno()).st_mode)
    except (OSError, ValueError):
        return False


def _reader_gone() -> int:
    """The reader of our stdout closed it: stop quietly, as a shell tool killed by SIGPIPE would. Python's
    recipe: stdout goes to /dev/null so the flush at exit does not raise a second time."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
