"""Start a local MQTT broker for tests and the desktop simulation.

Debian's mosquitto when it is on PATH (a free 127.0.0.1 port, a temporary config, stopped by PID),
otherwise amqtt in a child process (MQTT 3.1.1 only).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(
    host: str, port: int, timeout_s: float = 10.0, proc: subprocess.Popen | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"broker exited with code {proc.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"broker did not listen on {host}:{port} within {timeout_s:.0f} s")


@dataclass
class Broker:
    """A running broker process. `kind` is "mosquitto" or "amqtt"; `url` is mqtt://host:port."""

    kind: str
    host: str
    port: int
    proc: subprocess.Popen
    workdir: Path
    extra_ports: dict[str, int] = field(default_factory=dict)
    _owns_workdir: bool = True

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def log(self) -> str:
        p = self.workdir / "broker.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def stop(self) -> None:
        """Terminate by PID, wait, remove the temporary directory."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def restart(self) -> None:
        """Stop the process (keeping the config) and start it again on the same port."""
        self.stop_process()
        self.start_process()

    def stop_process(self) -> None:
        """Terminate the broker but keep its config and files (for an outage; see start_process)."""
        owns, self._owns_workdir = self._owns_workdir, False
        try:
            self.stop()
        finally:
            self._owns_workdir = owns

    def start_process(self) -> None:
        """Start the broker again with the same config, on the same port."""
        if self.proc.poll() is None:
            return
        self.proc = _spawn(self.kind, self.workdir)
        wait_for_port(self.host, self.port, proc=self.proc)

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def mosquitto_path() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto") if os.access(p, os.X_OK)), None
    )


def start_broker(
    kind: str = "auto",
    host: str = "127.0.0.1",
    port: int | None = None,
    extra_config: str = "",
    allow_anonymous: bool = True,
) -> Broker:
    """Start mosquitto (or amqtt when kind="amqtt" or mosquitto is missing with kind="auto")."""
    if kind == "auto":
        kind = "mosquitto" if mosquitto_path() else "amqtt"
    port = port or free_port(host)
    workdir = Path(tempfile.mkdtemp(prefix=f"lookout-{kind}-"))
    os.chmod(workdir, 0o755)  # mosquitto drops privileges before reading files in here
    if kind == "mosquitto":
        conf = [
            f"listener {port} {host}",
            f"allow_anonymous {'true' if allow_anonymous else 'false'}",
            "persistence false",
            f"log_dest file {workdir / 'broker.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "max_queued_messages 0",
            "max_inflight_messages 0",
            extra_config,
        ]
        (workdir / "mosquitto.conf").write_text("\n".join(conf) + "\n")
        (workdir / "broker.log").touch(mode=0o666)
        os.chmod(workdir / "broker.log", 0o666)
    elif kind == "amqtt":
        (workdir / "amqtt.yaml").write_text(
            f"listeners:\n  default:\n    type: tcp\n    bind: {host}:{port}\n"
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n"
            "  amqtt.plugins.sys.broker.BrokerSysPlugin:\n    sys_interval: 0\n"
        )
    else:
        raise ValueError(f"unknown broker kind {kind!r}")
    proc = _spawn(kind, workdir)
    broker = Broker(kind, host, port, proc, workdir)
    try:
        wait_for_port(host, port, proc=proc)
    except Exception:
        broker.stop()
        raise
    return broker


def _spawn(kind: str, workdir: Path) -> subprocess.Popen:
    log = open(workdir / "process.log", "ab")  # noqa: SIM115 - handed to the child
    if kind == "mosquitto":
        cmd = [mosquitto_path() or "mosquitto", "-c", str(workdir / "mosquitto.conf")]
    else:
        cmd = [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(workdir / "amqtt.yaml")]
    return subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )
