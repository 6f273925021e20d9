"""HTML pages of `lookout fleet serve`: the fleet table, one device's history, the runtime comparison.

Plain server-rendered HTML; the only script is /static/fleet.js (live table over server-sent events).
Every string that came from a device goes through `e()` (HTML escaping, quotes included); the JS
writes only with textContent. Nothing is fetched from anywhere but this server.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from app.fleet import svg
from app.fleet.history import PANELS, WINDOWS, Event, values
from app.fleet.runtimes import n_devices
from app.fleet.table import COLUMNS, event_text, is_simulated, num, presence_text, snapshot_text
from app.fleet.view import SORT_KEYS
from app.inert import html_text


def e(v: Any) -> str:
    """Any value as inert HTML text (control characters shown as escapes, HTML escaped)."""
    return html_text(v)


def _layout(title: str, body: str, nav: str = "") -> str:
    links = [("/", "Fleet"), ("/runtimes", "Runtimes")]
    menu = "".join(
        f'<a href="{href}"{" class=current" if nav == href else ""}>{text}</a>' for href, text in links
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{e(title)} · Lookout fleet</title><link rel='stylesheet' href='/static/fleet.css'>"
        "<link rel='icon' href='/static/icon.svg' type='image/svg+xml'>"
        "<script src='/static/fleet.js' defer></script></head><body>"
        f"<header><span class='brand'>Lookout fleet</span><nav>{menu}</nav>"
        "<span id='conn' class='conn' title='live updates'></span></header>"
        f"<main>{body}</main></body></html>"
    )


def error_page(status: int, message: str) -> str:
    return _layout(
        f"{status}", f"<h1>{status}</h1><p class='error'>{e(message)}</p><p><a href='/'>fleet</a></p>"
    )


def login_page(message: str) -> str:
    msg = f"<p class='error'>{e(message)}</p>" if message else ""
    return _layout(
        "Sign in",
        "<h1>Sign in</h1><p>This fleet monitor needs its access token (the contents of its "
        "<code>--auth-token-file</code>).</p>"
        f"{msg}<form method='post' action='/login' class='login'><input type='password' name='token' "
        "autocomplete='current-password' placeholder='token' required><button>Sign in</button></form>",
    )


# ---- the fleet table ------------------------------------------------------------------------------
_SORT_OF_FIELD = {f: k for k, (f, _desc) in reversed(list(SORT_KEYS.items()))}


def _badges(view: dict[str, Any]) -> str:
    parts = [f"<span class='badge {'good' if view['online'] == view['total'] else 'bad'}'>"
             f"<b>{view['online']}</b>/<b>{view['total']}</b> online</span>"]  # fmt: skip
    for alert, n in view["counts"].items():
        parts.append(f"<span class='badge warn'>{e(alert)} <b>{n}</b></span>")
    if not view["counts"]:
        parts.append("<span class='badge good'>no alerts</span>")
    return "".join(parts)


def fleet_page(view: dict[str, Any], sort: str) -> str:
    """`/`: the table, server-rendered; fleet.js keeps it live from /events?sort=..."""
    head = []
    for col in COLUMNS:
        key = _SORT_OF_FIELD.get(col.key)
        cls = " class='num'" if col.numeric else ""
        label = e(col.header)
        if key is not None:
            mark = " ▾" if key == sort or SORT_KEYS[key][0] == SORT_KEYS[sort][0] else ""
            label = f"<a href='/?sort={quote(key)}'>{label}{mark}</a>"
        head.append(f"<th{cls}>{label}</th>")
    body = []
    for r in view["rows"]:
        tds = []
        for i, (text, tone) in enumerate(r["cells"]):
            cls = " ".join(c for c in (tone, "num" if COLUMNS[i].numeric else "") if c)
            inner = e(text) if i else f"<a href='/devices/{quote(r['id'], safe='')}'>{e(text)}</a>"
            tds.append(f"<td class='{cls}'>{inner}</td>" if cls else f"<td>{inner}</td>")
        body.append(f"<tr data-id='{e(r['id'])}' class='{e(r['tone'])}'>{''.join(tds)}</tr>")
    empty = "" if view["rows"] else "<p class='muted' id='empty'>No device has announced itself yet.</p>"
    return _layout(
        "Fleet",
        f"<div class='top'><h1>Fleet</h1><div id='badges' class='badges'>{_badges(view)}</div></div>"
        f"<p id='summary' class='summary'>{e(view['summary'])}</p>"
        f"<table id='fleet' class='fleet' data-sort='{e(sort)}'><thead><tr>{''.join(head)}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>{empty}"
        f"<h2>Latest snapshots</h2><div id='snapshots' class='snapshots'>{_gallery(view['snapshots'])}</div>"
        "<p class='muted small'>Live: updates every second over server-sent events. Numbers marked "
        "<em>sim</em> come from a simulated device (fleet_load), not a measurement; — is not measured (null). JSON: "
        "<a href='/api/devices'>/api/devices</a> · Prometheus: <a href='/metrics'>/metrics</a></p>",
        nav="/",
    )


def snapshot_url(device_id: str, t: Any) -> str:
    """The device's latest snapshot; `t` (when it was received) makes a new one a new URL."""
    return f"/devices/{quote(device_id, safe='')}/snapshot.jpg?t={quote(str(t), safe='')}"


