"""Implementations picked by name: one mechanism for runtimes, decoders, power meters and frame sources.

Each kind is an entry-point group declared in pyproject.toml (``[project.entry-points."lookout.decoders"]``
etc.); a third-party package adds an implementation by declaring an entry point in its own metadata, with
no change here. ``load(group, name)`` imports only the module its entry point names, so heavy libraries
stay out until a plugin needs them (plugin modules import them inside functions). A plugin whose import
fails is reported with the reason, never silently dropped. If two distributions register the same name,
the first one on ``sys.path`` wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from app.errors import LookoutError


@dataclass(frozen=True, slots=True)
class Group:
    """One kind of plugin: its entry-point group and the word used for it in messages."""

    name: str
    kind: str


RUNTIMES = Group("lookout.runtimes", "runtime")
DECODERS = Group("lookout.decoders", "decoder")
METERS = Group("lookout.meters", "power meter")
SOURCES = Group("lookout.sources", "source")


@dataclass(frozen=True, slots=True)
class Plugin:
    """One registered implementation: the loaded object, or why it could not be imported."""

    name: str
    target: str  # "module:attribute", as declared
    obj: Any | None
    error: str | None


def _entry_points(group: Group) -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=group.name):
        found.setdefault(ep.name, ep)
    return found


def _load(ep: EntryPoint) -> Plugin:
    try:
        return Plugin(ep.name, ep.value, ep.load(), None)
    except Exception as exc:  # a broken plugin is reported, never silently dropped
        return Plugin(ep.name, ep.value, None, f"{type(exc).__name__}: {exc}")


def names(group: Group) -> list[str]:
    """Registered names, sorted, without importing anything."""
    return sorted(_entry_points(group))


def discover(group: Group) -> dict[str, Plugin]:
    """Every plugin of the group, imported; those that fail to import carry their error."""
    return {name: _load(ep) for name, ep in sorted(_entry_points(group).items())}


def load(group: Group, name: str, error: type[LookoutError] = LookoutError) -> Any:
    """The object registered as `name` (importing only its module); `error` with one line naming the
    registered choices when there is none, or the import error when it cannot be imported."""
    eps = _entry_points(group)
    ep = eps.get(name)
    if ep is None and not eps:
        raise error(
            f"unknown {group.kind} {name!r}: nothing is registered under entry-point group {group.name} "
            "(install the package, e.g. `pip install -e .`, so its entry points are registered)"
        )
    if ep is None:
        raise error(f"unknown {group.kind} {name!r}; registered: {', '.join(sorted(eps))}")
    plugin = _load(ep)
    if plugin.obj is None:
        raise error(f"{group.kind} {name!r} ({plugin.target}) failed to import: {plugin.error}")
    return plugin.obj
