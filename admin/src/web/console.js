// paybridge operators' console: order search, an order's timeline and actions, the dashboard
// (SVG charts drawn here, no library), the audit log. Uses app.js's api(), $(), setStatus() and
// reportError(). Never writes data as HTML (textContent and DOM nodes only). Money is integer fen
// and is shown with integer arithmetic; only pixel geometry uses floats.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const COLORS = ["#1f6feb", "#1a7f37", "#bf8700", "#8250df", "#cf222e", "#0a7ea4", "#6e7781", "#e16f24"];
const consoleState = { cursor: null, query: "", order: null, auditBefore: null, auditQuery: "", latest: {} };

/**
 * Mark a new request of one kind (`orders`, `audit`, `dashboard`); `isLatest(kind, n)` is false
 * once a newer one started, so a slow answer never overwrites a newer one.
 */
function begin(kind) {
  consoleState.latest[kind] = (consoleState.latest[kind] || 0) + 1;
  return consoleState.latest[kind];
}
const isLatest = (kind, n) => consoleState.latest[kind] === n;

// --- Views ----------------------------------------------------------------------------------

function showView(id) {
  for (const v of ["main", "orders-view", "order-view", "dashboard-view", "statements-view", "audit-view"]) $(v).hidden = v !== id;
  const tabView = id === "order-view" ? "orders-view" : id;
  for (const t of document.querySelectorAll("#tabs .tab")) t.classList.toggle("selected", t.dataset.view === tabView);
}

function el(tag, text, attrs = {}) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  return e;
}

/** Fen as yuan, with integer arithmetic: 12345 → "123.45". */
function yuan(fen) {
  const n = BigInt(fen);
  const sign = n < 0n ? "-" : "";
  const abs = n < 0n ? -n : n;
  return `${sign}${abs / 100n}.${String(abs % 100n).padStart(2, "0")}`;
}

/** A table body's one row saying that there is nothing to show. */
function emptyRow(tbody, text, columns) {
  const tr = el("tr");
  tr.append(el("td", text, { colSpan: columns, className: "hint" }));
  tbody.append(tr);
}

function shortTime(iso) {
  return iso ? iso.replace("T", " ").replace(/(\.\d+)?Z$/, "Z") : "";
}

/** A datetime-local value (taken as UTC) as RFC 3339. */
function utc(value) {
  return value ? `${value.length === 16 ? `${value}:00` : value}Z` : "";
}

// --- Search ---------------------------------------------------------------------------------

function searchQuery() {
  const p = new URLSearchParams();
  const put = (k, v) => { if (v && v.trim()) p.set(k, v.trim()); };
  put("q", $("search-q").value);
  put("tenant", $("search-tenant").value);
  put("provider", $("search-provider").value);
  put("status", $("search-status").value);
  put("from", utc($("search-from").value));
  put("to", utc($("search-to").value));
  return p;
}

async function searchOrders(more) {
  const n = begin("orders");
  try {
    const p = more ? new URLSearchParams(consoleState.query) : searchQuery();
    if (!more) consoleState.query = p.toString();
    if (more && consoleState.cursor) p.set("cursor", consoleState.cursor);
    const { text } = await api("GET", `/orders?${p}`);
    if (!isLatest("orders", n)) return;
    const page = JSON.parse(text);
    const rows = $("order-rows");
    if (!more) rows.replaceChildren();
    for (const o of page.orders) {
      const tr = el("tr", null, { className: "link", "data-testid": `order-row-${o.out_trade_no}` });
      tr.append(
        el("td", shortTime(o.created_at)),
        el("td", o.tenant),
        el("td", o.out_trade_no),
        el("td", o.provider),
        el("td", o.status),
        el("td", yuan(o.amount), { className: "num" }),
        el("td", shortTime(o.paid_at)),
      );
      tr.addEventListener("click", () => openOrder(o.tenant, o.out_trade_no));
      rows.append(tr);
    }
    if (rows.children.length === 0) emptyRow(rows, "No orders match.", 7);
    consoleState.cursor = page.next_cursor;
    $("more-orders").hidden = !page.next_cursor;
    setStatus(`${rows.querySelectorAll("tr.link").length} order(s)${page.next_cursor ? ", more on the next page" : ""}.`);
  } catch (e) {
    reportError(e);
  }
}

