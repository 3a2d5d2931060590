// The live dashboard: a wirehub client subscribed to the hub's system rooms.
//
// $hub.stats    stats snapshots (tiles and charts)
// $hub.clients  connect / disconnect events
// $bridges      TCP bridge stats and errors
// $services     service state changes; $service:<name> its output lines
// $jobs         job events (queued, running, progress, result, failed, cancelled)
//
// One REST snapshot on load (and after a reconnect) fills the tables; after that
// the rooms push every change. The per-room table (members, offsets, rates) and
// each client's rooms are re-read from /api/rooms and /api/clients when a stats
// snapshot or a connect event shows that something changed.
//
// limits.max_rooms_per_connection counts system rooms too, so the dashboard joins
// only what it needs (bridges and services only when some are configured), the most
// useful first. A join the hub refuses shows in the header (#limits: "not live"),
// and that part of the page is read from the REST API every POLL_MS instead, so the
// tables show the hub's real state within any limit. $job:<id> rooms are not listed
// in the Rooms table (one per job; the Jobs table shows them).
import { HubClient, tokenSubject } from "./wirehub.js";

const $ = (id) => document.getElementById(id);
const SERIES_POINTS = 150; // 5 minutes at the default stats_interval of 2 s
const MAX_JOBS = 50;
const MAX_LOG_LINES = 400;
const POLL_MS = 2000;

const state = {
  hub: null,
  stats: null,
  clients: new Map(),
  rooms: new Map(),
  bridges: new Map(),
  bridgeErrors: [],
  services: new Map(),
  jobs: new Map(),
  logService: null,
  refused: new Map(), // what is not live -> the hub's error (HubError: code, message, limit)
  subscribed: false,
  series: { connections: [], rate: [], deliveries: [], memory: [], lag: [] },
};
window.dashboard = state; // for tests and the curious

// -- small helpers --------------------------------------------------------------

function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el[key] = value;
    else el.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

