"""Sub-actions of a verb (`lookout models verify`) whose shared options work on either side of the action.

`lookout models --models-dir X verify` and `lookout models verify --models-dir X` mean the same. The
verb's parser declares each shared option with its real default; every action's parser declares it
again with the default suppressed, so a value given after the action wins and one given before it is
not overwritten by the action's default (argparse copies an action's defaults over the verb's).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Option:
    """One shared option: `add_argument` arguments."""

    flags: tuple[str, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


def option(*flags: str, **kwargs: Any) -> Option:
    return Option(flags, kwargs)


class Actions:
    """The sub-actions of one verb's parser, each accepting the verb's shared options."""

    def __init__(
        self,
        parser: argparse.ArgumentParser,
        dest: str,
        options: tuple[Option, ...] = (),
        *,
        required: bool = True,
        metavar: str = "ACTION",
    ) -> None:
        self.options = options
        for o in options:
            parser.add_argument(*o.flags, **o.kwargs)
        self._sub = parser.add_subparsers(dest=dest, metavar=metavar, required=required)

    def add(
        self, name: str, *, only: tuple[str, ...] | None = None, **kwargs: Any
    ) -> argparse.ArgumentParser:
        """A new action's parser with the shared options already on it (`only`: just those, by first flag)."""
        unknown = set(only or ()) - {o.flags[0] for o in self.options}
        if unknown:
            raise ValueError(f"action {name!r}: {sorted(unknown)} are not shared options")
        p = self._sub.add_parser(name, **kwargs)
        for o in self.options:
            if only is None or o.flags[0] in only:
                p.add_argument(*o.flags, **{**o.kwargs, "default": argparse.SUPPRESS})
        return p