// --- One order ------------------------------------------------------------------------------

function describe(entry) {
  switch (entry.kind) {
    case "created": return `${entry.provider}, ${yuan(entry.amount)} CNY`;
    case "provider_call": return `${entry.endpoint}: ${entry.outcome}${entry.error ? ` (${entry.error})` : ""} in ${entry.latency_ms} ms`;
    case "notification": return `${entry.channel} notification ${entry.verdict}${entry.reason ? `: ${entry.reason}` : ""}`;
    case "transition": return `${entry.from} → ${entry.to}`;
    case "refund": return `${entry.out_refund_no}: ${yuan(entry.amount)} CNY, ${entry.status}`;
    case "webhook_attempt": return `${entry.type || "event"} ${entry.ok ? "delivered" : "failed"}${entry.http_status ? ` (HTTP ${entry.http_status})` : ""}${entry.error ? `: ${entry.error}` : ""}`;
    case "reconciler": return entry.action;
    default: return "";
  }
}

function isBad(entry) {
  return (entry.kind === "provider_call" && entry.outcome !== "ok")
    || (entry.kind === "notification" && entry.verdict === "refused")
    || (entry.kind === "webhook_attempt" && !entry.ok);
}

function renderOrder(t) {
  const o = t.order;
  consoleState.order = { tenant: o.tenant, out_trade_no: o.out_trade_no };
  $("order-title").textContent = `${o.tenant} / ${o.out_trade_no}`;
  const facts = $("order-facts");
  facts.replaceChildren();
  const fact = (k, v) => { if (v !== null && v !== undefined && v !== "") facts.append(el("dt", k), el("dd", v)); };
  fact("Status", o.status);
  fact("Amount", `${yuan(o.amount)} ${o.currency}`);
  fact("Refunded", o.refunded_amount ? yuan(o.refunded_amount) : "");
  fact("Provider", o.provider);
  fact("Provider trade no", o.provider_trade_no);
  fact("Created", shortTime(o.created_at));
  fact("Paid", shortTime(o.paid_at));
  fact("Expires", shortTime(o.expires_at));
  fact("Flags", (o.flags || []).join(", "));

  const list = $("timeline");
  list.replaceChildren();
  for (const entry of t.timeline) {
    const li = el("li", null, { className: isBad(entry) ? "bad" : "", "data-testid": "timeline-entry", "data-kind": entry.kind });
    li.append(el("time", shortTime(entry.at)), el("span", entry.kind.replace("_", " "), { className: "kind" }), el("span", describe(entry)));
    list.append(li);
  }

  const refunds = $("refund-rows");
  refunds.replaceChildren();
  for (const r of t.refunds) {
    const tr = el("tr", null, { "data-testid": `refund-row-${r.out_refund_no}` });
    tr.append(el("td", r.out_refund_no), el("td", r.status), el("td", yuan(r.amount), { className: "num" }), el("td", shortTime(r.created_at)));
    refunds.append(tr);
  }
  if (t.refunds.length === 0) emptyRow(refunds, "No refunds.", 4);

  const events = $("event-rows");
  events.replaceChildren();
  for (const ev of t.events) {
    const tr = el("tr", null, { "data-testid": `event-row-${ev.id}` });
    const redeliver = el("button", "Redeliver", { type: "button", "data-testid": `redeliver-${ev.id}` });
    redeliver.addEventListener("click", () => redeliverEvent(ev.id));
    const last = ev.delivery.last_error ? ` (${ev.delivery.last_error})` : "";
    tr.append(el("td", ev.id), el("td", ev.type), el("td", `${ev.delivery.status}${last}`, { "data-testid": `delivery-${ev.id}` }),
      el("td", ev.attempts.length), el("td"));
    tr.lastChild.append(redeliver);
    events.append(tr);
  }
  if (t.events.length === 0) emptyRow(events, "No webhook events.", 5);
}

