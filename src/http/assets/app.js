// The sync-controller page: polls /api/tables and /readyz and renders them
// with DOM calls only (no HTML from data). Buttons POST the same actions an
// operator would perform on the Redis keys.
"use strict";

const fmt = new Intl.NumberFormat("en-US");
const $ = (id) => document.getElementById(id);

// Bidirectional controls (U+202A–U+202E, U+2066–U+2069) in a name or a
// message would make a row read in another order: every text from data is
// shown with them as visible marks (⟨U+202E⟩).
const BIDI = /[\u202A-\u202E\u2066-\u2069]/g;
function visible(v) {
  if (v == null) return "";
  return String(v).replace(BIDI, (c) => `⟨U+${c.codePointAt(0).toString(16).toUpperCase()}⟩`);
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") node.textContent = visible(v);
    else if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c) node.appendChild(c);
  return node;
}

// The API token (CTSYNC_API_TOKEN or one of CTSYNC_API_TOKENS_FILE), asked
// when needed and kept for this tab only; sent with every request, so a
// `read` token shows error messages and an `operate` one may act.
const TOKEN_KEY = "ctsync-api-token";

function auth(headers = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  return headers;
}

function askToken(why) {
  const token = window.prompt(why);
  if (token && token.trim()) {
    sessionStorage.setItem(TOKEN_KEY, token.trim());
    return true;
  }
  return false;
}

function post(table, action) {
  const headers = auth({ "Content-Type": "application/json" });
  return fetch(`/api/tables/${encodeURIComponent(table)}`, {
    method: "POST",
    headers,
    body: JSON.stringify({ action }),
  });
}

// A failed action's message stays until dismissed or superseded by the
// next action's outcome (refreshes never clear it).
function actionError(text) {
  $("action-error-text").textContent = text || "";
  $("action-error").hidden = !text;
}

async function act(table, action) {
  try {
    let res = await post(table, action);
    let asked = false;
    if (res.status === 401) {
      if (askToken("This ctsync needs an API token with the operate role (CTSYNC_API_TOKEN or one of CTSYNC_API_TOKENS_FILE) to change flags:")) {
        asked = true;
        res = await post(table, action);
      }
      if (res.status === 401) sessionStorage.removeItem(TOKEN_KEY);
    }
    if (res.ok) {
      actionError(null);
    } else {
      const body = await res.json().catch(() => ({}));
      const why = res.status === 401
        ? (asked ? "the API token was not accepted" : "no API token was given")
        : `refused (${res.status})`;
      actionError(`${action.replace(/_/g, " ")} of ${table} failed: ${why}. ${body.error || ""}`.trim());
    }
  } catch (e) {
    actionError(`${action.replace(/_/g, " ")} of ${table} failed: cannot reach ctsync (${e}).`);
  }
  await refresh();
}

// Icons, built with DOM calls (no HTML from data).
const SVG = "http://www.w3.org/2000/svg";
function icon(paths, cls = "ico") {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", cls);
  svg.setAttribute("aria-hidden", "true");
  for (const [tag, attrs] of paths) {
    const p = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) p.setAttribute(k, v);
    svg.appendChild(p);
  }
  return svg;
}
const DB = [["ellipse", { cx: 12, cy: 5, rx: 8, ry: 3 }],
  ["path", { d: "M4 5v14c0 1.7 3.6 3 8 3s8-1.3 8-3V5" }], ["path", { d: "M4 12c0 1.7 3.6 3 8 3s8-1.3 8-3" }]];
const PLAY = [["rect", { x: 3, y: 3, width: 18, height: 18, rx: 3 }], ["path", { d: "M10 8.5v7l5.5-3.5z" }]];
const SPIN = [["path", { d: "M21 12a9 9 0 0 1-15.5 6.2M3 12A9 9 0 0 1 18.5 5.8" }],
  ["path", { d: "M18.5 1.5v4.3h-4.3M5.5 22.5v-4.3h4.3" }]];

function notice(text) {
  const n = $("notice");
  n.textContent = text || "";
  n.hidden = !text;
}

// The instance whose page this is (tables run elsewhere say where).
let answeredBy = null;
// Whether the controls can act (`writes` of /api/tables); when they
// cannot, they are disabled and say why in the API's own words.
let writes = { enabled: true, disabled_reason: null };

function lock(button) {
  if (writes.enabled) return button;
  button.setAttribute("disabled", "");
  button.classList.add("locked");
  button.setAttribute("title", writes.disabled_reason || "writes are off");
  return button;
}

