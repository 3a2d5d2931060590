// The chat page: rooms with presence and history, direct messages, and a
// connection that survives drops and shows what it missed. Built on wirehub.js.
import { HubClient, tokenSubject } from "./wirehub.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const MAX_KEPT = 500;

const state = {
  hub: null,
  me: null,
  current: null, // "#room" or "@peer"
  convos: new Map(), // key -> {messages: [], unread: 0}
  members: new Map(), // room -> Set(client ids)
  missed: 0,
  lost: [], // rooms whose history could not cover the gap
  banner: null, // null | "down" | "back"
};
window.chat = state; // for tests and the curious

function convo(key) {
  if (!state.convos.has(key)) state.convos.set(key, { messages: [], unread: 0 });
  return state.convos.get(key);
}

function add(key, entry) {
  const c = convo(key);
  c.messages.push(entry);
  if (c.messages.length > MAX_KEPT) c.messages.shift();
  if (key === state.current) appendMessage(entry);
  else if (entry.kind !== "system") c.unread += 1;
  renderLists();
}

function text(data) {
  if (data && typeof data === "object" && "text" in data) return String(data.text);
  return typeof data === "string" ? data : JSON.stringify(data);
}

function appendMessage(entry) {
  const box = $("messages");
  const div = document.createElement("div");
  div.className = `msg ${entry.kind}`;
  if (entry.from === state.me) div.classList.add("mine");
  if (entry.offset) div.dataset.offset = entry.offset;
  if (entry.kind === "system") {
    div.textContent = entry.text;
  } else {
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = entry.from;
    const body = document.createElement("span");
    body.className = "body";
    body.textContent = entry.text;
    const when = document.createElement("span");
    when.className = "when";
    when.textContent = new Date(entry.ts * 1000).toLocaleTimeString();
    div.append(who, body, when);
    if (entry.kind.includes("missed")) {
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = "missed while offline";
      div.append(tag);
    }
  }
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  box.append(div);
  if (atBottom) box.scrollTop = box.scrollHeight;
}

function renderConvo() {
  $("messages").replaceChildren();
  const c = convo(state.current);
  c.unread = 0;
  c.messages.forEach(appendMessage);
  $("where").textContent = state.current;
  $("text").placeholder = state.current.startsWith("@")
    ? `direct message to ${state.current.slice(1)}` : `message ${state.current}`;
  renderLists();
  renderMembers();
}

function listItem(key, label) {
  const li = document.createElement("li");
  li.dataset.key = key;
  li.className = key === state.current ? "current" : "";
  const name = document.createElement("span");
  name.textContent = label;
  li.append(name);
  const unread = convo(key).unread;
  if (unread) {
    const badge = document.createElement("span");
    badge.className = "unread";
    badge.textContent = unread;
    li.append(badge);
  }
  li.onclick = () => {
    state.current = key;
    renderConvo();
  };
  return li;
}

function renderLists() {
  const rooms = [...state.convos.keys()].filter((k) => k.startsWith("#"));
  const directs = [...state.convos.keys()].filter((k) => k.startsWith("@"));
  $("rooms").replaceChildren(...rooms.map((k) => listItem(k, k)));
  $("directs").replaceChildren(...directs.map((k) => listItem(k, k.slice(1))));
}

function renderMembers() {
  const room = state.current?.startsWith("#") ? state.current.slice(1) : null;
  const members = room ? [...(state.members.get(room) || [])].sort() : [];
  $("membercount").textContent = room ? members.length : "";
  $("members").replaceChildren(...members.map((id) => {
    const li = document.createElement("li");
    li.dataset.member = id;
    li.textContent = id === state.me ? `${id} (you)` : id;
    if (id !== state.me) {
      li.onclick = () => {
        state.current = `@${id}`;
        convo(state.current);
        renderConvo();
      };
    }
    return li;
  }));
}

function renderBanner() {
  const el = $("banner");
  el.replaceChildren();
  if (!state.banner) return;
  const div = document.createElement("div");
  if (state.banner === "down") {
    div.className = "banner warn";
    div.textContent = "Connection lost: reconnecting…";
  } else {
    const n = state.missed;
    div.className = state.lost.length ? "banner bad" : "banner ok";
    div.textContent = `Back online: ${n} missed message${n === 1 ? "" : "s"} recovered`
      + (state.lost.length ? `; older ones in ${state.lost.join(", ")} were lost` : "");
  }
  el.append(div);
}

async function joinRoom(room, { focus = true } = {}) {
  const key = `#${room}`;
  convo(key);
  if (focus) state.current = key;
  renderConvo();
  try {
    // since: 0 asks for the room's history; it arrives marked replay: "history".
    const joined = await state.hub.join(room, { since: 0 });
    state.members.set(room, new Set(joined.members));
    if (joined.recovered === false && joined.first_offset > 1) {
      add(key, { kind: "system", text: `history starts at message ${joined.first_offset}` });
    }
  } catch (err) {
    add(key, { kind: "system", text: `could not join: ${err.message}` });
  }
  renderMembers();
}

