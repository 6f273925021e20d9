"""The fleet monitor: an MQTT 5 subscriber that feeds the registry, cheaply, and never crashes on input.

Full JSON Schema validation costs several times the rest of the ingest path (figures, their date and
the command that reproduces them: docs/fleet.md, "Ingest cost and validation"). So status and bench are
always fully validated, while metrics and detections get a cheap structural check on every message and
full validation on the first message of each device and every `validate_every`-th message after that
(1 = validate everything).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from app.errors import ConfigError
from app.fleet.registry import Registry
from app.fleet.store import Store
from app.fleet.window import LagHistogram
from app.telemetry import connect, schemas, topics
from app.telemetry.broker_url import parse_broker_url

log = logging.getLogger(__name__)

KINDS = ("status", "metrics", "detections", "bench")
SHARED_KINDS = ("metrics", "detections")  # retained kinds are never sent on shared subscriptions
METRICS_REQUIRED = frozenset(schemas.schema("metrics")["required"])
_NUM = (int, float)


@dataclass
class MonitorStats:
    """Counters of the ingest path (for the benchmark and the view's footer)."""

    received: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    malformed: dict[str, int] = field(default_factory=dict)
    validated: int = 0
    history_rows: int = 0
    history_errors: int = 0
    lag: LagHistogram = field(default_factory=LagHistogram)
    connected: bool = False
    last_rx: float = 0.0
    started: float = field(default_factory=time.time)
    cpu_started: float = field(default_factory=time.process_time)

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": dict(self.received),
            "malformed": dict(self.malformed),
            "malformed_total": sum(self.malformed.values()),
            "schema_validated": self.validated,
            "history_rows": self.history_rows,
            "history_errors": self.history_errors,
            "lag_ms": self.lag.summary(),
            "connected": self.connected,
            "last_rx": self.last_rx,
            "uptime_s": round(time.time() - self.started, 1),
            "cpu_s": round(time.process_time() - self.cpu_started, 2),
        }


