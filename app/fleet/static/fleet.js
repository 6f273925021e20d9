// Lookout fleet: keeps the fleet table live from /events (server-sent events). The server sends
// display-ready cells (texts and tones); this script only writes them with textContent, so nothing a
// device sends can become markup. Pages without the fleet table only get the connection marker.
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