def _figure(shot: dict[str, Any]) -> str:
    dev = shot["id"]
    return (
        f"<figure data-id='{e(dev)}' data-t='{e(shot['t'])}'><a href='/devices/{quote(dev, safe='')}'>"
        f"<img src='{e(snapshot_url(dev, shot['t']))}' alt='latest snapshot of {e(dev)}' width='320' height='240'>"
        f"</a><figcaption><b>{e(dev)}</b> <span>{e(shot['caption'])}</span></figcaption></figure>"
    )


def _gallery(shots: list[dict[str, Any]]) -> str:
    if not shots:
        return "<p class='muted' id='nosnapshots'>No device has published a snapshot yet (one is taken when a label's presence starts).</p>"
    return "".join(_figure(s) for s in shots)


# ---- one device -----------------------------------------------------------------------------------
def _facts(row: dict[str, Any] | None, rows: list[dict[str, Any]]) -> str:
    last = rows[-1] if rows else {}
    src = (row or {}).get("power_source") or last.get("power_source")
    items = [
        ("state", (row or {}).get("state") or last.get("state") or "unknown"),
        ("runtime", (row or {}).get("runtime") or last.get("runtime")),
        ("model", (row or {}).get("model") or last.get("model")),
        ("version", (row or {}).get("version")),
        ("alerts", ", ".join((row or {}).get("alerts") or []) or "none"),
        ("last seen", f"{num((row or {}).get('age_s'), '.0f')} s ago" if row else "not live (history only)"),
        ("power source", src),  # last: a meter's reason can be long
    ]
    fb = (row or {}).get("fallback")
    if fb:
        items.insert(
            2,
            (
                "fallback",
                fb if not isinstance(fb, dict) else f"{fb.get('from')} → {fb.get('to')}: {fb.get('reason')}",
            ),
        )
    cells = "".join(f"<div><dt>{e(k)}</dt><dd>{e(v if v is not None else '—')}</dd></div>" for k, v in items)
    return f"<dl class='facts'>{cells}</dl>"


def _presence(row: dict[str, Any] | None) -> str:
    """What the camera sees now, its last event and its latest snapshot."""
    if row is None:
        return ""
    text = f"present: {presence_text(row.get('presence'))} · last event: {event_text(row.get('last_event'))}"
    if row.get("state") == "offline":  # the retained presence is what it saw before it went away
        text = f"last known before the device went offline — {text}"
    img = "<p class='muted'>No snapshot yet (one is taken when a label's presence starts).</p>"
    if row.get("snapshot_at"):
        text += f" · {snapshot_text(row, time.time())}"
        img = (
            f"<img class='snapshot' src='{e(snapshot_url(row['device_id'], row['snapshot_at']))}' "
            f"alt='latest snapshot of {e(row['device_id'])}' width='480' height='360'>"
        )
    return f"<h2>What the camera sees</h2><section class='presence'><p>{e(text)}</p>{img}</section>"


