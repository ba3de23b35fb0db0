// The enfeed console's one script: every page names itself in <body data-page>, and this
// fills it from the API. Served by `enfeed serve`, the pages call the API on their own origin
// with the session's cookie, and state-changing requests carry the session's CSRF token. As
// static files beside the CDN, a <meta name="enfeed-api"> names the API's origin, and the
// pages call it with the code issuer's bearer token, kept in this tab's sessionStorage. No
// other origin is contacted.
"use strict";

const MAX_ONSET_DAYS = 14;
const API_META = document.querySelector('meta[name="enfeed-api"]');
/** Static pages: the API's origin; served pages: "" (their own). */
const API = API_META ? API_META.content : "";
const STATIC = API_META !== null;
const TOKEN_KEY = "enfeed-token";
const NAME_KEY = "enfeed-issuer";
let csrf = "";

/** Where the page `name` is. */
function pageUrl(name) {
  return STATIC ? name + ".html" : "/console/" + name;
}

/** Back to signing in; `ended`: the session (or the token) is no longer good. */
function toLogin(ended) {
  if (STATIC) {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(NAME_KEY);
  }
  window.location.assign(pageUrl("login") + (ended ? "?ended" : ""));
}

function $(id) {
  return document.getElementById(id);
}

function show(element, text) {
  element.textContent = text;
  element.hidden = false;
}

/** Unix seconds as "YYYY-MM-DD HH:MM UTC". */
function when(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  return new Date(seconds * 1000).toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

/** Unix seconds as "HH:MM UTC". */
function clock(seconds) {
  return new Date(seconds * 1000).toISOString().slice(11, 16) + " UTC";
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 120) return Math.round(seconds) + " s";
  if (seconds < 7200) return Math.round(seconds / 60) + " min";
  return Math.round(seconds / 3600) + " h";
}

function day(date) {
  return date.toISOString().slice(0, 10);
}

/** A call of the API; a 401 (no session, or one that ended; a revoked token) goes back to
 * signing in. */
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (STATIC) headers.Authorization = "Bearer " + sessionStorage.getItem(TOKEN_KEY);
  else if (method !== "GET") headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(API + path, {
    method,
    headers,
    credentials: STATIC ? "omit" : "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    toLogin(true);
    // Nothing more happens on this page: it is being left.
    return new Promise(() => {});
  }
  const answer = await response.json().catch(() => ({}));
  return { ok: response.ok, status: response.status, answer };
}

function row(table, cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) td.append(cell);
    else td.textContent = String(cell);
    if (typeof cell === "number") td.className = "num";
    tr.append(td);
  }
  table.tBodies[0].append(tr);
  return tr;
}

function clear(table) {
  table.tBodies[0].replaceChildren();
}

function fact(list, term, value) {
  const dt = document.createElement("dt");
  dt.textContent = term;
  const dd = document.createElement("dd");
  dd.textContent = String(value);
  list.append(dt, dd);
}

function badge(status) {
  const span = document.createElement("span");
  span.className = "status-" + status;
  span.textContent = status;
  return span;
}

async function copy(text, status) {
  try {
    await navigator.clipboard.writeText(text);
    status.textContent = "Copied.";
  } catch (e) {
    status.textContent = "Copying is not allowed here: select the text and copy it.";
  }
}

// Sign-in ------------------------------------------------------------------------------

function loginPage() {
  const message = $("login-message");
  const params = new URLSearchParams(window.location.search);
  if (params.has("ended")) {
    message.className = "message info";
    show(message, "Your session has ended. Sign in again.");
  }
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (!token) {
      message.className = "message error";
      show(message, "Enter your token.");
      $("token").focus();
      return;
    }
    const failure = STATIC ? await signInWithToken(token) : await signInToSession(token);
    if (!failure) return;
    message.className = "message error";
    show(message, failure);
    $("token").select();
    $("token").focus();
  });
}

const NOT_VALID = "Sign-in failed: this credential is not valid.";

/** Opens a session of `enfeed serve`, and goes to the caller's page; or says why not. */
async function signInToSession(token) {
  const response = await fetch("/console/login", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    credentials: "same-origin",
    body: JSON.stringify({ token }),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) return NOT_VALID;
  window.location.assign(answer.home);
  return "";
}

/** Static pages: keeps a code issuer's token in this tab once the API took it, and goes to
 * the issuer's page; or says why not. */
