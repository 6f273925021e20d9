"""`lookout fleet serve`: the monitor's HTTP side — pages, JSON API, server-sent events, /metrics.

Standard library `ThreadingHTTPServer`: no dependency, a thread per connection, which is what
server-sent events need (each open page holds one connection) and plenty for the few people and one
Prometheus that look at a fleet monitor. Live connections are capped (MAX_STREAMS). Every response
carries a strict Content-Security-Policy (scripts and styles only from /static/), so even a string
that escaped escaping could not run. A non-loopback bind needs a bearer token (`--auth-token-file`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import math
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from app.errors import ConfigError
from app.fleet import pages
from app.fleet.history import downsample, events, parse_since
from app.fleet.prometheus import CONTENT_TYPE as PROM_TYPE
from app.fleet.prometheus import FleetCollector, exposition
from app.fleet.registry import Registry
from app.fleet.runtimes import bench_rows, compare
from app.fleet.store import Store
from app.fleet.table import alert_counts, cells, event_text, row_tone, snapshot_text, summary
from app.fleet.view import sort_rows

log = logging.getLogger(__name__)

MAX_STREAMS = 32
MAX_HISTORY_ROWS = 5000  # per API response; longer windows are downsampled (the response says so)
STATIC = {
    "fleet.css": "text/css; charset=utf-8",
    "fleet.js": "text/javascript; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SESSION_COOKIE = "lookout_session"


def parse_bind(text: str) -> tuple[str, int]:
    """'HOST:PORT', '[v6]:PORT' or ':PORT' -> (host, port) (ConfigError naming the text)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:  # 0: any free port
        raise ConfigError(f"--http {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def is_loopback(host: str) -> bool:
    """True when every address `host` resolves to is a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def read_token(path: str | None) -> str | None:
    """The bearer token from a file (first line, stripped); ConfigError when unreadable or short."""
    if path is None:
        return None
    try:
        token = Path(path).read_text(encoding="utf-8").strip().splitlines()[0].strip()
    except (OSError, UnicodeDecodeError, IndexError) as exc:
        raise ConfigError(f"--auth-token-file {path}: cannot read a token ({type(exc).__name__})") from None
    if len(token) < 16:
        raise ConfigError(f"--auth-token-file {path}: the token must be at least 16 characters")
    return token


def check_bind(host: str, port: int, token: str | None) -> None:
    """Refuse (one line) to serve beyond this machine without a token."""
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"--http {host}:{port} is reachable from other machines: give --auth-token-file FILE "
            "(bearer token) or bind to 127.0.0.1"
        )


def finite(v: Any) -> Any:
    """JSON-safe copy: NaN/inf (which the network may send) become null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: finite(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [finite(x) for x in v]
    return v


def snapshots(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The devices with a snapshot, in row order: id, when it was received (the image URL's version), and
    a caption (the last event, then the snapshot's own age: the event may be later than the picture) —
    plain text, for the page to write as text."""
    now = time.time()
    return [
        {
            "id": r["device_id"],
            "t": r["snapshot_at"],
            "caption": f"{event_text(r.get('last_event'))} · {snapshot_text(r, now)}",
        }
        for r in rows
        if r.get("snapshot_at")
    ]


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class FleetApp:
    """What the pages and the API read: the monitor's registry and stats, and the history store."""

    def __init__(
        self,
        registry: Registry,
        stats: Callable[[], dict[str, Any]],
        store: Store | None,
        *,
        p90_alert_ms: float = 100.0,
        token: str | None = None,
        refresh_s: float = 1.0,
    ) -> None:
        self.registry, self.stats, self.store = registry, stats, store
        self.snapshot, self.device = registry.snapshot, registry.device
        self.p90_alert_ms = p90_alert_ms
        self.token = token
        self.session = (
            hmac.new(token.encode(), b"lookout-session", hashlib.sha256).hexdigest() if token else None
        )
        self.refresh_s = refresh_s
        self.collector = FleetCollector(self.snapshot, stats)
        self.stop = threading.Event()
        self.streams = threading.BoundedSemaphore(MAX_STREAMS)

    # ---- data --------------------------------------------------------------------------------------
    def rows(self, sort: str = "id") -> list[dict[str, Any]]:
        return sort_rows(self.snapshot(), sort)

    def live_view(self, sort: str) -> dict[str, Any]:
        """What the fleet page shows, display-ready (texts and tones): the server owns formatting."""
        rows = self.rows(sort)
        return {
            "ts": time.time(),
            "summary": summary(rows, self.stats(), self.p90_alert_ms),
            "online": sum(1 for r in rows if r["online"]),
            "total": len(rows),
            "counts": alert_counts(rows),
            "rows": [
                {"id": r["device_id"], "tone": row_tone(r), "cells": [[c.text, c.tone] for c in cells(r)]}
                for r in rows
            ],
            "snapshots": snapshots(rows),
        }

    def known(self, device_id: str) -> dict[str, Any] | None:
        """The live row, or a stub for a device only the history knows; ApiError 404 otherwise."""
        row = self.device(device_id)
        if row is not None:
            return row
        if self.store is not None and self.store.has_device(device_id):
            return None
        raise ApiError(404, f"unknown device {device_id!r}")

    def history(self, device_id: str, since_text: str) -> dict[str, Any]:
        try:
            since_s = parse_since(since_text)
        except ConfigError as exc:
            raise ApiError(400, str(exc)) from None
        self.known(device_id)
        if self.store is None:
            raise ApiError(409, "this monitor keeps no history (start it with --db)")
        now = time.time()
        rows = self.store.samples(now - since_s, device_id)
        evts = events(rows)
        shown = downsample(rows, MAX_HISTORY_ROWS)
        return {
            "device_id": device_id,
            "since": since_text,
            "from": now - since_s,
            "to": now,
            "rows_total": len(rows),
            "downsampled": len(shown) < len(rows),
            "monitors": sorted({str(r["monitor"]) for r in rows if r.get("monitor")}),
            "events": [e._asdict() for e in evts],
            "rows": shown,
        }

    def bench(self, device_id: str | None = None) -> dict[str, dict]:
        if self.store is not None:
            return self.store.latest_bench(0.0, device_id)
        docs = self.registry.benches()
        return docs if device_id is None else {k: v for k, v in docs.items() if k == device_id}

    def runtimes(self) -> dict[str, Any]:
        rows = bench_rows(self.bench())
        return {"by_model": compare(rows, "model"), "by_board": compare(rows, "board"), "results": rows}

    def authorized(self, headers: Any) -> bool:
        if self.token is None:
            return True
        auth = headers.get("Authorization", "")
        if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip().encode(), self.token.encode()):
            return True
        for part in headers.get("Cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if (
                name == SESSION_COOKIE
                and self.session
                and hmac.compare_digest(value.encode(), self.session.encode())
            ):
                return True
        return False


class Handler(BaseHTTPRequestHandler):
    server_version = "lookout-fleet"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    app: FleetApp  # set on the subclass made by serve()

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("http %s " + fmt, self.address_string(), *args)

    # ---- plumbing ----------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, extra: dict[str, str] | None = None) -> None:
        body = json.dumps(finite(obj), allow_nan=False, separators=(",", ":")).encode()
        self._send(status, body, "application/json", extra)

    def _html(self, status: int, text: str, extra: dict[str, str] | None = None) -> None:
        self._send(status, text.encode("utf-8"), "text/html; charset=utf-8", extra)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        api = path.startswith("/api/") or path == "/metrics" or path == "/events"
        try:
            if path.startswith("/static/"):
                return self._static(path[len("/static/") :])
            if path == "/favicon.ico":
                return self._static("icon.svg")
            if path == "/healthz":
                return self._json(200, {"ok": True})
            if not self.app.authorized(self.headers):
                return self._unauthorized(api)
            self._route(path, query)
        except ApiError as exc:
            if api:
                self._json(exc.status, {"error": str(exc), "status": exc.status})
            else:
                self._html(exc.status, pages.error_page(exc.status, str(exc)))
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:  # a bug must not take the monitor down: 500 and a log line
            log.exception("fleet web: %s %s failed", self.command, path)
            msg = f"internal error: {type(exc).__name__}"
            if api:
                self._json(500, {"error": msg, "status": 500})
            else:
                self._html(500, pages.error_page(500, msg))

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/login":
            return self._json(405, {"error": "method not allowed", "status": 405}, {"Allow": "GET, HEAD"})
        n = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(min(n, 4096)).decode("utf-8", "replace"))
        given = (form.get("token") or [""])[0].strip()
        app = self.app
        if app.token is None or not hmac.compare_digest(given.encode(), app.token.encode()):
            return self._html(401, pages.login_page("wrong token"))
        cookie = f"{SESSION_COOKIE}={app.session}; HttpOnly; SameSite=Strict; Path=/"
        self._send(303, b"", "text/plain", {"Location": "/", "Set-Cookie": cookie})

    def _unauthorized(self, api: bool) -> None:
        hdr = {"WWW-Authenticate": 'Bearer realm="lookout-fleet"'}
        if api:
            self._json(401, {"error": "missing or wrong bearer token", "status": 401}, hdr)
        else:
            self._html(401, pages.login_page(""), hdr)

    def _static(self, name: str) -> None:
        if name not in STATIC:
            raise ApiError(404, f"no static file {name!r}")
        body = resources.files("app.fleet").joinpath("static", name).read_bytes()
        self._send(200, body, STATIC[name])

    def _sort(self, query: dict[str, list[str]]) -> str:
        from app.fleet.view import SORT_KEYS

        sort = (query.get("sort") or ["id"])[0]
        if sort not in SORT_KEYS:
            raise ApiError(400, f"sort {sort!r}: expected one of {', '.join(SORT_KEYS)}")
        return sort

    # ---- routes ------------------------------------------------------------------------------------
    def _route(self, path: str, query: dict[str, list[str]]) -> None:
        app = self.app
        parts = [unquote(p) for p in path.strip("/").split("/")] if path.strip("/") else []
        if parts == []:
            sort = self._sort(query)
            return self._html(200, pages.fleet_page(app.live_view(sort), sort))
        if parts == ["events"]:
            return self._events(self._sort(query))
        if parts == ["metrics"]:
            return self._send(200, exposition(app.collector), PROM_TYPE)
        if parts == ["runtimes"]:
            return self._html(200, pages.runtimes_page(app.runtimes()))
        if len(parts) == 3 and parts[0] == "devices" and parts[2] == "snapshot.jpg":
            shot = app.registry.snapshot_jpeg(parts[1])
            if shot is None:
                raise ApiError(404, f"no snapshot from {parts[1]!r}")
            return self._send(200, shot[0], "image/jpeg")
        if len(parts) == 2 and parts[0] == "devices":
            since = (query.get("since") or ["24h"])[0]
            row = app.known(parts[1])
            try:
                hist = app.history(parts[1], since) if app.store is not None else None
            except ApiError as exc:
                if exc.status != 400:
                    raise
                raise ApiError(400, str(exc)) from None
            bench = app.bench(parts[1]).get(parts[1])
            return self._html(200, pages.device_page(parts[1], row, hist, bench, since, app.p90_alert_ms))
        if parts[:1] == ["api"]:
            return self._api(parts[1:], query)
        raise ApiError(404, f"no page {path!r}")

    def _api(self, parts: list[str], query: dict[str, list[str]]) -> None:
        app = self.app
        if parts == ["devices"]:
            return self._json(200, app.rows(self._sort(query)))
        if len(parts) == 2 and parts[0] == "devices":
            row = app.known(parts[1])
            if row is None:
                row = {"device_id": parts[1], "online": None, "note": "known from the history only"}
            return self._json(200, row | {"bench": app.bench(parts[1]).get(parts[1])})
        if len(parts) == 3 and parts[0] == "devices" and parts[2] == "history":
            return self._json(200, app.history(parts[1], (query.get("since") or ["24h"])[0]))
        if parts == ["runtimes"]:
            return self._json(200, app.runtimes())
        if parts == ["stats"]:
            return self._json(200, app.stats())
        raise ApiError(404, f"no API endpoint /api/{'/'.join(parts)}")

    def _events(self, sort: str) -> None:
        """Server-sent events: the fleet view every refresh interval until the page goes away."""
        app = self.app
        if not app.streams.acquire(blocking=False):
            raise ApiError(503, f"too many live pages open (at most {MAX_STREAMS})")
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            self.wfile.write(b"retry: 2000\n\n")
            while not app.stop.is_set():
                data = json.dumps(finite(app.live_view(sort)), allow_nan=False, separators=(",", ":"))
                self.wfile.write(f"event: fleet\ndata: {data}\n\n".encode())
                self.wfile.flush()
                if app.stop.wait(app.refresh_s):
                    break
        finally:
            app.streams.release()


class FleetServer:
    """The HTTP server in its own thread; `close()` ends live streams and stops it."""

    def __init__(self, app: FleetApp, host: str, port: int) -> None:
        handler = type("BoundHandler", (Handler,), {"app": app})
        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class Server(ThreadingHTTPServer):
            address_family = family
            daemon_threads = True
            allow_reuse_address = True

        try:
            self.httpd = Server((host, port), handler)
        except OSError as exc:
            raise ConfigError(f"--http {host}:{port}: cannot listen ({exc.strerror or exc})") from None
        self.app = app
        self.host, self.port = host, self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="fleet-http", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> FleetServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.app.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)
