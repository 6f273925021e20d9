"""Fixtures for the telemetry tests: a subscriber that records messages, Telemetry factories,
a mosquitto with persistence (outage tests) and one with TLS + passwords + ACL."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from app.config import MqttConfig, SpoolConfig, TlsConfig
from app.telemetry.broker import Broker, mosquitto_path, start_broker
from app.telemetry.mqtt import Telemetry

HERE = Path(__file__).resolve().parent


def wait_until(pred: Callable[[], Any], timeout_s: float = 10.0, what: str = "condition") -> Any:
    """Poll pred() until truthy; fail the test (naming `what`) when timeout_s passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@dataclass
class Msg:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    properties: Any

    def json(self) -> Any:
        return json.loads(self.payload)


class Collector:
    """A real paho client subscribed to `filters`, recording every message it receives."""

    def __init__(
        self,
        host: str,
        port: int,
        filters: list[str],
        *,
        client_id: str | None = None,
        persistent: bool = False,
        protocol: int = mqtt.MQTTv5,
        username: str | None = None,
        password: str | None = None,
        tls: dict[str, str] | None = None,
    ) -> None:
        self.msgs: list[Msg] = []
        self.lock = threading.Lock()
        self.filters = filters
        self.subscribed = threading.Event()
        self.pub_reasons: dict[int, Any] = {}
        cid = client_id or f"collector-{id(self)}"
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=protocol)
        if username:
            self.c.username_pw_set(username, password)
        if tls:
            self.c.tls_set(ca_certs=tls["ca"], certfile=tls.get("cert"), keyfile=tls.get("key"))
        self.c.reconnect_delay_set(0.1, 0.3)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda *_a: self.subscribed.set()
        self.c.on_publish = self._on_publish
        props = None
        kwargs: dict[str, Any] = {}
        if protocol == mqtt.MQTTv5:
            kwargs["clean_start"] = not persistent
            if persistent:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = 3600
        self.c.connect_async(host, port, keepalive=30, properties=props, **kwargs)
        self.c.loop_start()
        assert self.subscribed.wait(10), f"collector could not subscribe on {host}:{port}"

    def _on_connect(self, c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            c.subscribe([(f, 1) for f in self.filters])

    def _on_message(self, _c: mqtt.Client, _u: Any, m: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.msgs.append(Msg(m.topic, m.payload, bool(m.retain), m.qos, getattr(m, "properties", None)))

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        self.pub_reasons[mid] = reason

    def on(self, suffix: str) -> list[Msg]:
        with self.lock:
            return [m for m in self.msgs if m.topic.endswith(suffix)]

    def wait_for(self, suffix: str, n: int = 1, timeout_s: float = 10.0) -> list[Msg]:
        return wait_until(
            lambda: len(self.on(suffix)) >= n and self.on(suffix), timeout_s, f"{n} message(s) on *{suffix}"
        )

    def seqs(self) -> list[int]:
        return [m.json()["seq"] for m in self.on("/detections")]

    def publish(
        self, topic: str, payload: bytes | str, props: Properties | None = None
    ) -> mqtt.MQTTMessageInfo:
        return self.c.publish(topic, payload, qos=1, properties=props)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def collect() -> Iterator[Callable[..., Collector]]:
    made: list[Collector] = []

    def make(broker: Broker, filters: list[str] | None = None, **kw: Any) -> Collector:
        c = Collector(broker.host, broker.port, filters or ["#"], **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def broker_outage(broker: Broker, seconds: float) -> tuple[float, float]:
    """Stop the broker process for `seconds`, then start it again (same port, persistent state): the
    (down, up) wall-clock times."""
    down = time.time()
    broker.stop_process()
    time.sleep(seconds)
    up = time.time()
    broker.start_process()
    return down, up


def mqtt_cfg(url: str, **kw: Any) -> MqttConfig:
    """Test config: sub-second reconnect backoff."""
    kw.setdefault("reconnect_max_s", 0.4)
    return MqttConfig(url=url, **kw)


@pytest.fixture
def telemetry(tmp_path: Path) -> Iterator[Callable[..., Telemetry]]:
    """Factory for started Telemetry instances (each its own state dir), stopped afterwards."""
    made: list[Telemetry] = []

    def make(
        url: str, device_id: str = "cam-1", *, spool: SpoolConfig | None = None, start: bool = True, **kw: Any
    ) -> Telemetry:
        mkw = {k: kw.pop(k) for k in list(kw) if k in MqttConfig.model_fields}
        t = Telemetry(
            mqtt_cfg(url, **mkw),
            spool or SpoolConfig(),
            device_id,
            tmp_path / f"state-{device_id}-{len(made)}",
            **kw,
        )
        made.append(t)
        if start:
            t.start()
        return t

    yield make
    for t in made:
        if t._threads:
            t.stop(timeout_s=1.0)


@pytest.fixture
def persistent_broker() -> Iterator[Broker]:
    """mosquitto with persistence, so a persistent subscriber's session and queue survive a restart."""
    if not mosquitto_path():
        pytest.fail("mosquitto is not installed")
    b = start_broker("mosquitto", extra_config="")
    persist = b.workdir / "persist"
    persist.mkdir()
    _give_to_mosquitto(persist, 0o700)  # written by mosquitto after it dropped privileges
    conf = b.workdir / "mosquitto.conf"
    text = conf.read_text().replace("persistence false", f"persistence true\npersistence_location {persist}/")
    conf.write_text(text)
    b.restart()
    try:
        yield b
    finally:
        b.stop()


def publisher_cmd(url: str, device_id: str, state_dir: Path, *extra: str) -> list[str]:
    import sys

    return [sys.executable, str(HERE / "publisher.py"), url, device_id, str(state_dir), *extra]


def start_publisher(url: str, device_id: str, state_dir: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        publisher_cmd(url, device_id, state_dir, *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(HERE.parent.parent),
    )


# --- TLS + password + ACL ---------------------------------------------------------------------------
@dataclass
class SecureBroker:
    broker: Broker
    dir: Path
    ca: Path
    clients: dict[str, tuple[Path, Path]]  # user -> (cert, key)
    passwords: dict[str, str]

    @property
    def url(self) -> str:
        return f"mqtts://{self.broker.host}:{self.broker.port}"

    def tls(self, user: str) -> TlsConfig:
        cert, key = self.clients[user]
        return TlsConfig(ca_file=self.ca, cert_file=cert, key_file=key)

    def tls_dict(self, user: str) -> dict[str, str]:
        cert, key = self.clients[user]
        return {"ca": str(self.ca), "cert": str(cert), "key": str(key)}


ACL = """\
# monitors: read everything under lookout/, write nothing
user monitor
topic read lookout/#

# devices: the username is the device id; each writes only its own tree
pattern readwrite lookout/%u/#
pattern write homeassistant/sensor/%u/#
pattern write homeassistant/binary_sensor/%u/#
pattern write homeassistant/camera/%u/#
pattern read homeassistant/status
"""


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d: Path, cn: str) -> Path:
    """A self-signed CA in d (ca.key, ca.crt), valid two days; returns ca.crt."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "2", "-subj", f"/CN={cn}", cwd=d)  # fmt: skip
    return d / "ca.crt"


def _make_cert(d: Path, name: str, subj: str, san: str | None) -> tuple[Path, Path]:
    key, csr, crt = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.crt"
    _openssl(
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        key.name,
        "-out",
        csr.name,
        "-subj",
        subj,
        cwd=d,
    )
    ext = d / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n")
    _openssl(
        "x509", "-req", "-in", csr.name, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", crt.name, "-days", "2", "-sha256", "-extfile", ext.name, cwd=d,
    )  # fmt: skip
    return crt, key


def _give_to_mosquitto(path: Path, mode: int) -> None:
    """mosquitto drops privileges to the `mosquitto` user when started as root: let it read."""
    os.chmod(path, mode)
    if os.geteuid() == 0:
        import pwd

        try:
            pw = pwd.getpwnam("mosquitto")
            os.chown(path, pw.pw_uid, pw.pw_gid)
        except KeyError:
            os.chmod(path, mode | 0o044)


@pytest.fixture(scope="module")
def secure_broker() -> Iterator[SecureBroker]:
    """mosquitto on TLS (a CA made here with openssl), client certificates required, passwords, ACL."""
    if not mosquitto_path() or not shutil.which("openssl") or not shutil.which("mosquitto_passwd"):
        pytest.fail("mosquitto, mosquitto_passwd and openssl are required")
    d = Path(tempfile.mkdtemp(prefix="lookout-tls-"))
    os.chmod(d, 0o755)
    try:
        make_ca(d, "Lookout Test CA")
        server_crt, server_key = _make_cert(d, "server", "/CN=127.0.0.1", "IP:127.0.0.1,DNS:localhost")
        clients = {u: _make_cert(d, u, f"/CN={u}", None) for u in ("cam-1", "cam-2", "monitor")}
        passwords = {"cam-1": "pw-cam-1", "cam-2": "pw-cam-2", "monitor": "pw-monitor"}
        pwfile = d / "passwd"
        pwfile.touch()
        for user, pw in passwords.items():
            subprocess.run(["mosquitto_passwd", "-b", str(pwfile), user, pw], check=True, capture_output=True)
        aclfile = d / "acl"
        aclfile.write_text(ACL)
        for p in (server_key, pwfile, aclfile):
            _give_to_mosquitto(p, 0o600)
        for p in (d / "ca.crt", server_crt):
            os.chmod(p, 0o644)
        extra = "\n".join(
            [
                f"cafile {d / 'ca.crt'}",
                f"certfile {server_crt}",
                f"keyfile {server_key}",
                "require_certificate true",
                f"password_file {pwfile}",
                f"acl_file {aclfile}",
            ]
        )
        b = start_broker("mosquitto", extra_config=extra, allow_anonymous=False)
        try:
            yield SecureBroker(b, d, d / "ca.crt", clients, passwords)
        finally:
            b.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)