async function signInWithToken(token) {
  const response = await fetch(API + "/v1/issuer/codes", {
    headers: { Authorization: "Bearer " + token, Accept: "application/json" },
    credentials: "omit",
  }).catch(() => null);
  if (response === null) return "The API cannot be reached. Try again later.";
  // The operator's token is no issuer's: their pages are those of `enfeed serve`.
  if (response.status === 403) return "These pages are for code issuers.";
  if (!response.ok) return NOT_VALID;
  const answer = await response.json();
  sessionStorage.setItem(TOKEN_KEY, token);
  sessionStorage.setItem(NAME_KEY, answer.issuer);
  window.location.assign(pageUrl("issuer"));
  return "";
}

// Issuer -------------------------------------------------------------------------------

/** Why a symptom date cannot be sent, or "" when it can (empty: none given). */
function symptomDateProblem(value) {
  if (!value) return "";
  const today = day(new Date());
  const oldest = day(new Date(Date.now() - MAX_ONSET_DAYS * 86400000));
  if (!/^\d{4}-\d{2}-\d{2}$/.test(value)) return "The symptom date is not a date.";
  if (value > today) return "The symptom date cannot be in the future.";
  if (value < oldest) return "The symptom date cannot be more than " + MAX_ONSET_DAYS + " days ago.";
  return "";
}

async function loadToday() {
  const { ok, answer } = await api("GET", "/v1/issuer/codes");
  if (!ok) return;
  const table = $("today");
  clear(table);
  for (const code of answer.codes.slice().reverse()) {
    row(table, [
      clock(code.issuedAt),
      code.testType || "–",
      code.symptomDate || "–",
      when(code.expiresAt),
      badge(code.status),
    ]);
  }
  $("today-empty").hidden = answer.codes.length > 0;
}

function issuerPage() {
  const date = $("symptom-date");
  date.max = day(new Date());
  date.min = day(new Date(Date.now() - MAX_ONSET_DAYS * 86400000));
  const error = $("code-error");
  $("code-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    const problem = symptomDateProblem(date.value);
    if (problem) {
      show(error, problem);
      date.setAttribute("aria-invalid", "true");
      date.focus();
      return;
    }
    date.removeAttribute("aria-invalid");
    const body = { testType: $("test-type").value };
    if (date.value) body.symptomDate = date.value;
    const { ok, answer } = await api("POST", "/v1/issuer/codes", body);
    if (!ok) {
      show(error, answer.error || "The code could not be issued.");
      return;
    }
    const code = answer.code;
    $("code").textContent = code;
    $("code").dataset.code = code;
    $("code-expiry").textContent =
      "Valid until " + when(answer.expiresAt) + " (" + duration(answer.expiresAt - Date.now() / 1000) + " from now).";
    $("copy-status").textContent = "";
    $("issued").hidden = false;
    $("copy-code").focus();
    await loadToday();
  });
  $("copy-code").addEventListener("click", () => copy($("code").dataset.code, $("copy-status")));
  return loadToday();
}

// Operator: status ---------------------------------------------------------------------

/** A bar chart of [start, count] pairs over [from, to) in steps of `step` seconds. */
function barChart(figure, points, from, to, step, unit) {
  const svgNS = "http://www.w3.org/2000/svg";
  const slots = Math.max(1, Math.round((to - from) / step));
  const counts = new Array(slots).fill(0);
  let total = 0;
  for (const [start, count] of points) {
    const slot = Math.floor((start - from) / step);
    if (slot >= 0 && slot < slots) counts[slot] += count;
    total += count;
  }
  const max = Math.max(1, ...counts);
  const width = 720;
  const height = 180;
  const left = 36;
  const bottom = 20;
  const svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  const label = `${total} ${unit} from ${when(from)} to ${when(to)}; at most ${max} in one ${step === 3600 ? "hour" : "day"}.`;
  svg.setAttribute("aria-label", label);
  const plot = width - left - 4;
  const barWidth = plot / slots;
  counts.forEach((count, i) => {
    if (!count) return;
    const h = ((height - bottom - 8) * count) / max;
    const rect = document.createElementNS(svgNS, "rect");
    rect.setAttribute("class", "bar-rect");
    rect.setAttribute("x", String(left + i * barWidth));
    rect.setAttribute("y", String(height - bottom - h));
    rect.setAttribute("width", String(Math.max(1, barWidth - (barWidth > 4 ? 1 : 0))));
    rect.setAttribute("height", String(h));
    const title = document.createElementNS(svgNS, "title");
    title.textContent = `${when(from + i * step)}: ${count}`;
    rect.append(title);
    svg.append(rect);
  });
  const text = (x, y, content, anchor) => {
    const t = document.createElementNS(svgNS, "text");
    t.setAttribute("class", "axis");
    t.setAttribute("x", String(x));
    t.setAttribute("y", String(y));
    t.setAttribute("text-anchor", anchor);
    t.textContent = content;
    svg.append(t);
  };
  text(left - 4, 14, String(max), "end");
  text(left - 4, height - bottom, "0", "end");
  text(left, height - 4, day(new Date(from * 1000)), "start");
  text(width - 4, height - 4, day(new Date(to * 1000)), "end");
  figure.querySelector("svg")?.remove();
  figure.querySelector(".total")?.remove();
  figure.append(svg);
  const sum = document.createElement("p");
  sum.className = "total";
  sum.textContent = `Total: ${total} ${unit}`;
  figure.append(sum);
  figure.dataset.total = String(total);
}