async function openOrder(tenant, no) {
  try {
    const { text } = await api("GET", `/orders/${encodeURIComponent(tenant)}/${encodeURIComponent(no)}`);
    renderOrder(JSON.parse(text));
    showView("order-view");
  } catch (e) {
    reportError(e);
  }
}

async function orderAction(action, confirmText) {
  const o = consoleState.order;
  if (!o || (confirmText && !confirm(confirmText))) return;
  try {
    const { text } = await api("POST", `/orders/${encodeURIComponent(o.tenant)}/${encodeURIComponent(o.out_trade_no)}/${action}`);
    await openOrder(o.tenant, o.out_trade_no);
    setStatus(`${action === "sync" ? "Synced" : "Closed"}: the order is ${JSON.parse(text).status}.`, "ok");
  } catch (e) {
    reportError(e);
  }
}

async function redeliverEvent(id) {
  try {
    await api("POST", `/events/${encodeURIComponent(id)}/redeliver`);
    const o = consoleState.order;
    if (o) await openOrder(o.tenant, o.out_trade_no);
    setStatus(`Event ${id} scheduled for delivery.`, "ok");
  } catch (e) {
    reportError(e);
  }
}

// --- Dashboard ------------------------------------------------------------------------------

/** The UTC hours from `from` (floored) to `to`, as the API names them. */
function hoursBetween(from, to) {
  const out = [];
  const start = new Date(from);
  start.setUTCMinutes(0, 0, 0);
  for (let t = start.getTime(); t < new Date(to).getTime() && out.length < 800; t += 3_600_000) {
    out.push(new Date(t).toISOString().replace(/\.\d{3}Z$/, "Z"));
  }
  return out;
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

/**
 * A stacked bar chart of hourly values. `series` maps a name to a Map of hour → value. Returns
 * the <figure>; each bar segment is a <rect data-series="…">.
 */
function stackedBars(id, title, hours, series, format = String) {
  const W = 520, H = 180, left = 44, bottom = 22, top = 8;
  const names = [...series.keys()];
  const totals = hours.map((h) => names.reduce((sum, n) => sum + (series.get(n).get(h) || 0), 0));
  const max = Math.max(1, ...totals);
  const figure = el("figure", null, { "data-testid": `chart-${id}` });
  figure.append(el("figcaption", title));
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  chart.append(svg("line", { x1: left, y1: H - bottom, x2: W, y2: H - bottom, stroke: "#d8dce4" }));
  // Integer ticks: the top, and the middle when it is a whole number apart.
  for (const frac of max >= 2 ? [0.5, 1] : [1]) {
    const y = top + (H - bottom - top) * (1 - frac);
    chart.append(svg("line", { x1: left, y1: y, x2: W, y2: y, stroke: "#eef0f3" }));
    const label = svg("text", { x: left - 4, y: y + 4, "text-anchor": "end", "font-size": 10, fill: "#5d6677" });
    label.textContent = format(Math.round(max * frac));
    chart.append(label);
  }
  const slot = (W - left) / Math.max(1, hours.length);
  const barW = Math.max(1, slot * 0.8);
  hours.forEach((h, i) => {
    let y = H - bottom;
    names.forEach((n, k) => {
      const v = series.get(n).get(h) || 0;
      if (v <= 0) return;
      const height = (H - bottom - top) * (v / max);
      y -= height;
      const rect = svg("rect", { x: left + i * slot + (slot - barW) / 2, y, width: barW, height, fill: COLORS[k % COLORS.length], "data-series": n });
      const tip = svg("title", {});
      tip.textContent = `${h} ${n}: ${format(v)}`;
      rect.append(tip);
      chart.append(rect);
    });
    const x = left + i * slot + slot / 2;
    if ((hours.length <= 48 ? i % 6 === 0 : i % 24 === 0) && x < W - 30) {
      const label = svg("text", { x, y: H - 6, "font-size": 10, fill: "#5d6677", "text-anchor": "middle" });
      label.textContent = h.slice(5, 13).replace("T", " ");
      chart.append(label);
    }
  });
  figure.append(chart);
  const legend = el("div", null, { className: "legend" });
  names.forEach((n, k) => {
    const item = el("span", n);
    const swatch = el("i");
    // Through the CSSOM: the page's CSP allows no style attributes.
    swatch.style.background = COLORS[k % COLORS.length];
    item.prepend(swatch);
    legend.append(item);
  });
  if (names.length === 0) legend.append(el("span", "nothing in this range"));
  figure.append(legend);
  return figure;
}

/** Group points into series: name(point) → Map(hour → value(point)), summed. */
function group(points, name, value) {
  const series = new Map();
  for (const p of points || []) {
    const n = name(p);
    if (!series.has(n)) series.set(n, new Map());
    const m = series.get(n);
    m.set(p.t, (m.get(p.t) || 0) + value(p));
  }
  return series;
}

async function loadDashboard() {
  const n = begin("dashboard");
  try {
    const hours = Number($("dash-range").value || 24);
    const to = new Date();
    const from = new Date(to.getTime() - hours * 3_600_000);
    const p = new URLSearchParams({ from: from.toISOString(), to: to.toISOString(), bucket: "hour" });
    const { text } = await api("GET", `/stats?${p}`);
    if (!isLatest("dashboard", n)) return;
    const stats = JSON.parse(text);
    const s = stats.series;
    const axis = hoursBetween(stats.from, stats.to);
    const charts = $("charts");
    charts.replaceChildren(
      stackedBars("payments", "Payments per hour, by provider", axis, group(s.payments, (p) => p.provider, (p) => p.count)),
      stackedBars("amount", "Amount paid per hour (CNY), by provider", axis, group(s.payments, (p) => p.provider, (p) => p.amount), yuan),
      stackedBars("tenants", "Payments per hour, by tenant", axis, group(s.payments, (p) => p.tenant, (p) => p.count)),
      stackedBars("creates", "Creates per hour: succeeded and failed", axis, new Map([
        ["succeeded", group(s.creates, () => "x", (p) => p.ok).get("x") || new Map()],
        ["failed", group(s.creates, () => "x", (p) => p.failed).get("x") || new Map()],
      ])),
      stackedBars("refused", "Refused notifications per hour, by reason", axis, group(s.notifications_refused, (p) => p.reason, (p) => p.count)),
      stackedBars("webhooks", "Webhook attempts per hour", axis, new Map([
        ["delivered", group(s.webhook_attempts, () => "x", (p) => p.delivered).get("x") || new Map()],
        ["failed", group(s.webhook_attempts, () => "x", (p) => p.failed).get("x") || new Map()],
      ])),
      stackedBars("reconciler", "Reconciler actions per hour", axis, group(s.reconciler, (p) => p.action, (p) => p.count)),
    );
    // The create success rate of the whole range, in permille, with integers.
    const ok = (s.creates || []).reduce((a, p) => a + p.ok, 0);
    const failed = (s.creates || []).reduce((a, p) => a + p.failed, 0);
    const rate = ok + failed > 0 ? `${Math.floor((ok * 1000) / (ok + failed)) / 10} %` : "no creates";
    const backlog = (s.webhook_backlog || [])[0] || { pending: 0, failed: 0 };
    $("dash-backlog").textContent = `Create success rate: ${rate}. Webhook backlog: ${backlog.pending} pending, ${backlog.failed} given up.`;
    const totals = new Map();
    for (const p of s.payments || []) {
      const k = `${p.tenant}\u0000${p.provider}`;
      const t = totals.get(k) || { tenant: p.tenant, provider: p.provider, count: 0, amount: 0n };
      t.count += p.count;
      t.amount += BigInt(p.amount);
      totals.set(k, t);
    }
    const rows = $("payment-totals");
    rows.replaceChildren();
    for (const t of totals.values()) {
      const tr = el("tr", null, { "data-testid": `payment-total-${t.tenant}-${t.provider}` });
      tr.append(el("td", t.tenant), el("td", t.provider), el("td", t.count, { className: "num" }), el("td", yuan(t.amount), { className: "num" }));
      rows.append(tr);
    }
    if (totals.size === 0) emptyRow(rows, "No payments in this range.", 4);
    setStatus(`Dashboard: ${shortTime(stats.from)} to ${shortTime(stats.to)} (UTC).`);
  } catch (e) {
    reportError(e);
  }
}

// --- Statements -----------------------------------------------------------------------------

async function loadStatements() {
  const n = begin("statements");
  try {
    const p = new URLSearchParams();
    for (const [k, id] of [["tenant", "st-tenant"], ["provider", "st-provider"], ["from", "st-from"], ["to", "st-to"]]) {
      const v = $(id).value.trim();
      if (v) p.set(k, v);
    }
    const { text } = await api("GET", `/statements?${p}`);
    if (!isLatest("statements", n)) return;
    const rows = $("statement-rows");
    rows.replaceChildren();
    for (const s of JSON.parse(text).statements) {
      const tr = el("tr", null, { className: "link", "data-testid": `statement-row-${s.tenant}-${s.provider}-${s.date}` });
      const kinds = Object.entries(s.discrepancies || {}).map(([k, c]) => `${k} ${c}`).join(", ");
      tr.append(
        el("td", s.date), el("td", s.tenant), el("td", s.provider),
        el("td", s.reason ? `${s.status}: ${s.reason}` : s.status),
        el("td", s.totals.lines, { className: "num" }), el("td", s.totals.matched, { className: "num" }),
        el("td", yuan(s.totals.gross), { className: "num" }), el("td", yuan(s.totals.refunds), { className: "num" }),
        el("td", yuan(s.totals.fees), { className: "num" }), el("td", yuan(s.totals.net), { className: "num" }),
        el("td", kinds || "none"),
      );
      tr.addEventListener("click", () => openStatement(s.tenant, s.provider, s.date));
      rows.append(tr);
    }
    if (rows.children.length === 0) emptyRow(rows, "No statements match.", 11);
  } catch (e) {
    reportError(e);
  }
}

function statementPath(s) {
  return `/statements/${encodeURIComponent(s.tenant)}/${encodeURIComponent(s.provider)}/${encodeURIComponent(s.date)}`;
}

async function openStatement(tenant, provider, date) {
  try {
    const { text } = await api("GET", statementPath({ tenant, provider, date }));
    const s = JSON.parse(text);
    consoleState.statement = { tenant, provider, date };
    $("statement-detail").hidden = false;
    $("statement-title").textContent = `${tenant} / ${provider} / ${date}: ${s.status}, version ${s.version}`;
    const rows = $("discrepancy-rows");
    rows.replaceChildren();
    for (const d of s.discrepancies) {
      const tr = el("tr", null, { "data-testid": "discrepancy-row", "data-kind": d.kind });
      const amount = (x) => (x && x.amount !== undefined ? yuan(x.amount) : "");
      tr.append(
        el("td", d.kind), el("td", d.out_trade_no), el("td", d.out_refund_no || ""),
        el("td", d.healed ? "yes" : ""), el("td", amount(d.bill), { className: "num" }),
        el("td", amount(d.paybridge), { className: "num" }),
        el("td", (d.bill && d.bill.status) || ""), el("td", (d.paybridge && d.paybridge.status) || ""),
      );
      rows.append(tr);
    }
    if (s.discrepancies.length === 0) emptyRow(rows, "No differences: every line matched.", 8);
  } catch (e) {
    reportError(e);
  }
}

/** The CSV, fetched with the token (a plain link would carry none) and saved from memory. */
async function downloadStatementCsv() {
  const s = consoleState.statement;
  if (!s) return;
  try {
    const { text } = await api("GET", `${statementPath(s)}/discrepancies.csv`);
    const link = $("statement-csv");
    link.href = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
    link.download = `${s.tenant}-${s.provider}-${s.date}-discrepancies.csv`;
    link.click();
  } catch (e) {
    reportError(e);
  }
}

async function runStatement() {
  const s = consoleState.statement;
  if (!s) return;
  try {
    await api("POST", `${statementPath(s)}/run`);
    setStatus(`Statement ${s.date} running.`, "ok");
    await loadStatements();
  } catch (e) {
    reportError(e);
  }
}

// --- Audit log ------------------------------------------------------------------------------

async function loadAudit(more) {
  const n = begin("audit");
  try {
    const p = new URLSearchParams(more ? consoleState.auditQuery : "");
    if (!more) {
      for (const [k, id] of [["tenant", "audit-tenant"], ["actor", "audit-actor"], ["action", "audit-action"]]) {
        const v = $(id).value.trim();
        if (v) p.set(k, v);
      }
      p.set("limit", "50");
      consoleState.auditQuery = p.toString();
    } else if (consoleState.auditBefore) {
      p.set("before", consoleState.auditBefore);
    }
    const { text } = await api("GET", `/audit?${p}`);
    if (!isLatest("audit", n)) return;
    const entries = JSON.parse(text).entries;
    const rows = $("audit-rows");
    if (!more) rows.replaceChildren();
    for (const a of entries) {
      const tr = el("tr", null, { "data-testid": `audit-row-${a.id}`, "data-action": a.action });
      const what = a.diff.map((d) => `${d.path} ${d.change}${d.secret ? " (secret)" : ""}`).join("; ");
      tr.append(el("td", a.id), el("td", shortTime(a.at)), el("td", a.actor), el("td", a.action),
        el("td", a.platform_id ? `platform ${a.platform_id}` : a.tenant_id || ""), el("td", what));
      rows.append(tr);
    }
    consoleState.auditBefore = entries.length ? entries[entries.length - 1].id : null;
    $("more-audit").hidden = entries.length < 50;
    if (rows.children.length === 0) emptyRow(rows, "No entries match.", 6);
  } catch (e) {
    reportError(e);
  }
}

// --- Wiring ---------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  for (const tab of document.querySelectorAll("#tabs .tab")) {
    tab.addEventListener("click", () => {
      showView(tab.dataset.view);
      setStatus("");
      if (tab.dataset.view === "dashboard-view") loadDashboard();
      if (tab.dataset.view === "audit-view") loadAudit(false);
      if (tab.dataset.view === "statements-view") loadStatements();
    });
  }
  $("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); searchOrders(false); });
  $("more-orders").addEventListener("click", () => searchOrders(true));
  $("order-back").addEventListener("click", () => showView("orders-view"));
  $("order-sync").addEventListener("click", () => orderAction("sync"));
  $("order-close").addEventListener("click", () => orderAction("close", "Close this order at the provider? A closed order cannot be paid."));
  $("dash-refresh").addEventListener("click", loadDashboard);
  $("dash-range").addEventListener("change", loadDashboard);
  $("audit-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadAudit(false); });
  $("statements-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadStatements(); });
  $("statement-csv-button").addEventListener("click", downloadStatementCsv);
  $("statement-run").addEventListener("click", runStatement);
  $("more-audit").addEventListener("click", () => loadAudit(true));
});
