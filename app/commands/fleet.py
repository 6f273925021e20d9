"""`lookout fleet`: live fleet view over MQTT, `--once --json` snapshot, and `fleet report` (HTML + charts)."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from app.commands.actions import Actions, Option, option
from app.errors import ConfigError
from app.finite import finite_float, json_safe
from app.redact import remember

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
PASSWORD_ENV = "LOOKOUT_MQTT_PASSWORD"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "fleet",
        help="monitor a fleet of Lookout devices over MQTT",
        description="Subscribe to lookout/+/{status,metrics,detections,bench} and show the fleet live.",
    )
    p.add_argument("--once", action="store_true", help="collect for --wait seconds, print once, exit")
    p.add_argument(
        "--headless",
        action="store_true",
        help="no live view (default when stdout is not a terminal, e.g. under systemd): log a summary line",
    )
    p.add_argument("--wait", type=finite_float, default=5.0, help="seconds to collect with --once")
    p.add_argument(
        "--idle-exit",
        type=finite_float,
        metavar="S",
        help="with --once: stop early after S s without messages",
    )
    p.add_argument("--json", action="store_true", help="with --once: print the registry as a JSON list")
    p.add_argument(
        "--stats-json", metavar="FILE", help="with --once: write ingest statistics (lag, malformed) here"
    )
    p.set_defaults(func=run)

    # the monitor's options: for the live view (`fleet`) and `fleet serve`, before or after the action
    sub = Actions(p, "fleet_verb", _monitor_options(), required=False, metavar="report|serve")
    r = sub.add(
        "report",
        only=("--db", "--p90-alert-ms"),
        help="write index.html with per-device charts from the history",
    )
    r.add_argument("--since", default="24h", help="window to chart, e.g. 1h, 24h, 7d")
    r.add_argument("--out", required=True, help="output directory")
    r.add_argument("--max-charts", type=int, default=100, help="chart at most N devices (alerted first)")

    sv = sub.add(
        "serve",
        help="monitor + web pages, JSON API and Prometheus /metrics in one process",
        description="Run the monitor and an HTTP server: / (live fleet table), /devices/<id>, /runtimes, "
        "/api/..., /metrics.",
    )
    sv.add_argument("--http", default="127.0.0.1:8080", metavar="HOST:PORT", help="listen address")
    sv.add_argument(
        "--auth-token-file",
        metavar="FILE",
        help="bearer token required for everything but /static (needed to bind beyond loopback)",
    )
    sv.add_argument(
        "--refresh", type=finite_float, default=1.0, metavar="S", help="live page update interval"
    )


def _monitor_options() -> tuple[Option, ...]:
    """The monitor's options, shared by the live view (`fleet`) and `fleet serve`."""
    from app.fleet.view import SORT_KEYS

    return (
        option("--broker", default=DEFAULT_BROKER, help="mqtt://[user:pass@]host[:port] or mqtts://..."),
        option("--ca-file", help="CA certificate for mqtts://"),
        option(
            "--password-file",
            metavar="FILE",
            help=f"broker password: first line of FILE (else ${PASSWORD_ENV}, else the URL's); user from the URL",
        ),
        option("--prefix", default="lookout", help="topic prefix (default: lookout)"),
        option("--share", metavar="GROUP", help="MQTT 5 shared subscription group for metrics/detections"),
        option("--qos", type=int, choices=(0, 1), default=1, help="subscription QoS (default 1)"),
        option("--sort", default="id", choices=sorted(SORT_KEYS), help="sort key of the live view"),
        option("--p90-alert-ms", type=finite_float, default=100.0, help="highlight inference p90 above this"),
        option(
            "--stale-s",
            type=finite_float,
            default=60.0,
            help="alert when an online device is silent this long",
        ),
        option(
            "--db",
            help="history: a SQLite file or postgresql://user@host/db (default: <state dir>/fleet.sqlite)",
        ),
        option("--retention", default="7d", help="history retention, e.g. 24h, 7d (default 7d)"),
        option(
            "--history-interval",
            type=finite_float,
            default=10.0,
            help="seconds between history rows per device",
        ),
        option(
            "--monitor-id",
            default=socket.gethostname(),
            help="name written with each history row (default: host name; set it when one host runs several)",
        ),
        option(
            "--log-interval",
            type=finite_float,
            default=60.0,
            metavar="S",
            help="seconds between summary lines (headless live view and serve)",
        ),
    )


def _default_db() -> Path:
    from app.config import default_state_dir

    return default_state_dir() / "fleet.sqlite"


def _build(args: argparse.Namespace, db: str | Path | None) -> tuple[Any, Any]:
    """(monitor, store or None) from the monitor options; not connected yet."""
    from app.fleet.monitor import Monitor
    from app.fleet.registry import Registry
    from app.fleet.store import Store, parse_duration

    if args.history_interval <= 0:
        raise ConfigError(f"--history-interval {args.history_interval}: must be > 0")
    retention = parse_duration(args.retention)
    store = Store(db, retention, monitor=args.monitor_id) if db else None
    monitor = Monitor(
        Registry(p90_alert_ms=args.p90_alert_ms, stale_s=args.stale_s),
        prefix=args.prefix,
        share_group=args.share,
        store=store,
        history_interval_s=args.history_interval,
        qos=args.qos,
    )
    return monitor, store