class Monitor:
    """Subscribes to lookout/+/{status,metrics,detections,bench}; `handle()` is the whole ingest path."""

    def __init__(
        self,
        registry: Registry,
        *,
        prefix: str = topics.DEFAULT_PREFIX,
        share_group: str | None = None,
        validate_every: int = 10,
        store: Store | None = None,
        history_interval_s: float = 10.0,
        qos: int = 1,
        protocol: str = "5",
        log_interval_s: float = 10.0,
    ) -> None:
        if validate_every < 1:
            raise ConfigError(f"validate_every must be >= 1, got {validate_every}")
        self.registry = registry
        self.prefix = prefix
        self.share_group = share_group
        if share_group:
            registry.track_seq = False  # a share of the messages has gaps by design
        self.validate_every = validate_every
        self.store = store
        self.history_interval_s = history_interval_s
        self.qos = qos
        if protocol not in ("5", "3.1.1"):
            raise ConfigError(f"MQTT protocol {protocol!r}: expected 5 or 3.1.1")
        self.protocol = protocol
        self.stats = MonitorStats()
        self._log_interval = log_interval_s
        self._log_state: dict[str, tuple[float, int]] = {}
        self._seen: set[tuple[str, str]] = set()
        self._n = 0
        self._client: Any = None
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self._last_bench: dict[str, str] = {}

    # ---- ingest ------------------------------------------------------------------------------------
    def handle(self, topic: str, payload: bytes, now: float) -> None:
        """Parse, check and apply one message. Never raises for bad input: counts it as malformed."""
        parsed = topics.parse(topic, self.prefix)
        if parsed is None or parsed.kind not in self.stats.received:
            self._malformed("topic", None, f"unexpected topic {topic[:120]!r}")
            return
        dev, kind = parsed.device_id, parsed.kind
        try:
            p = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            self._malformed("json", dev, f"{topic}: not JSON ({exc})")
            return
        if not isinstance(p, dict):
            self._malformed("json", dev, f"{topic}: payload is {type(p).__name__}, not an object")
            return
        self.stats.received[kind] += 1
        self.stats.last_rx = now
        try:
            if kind == "detections":
                self._detections(dev, p, now)
            elif kind == "metrics":
                self._metrics(dev, p, now)
            elif kind == "status":
                self._full_validate("status", dev, p)
                self.registry.apply_status(dev, p, now)
            else:
                self._full_validate("bench", dev, p)
                self.registry.apply_bench(dev, p, now)
                self._save_bench(dev, payload, now)
        except _Invalid as exc:
            self._malformed(f"schema:{kind}", dev, f"{topic}: {exc}")
        except Exception as exc:  # a bug must not stop the monitor: count it and go on
            self._malformed(f"error:{kind}", dev, f"{topic}: {type(exc).__name__}: {exc}")

    def _detections(self, dev: str, p: dict, now: float) -> None:
        seq, ts, dets = p.get("seq"), p.get("ts"), p.get("detections")
        if type(seq) is not int or seq < 1 or type(ts) not in _NUM or type(dets) is not list:
            raise _Invalid("detections payload needs integer seq >= 1, number ts and a detections list")
        self._sampled_validate("detections", dev, p)
        self.stats.lag.add((now - ts) * 1000.0)
        self.registry.apply_detections(dev, seq, len(dets), now)

    def _metrics(self, dev: str, p: dict, now: float) -> None:
        ts = p.get("ts")
        if not p.keys() >= METRICS_REQUIRED or type(ts) not in _NUM:
            missing = sorted(METRICS_REQUIRED - p.keys())
            raise _Invalid(f"metrics payload missing {', '.join(missing) or 'a number ts'}")
        for key in ("fps", "power_w", "energy_mj_per_inference", "temp_c", "cpu_percent", "rss_mb"):
            v = p[key]
            if v is not None and type(v) not in _NUM:
                raise _Invalid(f"metrics payload {key}: {v!r} is not a number or null")
        self._sampled_validate("metrics", dev, p)
        self.stats.lag.add((now - ts) * 1000.0)
        self.registry.apply_metrics(dev, p, now)

    def _sampled_validate(self, kind: str, dev: str, p: dict) -> None:
        self._n += 1
        if self._n % self.validate_every == 0 or (dev, kind) not in self._seen:
            self._seen.add((dev, kind))
            self._full_validate(kind, dev, p)

    def _full_validate(self, kind: str, dev: str, p: dict) -> None:
        self.stats.validated += 1
        try:
            schemas.validate(kind, p)
        except schemas.SchemaError as exc:
            raise _Invalid(str(exc)) from None

    def _malformed(self, reason: str, dev: str | None, detail: str) -> None:
        m = self.stats.malformed
        m[reason] = m.get(reason, 0) + 1
        self.registry.count_malformed(dev)
        now = time.monotonic()
        last, suppressed = self._log_state.get(reason, (0.0, 0))
        if now - last >= self._log_interval:
            more = f" (+{suppressed} more since last report)" if suppressed else ""
            log.warning("malformed message [%s]: %s%s", reason, detail[:300], more)
            self._log_state[reason] = (now, 0)
        else:
            self._log_state[reason] = (last, suppressed + 1)

    def _save_bench(self, dev: str, raw: bytes, now: float) -> None:
        text = raw.decode("utf-8")
        if self.store is not None and self._last_bench.get(dev) != text:
            try:
                self.store.add_bench(dev, now, text)
            except Exception as exc:  # database down: count it, keep ingesting, retry on the next copy
                self.stats.history_errors += 1
                log.error("fleet history: bench of %s not written: %s", dev, " ".join(str(exc).split())[:300])
                return
            self._last_bench[dev] = text

    # ---- MQTT --------------------------------------------------------------------------------------
    def filters(self) -> list[str]:
        """Subscription filters; with a share group only the non-retained, high-rate kinds are shared."""
        return [
            topics.wildcard(k, self.prefix, self.share_group if k in SHARED_KINDS else None) for k in KINDS
        ]

    def start(self, url: str, client_id: str | None = None, ca_file: str | None = None) -> None:
        """Connect (MQTT 5, paho VERSION2 callbacks) and run paho's network loop in its thread."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.subscribeoptions import SubscribeOptions

        addr = parse_broker_url(url, "--broker")
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"lookout-fleet-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5 if self.protocol == "5" else mqtt.MQTTv311,
        )
        if addr.username:
            client.username_pw_set(addr.username, addr.password)
        if addr.tls:
            client.tls_set(ca_certs=ca_file)
        client.reconnect_delay_set(1, 30)
        opts: Any = SubscribeOptions(qos=self.qos) if self.protocol == "5" else self.qos

        def on_connect(c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
            if reason.is_failure:
                log.error("%s", connect.describe_refusal(reason, addr.username))
                return
            self.stats.connected = True
            c.subscribe([(f, opts) for f in self.filters()])

        def on_disconnect(_c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
            self.stats.connected = False
            if not self._stop.is_set():
                log.warning("disconnected from broker (%s); reconnecting", reason)

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            self.handle(msg.topic, msg.payload, time.time())

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_message = on_message
        try:
            client.connect(addr.host, addr.port, keepalive=30)
        except (OSError, ValueError) as exc:  # ssl.CertificateError is a ValueError too
            why = connect.describe_error(exc, addr.host)
            raise ConfigError(f"cannot connect to broker {addr}: {why}") from None
        self._client = client
        client.loop_start()
        if self.store is not None:
            self._flusher = threading.Thread(target=self._flush_loop, name="fleet-history", daemon=True)
            self._flusher.start()

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.history_interval_s):
            self.flush_history()

    def flush_history(self) -> int:
        """Write one row per device changed since the last flush; returns rows written.

        A failed write (database down, disk full) is counted and logged; the monitor keeps going and
        the devices' next change is written at the next flush."""
        if self.store is None:
            return 0
        rows = self.registry.take_dirty(time.time())
        if not rows:
            return 0
        try:
            self.store.add_samples(rows, time.time())
        except Exception as exc:
            self.stats.history_errors += 1
            log.error("fleet history: %d rows not written: %s", len(rows), " ".join(str(exc).split())[:300])
            return 0
        self.stats.history_rows += len(rows)
        return len(rows)

    def stop(self) -> None:
        self._stop.set()
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
        if self._flusher is not None:
            self._flusher.join(timeout=5)
            self._flusher = None
        self.flush_history()


class _Invalid(Exception):
    """Internal: a payload failed a structural or schema check."""