def _bench_table(bench: dict[str, Any] | None) -> str:
    if not bench:
        return (
            "<p class='muted'>No bench published by this device (send it the <code>bench</code> command).</p>"
        )
    host = bench.get("host") if isinstance(bench.get("host"), dict) else {}
    when = bench.get("ts")
    head = (
        f"<p class='muted small'>model {e(bench.get('model'))} · "
        f"{e(host.get('simulated') or host.get('cpu') or 'host unknown')}"
        f"{' · ' + e(time.strftime('%Y-%m-%d %H:%M', time.localtime(when))) if isinstance(when, int | float) else ''}</p>"
    )
    rows = []
    for r in bench.get("results") or []:
        if not isinstance(r, dict):
            continue
        lat = r.get("latency_ms") if isinstance(r.get("latency_ms"), dict) else {}
        power = r.get("power") if isinstance(r.get("power"), dict) else {}
        rows.append(
            "<tr>"
            f"<td>{e(r.get('runtime'))}</td>"
            + "".join(f"<td class='num'>{num(lat.get(q), '.2f')}</td>" for q in ("p50", "p90", "p99"))
            + f"<td class='num'>{num(r.get('throughput_fps'))}</td><td class='num'>{num(r.get('rss_mb'), '.0f')}</td>"
            f"<td class='num'>{num(r.get('energy_mj_per_inference'), '.2f')}</td>"
            f"<td>{e(power.get('source') or '—')}</td><td class='bad'>{e(r.get('error') or '')}</td></tr>"
        )
    return (
        head
        + "<table class='grid'><thead><tr><th>runtime</th><th class='num'>p50 ms</th><th class='num'>p90 ms</th>"
        "<th class='num'>p99 ms</th><th class='num'>fps</th><th class='num'>RSS MB</th>"
        "<th class='num'>mJ/inf</th><th>power source</th><th>error</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def device_page(
    device_id: str,
    row: dict[str, Any] | None,
    hist: dict[str, Any] | None,
    bench: dict[str, Any] | None,
    since: str,
    p90_alert_ms: float,
) -> str:
    """`/devices/<id>`: facts, charts over the window with events marked, the event list, latest bench."""
    q = quote(device_id, safe="")
    shown = WINDOWS if since in WINDOWS else (since, *WINDOWS)  # a window typed into the URL is shown too
    windows = "".join(
        f"<a href='/devices/{q}?since={quote(w)}'{' class=current' if w == since else ''}>{e(w)}</a>"
        for w in shown
    )
    sim = (
        " <span class='badge warn'>simulated device: synthetic numbers, not a measurement</span>"
        if row and is_simulated(row)
        else ""
    )
    parts = [
        f"<div class='top'><h1>{e(device_id)}{sim}</h1><div class='windows'>{windows}</div></div>",
    ]
    if hist is None:
        parts.append(_facts(row, []))
        parts.append(_presence(row))
        parts.append("<p class='muted'>This monitor keeps no history (start it with <code>--db</code>).</p>")
    else:
        rows = hist["rows"]
        parts.append(_facts(row, rows))
        parts.append(_presence(row))
        has_metrics = any(r.get("fps") is not None or r.get("infer_p90_ms") is not None for r in rows)
        evts = _events(hist)
        monitors = ", ".join(hist["monitors"]) or "—"
        parts.append(
            f"<p class='muted small'>{hist['rows_total']} samples in the last {e(since)}"
            f"{' (downsampled for display)' if hist['downsampled'] else ''} · written by {e(monitors)} · "
            f"<a href='/api/devices/{q}/history?since={e(since)}'>JSON</a></p>"
        )
        if not has_metrics:
            parts.append(
                "<div class='nometrics'>no metrics yet — the device announced itself but has not published a "
                "metrics message in this window</div>"
            )
        else:
            sources = sorted({str(r["power_source"]) for r in rows if r.get("power_source")})
            src = "; ".join(sources)
            parts.append("<div class='charts'>")
            for panel in PANELS:
                note, empty = "", "not measured (null)"
                if panel.title in ("power", "energy per inference"):
                    measured = any(values(rows, key) for key, _ in panel.series)
                    note = f"source: {src}" if src and measured else ""  # else the empty text says it
                    empty = f"not measured (null) — {src}" if src else empty
                if panel.title == "temperature" and (row or {}).get("reasons", {}).get("temp_c"):
                    empty = f"not measured (null) — {row['reasons']['temp_c']}"
                if panel.title == "throttling":
                    empty = "not reported by this device"
                parts.append(
                    svg.chart(
                        panel,
                        rows,
                        evts,
                        hist["from"],
                        hist["to"],
                        note=note,
                        empty_text=empty,
                        threshold=p90_alert_ms if panel.title == "inference latency" else None,
                    )
                )
            parts.append("</div>")
            parts.append(_legend())
        parts.append("<h2>Swaps, fallbacks, offline</h2>")
        if evts:
            items = "".join(
                f"<tr><td>{e(time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(ev.ts)))}</td>"
                f"<td><span class='ev {e(ev.kind)}'>{e(ev.kind)}</span></td><td>{e(ev.text)}</td></tr>"
                for ev in evts
            )
            parts.append(f"<table class='grid'><tbody>{items}</tbody></table>")
        else:
            parts.append(f"<p class='muted'>None in the last {e(since)}.</p>")
    parts.append("<h2>Latest bench</h2>")
    parts.append(_bench_table(bench))
    return _layout(device_id, "".join(parts))


