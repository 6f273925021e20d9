"""Requested runtime + model manifest -> a loaded runtime, or the substitute its plugin names.

The plugin decides whether it can run here and what to run instead (``Runtime.unusable_reason`` and
``Runtime.substitute``); this module only asks, and `lookout doctor` asks through ``plan_runtime`` too,
so both always agree. Every artifact's sha256 is verified against the manifest before its bytes reach
a native library, and the loaded input shape is checked against the manifest's input size.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from app.errors import ArtifactError, RuntimeUnavailable
from app.hostroots import HostRoots
from app.runtimes.base import Runtime, RuntimeConfig, get_runtime_class

if TYPE_CHECKING:
    from app.zoo import Manifest

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Plan:
    """What will be loaded. fallback = {"from", "to", "reason"} when it is not the requested runtime."""

    requested: str
    runtime: str
    options: RuntimeConfig
    artifact: str
    fallback: dict[str, str] | None = None


@dataclass
class OpenedRuntime:
    """A loaded runtime and how it was chosen."""

    runtime: Runtime
    name: str
    requested: str
    artifact_key: str
    artifact_path: Path
    fallback: dict[str, str] | None
    load_s: float
    options: RuntimeConfig


def _substitute_plan(rt: Runtime, options: RuntimeConfig, manifest: Manifest, reason: str) -> Plan:
    sub = rt.substitute(options, manifest, reason)
    if sub is None:
        raise RuntimeUnavailable(reason)
    fallback = {"from": rt.name, "to": sub.runtime, "reason": reason}
    return Plan(rt.name, sub.runtime, sub.options, sub.artifact, fallback)


def plan_runtime(
    options: RuntimeConfig, manifest: Manifest, roots: HostRoots | None = None, *, probe: bool = True
) -> Plan:
    """Which runtime, options and artifact will run `manifest`, asking the requested runtime's plugin."""
    cls = get_runtime_class(options.type)
    rt = cls(roots)
    reason = rt.unusable_reason(options, manifest, probe=probe)
    if reason is None:
        return Plan(cls.name, cls.name, options, options.artifact or cls.default_artifact)
    return _substitute_plan(rt, options, manifest, reason)


def _load(plan: Plan, manifest: Manifest, roots: HostRoots | None) -> tuple[Runtime, Path]:
    cls = get_runtime_class(plan.runtime)
    ok, why = cls.availability()
    if not ok:
        raise RuntimeUnavailable(f"runtime {cls.name!r} is unavailable: {why}")
    path = manifest.verify_artifact(plan.artifact)
    if plan.options.isolate:
        from app.runtimes.isolated import IsolatedRuntime

        rt: Runtime = IsolatedRuntime(cls.name, roots)
    else:
        rt = cls(roots)
    spec = rt.load(path, cls(roots).with_manifest(plan.options, manifest))
    want = (manifest.input.height, manifest.input.width)
    if len(spec.shape) != 4 or spec.hw != want:
        rt.close()
        raise ArtifactError(
            f"{path}: input shape {spec.shape} ({spec.layout}) does not match the manifest input "
            f"{manifest.input.width}x{manifest.input.height} ({manifest.path})"
        )
    return rt, path


def open_runtime(options: RuntimeConfig, manifest: Manifest, roots: HostRoots | None = None) -> OpenedRuntime:
    """Load `manifest`'s artifact on the configured runtime, or on the substitute its plugin names."""
    t0 = time.perf_counter()
    plan = plan_runtime(options, manifest, roots)
    try:
        rt, path = _load(plan, manifest, roots)
    except RuntimeUnavailable as exc:
        if plan.fallback is not None:
            raise
        # the plugin said yes, but loading failed (a delegate that refuses at load): ask it again
        plan = _substitute_plan(get_runtime_class(plan.runtime)(roots), options, manifest, str(exc))
        rt, path = _load(plan, manifest, roots)
    if plan.fallback:
        log.warning(
            "%s cannot run here, running %s instead: %s",
            plan.requested,
            plan.runtime,
            plan.fallback["reason"],
        )
    return OpenedRuntime(
        rt,
        plan.runtime,
        plan.requested,
        plan.artifact,
        path,
        plan.fallback,
        time.perf_counter() - t0,
        plan.options,
    )
