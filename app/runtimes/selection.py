"""Requested runtime + model manifest -> a loaded runtime, with the Edge TPU probe and CPU fallback.

Every artifact's sha256 is verified against the manifest before its bytes reach a native library,
and the loaded input shape is checked against the manifest's input size.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.errors import ArtifactError, RuntimeUnavailable
from app.runtimes.base import Runtime, RuntimeConfig, get_runtime_class

log = logging.getLogger(__name__)

CPU_FALLBACK_RUNTIME = "tflite"
CPU_FALLBACK_ARTIFACT = "tflite"


@dataclass
class OpenedRuntime:
    """A loaded runtime and how it was chosen. fallback = {"from", "to", "reason"} or None."""

    runtime: Runtime
    name: str
    requested: str
    artifact_key: str
    artifact_path: Path
    fallback: dict[str, str] | None
    load_s: float


def _with_manifest_defaults(cfg: RuntimeConfig, manifest: Any) -> RuntimeConfig:
    """Fill options a format cannot carry itself (the .ptl input shape) from the manifest."""
    if "input_shape" in type(cfg).model_fields and getattr(cfg, "input_shape", None) is None:
        return cfg.model_copy(update={"input_shape": (1, manifest.input.height, manifest.input.width, 3)})
    return cfg


def _load(
    cls: type[Runtime], cfg: RuntimeConfig, manifest: Any, key: str, **kwargs: Any
) -> tuple[Runtime, Path]:
    ok, why = cls.availability()
    if not ok:
        raise RuntimeUnavailable(f"runtime {cls.name!r} is unavailable: {why}")
    path = manifest.verify_artifact(key)
    if cfg.isolate:
        from app.runtimes.isolated import IsolatedRuntime

        rt: Runtime = IsolatedRuntime(cls.name, **kwargs)
    else:
        rt = cls(**kwargs)
    spec = rt.load(path, _with_manifest_defaults(cfg, manifest))
    want = (manifest.input.height, manifest.input.width)
    if len(spec.shape) != 4 or spec.hw != want:
        rt.close()
        raise ArtifactError(
            f"{path}: input shape {spec.shape} ({spec.layout}) does not match the manifest input "
            f"{manifest.input.width}x{manifest.input.height} ({manifest.path})"
        )
    return rt, path


def open_runtime(
    runtime_cfg: RuntimeConfig,
    manifest: Any,
    *,
    sysfs_root: Path | None = None,
    dev_root: Path | None = None,
) -> OpenedRuntime:
    """Load `manifest`'s artifact on the configured runtime. sysfs_root/dev_root: Edge TPU enumeration roots."""
    requested = str(runtime_cfg.type)  # type: ignore[attr-defined]
    cls = get_runtime_class(requested)
    key = runtime_cfg.artifact or cls.default_artifact
    t0 = time.perf_counter()
    if requested != "edgetpu":
        rt, path = _load(cls, runtime_cfg, manifest, key)
        return OpenedRuntime(rt, requested, requested, key, path, None, time.perf_counter() - t0)

    from app.runtimes.edgetpu import DEV_ROOT, USB_SYSFS

    roots = {"sysfs_root": sysfs_root or USB_SYSFS, "dev_root": dev_root or DEV_ROOT}
    reason = None
    try:
        if key in manifest.artifacts:
            rt, path = _load(cls, runtime_cfg, manifest, key, **roots)
            return OpenedRuntime(rt, requested, requested, key, path, None, time.perf_counter() - t0)
        probe_rt = cls(**roots)
        reason = probe_rt.check(runtime_cfg)  # type: ignore[attr-defined]
        missing = (
            f"model {manifest.name!r} has no compiled Edge TPU artifact {key!r} "
            "(compile the tflite-int8 artifact with edgetpu_compiler, then `lookout models import`)"
        )
        reason = f"{reason}; {missing}" if reason else missing
    except RuntimeUnavailable as exc:
        reason = str(exc)
    if runtime_cfg.fallback != "cpu":  # type: ignore[attr-defined]
        raise RuntimeUnavailable(f"Edge TPU unavailable (fallback = 'fail'): {reason}")
    log.warning("Edge TPU unavailable, falling back to %s: %s", CPU_FALLBACK_RUNTIME, reason)
    cpu_cls = get_runtime_class(CPU_FALLBACK_RUNTIME)
    cpu_cfg = cpu_cls.config_model(threads=runtime_cfg.threads)
    rt, path = _load(cpu_cls, cpu_cfg, manifest, CPU_FALLBACK_ARTIFACT)
    fallback = {"from": requested, "to": CPU_FALLBACK_RUNTIME, "reason": reason}
    return OpenedRuntime(
        rt, CPU_FALLBACK_RUNTIME, requested, CPU_FALLBACK_ARTIFACT, path, fallback, time.perf_counter() - t0
    )
