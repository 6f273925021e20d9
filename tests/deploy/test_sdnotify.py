"""app.sdnotify against a real AF_UNIX datagram socket bound by the test (path and abstract name)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import sdnotify


def _drain(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        yield str(path), sock


@pytest.fixture
def abstract_socket() -> Iterator[tuple[str, socket.socket]]:
    name = f"lookout-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.setblocking(False)
        yield "@" + name, sock


@pytest.mark.parametrize("kind", ["path_socket", "abstract_socket"])
def test_notify_delivers_one_datagram(kind: str, request: pytest.FixtureRequest, monkeypatch) -> None:
    address, sock = request.getfixturevalue(kind)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    assert sdnotify.ready("runtime=tflite fps=29.5") is True
    assert sdnotify.status("fallback: edgetpu -> tflite\nsecond line") is True
    assert sdnotify.watchdog() is True
    assert sdnotify.stopping() is True
    assert _drain(sock) == [
        "READY=1\nSTATUS=runtime=tflite fps=29.5",
        "STATUS=fallback: edgetpu -> tflite second line",  # a newline would start a new assignment
        "WATCHDOG=1",
        "STOPPING=1",
    ]


def test_no_socket_is_a_no_op(monkeypatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False
    assert sdnotify.ready() is False
    assert sdnotify.watchdog() is False


def test_unreachable_socket_returns_false(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    assert sdnotify.ready() is False


def test_child_process_notifies_through_inherited_environment(path_socket, clean_env) -> None:
    address, sock = path_socket
    env = dict(clean_env, NOTIFY_SOCKET=address)
    code = "from app import sdnotify; raise SystemExit(0 if sdnotify.ready('warm') else 1)"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    assert _drain(sock) == ["READY=1\nSTATUS=warm"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": "4242"}, 0.5),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4243"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "thirty"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert sdnotify.watchdog_interval_s(env, pid=4242) == expected


def test_watchdog_interval_reads_this_process_environment(monkeypatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval_s() == 2.0
    assert sdnotify.Watchdog().interval_s == 2.0


def test_watchdog_beats_ping_at_most_every_half_interval(path_socket, monkeypatch) -> None:
    address, sock = path_socket
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    now = [100.0]
    dog = sdnotify.Watchdog(30.0, clock=lambda: now[0])
    sent = []
    for t in (100.0, 105.0, 114.9, 115.0, 120.0, 129.9, 130.0, 131.0):  # frame times
        now[0] = t
        sent.append(dog.beat(status=f"t={t}"))
    assert sent == [True, False, False, True, False, False, True, False]
    assert _drain(sock) == [
        "WATCHDOG=1\nSTATUS=t=100.0",
        "WATCHDOG=1\nSTATUS=t=115.0",
        "WATCHDOG=1\nSTATUS=t=130.0",
    ]


def test_stalled_pipeline_sends_nothing(path_socket, monkeypatch) -> None:
    """No beats, no pings: the heartbeat comes only from frames, there is no timer thread."""
    address, sock = path_socket
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    now = [0.0]
    dog = sdnotify.Watchdog(1.0, clock=lambda: now[0])
    assert dog.beat() is True
    now[0] = 50.0  # time passes, but no frame calls beat()
    assert _drain(sock) == ["WATCHDOG=1"]


def test_watchdog_retries_after_a_failed_send(monkeypatch) -> None:
    results = iter([False, True])
    dog = sdnotify.Watchdog(10.0, clock=lambda: 0.0, send=lambda _msg: next(results))
    assert dog.beat() is False  # not sent: the next frame must try again, not wait half an interval
    assert dog.beat() is True


def test_watchdog_disabled_without_systemd(monkeypatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    dog = sdnotify.Watchdog()
    assert dog.enabled is False
    assert dog.beat() is False
