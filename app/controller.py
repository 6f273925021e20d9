"""Remote control of a running device (MQTT `cmd/<verb>`): hot swap, live settings, bench.

Runs on telemetry's command worker thread, never on the pipeline's. A swap builds and warms the new
engine beside the running one and switches between two frames; any failure leaves the old one running.
A runtime whose libraries are not imported in this process yet is loaded in a child process
(`isolate`): importing torch holds the GIL for long stretches (docs/pipeline.md) and would stall the
camera pipeline. Runtime options follow the one switching rule (`switch_runtime`): what the config
file says for the target type, else that type's defaults with the shared options.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.config import LookoutConfig, validate_config
from app.engine import engine_for
from app.errors import LookoutError
from app.runtimes.base import get_runtime_class, switch_runtime
from app.tomlwrite import dump_toml

if TYPE_CHECKING:
    from app.hostroots import HostRoots
    from app.pipeline import Pipeline
    from app.status import DeviceStatus
    from app.telemetry.mqtt import Telemetry

log = logging.getLogger(__name__)

#: `cmd/config` keys -> (config section, key): a command changes the running config's own fields.
LIVE_KEYS = {
    "metrics_interval_s": ("mqtt", "metrics_interval_s"),
    "publish_empty": ("mqtt", "publish_empty"),
    "score_threshold": ("pipeline", "score_threshold"),
}


@dataclass
class LiveSettings:
    """Settings a `config` command may change while running."""

    metrics_interval_s: float
    publish_empty: bool
    score_threshold: float | None  # None: each model's manifest decides


def needs_isolation(runtime: str) -> bool:
    """True when none of the runtime's Python modules is imported in this process yet."""
    cls = get_runtime_class(runtime)
    return bool(cls.requires) and not any(m.split(".")[0] in sys.modules for m in cls.requires)


class Controller:
    """Executes validated commands against the running pipeline."""

    def __init__(
        self, cfg: LookoutConfig, pipeline: Pipeline, status: DeviceStatus, roots: HostRoots
    ) -> None:
        self.configured = cfg  # the config as loaded: per-type runtime options come from here
        self.cfg = cfg  # what runs now
        self.pipeline = pipeline
        self.status = status
        self.roots = roots
        self.telemetry: Telemetry | None = None
        self.settings = LiveSettings(
            cfg.mqtt.metrics_interval_s, cfg.mqtt.publish_empty, cfg.pipeline.score_threshold
        )
        self.swaps: list[dict[str, Any]] = []
        self._swap_lock = threading.Lock()

    def handle(self, verb: str, payload: dict[str, Any]) -> dict[str, Any]:
        if verb == "swap":
            return self.swap(payload["model"], payload["runtime"])
        if verb == "config":
            return self.apply_config(payload)
        if verb == "bench":
            return self.bench(payload)
        raise LookoutError(f"unknown command {verb!r}")

    def swap(self, model: str, runtime: str) -> dict[str, Any]:
        """Load and warm `model` on `runtime` beside the running engine, then switch between two frames."""
        if not self._swap_lock.acquire(blocking=False):
            return {"ok": False, "error": "another swap is in progress"}
        try:
            t0 = time.monotonic()
            data = self.cfg.model_dump()  # python mode: secrets stay SecretStr, not their "***" rendering
            data["model"] = model
            table = switch_runtime(runtime, self.configured.runtime)
            table["isolate"] = bool(table.get("isolate")) or needs_isolation(runtime)
            data["runtime"] = table
            new_cfg = validate_config(data, "swap command")
            new = engine_for(new_cfg, self.roots, self.settings.score_threshold)
            old = self.pipeline.swap_engine(new)
            self.cfg = new_cfg
            record = {
                "ok": True,
                "from": {"model": old.model, "runtime": old.runtime},
                "to": {"model": new.model, "runtime": new.runtime},
                "fallback": new.fallback,
                "load_s": round(time.monotonic() - t0, 3),
            }
            self.swaps.append(record)
            self.status.publish()
            return record
        except LookoutError as exc:
            log.warning("swap to %s/%s rejected: %s", model, runtime, exc)
            return {"ok": False, "error": str(exc)}
        finally:
            self._swap_lock.release()

    def apply_config(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Change live settings, all or nothing. The values pass the config file's own rules (ranges,
        finite numbers): the running config with them applied is validated as a whole before anything
        changes. A threshold of null (the manifest's) is only for the config file: the engine is built."""
        data = self.cfg.model_dump()  # python mode: the password stays a SecretStr, not "**********"
        for key, value in payload.items():
            if key not in LIVE_KEYS:
                raise LookoutError(f"config command: {key!r} cannot be changed while running")
            section, name = LIVE_KEYS[key]
            data[section][name] = value
        new = validate_config(data, "config command")
        threshold = new.pipeline.score_threshold
        if "score_threshold" in payload and threshold is None:
            raise LookoutError("config command: 'score_threshold' may be left out but not null")
        # checked: nothing below can fail
        if "score_threshold" in payload:
            self.pipeline.engine.score_threshold = threshold
            self.settings.score_threshold = threshold
        self.settings.metrics_interval_s = new.mqtt.metrics_interval_s
        self.settings.publish_empty = new.mqtt.publish_empty
        self.cfg = new
        return {"ok": True, "applied": {k: getattr(self.settings, k) for k in payload}}

    def bench(self, payload: dict[str, Any]) -> dict[str, Any]:
        from app.measure.bench import BenchOptions, run_bench

        engine = self.pipeline.engine
        # the bench workers read the running config (models dir, meter, runtime options, threshold), not
        # whatever a config search would find; the broker settings stay out of the file
        text = dump_toml(self.cfg.model_dump(mode="json", exclude_none=True, exclude={"mqtt"}))
        with tempfile.NamedTemporaryFile("w", suffix=".toml", dir=self.cfg.state_dir) as f:
            f.write(text)
            f.flush()
            opts = BenchOptions(
                model=engine.model,
                runtimes=list(payload.get("runtimes") or [engine.runtime]),
                frames=int(payload.get("frames", 100)),
                config=f.name,
            )
            result, _ = run_bench(opts)
        if self.telemetry is not None:
            self.telemetry.publish_bench(result)
        return {"ok": True, "results": len(result.get("results", []))}
