"""The fleet monitor: an MQTT 5 subscriber that feeds the registry, cheaply, and never crashes on input.

Every message is parsed with the payload contract (app/telemetry/contract.py): the same typed models the
device builds with, so what the registry reads is exactly what a device sends. Parsing a metrics message
with its model costs a few percent of what a jsonschema check did (figures: docs/fleet.md), so every
message is checked in full. A payload of a contract version the monitor does not speak is counted as
`unsupported_version`, apart from malformed ones (not JSON, wrong shape, unexpected topic).

Retained state arrives whole: status and bench (retained, one message per device) are subscribed at
QoS 0, metrics and detections at `qos`. mosquitto queues at most `max_queued_messages` (1000 by default)
QoS 1 messages per client beyond the 20 in flight and drops the rest silently: at QoS 1, 10,000 retained
statuses reached the monitor as 1,020 (docs/fleet.md, "Large fleets"). The monitor says when it can tell
that it missed messages (`missed()`): the broker's `$SYS/broker/publish/messages/dropped` counter rising
while it is connected, and devices that sent metrics or detections but whose status never arrived.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from app.errors import ConfigError
from app.fleet.registry import Registry
from app.fleet.store import Store
from app.fleet.window import LagHistogram
from app.telemetry import connect, contract, topics
from app.telemetry.broker_url import parse_broker_url

log = logging.getLogger(__name__)

KINDS = ("status", "metrics", "detections", "bench", "events", "presence", "snapshot")
SHARED_KINDS = ("metrics", "detections")  # retained kinds are never sent on shared subscriptions
# at QoS 0: mosquitto's QoS 1 queue limit drops retained state
RETAINED_KINDS = ("status", "bench", "presence", "snapshot")
SYS_DROPPED = "$SYS/broker/publish/messages/dropped"  # mosquitto: dropped by queue limits, all clients
MAX_SNAPSHOT_BYTES = 2 * 1024 * 1024
JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass
class MonitorStats:
    """Counters of the ingest path (for the benchmark and the view's footer)."""

    received: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    malformed: dict[str, int] = field(default_factory=dict)
    unsupported_version: dict[str, int] = field(default_factory=dict)
    history_rows: int = 0
    history_errors: int = 0
    lag: LagHistogram = field(default_factory=LagHistogram)
    connected: bool = False
    last_error: str | None = None  # why the broker last refused us (e.g. "Not authorized")
    last_rx: float = 0.0
    started: float = field(default_factory=time.time)
    cpu_started: float = field(default_factory=time.process_time)
    missed: Any = None  # () -> what the monitor can tell it missed (set by the Monitor)

    def as_dict(self) -> dict[str, Any]:
        return {
            "missed": self.missed() if self.missed is not None else {},
            "received": dict(self.received),
            "malformed": dict(self.malformed),
            "malformed_total": sum(self.malformed.values()),
            "unsupported_version": dict(self.unsupported_version),
            "unsupported_version_total": sum(self.unsupported_version.values()),
            "history_rows": self.history_rows,
            "history_errors": self.history_errors,
            "lag_ms": self.lag.summary(),
            "connected": self.connected,
            "last_rx": self.last_rx,
            "uptime_s": round(time.time() - self.started, 1),
            "cpu_s": round(time.process_time() - self.cpu_started, 2),
        }


class Monitor:
    """Subscribes to lookout/+/{status,metrics,detections,bench,events,presence,snapshot}; `handle()` is
    the whole ingest path. Events and presence (a few per minute) are always fully validated."""

    def __init__(
        self,
        registry: Registry,
        *,
        prefix: str = topics.DEFAULT_PREFIX,
        share_group: str | None = None,
        store: Store | None = None,
        history_interval_s: float = 10.0,
        qos: int = 1,
        protocol: str = "5",
        log_interval_s: float = 10.0,
    ) -> None:
        self.registry = registry
        self.prefix = prefix
        self.share_group = share_group
        if share_group:
            registry.track_seq = False  # a share of the messages has gaps by design
        self.store = store
        self.history_interval_s = history_interval_s
        self.qos = qos
        if protocol not in ("5", "3.1.1"):
            raise ConfigError(f"MQTT protocol {protocol!r}: expected 5 or 3.1.1")
        self.protocol = protocol
        self.stats = MonitorStats()
        self.stats.missed = self.missed
        self._sys_dropped: tuple[int, int] | None = None  # (first value seen, latest)
        self._log_interval = log_interval_s
        self._log_state: dict[str, tuple[float, int]] = {}
        self._client: Any = None
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self._last_bench: dict[str, str] = {}

    # ---- ingest ------------------------------------------------------------------------------------
    def handle(self, topic: str, payload: bytes, now: float) -> None:
        """Parse, check and apply one message. Never raises for bad input: counts it."""
        if topic == SYS_DROPPED:
            self._broker_dropped(payload)
            return
        parsed = topics.parse(topic, self.prefix)
        if parsed is None or parsed.kind not in self.stats.received:
            self._malformed("topic", None, f"unexpected topic {topic[:120]!r}")
            return
        dev, kind = parsed.device_id, parsed.kind
        if kind == "snapshot":  # a bare JPEG, not JSON
            self._snapshot(dev, payload, now)
            return
        try:
            data = contract.loads(payload)
        except (
            ValueError,
            UnicodeDecodeError,
            RecursionError,
        ) as exc:  # (nesting deeper than the parser goes)
            self._malformed("json", dev, f"{topic}: not a JSON object ({exc})")
            return
        self.stats.received[kind] += 1
        self.stats.last_rx = now
        try:
            msg = contract.parse(kind, data)
        except contract.UnsupportedVersion as exc:
            self._unsupported(dev, exc)
            return
        except contract.ContractError as exc:
            self._malformed(f"schema:{kind}", dev, f"{topic}: {exc}")
            return
        try:
            self._apply(dev, msg, payload, now)
        except Exception as exc:  # a bug must not stop the monitor: count it and go on
            self._malformed(f"error:{kind}", dev, f"{topic}: {type(exc).__name__}: {exc}")

    def _apply(self, dev: str, msg: contract.Payload, raw: bytes, now: float) -> None:
        if isinstance(msg, contract.Detections):
            self._add_lag(now, msg.ts)
            self.registry.apply_detections(dev, msg.seq, len(msg.detections), now)
        elif isinstance(msg, contract.Metrics):
            self._add_lag(now, msg.ts)
            self.registry.apply_metrics(dev, msg, now)
        elif isinstance(msg, contract.Status):
            self.registry.apply_status(dev, msg, now)
        elif isinstance(msg, contract.Bench):
            self.registry.apply_bench(dev, msg, now)
            self._save_bench(dev, raw, now)
        elif isinstance(msg, contract.Event):
            self.registry.apply_event(dev, msg, now)
        elif isinstance(msg, contract.Presence):
            self.registry.apply_presence(dev, msg, now)

    def _snapshot(self, dev: str, jpeg: bytes, now: float) -> None:
        """Keep a device's latest snapshot if it is a JPEG of bounded size (an empty retained message
        clears it); anything else is counted as malformed and never served."""
        if jpeg and (not jpeg.startswith(JPEG_MAGIC) or len(jpeg) > MAX_SNAPSHOT_BYTES):
            why = "not a JPEG" if not jpeg.startswith(JPEG_MAGIC) else f"{len(jpeg)} bytes"
            self._malformed("snapshot", dev, f"snapshot of {dev}: {why}")
            return
        self.stats.received["snapshot"] += 1
        self.stats.last_rx = now
        self.registry.apply_snapshot(dev, bytes(jpeg) or None, now)

    def _add_lag(self, now: float, ts: float) -> None:
        lag_ms = (now - ts) * 1000.0
        if math.isfinite(lag_ms):  # a ts of -1e305 is a finite number, but no lag to speak of
            self.stats.lag.add(lag_ms)

    def _broker_dropped(self, payload: bytes) -> None:
        try:
            value = int(payload)
        except ValueError:
            return
        first = self._sys_dropped[0] if self._sys_dropped else value
        self._sys_dropped = (first, value)

    def missed(self) -> dict[str, int | None]:
        """What the monitor can tell it missed: `broker_dropped` (the broker's count of messages dropped by
        its queue limits since the monitor subscribed, for all clients; None where $SYS is not readable)
        and `devices_without_status` (devices heard from whose retained status never arrived)."""
        dropped = self._sys_dropped[1] - self._sys_dropped[0] if self._sys_dropped else None
        with self.registry.lock:
            no_status = sum(1 for d in self.registry.devices.values() if d.n_status == 0)
        return {"broker_dropped": dropped, "devices_without_status": no_status}

    def _unsupported(self, dev: str, exc: contract.UnsupportedVersion) -> None:
        key = "none" if exc.version is None else str(exc.version)
        u = self.stats.unsupported_version
        u[key] = u.get(key, 0) + 1
        self.registry.count_unsupported(dev)
        self._log_limited(f"version:{key}", f"unsupported payload version from {dev}: {exc}")

    def _malformed(self, reason: str, dev: str | None, detail: str) -> None:
        m = self.stats.malformed
        m[reason] = m.get(reason, 0) + 1
        self.registry.count_malformed(dev)
        self._log_limited(reason, f"malformed message [{reason}]: {detail}")

    def _log_limited(self, reason: str, text: str) -> None:
        """At most one warning per reason per log interval, with the number held back since the last."""
        now = time.monotonic()
        last, suppressed = self._log_state.get(reason, (0.0, 0))
        if now - last >= self._log_interval:
            more = f" (+{suppressed} more since last report)" if suppressed else ""
            log.warning("%s%s", text[:300], more)
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
        return [f for f, _ in self.subscriptions() if f != SYS_DROPPED]

    def subscriptions(self) -> list[tuple[str, int]]:
        """(filter, QoS): mosquitto's dropped-messages counter first (its retained value, sent before the
        retained statuses, is the baseline), retained kinds at QoS 0 so that they arrive whole, the
        streams at `qos`."""
        subs = [
            (
                topics.wildcard(k, self.prefix, self.share_group if k in SHARED_KINDS else None),
                0 if k in RETAINED_KINDS else self.qos,
            )
            for k in KINDS
        ]
        return [(SYS_DROPPED, 0), *subs]

    def start(
        self, url: str, client_id: str | None = None, ca_file: str | None = None, password: str | None = None
    ) -> None:
        """Connect (MQTT 5, paho VERSION2 callbacks) and run paho's network loop in its thread.

        `password` (from a file or the environment) takes the place of the URL's; the user is the URL's."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.subscribeoptions import SubscribeOptions

        addr = parse_broker_url(url, "--broker")
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"lookout-fleet-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5 if self.protocol == "5" else mqtt.MQTTv311,
        )
        if password is not None and not addr.username:
            raise ConfigError("a broker password needs a user: give it in the URL, mqtt://USER@host")
        if addr.username:
            client.username_pw_set(addr.username, password if password is not None else addr.password)
        if addr.tls:
            client.tls_set(ca_certs=ca_file)
        client.reconnect_delay_set(1, 30)

        def opts(qos: int) -> Any:
            return SubscribeOptions(qos=qos) if self.protocol == "5" else qos

        def on_connect(c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
            if reason.is_failure:
                self.stats.last_error = connect.describe_refusal(reason, addr.username)
                log.error("%s", self.stats.last_error)
                return
            self.stats.connected = True
            self._sys_dropped = None  # a new session: count from the broker's next report
            c.subscribe([(f, opts(q)) for f, q in self.subscriptions()])

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


def missed_warning(missed: dict[str, Any]) -> str | None:
    """One line saying what the monitor missed, or None."""
    parts = []
    if missed.get("broker_dropped"):
        parts.append(
            f"the broker dropped {missed['broker_dropped']} messages since the monitor subscribed (its count, "
            "for all clients): raise max_queued_messages in mosquitto.conf (docs/fleet.md)"
        )
    if missed.get("devices_without_status"):
        parts.append(
            f"{missed['devices_without_status']} devices sent metrics or detections but no status arrived"
        )
    return "missed messages: " + "; ".join(parts) if parts else None
