"""What `lookout run` checks before it loads a model or opens a camera; `lookout config check` asks the same.

The config model checks the file's own rules; this checks what the config names on this machine: the
model's manifest and the artifact its runtime will load (sha256 included), a video file or image folder
that must be there now, the TLS files of an mqtts broker, a state dir that can be one. Each failure is
the error class `run` would raise later, in one line that starts with the key to change. Nothing here
loads a model, opens a camera or a stream, or creates a directory.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from app.config import ImagesSource, LookoutConfig, OpenCVSource, Picamera2Source, TlsConfig
from app.errors import ArtifactError, ConfigError, LookoutError, RuntimeUnavailable


def preflight(cfg: LookoutConfig, *, mqtt: bool = True) -> None:
    """Raise the first problem `run` would meet with `cfg` (mqtt=False: the run does not connect)."""
    check_state_dir(cfg.state_dir)
    _check_model(cfg)
    _check_source(cfg)
    if mqtt and cfg.mqtt.enabled:
        _check_tls(cfg.mqtt.url, cfg.mqtt.tls)


def _keyed(key: str, exc: LookoutError) -> LookoutError:
    """The same error, its message led by the config key."""
    return type(exc)(f"key '{key}': {exc}")


def _check_model(cfg: LookoutConfig) -> None:
    from app.runtimes.selection import plan_runtime
    from app.zoo import load_manifest

    try:
        manifest = load_manifest(cfg.model, cfg.models_dir)
    except ArtifactError as exc:
        raise _keyed("model", exc) from None
    try:
        plan = plan_runtime(cfg.runtime, manifest, probe=False)  # the plugin's own decision, no probe child
        manifest.verify_artifact(plan.artifact)
    except ArtifactError as exc:
        raise _keyed("runtime.artifact" if cfg.runtime.artifact else "model", exc) from None
    except RuntimeUnavailable as exc:
        raise _keyed("runtime.type", exc) from None


def _check_source(cfg: LookoutConfig) -> None:
    """A video file must open and an image folder hold images now (the source's own start()); a camera
    or a stream may come later, so neither is opened. picamera2 must be installed."""
    from app.vision.sources import (
        ImagesFrameSource,
        OpenCVFrameSource,
        Picamera2FrameSource,
        SourceError,
    )

    src = cfg.source
    try:
        if isinstance(src, OpenCVSource) and src.uri.strip() != "demo":  # demo: bundled, made on first use
            video = OpenCVFrameSource(src, cfg.reconnect)
            if video.kind == "file":
                with video, _quiet_opencv():
                    video.start()
        elif isinstance(src, ImagesSource):
            with ImagesFrameSource(src, cfg.reconnect) as folder:
                folder.start()
        elif isinstance(src, Picamera2Source):
            Picamera2FrameSource(src, cfg.reconnect)  # imports picamera2; the camera is opened by start()
    except SourceError as exc:
        raise _keyed(f"source.{_SOURCE_KEY.get(src.type, 'type')}", exc) from None


_SOURCE_KEY = {"opencv": "uri", "images": "folder"}


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """OpenCV's own warnings off while a file is tried (a file that is no video: our one line says so)."""
    import cv2

    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def _check_tls(url: str, tls: TlsConfig) -> None:
    """An mqtts broker's CA, client certificate and key files are readable files (mqtt:// uses none)."""
    from app.telemetry.broker_url import parse_broker_url

    if not parse_broker_url(url, "mqtt.url").tls:
        return
    for name in ("ca_file", "cert_file", "key_file"):
        path = getattr(tls, name)
        if path is None:
            continue
        try:
            with open(path, "rb"):
                pass
        except FileNotFoundError:
            raise ConfigError(f"key 'mqtt.tls.{name}': {path} not found") from None
        except IsADirectoryError:
            raise ConfigError(f"key 'mqtt.tls.{name}': {path} is a directory, not a file") from None
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
            why = getattr(exc, "strerror", None) or exc
            raise ConfigError(f"key 'mqtt.tls.{name}': cannot read {path}: {why}") from None


def check_state_dir(path: Path) -> None:
    """The state dir is a directory, or one can be made there (without making it)."""
    if path.exists() and not path.is_dir():
        raise ConfigError(
            f"key 'state_dir': {path} is not a directory (a file is in the way): point state_dir "
            "(--state-dir) at a folder"
        )
    parent = next((p for p in (path, *path.parents) if p.exists()), None)
    if parent is None or parent == path:
        return
    if not parent.is_dir():
        raise ConfigError(f"key 'state_dir': cannot create {path}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"key 'state_dir': cannot create {path}: {parent} is not writable")
