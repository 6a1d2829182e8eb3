"""The dashboard: one self-contained page (inline CSS, JS and SVG; no CDN, no build step).

It reads ``status``, ``history``, ``requests`` and ``tokens`` next to itself, and acts
through ``switch`` and ``reset`` with the per-process token the proxy embeds in it.
"""

from __future__ import annotations

__all__ = ["page"]

_TOKEN = b"@@CCSWITCH_TOKEN@@"
_BASE = b"@@CCSWITCH_BASE@@"


def page(token: str, base: str) -> bytes:
    """The page for this process's ``token``, its calls going to ``base`` + ``/status`` …"""
    # Both are URL-safe by construction (secrets.token_urlsafe, a fixed prefix).
    return _PAGE.replace(_TOKEN, token.encode()).replace(_BASE, base.encode())


_PAGE = b"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="ccswitch-token" content="@@CCSWITCH_TOKEN@@">
<meta name="ccswitch-base" content="@@CCSWITCH_BASE@@">
<link rel="icon" href="data:,">
<title>ccswitch</title>
<style>
  :root { font: 14px/1.4 system-ui, sans-serif; color: #1d2330; background: #f5f6f8; }
  body { margin: 0 auto; max-width: 1180px; padding: 16px; }
  h1 { font-size: 20px; margin: 0 0 4px; }
  h2 { font-size: 16px; margin: 0 0 8px; }
  h3 { font-size: 13px; margin: 12px 0 4px; color: #475467; }
  .muted { color: #667085; }
  .card { background: #fff; border: 1px solid #d9dde3; border-radius: 8px; padding: 12px 16px;
          margin: 12px 0; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eef0f3;
           vertical-align: top; }
  th { font-weight: 600; color: #475467; font-size: 12px; text-transform: uppercase; }
  .badge { display: inline-block; width: 10px; height: 10px; border-radius: 50%;
           margin-right: 6px; vertical-align: middle; }
  .green { background: #12b76a; } .yellow { background: #f79009; }
  .red { background: #f04438; } .grey { background: #98a2b3; }
  .tag { font-size: 11px; padding: 1px 6px; border-radius: 8px; background: #eef4ff;
         color: #3538cd; margin-left: 6px; cursor: help; }
  .reason { font-size: 12px; color: #475467; max-width: 330px; }
  .help { cursor: help; border-bottom: 1px dotted #667085; }
  button { font: inherit; font-size: 12px; padding: 2px 8px; margin: 0 2px; border-radius: 6px;
           border: 1px solid #b2b9c5; background: #fff; cursor: pointer; }
  button:hover { background: #eef4ff; }
  #error, .bad { color: #b42318; }
  #banner { display: none; background: #fef3f2; border: 1px solid #fda29b; color: #912018;
            padding: 8px 12px; border-radius: 8px; margin: 8px 0; white-space: pre-wrap; }
  #message { min-height: 1.4em; }
  .legend span { margin-right: 12px; font-size: 12px; }
  .legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px;
              vertical-align: middle; }
  .charts { display: flex; gap: 16px; flex-wrap: wrap; }
  .chart { font-size: 12px; color: #475467; }
  svg text { font: 10px system-ui, sans-serif; fill: #667085; }
  .chain { font-family: ui-monospace, monospace; font-size: 12px; }
</style>
</head>
<body>
<h1>ccswitch</h1>
<div class="muted">failover router &middot; <span id="updated">loading&hellip;</span>
  <span id="error"></span> <span id="gateway"></span></div>
<div id="banner" role="alert"></div>
<div id="message" class="muted"></div>
<div id="apps"></div>
<div class="card"><h2>Recent switches</h2>
  <table><thead><tr><th>time</th><th>app</th><th>from</th><th>to</th><th>reason</th></tr>
  </thead><tbody id="events"></tbody></table></div>
<div class="card"><h2>Last requests</h2>
  <table><thead><tr><th>time</th><th>app</th><th>served by</th><th>status</th><th>ms</th>
  <th>tokens in / out</th><th>cost $</th><th>chain</th></tr></thead>
  <tbody id="requests"></tbody></table>
</div>
<div class="card"><h2>Tokens and cost by provider and day</h2>
  <div id="tokens-note" class="muted"></div>
  <table><thead><tr><th>day</th><th>app</th><th>provider</th><th>requests</th>
  <th>input tokens</th><th>output tokens</th><th>cost $</th><th>cache hit</th></tr></thead>
  <tbody id="tokens"></tbody></table>
</div>
<script>
"use strict";
const TOKEN = document.querySelector('meta[name="ccswitch-token"]').content;
const BASE = document.querySelector('meta[name="ccswitch-base"]').content;
const SVG = "http://www.w3.org/2000/svg";
const STATE_COLOURS = {closed: "#12b76a", open: "#f04438", half_open: "#f79009",
                       cooldown: "#7a5af8", budget: "#dc6803", disabled: "#98a2b3"};
// Series colours share none with the states above (red is "open", not a provider); each
// series also has its own dash and offset, so equal series do not hide each other.
const LINE_COLOURS = ["#1570ef", "#0e9384", "#dd2590", "#a15c07", "#06aed4", "#344054"];
const LINE_DASHES = ["", "6 3", "2 2", "8 3 2 3", "1 3", "10 4"];
const CURRENT_HELP = "current: where requests go first \\u2014 the queue's head, or the " +
  "provider chosen with Switch. It changes only by hand.";
const ACTIVE_HELP = "active: the provider that served the last request. It differs from " +
  "current while the current one is open, cooling down or failing and a backup serves.";
let history = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : String(c ?? ""));
  return node;
}
function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : String(c ?? ""));
  return node;
}
function when(t) { return t ? new Date(t * 1000).toLocaleTimeString() : ""; }
function pct(x) { return x === null || x === undefined ? "-" : (x * 100).toFixed(1) + "%"; }
function ms(x) { return x === null || x === undefined ? "-" : x + " ms"; }
function usd(x) { return x === null || x === undefined ? "-" : "$" + x.toFixed(x < 1 ? 4 : 2); }
function windows(p) {  // a subscription's unified rate-limit windows
  const w = p.windows;
  if (!w) return "";
  const parts = ["5h", "7d"].filter(k => w[k]).map(k => k + " " + pct(w[k].utilization) +
    (w[k].reset ? " (resets " + new Date(w[k].reset * 1000).toLocaleString() + ")" : ""));
  return "subscription " + (w.status || "?") + ": " + parts.join(", ") +
    (w.moved ? "; new conversations go elsewhere" : "");
}

function reason(p) {
  switch (p.state) {
    case "disabled": return "disabled: " + (p.disabled_reason || "no key");
    case "open": return "opened by " + (p.opened_by || "failures") +
      (p.opened_at ? " at " + when(p.opened_at) : "") +
      (p.reopens_at ? "; a probe request may go at " + when(p.reopens_at) : "");
    case "half_open": return "testing recovery: the next request is a probe" +
      (p.opened_by ? " (opened by " + p.opened_by + ")" : "");
    case "cooldown": return "cooling down after " + (p.cooldown_reason || "a rate limit") +
      " until " + when(p.reopens_at);
    case "budget": return p.budget_reason + " until " +
      new Date(p.reopens_at * 1000).toLocaleString();
    default:
      return p.consecutive_failures ? p.consecutive_failures + " failure(s) in a row" +
        (p.last_failure_reason ? ", the last " + p.last_failure_reason : "") +
        (p.last_failure ? " at " + when(p.last_failure) : "") : "";
  }
}

async function act(action, app, provider) {
  const message = document.getElementById("message");
  try {
    const response = await fetch(BASE + "/" + action, {
      method: "POST", cache: "no-store",
      headers: {"content-type": "application/json", "x-ccswitch-token": TOKEN},
      body: JSON.stringify({app: app, provider: provider}),
    });
    const answer = await response.json();
    message.className = response.ok ? "muted" : "bad";
    message.textContent = response.ok
      ? (action === "switch" ? app + " now routes to " + provider + " first"
                             : app + ": " + provider + " reset")
      : answer.error;
  } catch (e) {
    message.className = "bad";
    message.textContent = action + " failed: the proxy is not answering";
  }
  refresh();
}

function buttons(name, app, p) {
  const cell = el("td", {});
  if (p.id !== app.current && p.state !== "disabled") {
    const b = el("button", {"data-action": "switch", "data-app": name, "data-provider": p.id,
                            title: "make " + p.id + " the current provider of " + name}, "Switch");
    b.addEventListener("click", () => act("switch", name, p.id));
    cell.append(b);
  }
  if (p.state !== "closed" && p.state !== "disabled") {
    const b = el("button", {"data-action": "reset", "data-app": name, "data-provider": p.id,
                            title: "close the breaker, clear the cooldown"}, "Reset");
    b.addEventListener("click", () => act("reset", name, p.id));
    cell.append(b);
  }
  return cell;
}

function routing(app) {  // routes, live conversations, pool keys (README: Routes, ...)
  const lines = (app.routes || []).map(r => el("div", {"data-route": r.name},
    "route " + r.name + " (" + Object.entries(r.when).map(([k, v]) => k + ": " + v)
      .join(", ") + "): " + r.queue.join(" \\u2192 ") + " \\u00b7 current " +
    (r.current ?? "-") + " \\u00b7 active " + (r.active ?? "-")));
  if (app.affinity_seconds !== undefined) {
    const held = Object.entries(app.conversations || {}).map(([p, n]) => p + " " + n);
    lines.push(el("div", {"data-conversations": ""}, "affinity " + (app.affinity_seconds ?
      app.affinity_seconds + "s, failback " + app.failback : "off") +
      " \\u00b7 live conversations: " + (held.join(", ") || "none")));
  }
  for (const [pid, keys] of Object.entries(app.keys || {})) {
    lines.push(el("div", {"data-keys": pid}, "keys of " + pid + ": " + keys.map(k =>
      k.key + " " + k.state + (k.cooldown_until ? " until " + when(k.cooldown_until) : "") +
      " (" + k.conversations + ")").join(", ")));
  }
  return el("div", {class: "routing muted"}, ...lines);
}

function timeline(name, app) {
  const box = el("div", {class: "timeline"});
  const data = history && history.apps[name];
  if (!data) return box;
  const started = history.started > history.since ? " (since the proxy started at " +
    when(history.started) + ")" : "";
  box.append(el("h3", {}, "Last hour" + started));
  const width = 640, left = 110, row = 18, span = history.now - history.since;
  const ids = app.queue.map(p => p.id);
  const height = ids.length * (row + 4) + 16;
  const x = t => left + (t - history.since) / span * width;
  const chart = svg("svg", {width: left + width + 10, height: height, "data-timeline": name});
  ids.forEach((pid, i) => {
    const y = i * (row + 4);
    const d = data[pid] || {bands: [], failures: []};
    chart.append(svg("text", {x: 0, y: y + 13}, pid));
    chart.append(svg("rect", {x: left, y: y, width: width, height: row, fill: "#f2f4f7"}));
    for (const b of d.bands) {
      chart.append(svg("rect", {x: x(b.from), y: y, height: row, "data-band": b.state,
        width: Math.max(1, x(b.to) - x(b.from)), fill: STATE_COLOURS[b.state] || "#98a2b3"},
        svg("title", {}, b.state + " " + when(b.from) + "\\u2013" + when(b.to))));
    }
    for (const t of d.failures) {
      chart.append(svg("line", {x1: x(t), x2: x(t), y1: y - 2, y2: y + row + 2,
                                stroke: "#101828", "stroke-width": 1, "data-tick": pid}));
    }
  });
  const axis = ids.length * (row + 4) + 10;
  chart.append(svg("text", {x: left, y: axis}, "\\u221260 min"));
  chart.append(svg("text", {x: left + width / 2 - 14, y: axis}, "\\u221230 min"));
  chart.append(svg("text", {x: left + width - 18, y: axis}, "now"));
  box.append(chart);
  box.append(el("div", {class: "legend"}, ...Object.entries(STATE_COLOURS).map(([s, c]) =>
    el("span", {}, el("i", {style: "background:" + c}), s.replace("_", "-"))),
    el("span", {}, el("i", {style: "background:#101828;width:2px"}), "failure")));
  return box;
}

function small(title, name, app, key) {
  const data = history && history.apps[name];
  const width = 260, height = 70;
  const chart = svg("svg", {width: width, height: height + 14, "data-chart": key});
  chart.append(svg("rect", {x: 0, y: 0, width: width, height: height, fill: "#f9fafb",
                            stroke: "#eaecf0"}));
  let top = 0;
  const lines = [];
  app.queue.forEach((p, i) => {
    const values = (data && data[p.id] && data[p.id][key]) || [];
    top = Math.max(top, ...values.map(v => v || 0));
    lines.push([values, i, p.id]);
  });
  top = top || 1;
  for (const [values, i, pid] of lines) {
    if (!values.length) continue;
    const step = width / Math.max(1, values.length - 1);
    const lift = i % LINE_COLOURS.length;  // a pixel apart: equal series stay visible
    const points = values.map((v, j) => (j * step).toFixed(1) + "," +
      (height - 2 - lift - (v || 0) / top * (height - 8)).toFixed(1)).join(" ");
    chart.append(svg("polyline", {points: points, fill: "none",
      stroke: LINE_COLOURS[lift], "stroke-dasharray": LINE_DASHES[lift],
      "stroke-width": 1.5, "data-series": pid}));
  }
  chart.append(svg("text", {x: 2, y: 10}, String(Math.round(top))));
  chart.append(svg("text", {x: 2, y: height + 12}, "\\u221260 min"));
  chart.append(svg("text", {x: width - 20, y: height + 12}, "now"));
  return el("div", {class: "chart"}, el("div", {}, title), chart);
}

function render(status) {
  const banner = document.getElementById("banner");
  const notes = (status.warnings || []).map(w => "warning: " + w);
  if (status.config_error) {
    notes.unshift("providers.yaml was not reloaded (since " +
      when(status.config_error.since) + "); the previous configuration keeps serving:\\n" +
      status.config_error.message);
  }
  if (notes.length) {
    banner.style.display = "block";
    banner.textContent = notes.join("\\n");
  } else {
    banner.style.display = "none";
    banner.textContent = "";
  }
  const apps = document.getElementById("apps");
  apps.replaceChildren();
  for (const [name, app] of Object.entries(status.apps)) {
    const rows = app.queue.map((p, i) => {
      const state = p.state + (p.reopens_at ? " until " + when(p.reopens_at) : "") +
                    (p.changed_by ? " \\u00b7 by " + p.changed_by : "");
      const tags = [];
      if (p.id === app.current) tags.push(el("span", {class: "tag", title: CURRENT_HELP},
                                             "current"));
      if (p.id === app.active) tags.push(el("span", {class: "tag", title: ACTIVE_HELP},
                                            "active"));
      return el("tr", {"data-provider": p.id},
        el("td", {}, p.in_queue ? String(i + 1) : "-"),
        el("td", {}, el("span", {class: "badge " + p.health, "data-badge": p.health,
                                 title: p.health}), p.name, ...tags),
        el("td", {"data-state": p.state}, state),
        el("td", {class: "reason", "data-reason": p.id}, reason(p),
           p.windows ? el("div", {class: "muted", "data-windows": p.id}, windows(p)) : ""),
        el("td", {"data-cost-today": p.id}, usd(p.spent_usd?.day)),
        el("td", {"data-cost-month": p.id}, usd(p.spent_usd?.month)),
        el("td", {}, p.requests ?? 0), el("td", {}, p.failures ?? 0),
        el("td", {}, pct(p.success_rate)), el("td", {}, ms(p.p50_ms)),
        el("td", {}, ms(p.p95_ms)), buttons(name, app, p));
    });
    apps.append(el("div", {class: "card", "data-app": name},
      el("h2", {}, name, el("span", {class: "muted"}, "  ",
         el("span", {class: "help", title: CURRENT_HELP}, "current"), " " + app.current +
         " \\u00b7 ", el("span", {class: "help", title: ACTIVE_HELP}, "active"),
         " " + (app.active ?? "-") + (app.failover ? "" : " \\u00b7 failover off"))),
      el("table", {},
         el("thead", {}, el("tr", {}, ...["#", "provider", "state", "why", "today",
           "this month", "requests",
           "failures", "success", "p50", "p95", ""].map(h => el("th", {}, h)))),
         el("tbody", {}, ...rows)),
      routing(app),
      timeline(name, app),
      el("div", {class: "charts"},
         small("requests / min", name, app, "requests"),
         small("failures / min", name, app, "failed"),
         small("p95 latency (ms)", name, app, "p95_ms")),
      el("div", {class: "legend", "data-legend": "series"}, "lines: ",
         ...app.queue.map((p, i) => el("span", {"data-series": p.id},
           legendLine(i % LINE_COLOURS.length), p.id)))));
  }
  const redis = status.redis;  // a team gateway
  document.getElementById("gateway").textContent = redis ? "\\u00b7 instance " +
    status.instance + " \\u00b7 Redis " + (redis.reachable ? "reachable" :
    "UNREACHABLE, on local breakers") : "";
  const events = document.getElementById("events");
  events.replaceChildren(...orEmpty(status.events.map(e => el("tr", {class: "event"},
    el("td", {}, when(e.time)), el("td", {}, e.app), el("td", {}, e.from ?? "-"),
    el("td", {}, e.to), el("td", {}, e.reason))), 5, "no switches yet"));
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

function legendLine(i) {
  const line = svg("svg", {width: 22, height: 8});
  line.append(svg("line", {x1: 0, y1: 4, x2: 22, y2: 4, stroke: LINE_COLOURS[i],
                           "stroke-width": 2, "stroke-dasharray": LINE_DASHES[i]}));
  return line;
}

function orEmpty(rows, columns, text) {
  return rows.length ? rows
    : [el("tr", {class: "empty"}, el("td", {colspan: columns, class: "muted"}, text))];
}

function chain(row) {
  const why = [row.route ? "route " + row.route : "", row.why || ""].filter(x => x).join("; ");
  const tail = why ? " [" + why + "]" : "";
  const text = row.chain ? row.chain.map(a => a.provider + " " + (a.error || a.status))
    .join(" \\u2192 ") : (row.attempts > 1 ? row.attempts + " attempts" : "");
  return (row.note ? text + "; " + row.note : text) + tail;
}

function renderLog(requests, tokens) {
  document.getElementById("requests").replaceChildren(...orEmpty(requests.rows.map(r =>
    el("tr", {class: "request"}, el("td", {}, when(r.time)), el("td", {}, r.app),
       el("td", {}, r.provider ?? "-"), el("td", {}, r.error || r.status || "-"),
       el("td", {}, r.total_ms ?? "-"),
       el("td", {}, (r.input_tokens ?? "-") + " / " + (r.output_tokens ?? "-")),
       el("td", {}, usd(r.cost_usd)),
       el("td", {class: "chain"}, chain(r)))), 8, "no requests yet"));
  document.getElementById("tokens-note").textContent = tokens.note || "";
  document.getElementById("tokens").replaceChildren(...orEmpty(tokens.rows.map(r =>
    el("tr", {class: "tokens"}, el("td", {}, r.day), el("td", {}, r.app),
       el("td", {}, r.provider ?? "-"), el("td", {}, r.requests),
       el("td", {}, r.input_tokens), el("td", {}, r.output_tokens),
       el("td", {}, usd(r.cost_usd)), el("td", {"data-hit": r.provider ?? "-"},
       pct(r.cache_hit_ratio)))), 8,
    tokens.note ? "" : "no tokens counted yet"));
}

async function get(path) {
  const response = await fetch(BASE + path, {cache: "no-store"});
  if (!response.ok) throw new Error(path + ": " + response.status);
  return response.json();
}

async function refresh() {
  try {
    const [status, hist, requests, tokens] = await Promise.all(
      [get("/status"), get("/history"), get("/requests"), get("/tokens")]);
    history = hist;
    render(status);
    renderLog(requests, tokens);
    document.getElementById("error").textContent = "";
    document.body.setAttribute("data-loaded", "1");
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