function wire(hub) {
  hub.on("state", ({ state: s }) => {
    $("status").textContent = s;
    $("status").className = `pill ${s}`;
  });
  hub.on("message", (m) => {
    const kind = m.replay === "missed" ? "missed" : m.replay === "history" ? "history" : "live";
    if (kind === "missed") {
      state.missed += 1;
      renderBanner();
    }
    add(`#${m.room}`, { kind, from: m.from, text: text(m.data), ts: m.ts, offset: m.offset });
  });
  hub.on("direct", (d) => {
    add(`@${d.from}`, { kind: "direct", from: d.from, text: text(d.data), ts: Date.now() / 1000 });
  });
  hub.on("broadcast", (b) => {
    if (state.current) add(state.current, { kind: "system", text: `broadcast: ${text(b.data)}` });
  });
  hub.on("presence", (p) => {
    if (!p.event) return;
    const set = state.members.get(p.room) || new Set();
    if (p.event === "join") set.add(p.client_id);
    if (p.event === "leave") set.delete(p.client_id);
    state.members.set(p.room, set);
    add(`#${p.room}`, { kind: "system", text: `${p.client_id} ${p.event === "join" ? "joined" : "left"}` });
    renderMembers();
  });
  hub.on("joined", (j) => {
    // Re-joins after a reconnect: fresh member list, and whether the gap was covered.
    state.members.set(j.room, new Set(j.members));
    if (j.recovered === false && state.banner) state.lost.push(`#${j.room}`);
    renderMembers();
    renderBanner();
  });
  hub.on("disconnect", (e) => {
    state.banner = "down";
    state.missed = 0;
    state.lost = [];
    renderBanner();
    if (hub.state === "closed" || !hub.reconnect) {
      add(state.current, { kind: "system", text: `disconnected (${e.code} ${e.reason})` });
    }
  });
  hub.on("reconnect", () => {
    state.banner = "back";
    renderBanner();
  });
}

// -- token (when the hub runs with auth on) ----------------------------------------
// From the token field, `#token=...` in the address (a fragment never reaches the
// server's logs) or this tab's sessionStorage. A JWT's `sub` is the client id.
const TOKEN_KEY = "wirehub.token";
const tokenInput = document.createElement("input");
tokenInput.id = "token";
tokenInput.type = "password";
tokenInput.autocomplete = "off";
tokenInput.placeholder = "token (if the hub asks for one)";
{
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) {
    sessionStorage.setItem(TOKEN_KEY, fromHash);
    history.replaceState(null, "", location.pathname + location.search);
  }
  tokenInput.value = sessionStorage.getItem(TOKEN_KEY) || "";
  $("loginform").insertBefore(tokenInput, $("loginform").querySelector("button"));
  const useSubject = () => {
    const sub = tokenSubject(tokenInput.value.trim());
    if (sub) $("name").value = sub;
  };
  tokenInput.addEventListener("input", useSubject);
  useSubject();
}

async function enter(name) {
  const token = tokenInput.value.trim() || null;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  name = tokenSubject(token) || name;
  state.me = name;
  $("login").hidden = true;
  $("app").hidden = false;
  $("me").textContent = name;
  history.replaceState(null, "", `?${new URLSearchParams({ ...Object.fromEntries(params), name })}`);
  const hub = new HubClient({ clientId: name, token, backoffInitial: 250, backoffCap: 5000 });
  state.hub = hub;
  wire(hub);
  try {
    await hub.connect();
  } catch (err) {
    $("status").textContent = `cannot connect: ${err.message}${token ? "" : " (does the hub need a token?)"}`;
    $("status").className = "pill closed";
    return;
  }
  const rooms = (params.get("room") || "lobby").split(",").filter(Boolean);
  for (const [i, room] of rooms.entries()) await joinRoom(room, { focus: i === 0 });
}

$("loginform").onsubmit = (event) => {
  event.preventDefault();
  enter($("name").value.trim());
};

$("joinform").onsubmit = (event) => {
  event.preventDefault();
  const room = $("newroom").value.trim().replace(/^#/, "");
  $("newroom").value = "";
  if (room) joinRoom(room);
};

$("compose").onsubmit = async (event) => {
  event.preventDefault();
  const input = $("text");
  const body = input.value.trim();
  if (!body || !state.current) return;
  input.value = "";
  const key = state.current;
  try {
    if (key.startsWith("@")) {
      await state.hub.direct(key.slice(1), { text: body });
      add(key, { kind: "direct", from: state.me, text: body, ts: Date.now() / 1000 });
    } else {
      const offset = await state.hub.publish(key.slice(1), { text: body });
      add(key, { kind: "live", from: state.me, text: body, ts: Date.now() / 1000, offset });
    }
  } catch (err) {
    add(key, { kind: "system", text: `not sent (${err.code}): ${err.message}` });
  }
};

// The protocol's client id (docs/protocol.md), as the name field's pattern: an id the
// hub would close with 4400 stays in the form, marked invalid.
const CLIENT_ID = /^[A-Za-z0-9_.:@-]{1,128}$/;
if (params.get("name")) {
  const asked = params.get("name");
  if (CLIENT_ID.test(asked)) enter(asked);
  else {
    $("name").value = asked;
    $("name").reportValidity();
  }
}