function num(n, digits = 0) {
  return n === null || n === undefined || Number.isNaN(n) ? "–" : Number(n).toFixed(digits);
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function duration(s) {
  if (s < 60) return `${Math.floor(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${Math.floor(s % 60)}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

function pill(value) {
  return h("span", { class: `pill ${value}` }, value);
}

function short(value, max = 80) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text && text.length > max ? `${text.slice(0, max - 1)}…` : text ?? "";
}

function empty(tbody, cols, text) {
  tbody.replaceChildren(h("tr", {}, h("td", { class: "empty", colspan: cols }, text)));
}

// -- token (when the hub runs with auth on) ----------------------------------------
// An API key or an admin JWT, from the field in the header, `#token=...` (a fragment
// never reaches the server's logs) or this tab's sessionStorage; sent to /ws and as
// `Authorization: Bearer` to /api.
const TOKEN_KEY = "wirehub.token";
{
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) {
    sessionStorage.setItem(TOKEN_KEY, fromHash);
    history.replaceState(null, "", location.pathname + location.search);
  }
}
const authToken = sessionStorage.getItem(TOKEN_KEY) || null;

function tokenForm() {
  const input = h("input", { id: "token", type: "password", autocomplete: "off",
    placeholder: "API key or admin token" });
  input.value = authToken || "";
  const form = h("form", { id: "tokenform", style: "display:flex;gap:4px;margin-right:8px" },
    input, h("button", {}, "use"));
  form.onsubmit = (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  };
  $("status").before(form);
}

async function getJson(path) {
  try {
    const response = await fetch(path, authToken ? { headers: { Authorization: `Bearer ${authToken}` } } : {});
    return response.ok ? await response.json() : null; // 404: that part is not configured
  } catch {
    return null;
  }
}

function sparkline(svg, values) {
  const w = 100;
  const hgt = 30;
  svg.setAttribute("viewBox", `0 0 ${w} ${hgt}`);
  svg.setAttribute("preserveAspectRatio", "none");
  if (values.length < 2) {
    svg.replaceChildren();
    return;
  }
  const max = Math.max(...values, 1e-9);
  const step = w / (SERIES_POINTS - 1);
  const x0 = w - step * (values.length - 1);
  const pts = values.map((v, i) => `${(x0 + i * step).toFixed(2)},${(hgt - (v / max) * (hgt - 2) - 1).toFixed(2)}`);
  const ns = "http://www.w3.org/2000/svg";
  const area = document.createElementNS(ns, "polygon");
  area.setAttribute("points", `${x0},${hgt} ${pts.join(" ")} ${w},${hgt}`);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", pts.join(" "));
  svg.replaceChildren(area, line);
}

// -- stats ------------------------------------------------------------------------

function onStats(s) {
  const prev = state.stats;
  state.stats = s;
  $("node").textContent = s.node;
  $("uptime").textContent = `up ${duration(s.uptime)}`;
  $("t-connections").textContent = s.connections;
  $("t-rate").textContent = num(s.published_per_s, 1);
  $("t-deliveries").textContent = num(s.deliveries_per_s, 1);
  $("t-memory").textContent = bytes(s.rss_bytes);
  const lag = s.loop_lag_max_ms ?? s.loop_lag_ms;
  $("t-lag").textContent = lag === undefined ? "–" : `${num(lag, 1)} ms`;
  $("t-slow").textContent = s.slow_consumers;
  $("t-rooms").textContent = s.rooms;
  $("t-errors").textContent = Object.values(s.errors || {}).reduce((a, b) => a + b, 0);
  const push = (name, value) => {
    const series = state.series[name];
    series.push(Number(value) || 0);
    if (series.length > SERIES_POINTS) series.shift();
    sparkline($(`c-${name}`), series);
  };
  push("connections", s.connections);
  push("rate", s.published_per_s);
  push("deliveries", s.deliveries_per_s);
  push("memory", s.rss_bytes / 1048576);
  push("lag", lag);
  const changed = !prev || prev.connections !== s.connections || prev.rooms !== s.rooms;
  if (changed || s.published_per_s > 0) refreshRooms();
}

// -- clients and rooms ---------------------------------------------------------------

let refreshing = null;
function refreshRooms() {
  // Coalesce: one refresh in flight, one queued at most.
  if (refreshing) {
    refreshing.again = true;
    return;
  }
  refreshing = { again: false };
  (async () => {
    const [clients, rooms] = await Promise.all([getJson("api/clients"), getJson("api/rooms")]);
    if (clients) {
      const seen = new Set();
      for (const c of clients) {
        seen.add(c.id);
        state.clients.set(c.id, { ...(state.clients.get(c.id) || {}), kind: c.kind, rooms: c.rooms });
      }
      for (const id of [...state.clients.keys()]) if (!seen.has(id)) state.clients.delete(id);
      renderClients();
    }
    if (rooms) {
      const now = performance.now() / 1000;
      const seen = new Set();
      for (const r of rooms) {
        seen.add(r.name);
        const old = state.rooms.get(r.name);
        let rate = old?.rate ?? 0;
        if (old && now - old.at > 0.5) rate = (r.offset - old.offset) / (now - old.at);
        if (!old || now - old.at > 0.5) state.rooms.set(r.name, { ...r, rate, at: now });
        else state.rooms.set(r.name, { ...r, rate, at: old.at, offset: r.offset });
      }
      for (const name of [...state.rooms.keys()]) if (!seen.has(name)) state.rooms.delete(name);
      renderRooms();
    }
  })().finally(() => {
    const again = refreshing.again;
    refreshing = null;
    if (again) refreshRooms();
  });
}

function onClientEvent(e) {
  if (e.event === "connect") {
    state.clients.set(e.client_id, { kind: e.kind, rooms: [], fresh: true });
  } else if (e.event === "disconnect") {
    state.clients.delete(e.client_id);
  }
  renderClients();
  setTimeout(refreshRooms, 300); // a new client usually joins its rooms right away
}

function renderClients() {
  const tbody = $("clients");
  $("clients-count").textContent = state.clients.size;
  if (!state.clients.size) return empty(tbody, 3, "no connections");
  const rows = [...state.clients.entries()].sort(([a], [b]) => a.localeCompare(b));
  tbody.replaceChildren(...rows.map(([id, c]) => {
    const tr = h("tr", { dataset: { client: id } },
      h("td", { class: "mono id", title: id }, id),
      h("td", {}, c.kind),
      h("td", { class: "mono" }, (c.rooms || []).join(" ")));
    if (c.fresh) {
      tr.classList.add("fresh");
      c.fresh = false;
    }
    return tr;
  }));
}

function renderRooms() {
  const tbody = $("rooms");
  // One $job:<id> room per job: the Jobs table shows them; here they are only counted.
  const rows = [...state.rooms.values()].filter((r) => !r.name.startsWith("$job:"));
  const hidden = state.rooms.size - rows.length;
  $("rooms-count").textContent = rows.length;
  $("rooms-hidden").textContent = hidden ? `+ ${hidden} job room${hidden === 1 ? "" : "s"} not listed` : "";
  if (!rows.length) return empty(tbody, 4, "no rooms");
  rows.sort((a, b) => a.name.localeCompare(b.name));
  tbody.replaceChildren(...rows.map((r) => h("tr", { dataset: { room: r.name } },
    h("td", { class: "mono id", title: r.name }, r.name),
    h("td", { class: "num" }, r.member_count),
    h("td", { class: "num" }, num(r.rate, 1)),
    h("td", { class: "num" }, r.offset))));
}

// -- bridges ---------------------------------------------------------------------------

function onBridges(e) {
  if (e.event === "stats" && Array.isArray(e.bridges)) {
    const now = performance.now() / 1000;
    for (const b of e.bridges) {
      const old = state.bridges.get(b.name);
      const dt = old ? now - old.at : 0;
      state.bridges.set(b.name, {
        ...b,
        at: now,
        rateIn: dt > 0 ? (b.frames_in - old.frames_in) / dt : 0,
        rateOut: dt > 0 ? (b.frames_out - old.frames_out) / dt : 0,
      });
    }
    renderBridges();
  } else if (e.event === "error") {
    state.bridgeErrors.unshift(e);
    state.bridgeErrors.length = Math.min(state.bridgeErrors.length, 5);
    $("bridge-errors").replaceChildren(...state.bridgeErrors.map((x) =>
      h("div", {}, `${x.bridge} ${x.client_id || ""} ${x.code}: ${x.message}`)));
  }
}

function renderBridges() {
  const tbody = $("bridges");
  $("bridges-count").textContent = state.bridges.size;
  if (!state.bridges.size) return empty(tbody, 8, "no TCP bridges configured");
  tbody.replaceChildren(...[...state.bridges.values()].map((b) => h("tr", { dataset: { bridge: b.name } },
    h("td", {}, b.name),
    h("td", { class: "num" }, b.port ?? "–"),
    h("td", { class: "mono id", title: b.room }, b.room),
    h("td", { class: "num clients" }, b.clients),
    h("td", { class: "num" }, num(b.rateIn, 1)),
    h("td", { class: "num" }, num(b.rateOut, 1)),
    h("td", { class: "num" }, `${bytes(b.bytes_in)} / ${bytes(b.bytes_out)}`),
    h("td", { class: "num" }, b.drops ?? 0))));
  for (const b of state.bridges.values()) {
    const row = tbody.querySelector(`tr[data-bridge="${CSS.escape(b.name)}"]`);
    row.dataset.framesIn = b.frames_in;
  }
}

// -- services ------------------------------------------------------------------------------

function onService(e) {
  if (e.event !== "state") return;
  const old = state.services.get(e.service) || {};
  state.services.set(e.service, { ...old, name: e.service, state: e.state, pid: e.pid,
    exit_code: e.exit_code, restarts: e.restarts });
  renderServices();
}

function renderServices() {
  const tbody = $("services");
  $("services-count").textContent = state.services.size;
  if (!state.services.size) return empty(tbody, 5, "no supervised services");
  // The log tail takes a room slot: only once the system rooms are joined (subscribe).
  if (!state.logService && state.subscribed) followLogs(state.services.keys().next().value);
  tbody.replaceChildren(...[...state.services.values()].map((s) => h("tr", {
    class: `clickable${s.name === state.logService ? " selected" : ""}`,
    dataset: { service: s.name, state: s.state },
    onclick: () => followLogs(s.name),
  },
  h("td", {}, s.name),
  h("td", {}, pill(s.state)),
  h("td", { class: "num" }, s.pid ?? "–"),
  h("td", { class: "num" }, s.restarts ?? 0),
  h("td", { class: "num" }, s.exit_code ?? "–"))));
}

async function followLogs(name) {
  if (name === state.logService) return;
  const previous = state.logService;
  state.logService = name;
  $("log-service").textContent = name;
  $("logs").replaceChildren();
  renderServices();
  if (previous) state.hub.leave(`$service:${previous}`).catch(() => {});
  state.refused.delete("log tail");
  try {
    // since: 0 replays the lines the room still holds, then it follows live.
    await state.hub.join(`$service:${name}`, { since: 0 });
  } catch (err) {
    if (err.code !== "disconnected") {
      refuse("log tail", err); // read from /api/services/{name}/logs instead
      await pollLogs();
    }
  }
  renderLimits();
}

async function pollLogs() {
  const name = state.logService;
  if (!name) return;
  const logs = await getJson(`api/services/${encodeURIComponent(name)}/logs?tail=${MAX_LOG_LINES}`);
  if (!logs || name !== state.logService) return;
  const box = $("logs");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 30;
  box.replaceChildren(...logs.lines.map((d) => h("div", { class: d.stream }, d.line)));
  if (atBottom) box.scrollTop = box.scrollHeight;
}

function onLogLine(room, d) {
  if (room !== `$service:${state.logService}`) return;
  const box = $("logs");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 30;
  box.append(h("div", { class: d.stream }, d.line));
  while (box.childElementCount > MAX_LOG_LINES) box.firstChild.remove();
  if (atBottom) box.scrollTop = box.scrollHeight;
}

// -- jobs -------------------------------------------------------------------------------------

function onJob(e) {
  const kind = String(e.type || e.event || "").replace(/^job\./, "");
  if (!e.job_id) return;
  const job = state.jobs.get(e.job_id) || { job_id: e.job_id, job: e.job || "", state: "queued", progress: 0 };
  if (e.job) job.job = e.job;
  switch (kind) {
    case "queued": job.state = "queued"; break;
    case "running": job.state = "running"; break;
    case "progress":
      job.state = "running";
      job.progress = Number(e.progress ?? job.progress);
      job.message = e.message ?? job.message;
      break;
    case "result":
      job.state = "succeeded";
      job.progress = 1;
      if ("result" in e) job.result = e.result;
      else fetchResult(job.job_id);
      break;
    case "failed":
    case "cancelled":
      job.state = e.state || kind;
      job.error = e.error;
      break;
    default:
      if (e.state) job.state = e.state;
  }
  state.jobs.delete(e.job_id);
  state.jobs.set(e.job_id, job); // most recent last
  while (state.jobs.size > MAX_JOBS) state.jobs.delete(state.jobs.keys().next().value);
  renderJobs();
}

async function fetchResult(jobId) {
  const info = await getJson(`api/jobs/${encodeURIComponent(jobId)}`);
  const job = state.jobs.get(jobId);
  if (info && job) {
    job.result = info.result;
    if (!job.job) job.job = info.job;
    renderJobs();
  }
}

function renderJobs() {
  const tbody = $("jobs");
  $("jobs-count").textContent = state.jobs.size;
  if (!state.jobs.size) return empty(tbody, 5, "no jobs yet");
  const rows = [...state.jobs.values()].reverse();
  tbody.replaceChildren(...rows.map((j) => {
    const pct = Math.round((j.progress || 0) * 100);
    const barClass = j.state === "succeeded" ? "bar done" : ["failed", "cancelled"].includes(j.state) ? "bar failed" : "bar";
    const bar = h("div", { class: barClass }, h("i", { style: `width:${pct}%` }));
    let outcome = "";
    if (j.error) outcome = short(j.error.message ?? j.error);
    else if (j.result !== undefined) outcome = short(j.result);
    else if (j.message) outcome = j.message;
    return h("tr", { dataset: { job: j.job_id, state: j.state, progress: pct } },
      h("td", { class: "mono id", title: j.job_id }, j.job_id),
      h("td", {}, j.job),
      h("td", {}, pill(j.state)),
      h("td", {}, h("div", { class: "progress-cell" }, bar, h("span", { class: "pct" }, `${pct}%`))),
      h("td", { class: j.error ? "mono error" : "mono" }, outcome));
  }));
}

// -- start -------------------------------------------------------------------------------------

async function snapshot() {
  const [services, bridges, jobs] = await Promise.all([
    getJson("api/services"), getJson("api/bridges"), getJson("api/jobs"),
  ]);
  for (const s of services || []) state.services.set(s.name, { ...s });
  for (const b of bridges || []) state.bridges.set(b.name, { ...b, at: performance.now() / 1000, rateIn: 0, rateOut: 0 });
  mergeJobs(jobs || []);
  renderServices();
  renderBridges();
  renderJobs();
  refreshRooms();
}

async function main() {
  const id = `dashboard-${Math.random().toString(36).slice(2, 8)}`;
  // A JWT's client id is its `sub`; an API key keeps the id asked for.
  const hub = new HubClient({ clientId: tokenSubject(authToken) ? null : id, token: authToken,
    backoffInitial: 500, backoffCap: 10000 });
  state.hub = hub;
  hub.on("state", ({ state: s }) => {
    $("status").textContent = s;
    $("status").className = `pill ${s}`;
  });
  hub.on("message", (m) => {
    if (m.room === "$hub.stats") onStats(m.data);
    else if (m.room === "$hub.clients") onClientEvent(m.data);
    else if (m.room === "$bridges") onBridges(m.data);
    else if (m.room === "$services") onService(m.data);
    else if (m.room === "$jobs") onJob(m.data);
    else if (m.room.startsWith("$service:")) onLogLine(m.room, m.data);
  });
  hub.on("reconnect", () => snapshot().then(subscribe));
  await hub.connect();
  // Read what is configured, join what that needs, then read again: nothing that
  // happened before a join is missed. A refused join is not a failed connection.
  await snapshot();
  await subscribe();
  await snapshot();
}

// -- subscriptions within the room limit -----------------------------------------------------

/** The system rooms, most useful first; the log tail and $hub.clients come after them. */
const FEEDS = [
  { room: "$services", label: "services", needed: () => state.services.size > 0, poll: pollServices },
  { room: "$jobs", label: "jobs", needed: () => true, poll: pollJobs },
  { room: "$hub.stats", label: "stats", needed: () => true, poll: null },
  { room: "$bridges", label: "bridges", needed: () => state.bridges.size > 0, poll: pollBridges },
];
const CLIENTS_FEED = { room: "$hub.clients", label: "connections", needed: () => true, poll: refreshRooms };

async function subscribe() {
  for (const feed of FEEDS) await joinFeed(feed);
  state.subscribed = true;
  if (state.services.size && !state.logService) await followLogs(state.services.keys().next().value);
  await joinFeed(CLIENTS_FEED); // the stats snapshots also re-read the clients when they change
  renderLimits();
}

async function joinFeed(feed) {
  if (!feed.needed() || feed.room in state.hub.rooms || state.refused.has(feed.label)) return;
  try {
    await state.hub.join(feed.room);
  } catch (err) {
    if (err.code !== "disconnected") refuse(feed.label, err); // a reconnect subscribes again
  }
}

let pollTimer = null;
function refuse(label, err) {
  state.refused.set(label, err);
  renderLimits();
  if (!pollTimer) pollTimer = setInterval(pollRefused, POLL_MS);
}

async function pollRefused() {
  for (const label of [...state.refused.keys()]) {
    if (label === "log tail") await pollLogs();
    else await [...FEEDS, CLIENTS_FEED].find((f) => f.label === label)?.poll?.();
  }
}

function renderLimits() {
  const notice = $("limits");
  if (!state.refused.size) {
    notice.hidden = true;
    return;
  }
  const errors = [...state.refused.values()];
  const limit = errors.find((e) => e.code === "limit_exceeded")?.limit;
  notice.textContent = `not live${limit ? ` (room limit ${limit})` : ""}: ${[...state.refused.keys()].join(", ")}`;
  notice.title = [...state.refused].map(([label, e]) => `${label}: ${e.code}: ${e.message}`).join("\n")
    + `\nThese parts are read from the HTTP API every ${POLL_MS / 1000} s instead.`;
  notice.dataset.refused = [...state.refused.keys()].join(",");
  notice.hidden = false;
}

async function pollServices() {
  const services = await getJson("api/services");
  if (!services) return;
  for (const s of services) state.services.set(s.name, { ...(state.services.get(s.name) || {}), ...s });
  renderServices();
}

async function pollJobs() {
  const jobs = await getJson("api/jobs");
  if (!jobs) return;
  mergeJobs(jobs);
  renderJobs();
}

async function pollBridges() {
  const bridges = await getJson("api/bridges");
  if (bridges) onBridges({ event: "stats", bridges });
}

function mergeJobs(jobs) {
  for (const j of jobs.slice().sort((a, b) => a.created_at - b.created_at)) {
    const old = state.jobs.get(j.job_id) || {};
    state.jobs.set(j.job_id, { ...old, ...j, result: j.state === "succeeded" ? j.result : undefined });
  }
  while (state.jobs.size > MAX_JOBS) state.jobs.delete(state.jobs.keys().next().value);
}

tokenForm();
renderClients();
renderRooms();
renderBridges();
renderServices();
renderJobs();
main().catch((err) => {
  $("status").textContent = `cannot connect: ${err.message}${authToken ? "" : " (does the hub need a token?)"}`;
  $("status").className = "pill closed";
});
