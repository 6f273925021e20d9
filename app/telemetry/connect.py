"""Logging in to a broker, and saying plainly why it failed.

One place for the client side of a connection: credentials and TLS on a paho client (`configure`), a
failed socket/TLS step or a refused CONNACK turned into one line that names the cause (`describe_error`,
`describe_refusal`): TLS name mismatch, unknown CA, expired certificate, refused credentials, nothing
listening. `probe` is one real MQTT CONNECT with the configured credentials (`lookout doctor`).
"""

from __future__ import annotations

import socket
import ssl
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.errors import ConfigError

if TYPE_CHECKING:
    from app.config import MqttConfig, TlsConfig

# OpenSSL X509_V_ERR_* codes (ssl.SSLCertVerificationError.verify_code)
_UNKNOWN_CA = {2, 18, 19, 20, 21}  # unable to get issuer / self-signed (in chain) / cannot verify first cert
_EXPIRED, _NOT_YET_VALID = 10, 9
_NAME_MISMATCH = {62, 64}  # host name / IP address mismatch
_BAD_CREDENTIALS = {4, 5, 134, 135}  # 3.1.1 return codes 4, 5; MQTT 5 reason codes 134, 135


def configure(client: Any, tls: bool, tls_cfg: TlsConfig, username: str | None, password: str | None) -> None:
    """Credentials and (for mqtts) TLS on a paho client; ConfigError when a TLS file is missing."""
    if username:
        client.username_pw_set(username, password)
    if not tls:
        return
    for name in ("ca_file", "cert_file", "key_file"):
        p = getattr(tls_cfg, name)
        if p is not None and not Path(p).is_file():
            raise ConfigError(f"mqtt.tls.{name} {p} not found")
    client.tls_set(
        ca_certs=str(tls_cfg.ca_file) if tls_cfg.ca_file else None,
        certfile=str(tls_cfg.cert_file) if tls_cfg.cert_file else None,
        keyfile=str(tls_cfg.key_file) if tls_cfg.key_file else None,
    )
    if tls_cfg.insecure:
        client.tls_insecure_set(True)


def describe_error(exc: BaseException | None, host: str) -> str:
    """Why connecting to `host` failed (socket, DNS or TLS step), for "cannot connect to X: <this>"."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        code, why = exc.verify_code, exc.verify_message or str(exc)
        if code in _NAME_MISMATCH:
            return (
                f"TLS: the broker's certificate does not match the name {host!r} ({why}); connect by a "
                "name the certificate lists, or set mqtt.tls.insecure = true to skip the name check"
            )
        if code in _UNKNOWN_CA:
            return (
                f"TLS: the broker's certificate is signed by an unknown CA ({why}); set "
                "mqtt.tls.ca_file (--ca-file) to the CA that signed it"
            )
        if code in (_EXPIRED, _NOT_YET_VALID):
            return f"TLS: the broker's certificate is not valid now ({why}); check its dates and the clock"
        return f"TLS: cannot verify the broker's certificate: {why}"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        if "WRONG_VERSION_NUMBER" in str(reason).upper():
            return "TLS: the port does not speak TLS (an mqtt:// port? use mqtt:// or the broker's TLS port)"
        if "CERTIFICATE_REQUIRED" in str(reason).upper():
            return "TLS: the broker requires a client certificate (mqtt.tls.cert_file, key_file)"
        return f"TLS handshake failed: {reason}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the broker running on that port?)"
    if isinstance(exc, socket.gaierror):
        return f"unknown host {host!r}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, OSError):
        return str(exc.strerror or exc)
    return f"{type(exc).__name__}: {exc}" if exc else "no reason given"


def describe_refusal(reason: Any, username: str | None) -> str:
    """One line for a CONNACK that refused the connection (paho ReasonCode)."""
    value = getattr(reason, "value", None)
    if value in _BAD_CREDENTIALS:
        who = f"user {username!r}" if username else "an anonymous client"
        return (
            f"the broker refused the credentials of {who} ({reason}); check mqtt.username and mqtt.password"
        )
    return f"the broker refused the connection: {reason}"


def probe(cfg: MqttConfig, timeout_s: float = 5.0) -> tuple[bool, str]:
    """One MQTT CONNECT with `cfg`'s URL, credentials and TLS: (True, who we are) or (False, why not)."""
    import paho.mqtt.client as mqtt

    from app.telemetry.broker_url import parse_broker_url

    addr = parse_broker_url(cfg.url, "mqtt.url")
    username = cfg.username or addr.username
    password = cfg.password.get_secret_value() if cfg.password is not None else addr.password
    proto = mqtt.MQTTv5 if cfg.protocol == "5" else mqtt.MQTTv311
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"lookout-doctor-{uuid.uuid4().hex[:8]}",
                         protocol=proto)  # fmt: skip
    configure(client, addr.tls, cfg.tls, username, password)
    answered = threading.Event()
    result: dict[str, Any] = {}

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        result["reason"] = reason
        answered.set()

    client.on_connect = on_connect
    client.on_disconnect = lambda *_a: answered.set()
    try:
        client.connect(addr.host, addr.port, keepalive=10)
    except (OSError, ValueError) as exc:  # ssl.CertificateError is a ValueError too
        return (
            False,
            f"cannot connect to {addr.host}:{addr.port}: {describe_error(exc, addr.host)}",
        )
    client.loop_start()
    try:
        if not answered.wait(timeout_s):
            return (
                False,
                f"{addr.host}:{addr.port} accepted the connection but sent no CONNACK in {timeout_s:g} s",
            )
        reason = result.get("reason")
        if reason is None:
            return False, f"{addr.host}:{addr.port} closed the connection before answering (MQTT? TLS?)"
        if reason.is_failure:
            return False, describe_refusal(reason, username)
        who = f"as {username!r}" if username else "anonymously"
        tls = ""
        if addr.tls:
            tls = " over TLS" + (" (certificate name NOT checked: insecure)" if cfg.tls.insecure else "")
        return True, f"connected {who}{tls}, MQTT {cfg.protocol}"
    finally:
        client.disconnect()
        client.loop_stop()
