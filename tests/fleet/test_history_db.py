"""One history for many monitors: the same schema, migrations and retention on SQLite and a real PostgreSQL.

Each PostgreSQL test runs its own cluster (initdb + pg_ctl on a free port, stopped by PID).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from app.errors import ConfigError
from app.fleet import migrations
from app.fleet.monitor import Monitor
from app.fleet.registry import Registry
from app.fleet.store import SAMPLE_COLUMNS, Store


def _row(dev: str, **over: object) -> dict:
    r = dict.fromkeys(SAMPLE_COLUMNS) | {"device_id": dev, "online": True, "state": "online", "fps": 9.5}
    return r | over


def _columns(store: Store) -> list[str]:
    if store.dialect == "sqlite":
        with sqlite3.connect(store.path) as db:
            return sorted(r[1] for r in db.execute("PRAGMA table_info(samples)"))
    import psycopg

    with psycopg.connect(store._target) as db:
        rows = db.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'samples'")
        return sorted(r[0] for r in rows)


def _versions(store: Store) -> list[tuple[int, str]]:
    with store._tx(write=False) as cur:
        return [
            tuple(r)
            for r in cur.execute("SELECT version, description FROM schema_migrations ORDER BY version")
        ]


@pytest.mark.slow
def test_same_schema_migrations_retention_and_values_on_sqlite_and_postgres(pg, tmp_path: Path) -> None:
    now = time.time()
    stores = [Store(tmp_path / "h.sqlite", 3600, monitor="m1"), Store(pg.url, 3600, monitor="m1")]
    try:
        seen = []
        for s in stores:
            fb = {"from": "edgetpu", "to": "tflite", "reason": "no Edge TPU"}
            s.add_samples([_row("cam", throttled=False, fallback=fb, spool_depth=3)], now - 7200)
            s.add_samples([_row("cam", throttled=True, infer_p50_ms=5.0, infer_p99_ms=9.0)], now - 60)
            s.add_samples([_row("other")], now)
            s.add_bench("cam", now - 7200, '{"model": "m", "host": {}, "results": []}')
            s.add_bench("cam", now, '{"model": "m2", "host": {}, "results": []}')
            assert s.schema_version == migrations.LATEST
            assert s.prune(now) == 2
            seen.append(
                (
                    _columns(s),
                    _versions(s),
                    s.samples(0, "cam"),
                    s.samples(now - 10),
                    s.latest_bench(),
                    s.count(),
                )
            )
            assert s.has_device("cam") and not s.has_device("nope")
        assert seen[0] == seen[1]  # SQLite and PostgreSQL give the same answers
        cols, versions, cam, _recent, bench, n = seen[0]
        assert versions == [(m.version, m.description) for m in migrations.MIGRATIONS]
        assert "monitor" in cols and "infer_p99_ms" in cols
        assert n == 2 and bench == {"cam": {"model": "m2", "host": {}, "results": []}}
        assert cam[0]["throttled"] is True and cam[0]["monitor"] == "m1" and cam[0]["infer_p99_ms"] == 9.0
    finally:
        for s in stores:
            s.close()


def test_an_unversioned_sqlite_history_is_adopted_and_upgraded(tmp_path: Path) -> None:
    """A history written before migrations were numbered (schema 1, no schema_migrations table)."""
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        for stmt in migrations.MIGRATIONS[0].statements:
            db.execute(migrations.render(stmt, "sqlite"))
        db.execute("INSERT INTO samples (ts, device_id, online, fps) VALUES (1000.0, 'cam', 1, 9.5)")
    store = Store(path, monitor="new")
    try:
        assert store.schema_version == migrations.LATEST
        store.add_samples([_row("cam")], 2000.0)
        rows = store.samples(0)
        assert [(r["ts"], r["monitor"], r["online"], r["infer_p50_ms"]) for r in rows] == [
            (1000.0, None, True, None),
            (2000.0, "new", True, None),
        ]
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO schema_migrations VALUES (99, 'from the future', 0)")
    with pytest.raises(
        ConfigError, match=f"schema version 99; this lookout knows up to {migrations.LATEST}: upgrade lookout"
    ):
        Store(path)


@pytest.mark.slow
def test_monitors_starting_together_migrate_postgres_once_and_survive_it_going_away(pg) -> None:
    stores: list[Store] = []
    errors: list[BaseException] = []

    def open_one(i: int) -> None:
        try:
            stores.append(Store(pg.url, monitor=f"m{i}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and len(stores) == 4
    assert _versions(stores[0]) == [(m.version, m.description) for m in migrations.MIGRATIONS]

    # the database goes away under a running monitor: the failed write is counted, nothing crashes
    mon = Monitor(Registry(), store=stores[0])
    metrics = {
        "v": 1, "ts": time.time(), "fps": 9.5, "latency_ms": {"infer": {"p50": 5.0, "p90": 7.5, "p99": 9.0}},
        "power_w": None, "power_source": "none", "energy_mj_per_inference": None, "temp_c": 51.0, "temps": {},
        "cpu_percent": 30.0, "rss_mb": 100.0, "dropped_frames": 0, "spool_depth": 0, "spool_dropped": 0,
        "runtime": "tflite", "model": "m", "throttled": None, "reasons": {},
    }  # fmt: skip
    mon.handle("lookout/cam/metrics", json.dumps(metrics).encode(), time.time())
    assert mon.flush_history() == 1
    pg.stop()
    mon.handle("lookout/cam/metrics", json.dumps(metrics).encode(), time.time())
    assert mon.flush_history() == 0
    assert mon.stats.history_rows == 1 and mon.stats.history_errors == 1
    for s in stores:
        s.close()


@pytest.mark.broker
@pytest.mark.slow
def test_two_shared_monitors_write_one_postgres_history_a_third_process_serves(
    broker, pg, fleet_load, fleet_serve, lookout_cmd, clean_env, tmp_path: Path
) -> None:
    def monitor(name: str) -> subprocess.Popen:
        args = ["--share", "fleet", "--db", pg.url, "--monitor-id", name, "--history-interval", "0.5"]
        cmd = [*lookout_cmd, "fleet", "--headless", "--broker", broker.url, *args, "--log-interval", "0.5"]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env)

    monitors = [monitor("mon-a"), monitor("mon-b")]
    try:
        for m in monitors:  # a summary line means connected, subscribed and migrated
            line = m.stdout.readline()
            assert "connected" in line, line + m.stderr.read()
        summary = tmp_path / "summary.json"
        load = fleet_load(
            "--devices", "3", "--broker", broker.url, "--duration", "4", "--rate", "4", "--detections-rate", "4",
            "--summary", str(summary),
        )  # fmt: skip
        assert load.wait(timeout=60) == 0
        srv = fleet_serve("--broker", broker.url, "--db", pg.url, "--monitor-id", "serve-c")
        deadline = time.monotonic() + 20
        while True:
            hist = srv.json("/api/devices/sim-0001/history?since=1h")
            if {"mon-a", "mon-b"} <= set(hist["monitors"]) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        for m in monitors:
            m.terminate()
        errs = [m.communicate(timeout=30)[1] for m in monitors]
    assert {"mon-a", "mon-b"} <= set(hist["monitors"]), (hist["monitors"], errs)
    writers = {r["monitor"] for r in hist["rows"]}
    assert {"mon-a", "mon-b"} <= writers
    assert all(r["device_id"] == "sim-0001" for r in hist["rows"])
    assert any(r["fps"] is not None for r in hist["rows"] if r["monitor"] == "mon-a")
    assert any(r["fps"] is not None for r in hist["rows"] if r["monitor"] == "mon-b")
    assert all(m.returncode == 0 for m in monitors), errs
    assert "Traceback" not in "".join(errs)
