// Lookout fleet: keeps the fleet table live from /events (server-sent events). The server sends
// display-ready cells (texts and tones); this script only writes them with textContent, so nothing a
// device sends can become markup (snapshot images are served by this server, as image/jpeg, from
// what the monitor received). Pages without the fleet table only get the connection marker.
"use strict";
(function () {
  const table = document.getElementById("fleet");
  const conn = document.getElementById("conn");
  if (!table || !window.EventSource) return;
  const numeric = Array.from(table.tHead.rows[0].cells).map((th) => th.classList.contains("num"));
  const sort = table.dataset.sort || "id";

  function badge(cls, parts) {
    const span = document.createElement("span");
    span.className = "badge " + cls;
    for (const [text, bold] of parts) {
      const node = bold ? document.createElement("b") : document.createTextNode(text);
      if (bold) node.textContent = text;
      span.appendChild(node);
    }
    return span;
  }

  function render(view) {
    const badges = document.getElementById("badges");
    badges.replaceChildren(
      badge(view.online === view.total ? "good" : "bad",
            [[String(view.online), true], ["/", false], [String(view.total), true], [" online", false]]));
    const alerts = Object.entries(view.counts);
    for (const [name, n] of alerts) badges.appendChild(badge("warn", [[name + " ", false], [String(n), true]]));
    if (!alerts.length) badges.appendChild(badge("good", [["no alerts", false]]));
    document.getElementById("summary").textContent = view.summary;
    const empty = document.getElementById("empty");
    if (empty && view.rows.length) empty.remove();
    const body = document.createElement("tbody");
    for (const row of view.rows) {
      const tr = document.createElement("tr");
      tr.dataset.id = row.id;
      if (row.tone) tr.className = row.tone;
      row.cells.forEach(([text, tone], i) => {
        const td = document.createElement("td");
        const cls = [tone, numeric[i] ? "num" : ""].filter(Boolean).join(" ");
        if (cls) td.className = cls;
        if (i === 0) {
          const a = document.createElement("a");
          a.href = "/devices/" + encodeURIComponent(row.id);
          a.textContent = text;
          td.appendChild(a);
        } else {
          td.textContent = text;
        }
        tr.appendChild(td);
      });
      body.appendChild(tr);
    }
    table.replaceChild(body, table.tBodies[0]);
    gallery(view.snapshots || []);
  }

  function snapshotUrl(id, t) {
    return "/devices/" + encodeURIComponent(id) + "/snapshot.jpg?t=" + encodeURIComponent(String(t));
  }

  function figure(id) {
    const fig = document.createElement("figure");
    fig.dataset.id = id;
    const a = document.createElement("a");
    a.href = "/devices/" + encodeURIComponent(id);
    const img = document.createElement("img");
    img.width = 320;
    img.height = 240;
    img.alt = "latest snapshot of " + id;
    a.appendChild(img);
    const cap = document.createElement("figcaption");
    const b = document.createElement("b");
    b.textContent = id;
    cap.append(b, " ", document.createElement("span"));
    fig.append(a, cap);
    return fig;
  }

  // The latest snapshot per device: a new image only when the monitor received a new one.
  function gallery(shots) {
    const box = document.getElementById("snapshots");
    if (!box || !shots.length) return;
    const have = new Map(Array.from(box.querySelectorAll("figure")).map((f) => [f.dataset.id, f]));
    box.replaceChildren(...shots.map((s) => {
      const fig = have.get(s.id) || figure(s.id);
      if (fig.dataset.t !== String(s.t)) {
        fig.dataset.t = String(s.t);
        fig.querySelector("img").src = snapshotUrl(s.id, s.t);
      }
      fig.querySelector("figcaption span").textContent = s.caption;
      return fig;
    }));
  }

  const source = new EventSource("/events?sort=" + encodeURIComponent(sort));
  source.addEventListener("fleet", (ev) => {
    render(JSON.parse(ev.data));
    conn.className = "conn live";
    conn.textContent = "live";
  });
  source.onerror = () => {
    conn.className = "conn lost";
    conn.textContent = "reconnecting";
  };
})();
