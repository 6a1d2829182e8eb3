"""The dashboard at http://ccswitch.local/: one self-contained page that reads /status."""

from __future__ import annotations

__all__ = ["PAGE"]

PAGE = b"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ccswitch</title>
<style>
  :root { font: 14px/1.4 system-ui, sans-serif; color: #1d2330; background: #f5f6f8; }
  body { margin: 0 auto; max-width: 1100px; padding: 16px; }
  h1 { font-size: 20px; margin: 0 0 4px; }
  h2 { font-size: 16px; margin: 0 0 8px; }
  .muted { color: #667085; }
  .app { background: #fff; border: 1px solid #d9dde3; border-radius: 8px; padding: 12px 16px;
         margin: 12px 0; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eef0f3; }
  th { font-weight: 600; color: #475467; font-size: 12px; text-transform: uppercase; }
  .badge { display: inline-block; width: 10px; height: 10px; border-radius: 50%;
           margin-right: 6px; vertical-align: middle; }
  .green { background: #12b76a; } .yellow { background: #f79009; }
  .red { background: #f04438; } .grey { background: #98a2b3; }
  .tag { font-size: 11px; padding: 1px 6px; border-radius: 8px; background: #eef4ff;
         color: #3538cd; margin-left: 6px; }
  #error { color: #b42318; }
</style>
</head>
<body>
<h1>ccswitch</h1>
<div class="muted">failover router &middot; <span id="updated">loading&hellip;</span>
  <span id="error"></span> <span id="gateway"></span></div>
<div id="apps"></div>
<div class="app"><h2>Recent switches</h2>
  <table><thead><tr><th>time</th><th>app</th><th>from</th><th>to</th><th>reason</th></tr>
  </thead><tbody id="events"></tbody></table></div>
<script>
"use strict";
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : String(c ?? ""));
  return node;
}
function when(t) { return t ? new Date(t * 1000).toLocaleTimeString() : ""; }
function pct(x) { return x === null || x === undefined ? "-" : (x * 100).toFixed(1) + "%"; }
function ms(x) { return x === null || x === undefined ? "-" : x + " ms"; }
function render(status) {
  const apps = document.getElementById("apps");
  apps.replaceChildren();
  for (const [name, app] of Object.entries(status.apps)) {
    const rows = app.queue.map((p, i) => {
      const state = p.state + (p.reopens_at ? " until " + when(p.reopens_at) : "") +
                    (p.changed_by ? " \\u00b7 by " + p.changed_by : "");
      const tags = [];
      if (p.id === app.current) tags.push(el("span", {class: "tag"}, "current"));
      if (p.id === app.active) tags.push(el("span", {class: "tag"}, "active"));
      return el("tr", {"data-provider": p.id},
        el("td", {}, p.in_queue ? String(i + 1) : "-"),
        el("td", {}, el("span", {class: "badge " + p.health, "data-badge": p.health,
                                 title: p.health}), p.name, ...tags),
        el("td", {"data-state": p.state}, state),
        el("td", {}, p.requests ?? 0), el("td", {}, p.failures ?? 0),
        el("td", {}, pct(p.success_rate)), el("td", {}, ms(p.p50_ms)),
        el("td", {}, ms(p.p95_ms)));
    });
    apps.append(el("div", {class: "app", "data-app": name},
      el("h2", {}, name, el("span", {class: "muted"},
         "  current " + app.current + " \\u00b7 active " + (app.active ?? "-") +
         (app.failover ? "" : " \\u00b7 failover off"))),
      el("table", {},
         el("thead", {}, el("tr", {}, ...["#", "provider", "state", "requests", "failures",
                                          "success", "p50", "p95"].map(h => el("th", {}, h)))),
         el("tbody", {}, ...rows))));
  }
  const redis = status.redis;  // a team gateway
  document.getElementById("gateway").textContent = redis ? "\\u00b7 instance " +
    status.instance + " \\u00b7 Redis " + (redis.reachable ? "reachable" :
    "UNREACHABLE, on local breakers") : "";
  const events = document.getElementById("events");
  events.replaceChildren(...status.events.map(e => el("tr", {class: "event"},
    el("td", {}, when(e.time)), el("td", {}, e.app), el("td", {}, e.from ?? "-"),
    el("td", {}, e.to), el("td", {}, e.reason))));
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  document.body.setAttribute("data-loaded", "1");
}
async function refresh() {
  try {
    const response = await fetch("/status", {cache: "no-store"});
    render(await response.json());
    document.getElementById("error").textContent = "";
  } catch (e) {
    document.getElementById("error").textContent = " \\u2014 proxy not answering";
  }
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
"""