def _events(hist: dict[str, Any]) -> list[Event]:
    return [Event(**ev) for ev in hist["events"]]


def _legend() -> str:
    return (
        "<p class='legend small'><span class='ev swap'>swap</span> <span class='ev fallback'>fallback</span> "
        "<span class='ev offline'>offline</span> <span class='ev online'>online</span> marked on the time "
        "axis (hover a mark for details) · dashed red line: p90 alert threshold · gaps: no samples</p>"
    )


# ---- runtimes -------------------------------------------------------------------------------------
def _bar(value: float | None, top: float) -> str:
    if value is None or top <= 0:
        return ""
    w = max(1.0, 120.0 * value / top)
    return f"<svg class='bar' viewBox='0 0 120 10' width='120' height='10'><rect width='{w:.1f}' height='10'/></svg>"


def _group_table(group: dict[str, Any], by: str) -> str:
    rts = group["runtimes"]
    top = max((r["median_p90_ms"] or 0.0 for r in rts), default=0.0)
    rows = "".join(
        f"<tr><td>{e(r['runtime'])}</td><td class='num'>{r['devices']}</td>"
        f"<td class='num'>{num(r['median_p90_ms'], '.2f')}</td><td>{_bar(r['median_p90_ms'], top)}</td>"
        f"<td class='num'>{num(r['median_p50_ms'], '.2f')}</td><td class='num'>{num(r['median_throughput_fps'])}</td>"
        f"<td class='num'>{num(r['median_energy_mj_per_inference'], '.2f')}</td>"
        f"<td class='num'>{num(r['median_rss_mb'], '.0f')}</td><td class='num'>{r['errors'] or ''}</td></tr>"
        for r in rts
    )
    sim = " <span class='badge warn'>simulated numbers</span>" if group["simulated"] else ""
    return (
        f"<h3>{e(group[by])} <small class='muted'>{n_devices(group['devices'])}</small>{sim}</h3>"
        "<table class='grid runtimes'><thead><tr><th>runtime</th><th class='num'>devices</th>"
        "<th class='num'>p90 ms</th><th></th><th class='num'>p50 ms</th><th class='num'>fps</th>"
        "<th class='num'>mJ/inf</th><th class='num'>RSS MB</th><th class='num'>errors</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def runtimes_page(data: dict[str, Any]) -> str:
    """`/runtimes`: medians across devices of each runtime, grouped by model and by board."""
    if not data["results"]:
        body = (
            "<h1>Runtimes</h1><p class='muted'>No device has published a bench yet (the <code>bench</code> "
            "command, or <code>lookout bench</code> on the device).</p>"
        )
        return _layout("Runtimes", body, nav="/runtimes")
    parts = [
        "<h1>Runtimes across the fleet</h1><p class='muted small'>From each device's latest bench document "
        "(<code>lookout bench</code>): medians across devices; fastest p90 first; — is not measured. "
        "JSON: <a href='/api/runtimes'>/api/runtimes</a></p>",
        "<h2>By model</h2><div class='groups'>",
        *(f"<section>{_group_table(g, 'model')}</section>" for g in data["by_model"]),
        "</div><h2>By board</h2><div class='groups'>",
        *(f"<section>{_group_table(g, 'board')}</section>" for g in data["by_board"]),
        "</div>",
    ]
    return _layout("Runtimes", "".join(parts), nav="/runtimes")
