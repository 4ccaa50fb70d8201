// paybridge admin page. Talks only to /admin/api/ on this origin. Never writes data as HTML
// (textContent only), never shows a secret (the API masks them as { set = true }).
"use strict";

const TOKEN_KEY = "paybridge-admin-token";
const API = "/admin/api";
const NEW_TENANT = `id = "new-tenant"
name = "New tenant"
api_keys = []            # rotate the API key after saving to get one
# webhook_url = "..."     # the merchant's https endpoint for events
# webhook_secret = "..."

# [providers.<kind>]     # see the provider kinds below
`;

const NEW_PLATFORM = `id = "new-platform"
name = "New platform"

# [wechat_miniprogram]    # a WeChat Pay service provider: sp_mchid, sp_appid, its keys
# [alipay_app]            # an Alipay third-party app: app_id, private_key, alipay_public_key
`;

// `kind` is what the editor holds: a tenant or a platform document.
const state = { tenants: [], platforms: [], current: null, version: null, isNew: false, kind: "tenant" };

const collection = () => (state.kind === "platform" ? "platforms" : "tenants");

const $ = (id) => document.getElementById(id);

function setStatus(text, kind) {
  const el = $("status");
  el.textContent = text || "";
  el.className = kind || "";
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `HTTP ${status}`);
    this.status = status;
    this.code = err.code;
    this.field = err.field;
    this.fields = err.fields || [];
  }
}

