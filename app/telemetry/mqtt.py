"""The device's MQTT client: status/detections/metrics/bench/events/presence/snapshot out, commands in,
store-and-forward.

Publishing never blocks on the network: `publish_*` validates the payload, writes it to the SQLite
spool and wakes the sender thread, which hands spooled messages to paho in order with a bounded
number in flight and deletes each one when its PUBACK arrives. paho's own network thread
(loop_start) does all socket I/O (TLS sockets must not be written from two threads) and reconnects
with exponential backoff; on_pre_connect adds jitter. After a reconnect paho resends what it had in
flight while handling the CONNACK; the sender resumes only when the SUBACK of the command
subscription arrives, which is after that, so order holds. After a restart the spool resends.
Delivery is at-least-once: a consumer may see a duplicate `seq` after a crash, never a silent gap
unless the spool's drop policy dropped it (counted in `dropped`).

When the spool cannot keep a message (a full disk, a write error), it is handed to paho directly
while the broker is connected (ahead of any spooled backlog, and not resent after a crash), and
otherwise dropped and counted with the reason (`dropped_reasons`, e.g. "disk full"). Acknowledged
messages that cannot be deleted from a full disk are remembered and deleted when there is room.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from app import __version__
from app.config import MqttConfig, SpoolConfig
from app.telemetry import connect, contract, discovery
from app.telemetry.broker_url import parse_broker_url
from app.telemetry.commands import CommandRouter
from app.telemetry.spool import PRIO_HIGH, Spool, SpoolError, SpoolWriteError
from app.telemetry.topics import Topics

log = logging.getLogger("lookout.telemetry")

WILL_PAYLOAD = contract.offline_will()
CommandHandler = Callable[[str, dict], dict]


class Telemetry:
    """One device's MQTT session. Thread-safe publish_* methods; start() once, stop() once."""

    def __init__(
        self,
        mqtt_cfg: MqttConfig,
        spool_cfg: SpoolConfig,
        device_id: str,
        state_dir: Path,
        *,
        command_handler: CommandHandler | None = None,
        max_inflight: int = 32,
        reconnect_min_s: float = 0.5,
        client_id: str | None = None,
    ) -> None:
        self.cfg = mqtt_cfg
        self.topics = Topics(device_id, mqtt_cfg.topic_prefix)
        self.device_id = device_id
        addr = parse_broker_url(mqtt_cfg.url, "mqtt.url")
        self.host, self.port, self.tls = addr.host, addr.port, addr.tls
        self.username = mqtt_cfg.username or addr.username
        self.password = (
            mqtt_cfg.password.get_secret_value() if mqtt_cfg.password is not None else addr.password
        )
        self.mqtt5 = mqtt_cfg.protocol == "5"
        self.max_inflight = max_inflight
        self.reconnect_min_s = min(reconnect_min_s, mqtt_cfg.reconnect_max_s)
        self.started_at = time.time()
        self.spool = Spool(
            Path(state_dir) / "spool.sqlite",
            spool_cfg.max_messages,
            spool_cfg.max_age_s,
            spool_cfg.drop_policy,
        )
        self.commands = CommandRouter(self.topics, command_handler, self._reply)
        self._status: dict[str, Any] | None = None
        self._labels: tuple[str, ...] = ()  # tracked labels: Home Assistant entities per label
        self._camera = False  # snapshots are published: a Home Assistant camera entity
        self._discovery_file = Path(state_dir) / "homeassistant-topics.json"
        self._discovery_topics = discovery.read_published(self._discovery_file, self.topics)  # earlier runs'
        self._discovery_lock = threading.Lock()  # network thread (connect) and set_labels
        self._client = self._make_client(client_id or f"lookout-{device_id}")
        # sender state: row ids handed to paho and not yet acknowledged; mid -> row id
        self._map_lock = threading.Lock()
        self._mid_to_row: dict[int, int] = {}
        self._early: dict[int, Any] = {}  # PUBACKs that beat publish() returning the mid
        self._acks: deque[tuple[int, Any]] = deque()
        self._handed: set[int] = set()
        self._undeleted: set[int] = set()  # acknowledged, but the spool could not delete them yet
        self._next_direct = -1  # pseudo row ids (negative) of messages sent without the spool
        self.spool_error: str | None = None  # why the spool cannot keep messages now, or None
        self._last_read_log = 0.0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._sender_stop = threading.Event()
        self._ready = threading.Event()  # connected, CONNACK (and paho's resend) handled, SUBACK in
        self._ever_connected = False
        self._attempts = 0  # connection attempts since the last successful CONNACK
        self._counts = {"published": 0, "acked": 0, "rejected": 0, "connects": 0, "unspooled": 0}
        self.last_error: str | None = None
        self._warned: str | None = None  # the connection error last logged as a warning
        self._threads: list[threading.Thread] = []
        self._cmd_sub_mid = -1
        self._stopped = False

    # --- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the network, sender and command threads; returns at once (connects in background)."""
        self.commands.start()
        t = threading.Thread(target=self._send_loop, name=f"mqtt-send-{self.device_id}", daemon=True)
        t.start()
        self._threads.append(t)
        self._client.loop_start()

    def stop(self, final_state: str = "stopped", timeout_s: float = 5.0) -> None:
        """Publish the final status, flush what the spool can within timeout_s, disconnect cleanly.

        Unsent messages stay in the spool for the next start. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self.publish_status(state=final_state)
        deadline = time.monotonic() + timeout_s
        while self.spool.depth - len(self._undeleted) > 0 and time.monotonic() < deadline:
            if not self._ready.is_set() and self._attempts >= 2:
                break  # the broker is unreachable (an attempt failed): keep the rest for next start
            self._wake.set()
            time.sleep(0.02)
        self._stopping.set()
        self._sender_stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=5)
        try:
            self._client.disconnect()  # a normal DISCONNECT: the broker does not publish the will
        except Exception as exc:
            log.debug("disconnect: %s", exc)
        self._client.loop_stop()
        self.commands.stop()
        self.spool.close()

    # --- publishing (never blocks on the network) --------------------------------------------------
    # Every payload goes through its contract model (app/telemetry/contract.py) before it is spooled:
    # an invalid one raises ContractError here, in the caller, and never reaches the wire.
    def publish_status(self, **fields: Any) -> None:
        """Retained, QoS 1. Merges `fields` into the current status; fills version, started_at, spool, ts."""
        status = dict(self._status or {})
        status.update(fields)
        status.setdefault("state", "online")
        for key in ("runtime", "model", "fallback", "board"):
            status.setdefault(key, None)
        status["version"] = __version__
        status["started_at"] = self.started_at
        status["spool_depth"] = self.spool.depth
        status["spool_dropped"] = self.spool.dropped
        status["spool_drop_reasons"] = self.spool.drop_reasons
        status["ts"] = time.time()
        body = contract.build("status", status)
        self._status = status
        data = body.to_json()
        self._keep(lambda: self.spool.put(self.topics.status, data, 1, True, prio=PRIO_HIGH, replace=True))

    def publish_detections(self, fields: dict[str, Any]) -> int:
        """QoS 1. Allocates the persisted, gap-free `seq` (returned); fills ts when absent."""
        return self._publish_with_seq(
            "detections", self.topics.detections, {"ts": time.time(), **fields}, "seq"
        )

    def publish_event(self, fields: dict[str, Any]) -> int:
        """QoS 1. Allocates the events topic's own persisted, gap-free `seq` (returned)."""
        return self._publish_with_seq("events", self.topics.events, fields, "events_seq")

    def _publish_with_seq(self, kind: str, topic: str, fields: dict[str, Any], counter: str) -> int:
        """Build the `kind` payload (checked before a seq is used), then allocate the next value of
        `counter` as its `seq` and spool it, in one transaction."""
        body = contract.build(kind, {**fields, "seq": 1})

        def make(seq: int) -> bytes:
            return body.model_copy(update={"seq": seq}).to_json()

        try:
            _, seq = self.spool.put_seq(topic, make, 1, False, counter=counter)
        except SpoolWriteError as exc:  # not kept: sent directly if connected, else counted; seq consumed
            self._not_kept(exc)
            seq = exc.seq
        else:
            self._spool_ok()
        self._wake.set()
        return seq

    def publish_presence(self, payload: dict[str, Any]) -> None:
        """Retained, QoS 1: the labels present now (only the newest unsent one is kept)."""
        data = contract.build("presence", payload).to_json()
        self._keep(lambda: self.spool.put(self.topics.presence, data, 1, True, replace=True))

    def publish_snapshot(self, jpeg: bytes) -> None:
        """Retained, QoS 1: a bare JPEG (only the newest unsent one is kept)."""
        data = bytes(jpeg)
        self._keep(lambda: self.spool.put(self.topics.snapshot, data, 1, True, replace=True))

    def set_labels(self, labels: list[str] | tuple[str, ...], *, camera: bool = False) -> None:
        """The tracked labels (Home Assistant gets an occupancy and a count entity for each) and whether
        snapshots are published (a camera entity); discovery is published again when they change."""
        labels = tuple(labels)
        if (labels, camera) != (self._labels, self._camera):
            self._labels, self._camera = labels, camera
            if self.cfg.homeassistant and self._ready.is_set():
                self._publish_discovery()

    def publish_metrics(self, payload: contract.Metrics | dict[str, Any]) -> None:
        """QoS 1. A dict gets ts, spool_depth, spool_dropped and spool_drop_reasons filled when absent."""
        if not isinstance(payload, contract.Metrics):
            filled = {
                "ts": time.time(),
                "spool_depth": self.spool.depth,
                "spool_dropped": self.spool.dropped,
                "spool_drop_reasons": self.spool.drop_reasons,
            }
            payload = contract.build("metrics", {**filled, **payload})
        data = payload.to_json()
        self._keep(lambda: self.spool.put(self.topics.metrics, data, 1, False))

    def publish_bench(self, payload: dict[str, Any]) -> None:
        """Retained, QoS 1: the `lookout bench` JSON (fills ts when absent)."""
        data = contract.build("bench", {"ts": time.time(), **payload}).to_json()
        self._keep(lambda: self.spool.put(self.topics.bench, data, 1, True, replace=True))

    def stats(self) -> dict[str, Any]:
        """published (handed to paho), acked, rejected (PUBACK with an error code), spool_depth,
        dropped (lost: by the spool's bounds, or not kept and not sent; persisted) and dropped_reasons,
        unspooled (sent directly because the spool could not keep them), spool_error (why it cannot
        now, or null), spool_storage (file, or memory and why), connected, last_seq (detections), last_events_seq, last_error."""
        with self._map_lock:
            counts = dict(self._counts)
        return {
            "published": counts["published"],
            "acked": counts["acked"],
            "rejected": counts["rejected"],
            "spool_depth": self.spool.depth,
            "dropped": self.spool.dropped,
            "dropped_reasons": self.spool.drop_reasons,
            "unspooled": counts["unspooled"],
            "spool_error": self.spool_error,
            "spool_storage": self.spool.storage,
            "connected": self._ready.is_set(),
            "connects": counts["connects"],
            "last_seq": self.spool.last_seq,
            "last_events_seq": self.spool.last_of("events_seq"),
            "last_error": self.last_error,
        }

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        """Block until connected and subscribed to commands (tests, startup); False on timeout."""
        return self._ready.wait(timeout_s)

    def _reply(
        self, verb: str, reply: dict[str, Any], response_topic: str | None, correlation: bytes | None
    ) -> None:
        """The reply on `<prefix>/<id>/cmd/<verb>/reply`, and with MQTT 5 on the request's response topic
        (already checked to lie under that reply topic) with its correlation data; once when they are equal."""
        try:
            data = contract.build("cmd_reply", reply).to_json()
        except contract.ContractError as exc:  # the router checked it; a reply is never lost
            log.error("reply to %s does not fit the contract: %s", verb, exc)
            data = contract.CommandReply(ok=False, verb=verb, ts=time.time(), error=str(exc)).to_json()
        own = self.topics.cmd_reply(verb)
        if not (self.mqtt5 and response_topic == own):
            self._keep(lambda: self.spool.put(own, data, 1, False, prio=PRIO_HIGH))
        if response_topic and self.mqtt5:
            self._keep(
                lambda: self.spool.put(
                    response_topic, data, 1, False, prio=PRIO_HIGH, correlation=correlation
                )
            )

    # --- when the spool cannot keep a message ------------------------------------------------------
    def _keep(self, put: Callable[[], object]) -> None:
        """Spool a message (`put` does); when the spool cannot keep it, send it now or count it lost."""
        try:
            put()
        except SpoolWriteError as exc:
            self._not_kept(exc)
        else:
            self._spool_ok()
        self._wake.set()

    def _not_kept(self, exc: SpoolWriteError) -> None:
        if self.spool_error != exc.reason:
            self.spool_error = exc.reason
            log.warning(
                "spool cannot keep messages (%s): sending them directly while the broker is connected, "
                "dropping and counting them otherwise",
                exc.reason,
            )
        # connected (the CONNACK is in, e.g. the status republished by _on_connect): paho sends it now
        if not (self._client.is_connected() and self._publish_direct(exc)):
            self.spool.note_dropped(exc.reason)

    def _spool_ok(self) -> None:
        if self.spool_error is not None:
            log.warning("spool keeps messages again (after: %s)", self.spool_error)
            self.spool_error = None

    def _publish_direct(self, exc: SpoolWriteError) -> bool:
        """Hand a message the spool could not keep to paho; its PUBACK is counted like any other."""
        try:
            info = self._client.publish(
                exc.topic, exc.payload, exc.qos, exc.retain, _props(exc.correlation, self.mqtt5)
            )
        except ValueError as err:  # e.g. a wildcard in a response topic: undeliverable
            log.warning("unpublishable message on %r: %s", exc.topic, err)
            return False
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            return False
        with self._map_lock:
            row, self._next_direct = self._next_direct, self._next_direct - 1
            self._counts["published"] += 1
            self._counts["unspooled"] += 1
            early = self._early.pop(info.mid, None)
            if early is not None:
                self._acks.append((row, early))
            else:
                self._mid_to_row[info.mid] = row
        return True

    # --- paho client -------------------------------------------------------------------------------
    def _make_client(self, client_id: str) -> mqtt.Client:
        proto = MQTTProtocolVersion.MQTTv5 if self.mqtt5 else MQTTProtocolVersion.MQTTv311
        kwargs: dict[str, Any] = {} if self.mqtt5 else {"clean_session": True}
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=proto, **kwargs)
        connect.configure(c, self.tls, self.cfg.tls, self.username, self.password)
        c.will_set(self.topics.status, WILL_PAYLOAD, qos=1, retain=True)
        c.max_inflight_messages_set(self.max_inflight)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_pre_connect = self._on_pre_connect
        c.on_connect_fail = self._on_connect_fail
        c.reconnect_delay_set(self.reconnect_min_s, self.cfg.reconnect_max_s)
        if self.mqtt5:
            c.connect_async(self.host, self.port, self.cfg.keepalive_s, clean_start=True)
        else:
            c.connect_async(self.host, self.port, self.cfg.keepalive_s)
        return c

    def _on_connect(self, client: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self._connect_error(connect.describe_refusal(reason, self.username))
            return
        self._warned = None
        self._ever_connected = True
        self._attempts = 0
        with self._map_lock:
            self._counts["connects"] += 1
        # Retained commands never run: with MQTT 5 the broker is asked not to send them (Retain Handling 2);
        # with 3.1.1 it sends them flagged as retained and the router refuses them.
        if self.mqtt5:
            opts = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
            self._cmd_sub_mid = client.subscribe(self.topics.cmd_filter, options=opts)[1]
        else:
            self._cmd_sub_mid = client.subscribe(self.topics.cmd_filter, qos=1)[1]
        if self.cfg.homeassistant:
            client.subscribe(discovery.HA_STATUS_TOPIC, qos=1)
        if self.cfg.homeassistant or self._discovery_topics:
            self._publish_discovery()  # with Home Assistant off: removes what an earlier run made
        if self._status is not None:  # the will may have replaced our retained status meanwhile
            self.publish_status()

    def _on_subscribe(self, _c: mqtt.Client, _ud: Any, mid: int, _codes: Any, _props: Any) -> None:
        # The SUBACK is processed after the CONNACK handler (and paho's resend of what was in
        # flight) has returned: from here the sender may hand over new messages in order.
        if mid == self._cmd_sub_mid:
            self._ready.set()
            self._wake.set()

    def _on_disconnect(self, _c: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        was_ready = self._ready.is_set()
        self._ready.clear()
        if was_ready and not self._stopping.is_set():  # else keep the refusal reason
            self.last_error = f"disconnected: {reason}"
            log.info("mqtt %s:%s %s", self.host, self.port, self.last_error)

    def _on_connect_fail(self, _c: mqtt.Client, _ud: Any) -> None:
        # paho calls this inside its `except OSError:` around the connect: the exception is still current
        why = connect.describe_error(sys.exc_info()[1], self.host)
        self._connect_error(f"cannot connect to {self.host}:{self.port}: {why}")

    def _connect_error(self, why: str) -> None:
        """Remember why connecting failed; a new reason is a warning (seen without -v), a repeat is not."""
        self.last_error = why
        if why != self._warned:
            self._warned = why
            log.warning("mqtt: %s (retrying with backoff)", why)
        else:
            log.debug("mqtt: %s", why)

    def _on_pre_connect(self, _c: mqtt.Client, _ud: Any) -> None:
        # paho's backoff doubles from reconnect_min_s to reconnect_max_s without jitter; add up to half
        # of the current delay so a fleet does not reconnect in lockstep after a broker restart.
        self._attempts += 1
        if self._ever_connected:
            delay = min(self.reconnect_min_s * 2 ** (self._attempts - 1), self.cfg.reconnect_max_s)
            self._stopping.wait(random.uniform(0, delay / 2))

    def _on_publish(self, _c: mqtt.Client, _ud: Any, mid: int, reason: Any, _props: Any) -> None:
        # Runs on the network thread, possibly before the sender has recorded `mid` (paho releases
        # its lock before publish() returns): park those in _early for the sender to resolve.
        with self._map_lock:
            row = self._mid_to_row.pop(mid, None)
            if row is None:
                self._early[mid] = reason
                return
            self._acks.append((row, reason))
        self._wake.set()

    def _on_message(self, _c: mqtt.Client, _ud: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            if msg.topic == discovery.HA_STATUS_TOPIC:
                if msg.payload.strip() == b"online":
                    self._publish_discovery()
                return
            props = getattr(msg, "properties", None)
            response_topic = getattr(props, "ResponseTopic", None) if props else None
            correlation = getattr(props, "CorrelationData", None) if props else None
            self.commands.submit(
                msg.topic, msg.payload, response_topic, correlation, retained=bool(msg.retain)
            )
        except Exception:  # never let a message kill the network thread
            log.exception("handling message on %s", msg.topic)

    def _publish_discovery(self) -> None:
        with self._discovery_lock:
            docs = {}
            if self.cfg.homeassistant:
                docs = discovery.configs(self.topics, __version__, self._labels, camera=self._camera)
            for topic, cfg in docs.items():
                data = _dumps(cfg)
                self._keep(
                    lambda t=topic, d=data: self.spool.put(t, d, 1, True, prio=PRIO_HIGH, replace=True)
                )
            for gone in sorted(self._discovery_topics - docs.keys()):  # empty config: entity removed
                self._keep(lambda t=gone: self.spool.put(t, b"", 1, True, prio=PRIO_HIGH, replace=True))
            if self._discovery_topics != docs.keys():
                discovery.write_published(self._discovery_file, set(docs))
            self._discovery_topics = set(docs)

    # --- threads -------------------------------------------------------------------------------------
    def _send_loop(self) -> None:
        last_purge = 0.0
        while True:
            self._wake.wait(timeout=0.5)
            self._wake.clear()
            self._drain_acks()
            if self._sender_stop.is_set():
                return
            now = time.monotonic()
            if now - last_purge > 5.0:
                last_purge = now
                try:
                    if self.spool.purge_expired():
                        log.warning("spool: dropped messages older than %.0f s", self.spool.max_age_s)
                except SpoolError as exc:
                    log.debug("spool purge: %s", exc)
            if self._undeleted:
                self._delete_acked([])
            if self._ready.is_set() and len(self._handed) < self.max_inflight:
                try:
                    self._hand_over()
                except SpoolError as exc:  # e.g. the file was damaged under us: keep the thread alive
                    self._log_spool_read(exc)

    def _log_spool_read(self, exc: SpoolError) -> None:
        now = time.monotonic()
        if now - self._last_read_log > 60:
            self._last_read_log = now
            log.error("cannot read the spool: %s", exc)

    def _hand_over(self) -> None:
        skip = self._handed | self._undeleted
        for row in self.spool.pending(self.max_inflight - len(self._handed), exclude=skip):
            try:
                info = self._client.publish(
                    row.topic, row.payload, row.qos, row.retain, _props(row.correlation, self.mqtt5)
                )
            except ValueError as exc:  # e.g. a wildcard in a response topic: undeliverable
                log.warning("dropping unpublishable message on %r: %s", row.topic, exc)
                self._delete_acked([row.id])
                continue
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                log.info("paho refused a publish (%s); retrying later", info.rc)
                return
            self._handed.add(row.id)
            with self._map_lock:
                self._counts["published"] += 1
                early = self._early.pop(info.mid, None)
                if early is not None:
                    self._acks.append((row.id, early))
                else:
                    self._mid_to_row[info.mid] = row.id
            if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
                return  # queued in paho; it sends it after the next CONNACK
        self._drain_acks()

    def _drain_acks(self) -> None:
        done: list[int] = []
        with self._map_lock:
            while self._acks:
                row, reason = self._acks.popleft()
                done.append(row)
                if getattr(reason, "is_failure", False):
                    self._counts["rejected"] += 1
                    log.warning("broker rejected message %d: %s", row, reason)
            self._counts["acked"] += len(done)
        spooled = [row for row in done if row > 0]  # negative: sent directly, not in the spool
        if spooled:
            self._handed.difference_update(spooled)
            self._delete_acked(spooled)
            if self.spool.depth:
                self._wake.set()

    def _delete_acked(self, rows: list[int]) -> None:
        """Delete acknowledged rows (and any left over); on a full disk remember them for later."""
        todo = [*rows, *self._undeleted]
        try:
            self.spool.ack_many(todo)
        except SpoolWriteError:
            self._undeleted.update(rows)  # not sent again; deleted once there is room
        else:
            self._undeleted.clear()


def _props(correlation: bytes | None, mqtt5: bool) -> Properties | None:
    """PUBLISH properties carrying a request's correlation data (MQTT 5 only)."""
    if correlation is None or not mqtt5:
        return None
    props = Properties(PacketTypes.PUBLISH)
    props.CorrelationData = correlation
    return props


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