// A duration in words: "45 s", "2 min 53 s", "3 h 12 min".
function duration(seconds) {
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function lagText(t) {
  if (t.state === "paused") return t.force_full_load ? "paused · full load queued" : "paused";
  const parts = [t.state.replace("_", " ")];
  // With several instances, which one runs the table.
  if (t.instance && t.instance !== answeredBy) parts.push(`on ${t.instance}`);
  if (t.lag_versions != null) {
    parts.push(`${fmt.format(t.lag_versions)} ${t.lag_versions === 1 ? "version" : "versions"} behind`);
  }
  // The seconds count since the table was last caught up: on a table never
  // synced that is no lag, and a load says its own progress.
  if (t.version == null) {
    if (t.state !== "full_load") parts.push("never synced");
  } else if (t.lag_seconds > 0) {
    parts.push(`not caught up for ${duration(t.lag_seconds)}`);
  }
  return parts.join(" · ");
}

function row(t) {
  const loading = t.state === "full_load";
  const synced = t.progress ? t.progress.synced : 0;
  const total = t.progress ? t.progress.total : 0;
  const pct = total > 0 ? Math.min(100, (100 * synced) / total) : (t.progress ? 100 : 0);
  const toggle = lock(el("button", {
    type: "button", class: "switch", role: "switch",
    "aria-checked": String(t.enabled), "aria-label": `Enable sync for ${t.name}`,
    "data-table": t.name, "data-action": "toggle",
    onclick: () => act(t.name, t.enabled ? "disable" : "enable"),
  }));
  const bar = el("div", { class: loading ? "bar loading" : "bar", role: "progressbar",
    "aria-label": `Full load of ${t.name}`, "aria-valuemin": "0", "aria-valuemax": String(total),
    "aria-valuenow": String(synced) }, el("span"));
  // Through the CSSOM: the Content-Security-Policy allows no style attributes.
  bar.firstChild.style.width = `${pct}%`;
  const label = el("div", { class: "bar-label" },
    el("span", { text: loading ? "Loading" : (t.progress ? "Synced" : "Not loaded") }),
    el("span", { text: t.progress ? `${fmt.format(synced)} / ${fmt.format(total)}` : "" }));
  // Requested but not running (a paused table loads once enabled): queued,
  // not spinning.
  const queued = !loading && t.force_full_load;
  const force = el("button", {
    type: "button", class: "force", "data-table": t.name, "data-action": "force_full_load",
    "aria-label": loading ? `Full load of ${t.name} running`
      : queued ? `Full load of ${t.name} queued: it starts when the table is enabled`
        : `Force a full load of ${t.name}`,
    onclick: () => act(t.name, "force_full_load"),
  }, loading ? icon(SPIN, "ico spin") : icon(PLAY),
  el("span", { text: loading ? "Loading…" : queued ? "Load queued" : "Force Load" }));
  if (loading || queued) force.setAttribute("disabled", "");
  lock(force);
  const problem = t.reason || t.last_error;
  return el("tr", { "data-table": t.name },
    el("td", {}, el("div", { class: "name-cell" }, el("span", { class: "table-ico" }, icon(DB)),
      el("div", {}, el("div", { class: "name", text: t.name }), el("div", { class: "key", text: t.enabled_key })))),
    el("td", {}, el("span", { class: "version", text: t.version != null ? `v${t.version}` : "—" })),
    el("td", {}, toggle, label, bar),
    el("td", {}, el("div", { class: `state ${t.state}`, text: lagText(t) }),
      // During a load the reason says where it writes: information, not a problem.
      problem ? el("div", { class: loading && !t.last_error ? "note" : "err", text: problem }) : null,
      t.verified ? el("div", { class: t.verified.equal ? "note" : "err",
        text: t.verified.equal
          ? `verified equal ${new Date(t.verified.at).toLocaleString()}`
          : `verify: ${fmt.format(t.verified.differences)} rows differ (${new Date(t.verified.at).toLocaleString()})` }) : null),
    el("td", { class: "right" }, force));
}

function renderModules(m) {
  const items = [];
  // Without a token where tokens are configured: how many, not which.
  if (m.failing_count) items.push(el("li", { class: "err", text: `${fmt.format(m.failing_count)} failing (a token shows which and why)` }));
  for (const [name, error] of Object.entries(m.failing || {})) {
    items.push(el("li", { class: "err", text: `${name}: ${error}` }));
  }
  for (const name of m.skipped_encrypted || []) {
    items.push(el("li", { text: `${name}: encrypted on the primary, not copied` }));
  }
  $("module-list").replaceChildren(...items);
  $("modules").hidden = items.length === 0;
}

// How long the page waits for ctsync before saying it did not answer.
const ANSWER_MS = 5000;
// What /readyz last said is failing (names the cause of a failed refresh).
let failing = [];
let refreshing = false;

// The tables' state could not be read: the notice says why, and every row
// says its state is unknown (what it showed is only what was last known).
function unknown(why) {
  const cause = failing.length ? ` (failing: ${failing.join(", ")})` : "";
  notice(`Cannot read the tables' state: ${why}${cause}. The rows show what was last known; their state is unknown until ctsync answers.`);
  $("rows").dataset.unknown = "true";
  for (const state of document.querySelectorAll("#rows .state")) {
    if (!state.dataset.known) state.dataset.known = state.textContent;
    state.className = "state unknown";
    state.textContent = `unknown · last known: ${state.dataset.known}`;
  }
}

async function refresh() {
  if (refreshing) return;
  refreshing = true;
  try {
    const res = await fetch("/api/tables", { headers: auth(), signal: AbortSignal.timeout(ANSWER_MS) });
    const body = await res.json();
    if (res.status === 401 && sessionStorage.getItem(TOKEN_KEY)) {
      // A token this ctsync no longer knows: forget it, show what anyone sees.
      sessionStorage.removeItem(TOKEN_KEY);
      actionError("The saved API token was not accepted and has been forgotten; error messages stay hidden until a valid token is entered.");
      refreshing = false;
      return await refresh();
    }
    if (!res.ok) { unknown(body.error || `API error ${res.status}`); return; }
    const hiddenText = "hidden (a token shows it)";
    $("primary").textContent = body.primary ?? hiddenText;
    $("replica").textContent = body.replica ?? hiddenText;
    const caller = body.caller || { details: true };
    const hidden = $("details-hidden");
    // Without a token: details hidden; with a read token: no actions.
    // Either way the operator may enter another token.
    const readOnlyToken = caller.role === "read";
    hidden.hidden = caller.details && !readOnlyToken;
    $("details-hidden-text").textContent = !caller.details
      ? "Error messages, reasons and host names are hidden: this ctsync has API tokens and this page has none."
      : readOnlyToken ? `This page uses the read token ${visible(caller.token)}: actions need a token with the operate role.` : "";
    answeredBy = body.instance;
    writes = body.writes || writes;
    const off = $("writes-off");
    off.hidden = writes.enabled;
    off.textContent = writes.enabled ? "" : `Read-only: ${writes.disabled_reason}`;
    const rows = $("rows");
    const none = body.discovery_error
      ? `Cannot reach the primary: ${body.discovery_error}`
      : "No change-tracked tables found yet.";
    rows.replaceChildren(...(body.tables.length
      ? body.tables.map(row)
      : [el("tr", {}, el("td", { colspan: "5", class: "empty", text: none }))]));
    rows.dataset.loaded = "true";
    delete rows.dataset.unknown;
    renderModules(body.modules || {});
    const lost = $("redis-lost");
    lost.hidden = !body.redis_data_lost_at;
    lost.textContent = body.redis_data_lost_at
      ? `Redis lost its data at ${new Date(body.redis_data_lost_at).toLocaleString()}: every table was paused. `
        + "Re-enable the tables; each continues from the version recorded on the replica without a reload."
      : "";
    const ddl = $("ddl-problem");
    ddl.hidden = !body.ddl_capture_problem;
    ddl.textContent = body.ddl_capture_problem || "";
    notice("");
  } catch (e) {
    unknown(e.name === "TimeoutError" ? `ctsync did not answer within ${ANSWER_MS / 1000} s` : `cannot reach ctsync (${e})`);
  } finally {
    refreshing = false;
  }
}

async function live() {
  let ok = false, text = "Unreachable";
  try {
    const res = await fetch("/readyz", { headers: auth(), signal: AbortSignal.timeout(ANSWER_MS) });
    const body = await res.json();
    ok = body.ready;
    failing = body.failing;
    text = ok ? "Live Sync Active" : `Not ready: ${body.failing.join(", ")}`;
  } catch (_) { /* keep "Unreachable" */ }
  $("live-dot").className = ok ? "dot ok" : "dot bad";
  $("live-text").textContent = text;
}

$("refresh").addEventListener("click", () => { refresh(); live(); });
$("action-error-close").addEventListener("click", () => actionError(null));
$("sign-in").addEventListener("click", () => {
  if (askToken("An API token (CTSYNC_API_TOKEN, or a read or operate token of CTSYNC_API_TOKENS_FILE) to show error messages and host names:")) { refresh(); live(); }
});
refresh(); live();
setInterval(refresh, 2000);
setInterval(live, 1500);