async function loadStatus() {
  const { ok, answer: s } = await api("GET", "/v1/admin/status");
  if (!ok) return;
  $("region").textContent = s.region;
  const dataprep = $("dataprep");
  dataprep.replaceChildren();
  const last = s.lastDataprep;
  fact(dataprep, "Last run (this server)", last ? when(last.at) : "none yet");
  fact(dataprep, "Last completed (publication state)", when(s.dataprepLastCompleted));
  fact(dataprep, "Runs", Object.entries(s.dataprepRuns).map(([k, v]) => `${v} ${k}`).join(", ") || "0");
  fact(dataprep, "Runs every", duration(s.dataprepInterval));
  fact(dataprep, "Retention", s.retentionDays + " days");
  if (last) {
    fact(dataprep, "Last run deleted / purged", `${last.deletedChunks} chunks, ${last.purgedKeys} keys`);
  }
  const lastRun = $("last-run");
  clear(lastRun);
  for (const feed of last ? last.feeds : []) row(lastRun, [feed.feed, feed.chunks, feed.keys]);
  if (!last || last.feeds.length === 0) row(lastRun, ["no new chunk", "", ""]);

  const counts = $("counts");
  counts.replaceChildren();
  fact(counts, "Keys stored, local", s.keysStored.local);
  fact(counts, "Keys stored, remote", s.keysStored.remote);
  fact(counts, "Uploads accepted", s.uploads.accepted || 0);
  const refused = Object.entries(s.uploads).filter(([k]) => k !== "accepted" && k !== "chaff");
  fact(counts, "Uploads refused", refused.map(([k, v]) => `${v} ${k}`).join(", ") || "0");
  fact(counts, "Codes issued", s.codesIssued);
  fact(counts, "Wrong codes", s.wrongCodes);
  const published = $("published");
  clear(published);
  for (const feed of s.published) row(published, [feed.feed, feed.chunks, feed.keys]);

  const keys = $("signing-keys");
  clear(keys);
  for (const key of s.signingKeys) row(keys, [key.keyId, key.keyVersion, key.algorithm]);

  const retention = s.retentionDays * 86400;
  const hourEnd = s.now - (s.now % 3600) + 3600;
  barChart($("uploads-chart"), s.history.uploadsPerHour, hourEnd - retention, hourEnd, 3600, "uploads accepted");
  const dayEnd = s.now - (s.now % 86400) + 86400;
  barChart($("keys-chart"), s.history.keysPublishedPerDay, dayEnd - retention, dayEnd, 86400, "keys published");

  const { answer: e } = await api("GET", "/v1/admin/errors");
  const list = $("errors");
  list.replaceChildren();
  for (const error of e.errors || []) {
    const li = document.createElement("li");
    li.textContent = `${when(error.at)} ${error.level} ${error.message}`;
    list.append(li);
  }
  $("errors-empty").hidden = list.children.length > 0;
}

function statusPage() {
  $("run-dataprep").addEventListener("click", async () => {
    const status = $("run-status");
    status.textContent = "Running…";
    const { ok, answer } = await api("POST", "/v1/admin/run/dataprep");
    status.textContent = ok
      ? `Done: ${answer.chunks.length} new chunks.`
      : "Data-prep failed: " + (answer.error || "unknown error");
    await loadStatus();
  });
  return loadStatus();
}