def run(args: argparse.Namespace) -> int:
    if args.fleet_verb == "report":
        return _report(args)
    if args.fleet_verb == "serve":
        return _serve(args)
    if args.wait < 0:
        raise ConfigError(f"--wait {args.wait}: must be >= 0")
    monitor, store = _build(args, args.db or (None if args.once else _default_db()))
    try:
        monitor.start(args.broker, ca_file=args.ca_file, password=broker_password(args.password_file))
        if args.once:
            _wait(monitor, args.wait, args.idle_exit)
            return _print_once(args, monitor)
        if args.headless or not sys.stdout.isatty():
            return _until_signal(monitor, args.log_interval)
        from app.fleet.view import live

        live(monitor.registry.snapshot, monitor.stats.as_dict, args.sort, args.p90_alert_ms)
        return 0
    finally:
        monitor.stop()
        if store is not None:
            store.close()


def _serve(args: argparse.Namespace) -> int:
    """Monitor + HTTP server in one process, until SIGTERM/SIGINT."""
    from app.fleet.web import FleetApp, FleetServer, check_bind, parse_bind, read_token

    host, port = parse_bind(args.http)
    token = read_token(args.auth_token_file)
    check_bind(host, port, token)  # refuse before touching the broker or the database
    if args.refresh <= 0:
        raise ConfigError(f"--refresh {args.refresh}: must be > 0")
    monitor, store = _build(args, args.db or _default_db())
    server = None
    try:
        app = FleetApp(
            monitor.registry,
            monitor.stats.as_dict,
            store,
            p90_alert_ms=args.p90_alert_ms,
            token=token,
            refresh_s=args.refresh,
        )
        server = FleetServer(app, host, port)
        monitor.start(args.broker, ca_file=args.ca_file, password=broker_password(args.password_file))
        server.start()
        where = store.location if store is not None else "no history"
        print(f"fleet: serving {server.url} (history: {where})", flush=True)
        return _until_signal(monitor, args.log_interval)
    finally:
        if server is not None:
            server.close()
        monitor.stop()
        if store is not None:
            store.close()


def broker_password(path: str | None) -> str | None:
    """The monitor's broker password from --password-file, else $LOOKOUT_MQTT_PASSWORD, else None (the
    URL's, if any). Never printed: errors name the file, not its content, and the value is remembered by
    app/redact.py, so a line that echoes it (a log line, an error) shows `***`."""
    password = _read_password(path) if path else os.environ.get(PASSWORD_ENV) or None
    remember(password)
    return password


def _read_password(path: str) -> str:
    """The first line of --password-file (ConfigError naming the file when unreadable or empty)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"--password-file {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})"
        ) from None
    if not lines or not lines[0]:
        raise ConfigError(f"--password-file {path}: the first line is empty")
    return lines[0]


def _until_signal(monitor: Any, interval_s: float) -> int:
    """No terminal (a systemd service): keep ingesting and storing history; one summary line per interval."""
    import signal
    import threading

    from app.fleet.monitor import missed_warning
    from app.inert import printable

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(interval_s):
        rows = monitor.registry.snapshot()
        stats = monitor.stats.as_dict()
        alerted = [f"{printable(r['device_id'])}({','.join(r['alerts'])})" for r in rows if r.get("alerts")]
        missed = missed_warning(stats.get("missed") or {})
        print(
            f"fleet: {sum(r['online'] for r in rows)}/{len(rows)} online, "
            f"{sum(stats.get('received', {}).values())} msgs, {stats.get('malformed_total', 0)} malformed, "
            f"{stats.get('unsupported_version_total', 0)} unsupported version, "
            f"{'connected' if stats.get('connected') else 'DISCONNECTED'}; alerts: {' '.join(alerted) or 'none'}"
            + (f"; {missed}" if missed else ""),
            flush=True,
        )
    return 0


def _wait(monitor: object, wait_s: float, idle_s: float | None) -> None:
    deadline = time.monotonic() + wait_s
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.2))
        last = monitor.stats.last_rx  # type: ignore[attr-defined]
        if idle_s and last and time.time() - last > idle_s:
            return


def _print_once(args: argparse.Namespace, monitor: object) -> int:
    from app.fleet.monitor import missed_warning
    from app.fleet.view import render, sort_rows

    rows = sort_rows(monitor.registry.snapshot(), args.sort)  # type: ignore[attr-defined]
    stats = monitor.stats.as_dict()  # type: ignore[attr-defined]
    if args.stats_json:
        stats["fleet"] = {
            "devices": len(rows),
            "online": sum(r["online"] for r in rows),
            "seq_gaps": sum(r["seq_gaps"] or 0 for r in rows),
            "seq_dups": sum(r["seq_dups"] or 0 for r in rows),
        }
        Path(args.stats_json).write_text(json.dumps(json_safe(stats), indent=1, allow_nan=False))
    if not stats["connected"] and not rows:
        from app.redact import redact

        why = f": {monitor.stats.last_error}" if monitor.stats.last_error else ""  # type: ignore[attr-defined]
        raise ConfigError(f"no connection to broker {redact(args.broker)} within {args.wait:g} s{why}")
    if args.json:  # JSON has no NaN or Infinity: a non-finite number is null here
        sys.stdout.write(json.dumps(json_safe(rows), indent=1, allow_nan=False) + "\n")
    else:
        from rich.console import Console

        Console().print(render(rows, stats, args.p90_alert_ms))
    warning = missed_warning(stats["missed"])
    if warning:
        print(f"lookout fleet: warning: {warning}", file=sys.stderr)
    return 0


def _report(args: argparse.Namespace) -> int:
    from app.fleet.report import write_report
    from app.fleet.store import Store, is_postgres, parse_duration

    since_s = parse_duration(args.since)
    db = str(args.db or _default_db())
    if not is_postgres(db) and not Path(db).exists():
        raise ConfigError(f"fleet database {db} does not exist (run `lookout fleet` with --db first)")
    store = Store(db)
    try:
        index = write_report(
            store, Path(args.out), since_s=since_s, p90_alert_ms=args.p90_alert_ms, max_charts=args.max_charts
        )
    finally:
        store.close()
    print(index)
    return 0