async function api(method, path, options = {}) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (options.accept) headers.Accept = options.accept;
  if (options.body !== undefined) headers["Content-Type"] = options.type || "application/json";
  if (options.ifMatch) headers["If-Match"] = `"${options.ifMatch}"`;
  const resp = await fetch(API + path, { method, headers, body: options.body, cache: "no-store" });
  const text = await resp.text();
  if (resp.status === 401) {
    signOut("The admin token was refused. Enter a valid token.");
    throw new ApiError(401, null);
  }
  if (!resp.ok) {
    let body = null;
    try { body = JSON.parse(text); } catch (_) { /* not JSON */ }
    throw new ApiError(resp.status, body);
  }
  return { text, etag: (resp.headers.get("ETag") || "").replace(/"/g, "") };
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  $("main").hidden = true;
  $("tabs").hidden = true;
  for (const v of document.querySelectorAll(".view")) v.hidden = true;
  $("login").hidden = false;
  $("logout-button").hidden = true;
  setStatus(message || "", message ? "error" : "");
}

async function signIn() {
  $("login").hidden = true;
  $("logout-button").hidden = false;
  $("tabs").hidden = false;
  showView("main");
  await loadTenants();
}

async function loadTenants() {
  const { text } = await api("GET", "/tenants");
  state.tenants = JSON.parse(text).tenants;
  renderTenantList();
  if (state.current) renderProviders();
  await loadPlatforms();
}

async function loadPlatforms() {
  const { text } = await api("GET", "/platforms");
  state.platforms = JSON.parse(text).platforms;
  renderPlatformList();
}

function renderPlatformList() {
  const list = $("platform-list");
  list.replaceChildren();
  for (const p of state.platforms) {
    const li = document.createElement("li");
    li.dataset.testid = `platform-row-${p.id}`;
    const open = document.createElement("button");
    open.type = "button";
    open.className = "tenant-link";
    open.dataset.testid = `platform-${p.id}`;
    open.textContent = p.name && p.name !== p.id ? `${p.id} — ${p.name}` : p.id;
    if (state.kind === "platform" && p.id === state.current) open.classList.add("selected");
    open.addEventListener("click", () => openPlatform(p.id));
    li.append(open);
    const badges = document.createElement("div");
    badges.className = "badges";
    for (const k of p.kinds) badges.append(badge(k, true));
    badges.append(badge(`${p.tenants.length} tenant(s)`, p.tenants.length > 0));
    li.append(badges);
    list.append(li);
  }
  if (state.platforms.length === 0) {
    const li = document.createElement("li");
    li.className = "hint";
    li.textContent = "No platforms.";
    list.append(li);
  }
}

function badge(text, on) {
  const el = document.createElement("span");
  el.className = `badge ${on ? "on" : "off"}`;
  el.textContent = text;
  return el;
}

function renderTenantList() {
  const list = $("tenant-list");
  list.replaceChildren();
  for (const t of state.tenants) {
    const li = document.createElement("li");
    li.dataset.testid = `tenant-row-${t.id}`;
    const open = document.createElement("button");
    open.type = "button";
    open.className = "tenant-link";
    open.dataset.testid = `tenant-${t.id}`;
    open.dataset.tenant = t.id;
    open.textContent = t.name && t.name !== t.id ? `${t.id} — ${t.name}` : t.id;
    if (state.kind === "tenant" && t.id === state.current) open.classList.add("selected");
    open.addEventListener("click", () => openTenant(t.id));
    li.append(open);
    const badges = document.createElement("div");
    badges.className = "badges";
    for (const p of t.providers) badges.append(badge(`${p.kind}: ${p.enabled ? "on" : "off"}`, p.enabled));
    li.append(badges);
    list.append(li);
  }
  if (state.tenants.length === 0) {
    const li = document.createElement("li");
    li.className = "hint";
    li.textContent = "No tenants yet.";
    list.append(li);
  }
}

function renderProviders() {
  const list = $("provider-list");
  list.replaceChildren();
  const tenant = state.tenants.find((t) => t.id === state.current);
  if (!tenant) return;
  for (const p of tenant.providers) {
    const li = document.createElement("li");
    li.dataset.testid = `provider-${p.kind}`;
    li.append(badge(p.enabled ? "on" : "off", p.enabled));
    const name = document.createElement("span");
    name.textContent = ` ${p.kind} `;
    li.append(name);
    const toggle = document.createElement("button");
    toggle.type = "button";
    toggle.dataset.testid = `toggle-${p.kind}`;
    toggle.id = `toggle-${p.kind}`;
    toggle.textContent = p.enabled ? "Disable" : "Enable";
    toggle.addEventListener("click", () => switchProvider(p.kind, !p.enabled));
    li.append(toggle);
    list.append(li);
  }
  if (tenant.providers.length === 0) {
    const li = document.createElement("li");
    li.className = "hint";
    li.textContent = "No provider configured.";
    list.append(li);
  }
}

function showTenantView(title) {
  $("tenant-view").hidden = false;
  $("tenant-title").textContent = title;
  $("tenant-version").textContent = state.version ? `version ${state.version}` : "not saved yet";
  $("tenant-actions").hidden = state.isNew || state.kind !== "tenant";
  $("platform-actions").hidden = state.isNew || state.kind !== "platform";
  // The validate endpoint checks tenant documents; a platform is checked when saved.
  $("validate-button").hidden = state.kind !== "tenant";
  const platform = state.platforms.find((p) => p.id === state.current);
  $("platform-users").textContent = platform
    ? (platform.tenants.length
      ? `Used by ${platform.tenants.join(", ")}: a saved change reaches all of them at once.`
      : "No tenant uses it yet.")
    : "";
  $("new-key").hidden = true;
  $("new-key").textContent = "";
  showErrors([]);
  renderTenantList();
  renderPlatformList();
  renderProviders();
}

async function openTenant(id) {
  try {
    const { text, etag } = await api("GET", `/tenants/${encodeURIComponent(id)}`, { accept: "application/toml" });
    state.current = id;
    state.version = etag;
    state.isNew = false;
    state.kind = "tenant";
    $("editor").value = text;
    showTenantView(id);
    setStatus(`Opened ${id}.`);
  } catch (e) {
    reportError(e);
  }
}

async function openPlatform(id) {
  try {
    const { text, etag } = await api("GET", `/platforms/${encodeURIComponent(id)}`, { accept: "application/toml" });
    state.current = id;
    state.version = etag;
    state.isNew = false;
    state.kind = "platform";
    $("editor").value = text;
    showTenantView(`Platform ${id}`);
    setStatus(`Opened platform ${id}.`);
  } catch (e) {
    reportError(e);
  }
}

function newPlatform() {
  state.current = null;
  state.version = null;
  state.isNew = true;
  state.kind = "platform";
  $("editor").value = NEW_PLATFORM;
  showTenantView("New platform");
  setStatus("Edit the new platform, then save.");
}

function newTenant() {
  state.current = null;
  state.version = null;
  state.isNew = true;
  state.kind = "tenant";
  $("editor").value = NEW_TENANT;
  showTenantView("New tenant");
  setStatus("Edit the new tenant, then save.");
}

// --- Field → line mapping, so an error can be shown beside its line. ---------------------------

function stripKey(k) {
  return k.trim().replace(/^"(.*)"$/, "$1").replace(/^'(.*)'$/, "$1");
}

function lineIndex(text) {
  const index = new Map();
  let section = "";
  let inMultiline = null;
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    const n = i + 1;
    if (inMultiline) {
      if (raw.includes(inMultiline)) inMultiline = null;
      return;
    }
    const header = line.match(/^\[\s*([^\]]+?)\s*\]\s*(#.*)?$/);
    if (header) {
      section = header[1].split(".").map(stripKey).join(".");
      if (!index.has(section)) index.set(section, n);
      return;
    }
    const kv = line.match(/^([A-Za-z0-9_"'.-]+)\s*=(.*)$/);
    if (kv) {
      const key = kv[1].split(".").map(stripKey).join(".");
      const path = section ? `${section}.${key}` : key;
      if (!index.has(path)) index.set(path, n);
      for (const q of ["'''", '"""']) {
        const count = kv[2].split(q).length - 1;
        if (count % 2 === 1) inMultiline = q;
      }
    }
  });
  return index;
}

function lineOf(field, message, index) {
  const fromMessage = /^line (\d+):/.exec(message || "");
  if (fromMessage) return Number(fromMessage[1]);
  let path = field.replace(/\[\d+\]/g, "");
  while (path) {
    if (index.has(path)) return index.get(path);
    const dot = path.lastIndexOf(".");
    path = dot < 0 ? "" : path.slice(0, dot);
  }
  return null;
}

function renderGutter(errorLines) {
  const lines = $("editor").value.split("\n").length;
  const gutter = $("gutter");
  gutter.replaceChildren();
  for (let n = 1; n <= lines; n++) {
    const span = document.createElement("span");
    span.textContent = String(n);
    span.dataset.line = String(n);
    if (errorLines.has(n)) {
      span.className = "err";
      span.title = errorLines.get(n).join("\n");
      span.dataset.testid = `gutter-error-${n}`;
    }
    gutter.append(span, document.createTextNode("\n"));
  }
  gutter.scrollTop = $("editor").scrollTop;
}

function showErrors(fields) {
  const list = $("errors");
  list.replaceChildren();
  const index = lineIndex($("editor").value);
  const errorLines = new Map();
  for (const f of fields) {
    const line = lineOf(f.field, f.message, index);
    const li = document.createElement("li");
    li.className = "field-error";
    li.dataset.testid = "field-error";
    li.dataset.field = f.field;
    if (line) {
      li.dataset.line = String(line);
      if (!errorLines.has(line)) errorLines.set(line, []);
      errorLines.get(line).push(`${f.field}: ${f.message}`);
    }
    const where = document.createElement("button");
    where.type = "button";
    where.className = "where";
    where.textContent = line ? `line ${line}` : "—";
    where.addEventListener("click", () => selectLine(line));
    const what = document.createElement("span");
    what.textContent = ` ${f.field}: ${f.message}`;
    li.append(where, what);
    list.append(li);
  }
  renderGutter(errorLines);
}

function selectLine(line) {
  if (!line) return;
  const editor = $("editor");
  const lines = editor.value.split("\n");
  const start = lines.slice(0, line - 1).reduce((acc, l) => acc + l.length + 1, 0);
  editor.focus();
  editor.setSelectionRange(start, start + (lines[line - 1] || "").length);
}

function reportError(e) {
  if (e.status === 401) return;
  if (e.fields && e.fields.length) {
    showErrors(e.fields);
    setStatus(`Not saved: ${e.fields.length} problem(s), shown beside their lines.`, "error");
  } else if (e.field) {
    showErrors([{ field: e.field, message: e.message }]);
    setStatus(e.message, "error");
  } else {
    setStatus(e.message || String(e), "error");
  }
}

// --- Actions ----------------------------------------------------------------------------------

async function validate() {
  try {
    await api("POST", "/validate", { body: $("editor").value, type: "application/toml" });
    showErrors([]);
    setStatus("Valid.", "ok");
  } catch (e) {
    reportError(e);
  }
}

async function save() {
  const body = $("editor").value;
  try {
    let result;
    if (state.isNew) {
      result = await api("POST", `/${collection()}`, { body, type: "application/toml", accept: "application/toml" });
    } else {
      result = await api("PUT", `/${collection()}/${encodeURIComponent(state.current)}`, {
        body, type: "application/toml", accept: "application/toml", ifMatch: state.version,
      });
    }
    const idMatch = /^id = "([^"]+)"/m.exec(result.text);
    state.current = idMatch ? idMatch[1] : state.current;
    state.version = result.etag;
    state.isNew = false;
    $("editor").value = result.text;
    await loadTenants();
    showTenantView(state.kind === "platform" ? `Platform ${state.current}` : state.current);
    setStatus(`Saved ${state.current} (version ${state.version}).`, "ok");
  } catch (e) {
    if (e.code === "version_mismatch") {
      setStatus(`Someone else changed this ${state.kind} meanwhile. Discard your changes to reload it.`, "error");
    } else {
      reportError(e);
    }
  }
}

async function switchProvider(kind, enabled) {
  try {
    const path = `/tenants/${encodeURIComponent(state.current)}/providers/${encodeURIComponent(kind)}/${enabled ? "enable" : "disable"}`;
    await api("POST", path);
    await loadTenants();
    await openTenant(state.current);
    setStatus(`${kind} ${enabled ? "enabled" : "disabled"}.`, "ok");
  } catch (e) {
    reportError(e);
  }
}

async function rotateKey() {
  if (!confirm(`Replace the API keys of ${state.current}? The old keys keep working for the grace period.`)) return;
  try {
    const { text } = await api("POST", `/tenants/${encodeURIComponent(state.current)}/api-keys/rotate`);
    const key = JSON.parse(text).api_key;
    await openTenant(state.current);
    const el = $("new-key");
    el.textContent = `New API key (shown once, copy it now): ${key}`;
    el.hidden = false;
  } catch (e) {
    reportError(e);
  }
}

async function deleteTenant() {
  if (!confirm(`Delete tenant ${state.current}? Its API keys stop working at once.`)) return;
  try {
    await api("DELETE", `/tenants/${encodeURIComponent(state.current)}`);
    const gone = state.current;
    state.current = null;
    $("tenant-view").hidden = true;
    await loadTenants();
    setStatus(`Deleted ${gone}.`, "ok");
  } catch (e) {
    reportError(e);
  }
}

async function deletePlatform() {
  if (!confirm(`Delete platform ${state.current}? Refused while a tenant uses it.`)) return;
  try {
    await api("DELETE", `/platforms/${encodeURIComponent(state.current)}`);
    const gone = state.current;
    state.current = null;
    $("tenant-view").hidden = true;
    await loadTenants();
    setStatus(`Deleted platform ${gone}.`, "ok");
  } catch (e) {
    reportError(e);
  }
}

function reopen() {
  if (state.isNew) return state.kind === "platform" ? newPlatform() : newTenant();
  return state.kind === "platform" ? openPlatform(state.current) : openTenant(state.current);
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
    $("token-input").value = "";
    setStatus("");
    try { await signIn(); } catch (e) { reportError(e); }
  });
  $("logout-button").addEventListener("click", () => signOut("Signed out."));
  $("new-tenant-button").addEventListener("click", newTenant);
  $("validate-button").addEventListener("click", validate);
  $("save-button").addEventListener("click", save);
  $("reload-button").addEventListener("click", reopen);
  $("new-platform-button").addEventListener("click", newPlatform);
  $("delete-platform-button").addEventListener("click", deletePlatform);
  $("rotate-key-button").addEventListener("click", rotateKey);
  $("delete-tenant-button").addEventListener("click", deleteTenant);
  $("editor").addEventListener("input", () => renderGutter(new Map()));
  $("editor").addEventListener("scroll", () => { $("gutter").scrollTop = $("editor").scrollTop; });
  if (token()) signIn().catch(reportError);
  else signOut();
});