// Operator: peers ----------------------------------------------------------------------

function peersPage() {
  $("run-consumer").addEventListener("click", async () => {
    const status = $("pull-status");
    status.textContent = "Pulling…";
    const { ok, answer } = await api("POST", "/v1/admin/run/consumer");
    status.textContent = ok
      ? `Done: ${answer.peers.reduce((sum, peer) => sum + peer.imported, 0)} keys imported.`
      : "The pull failed: " + (answer.error || "unknown error");
    await loadPeers();
  });
  return loadPeers();
}

async function loadPeers() {
  const { ok, answer } = await api("GET", "/v1/admin/peers");
  if (!ok) return;
  const table = $("peers");
  clear(table);
  for (const peer of answer.peers) {
    const refused = Object.entries(peer.refused).map(([k, v]) => `${v} ${k}`).join(", ");
    row(table, [
      peer.region,
      when(peer.lastPull),
      duration(peer.lagSeconds),
      peer.keysImported,
      refused || "none",
      peer.failures,
      when(peer.nextPoll),
    ]);
  }
  $("peers-empty").hidden = answer.peers.length > 0;
  $("run-consumer").hidden = answer.peers.length === 0;
}

// Operator: code issuers ---------------------------------------------------------------

async function loadIssuers() {
  const { ok, answer } = await api("GET", "/v1/admin/issuers");
  if (!ok) return;
  const table = $("issuers");
  clear(table);
  for (const issuer of answer.issuers) {
    let action = "";
    if (!issuer.revokedAt) {
      action = document.createElement("button");
      action.type = "button";
      action.className = "danger";
      action.textContent = "Revoke";
      action.setAttribute("aria-label", "Revoke " + issuer.name);
      action.addEventListener("click", async () => {
        const revoked = await api("POST", "/v1/admin/issuers/" + encodeURIComponent(issuer.name) + "/revoke");
        if (!revoked.ok) show($("issuer-error"), revoked.answer.error || "Revoking failed.");
        await loadIssuers();
      });
    }
    const status = issuer.revokedAt ? badge("revoked") : badge("active");
    if (issuer.revokedAt) status.textContent = "revoked " + when(issuer.revokedAt);
    row(table, [issuer.name, when(issuer.createdAt), status, action]);
  }
}

function issuersPage() {
  const error = $("issuer-error");
  $("issuer-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    const name = $("issuer-name").value.trim();
    if (!name) {
      show(error, "Enter the new issuer's name.");
      $("issuer-name").focus();
      return;
    }
    const { ok, answer } = await api("POST", "/v1/admin/issuers", { name });
    if (!ok) {
      show(error, answer.error || "The issuer could not be added.");
      return;
    }
    $("new-token-name").textContent = answer.name;
    $("token-value").textContent = answer.token;
    $("copy-token-status").textContent = "";
    $("new-token").hidden = false;
    $("issuer-name").value = "";
    $("copy-token").focus();
    await loadIssuers();
  });
  $("copy-token").addEventListener("click", () => copy($("token-value").textContent, $("copy-token-status")));
  return loadIssuers();
}

// Every signed-in page -----------------------------------------------------------------

async function signedIn(page) {
  if (STATIC) {
    const name = sessionStorage.getItem(NAME_KEY);
    if (!name) {
      toLogin(false);
      return;
    }
    $("who").textContent = name;
    $("sign-out").addEventListener("click", () => toLogin(false));
  } else {
    const response = await fetch("/console/session", { credentials: "same-origin" });
    if (!response.ok) {
      toLogin(true);
      return;
    }
    const session = await response.json();
    csrf = session.csrf;
    $("who").textContent = session.name;
    $("sign-out").addEventListener("click", async () => {
      await api("POST", "/console/logout");
      toLogin(false);
    });
  }
  await page();
  document.body.dataset.ready = "true";
}

const pages = {
  issuer: issuerPage,
  status: statusPage,
  peers: peersPage,
  issuers: issuersPage,
};

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "login") {
    loginPage();
    document.body.dataset.ready = "true";
  } else if (pages[page]) {
    signedIn(pages[page]);
  } else {
    document.body.dataset.ready = "true";
  }
});
