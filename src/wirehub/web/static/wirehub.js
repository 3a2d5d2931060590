// wirehub.js: the browser client for a wirehub hub (an ES module, no build step).
//
//   import { HubClient } from "/static/wirehub.js";
//   const hub = new HubClient({ clientId: "alice" });
//   hub.on("message", (m) => console.log(m.room, m.data));
//   await hub.connect();
//   await hub.join("lobby");
//   const offset = await hub.publish("lobby", { text: "hi" });  // resolves on the ack
//
// The client hides socket drops: it reconnects with exponential backoff and full
// jitter, reuses its client id, and re-joins every room with `since` set to the
// last offset it saw, so the hub replays what was missed. docs/clients.md has
// the whole API.
//
// Tokens: `getToken` (an async function returning a fresh token) is called for
// every connection and on `token.expiring`, when the client sends `refresh`; after
// 4401 (expired) it reconnects at once with a fresh token; after 4403 (revoked)
// it stops for good (`state` "closed", `error.code` "revoked"). A hub shutting
// down sends `reconnect {delay_ms: [min, max]}`: the first reconnect waits a
// random delay in that window.
//
//   const hub = await connect({ getToken: () => fetch("/my/token").then((r) => r.text()) });
//
// Batched frames: `new HubClient({ batch: true })` asks the hub to put several
// messages in one text frame (docs/protocol.md, "Batched frames"); handlers still
// see one message at a time, in order.

/** Close codes after which reconnecting would be wrong (bad id, replaced, kicked, policy, revoked). */
export const NO_RECONNECT_CODES = new Set([4400, 4409, 4003, 1008, 4403]);
/** The token expired (reconnect with a fresh one) / was revoked (stop). */
export const TOKEN_EXPIRED = 4401;
export const REVOKED = 4403;

/** An `error` frame from the hub (or a client-side failure) as an Error with a `code`. */
export class HubError extends Error {
  constructor(code, message, fields = {}) {
    super(message);
    this.name = "HubError";
    this.code = code;
    Object.assign(this, fields);
  }
}

/** Delays in ms: uniform in [0, min(cap, initial * 2^n)] ("full jitter"). */
export function* backoff(initial = 200, cap = 10000) {
  let ceiling = initial;
  for (;;) {
    yield Math.random() * ceiling;
    ceiling = Math.min(cap, ceiling * 2);
  }
}

/** The `sub` of a JWT (read, not verified: the hub verifies), or null for an API key. */
export function tokenSubject(token) {
  const part = typeof token === "string" ? token.split(".")[1] : null;
  if (!part) return null;
  try {
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "="));
    const sub = JSON.parse(json).sub;
    return typeof sub === "string" ? sub : null;
  } catch {
    return null;
  }
}

// Served by a hub (".../static/wirehub.js" on the page's own origin), the hub's /ws sits
// beside that /static, under whatever path the app serves the hub at (a router prefix, a
// mount, a proxy's root path); copied anywhere else, the page's host root.
function defaultUrl() {
  let base = `${location.origin}/static/wirehub.js`;
  try {
    const here = new URL(import.meta.url);
    if (here.origin === location.origin && here.pathname.endsWith("/static/wirehub.js")) {
      base = here.href;
    }
  } catch {
    // not a module URL we can read: keep the host root
  }
  const url = new URL("../ws", base);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.search = url.hash = "";
  return url.href;
}

const JOB_TYPES = new Set(["job.progress", "job.output", "job.result", "job.failed", "job.cancelled"]);

/** A submitted job: `await job.result` gives its result (rejects with HubError on failure). */
export class Job {
  constructor(jobId, name, { onProgress, onOutput } = {}) {
    this.jobId = jobId;
    this.name = name;
    this.state = "queued";
    this.progress = 0;
    this.message = null;
    this.outputs = [];
    this.onProgress = onProgress;
    this.onOutput = onOutput;
    this.done = false;
    this.result = new Promise((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
  }

  _feed(frame) {
    switch (frame.type) {
      case "job.progress":
        this.state = "running";
        this.progress = Number(frame.progress ?? 0);
        this.message = frame.message ?? null;
        this.onProgress?.(this.progress, this.message);
        break;
      case "job.output":
        // Consecutive outputs may arrive coalesced: `items` (in order) or one `data`.
        for (const item of Array.isArray(frame.items) ? frame.items : [frame.data]) {
          this.outputs.push(item);
          this.onOutput?.(item);
        }
        break;
      case "job.result":
        this.state = "succeeded";
        this.progress = 1;
        this.done = true;
        this._resolve(frame.result);
        break;
      case "job.failed":
      case "job.cancelled": {
        this.state = frame.state || frame.type.slice(4);
        this.done = true;
        const e = frame.error;
        const text = e && typeof e === "object" && "message" in e ? `${e.type || "Error"}: ${e.message}`
          : typeof e === "string" ? e : JSON.stringify(e);
        this._reject(new HubError("job_failed", `job ${this.jobId} ${this.state}: ${text}`,
          { state: this.state, error: e }));
        break;
      }
    }
  }
}

export class HubClient {
  /**
   * @param {object} [options]
   * @param {string} [options.url]            ws(s)://host/ws (default: this page's host)
   * @param {string} [options.clientId]       reused on every reconnect (hub-generated otherwise)
   * @param {string} [options.token]          sent as ?token= when auth is on
   * @param {function} [options.getToken]     async () => a fresh token, for every connection
   *                                           and before the current one expires
   * @param {boolean} [options.reconnect=true]
   * @param {number} [options.backoffInitial=200]  ms
   * @param {number} [options.backoffCap=10000]    ms
   * @param {number} [options.requestTimeout=10000] ms a request waits for its reply
   * @param {number} [options.uploadWindow=4]  chunks in flight during an upload
   * @param {boolean} [options.batch=false]   ask for batched frames (`batch=1`): the hub may
   *                                           put several messages in one text frame, one per
   *                                           line; they are split and dispatched one by one
   *                                           (`welcome.batch` says whether the hub agreed)
   */
  constructor(options = {}) {
    this.url = options.url || defaultUrl();
    this.clientId = options.clientId || null;
    this.token = options.token || null;
    this.getToken = options.getToken || null;
    /** Why the client stopped for good when the hub decided it (revoked, expired). */
    this.error = null;
    this.refreshes = 0;
    this._reconnectWindow = null; // [min, max] ms from the hub's shutdown notice
    this._refreshing = null;
    this.reconnect = options.reconnect ?? true;
    this.backoffInitial = options.backoffInitial ?? 200;
    this.backoffCap = options.backoffCap ?? 10000;
    this.requestTimeout = options.requestTimeout ?? 10000;
    this.uploadWindow = options.uploadWindow ?? 4;
    this.batch = options.batch ?? false;
    /** "idle" | "connecting" | "open" | "reconnecting" | "closed" */
    this.state = "idle";
    this.welcome = null;
    this.reconnects = 0;
    this.closeCode = null;
    this.closeReason = "";
    this.ws = null;
    this._rooms = new Map(); // room -> last offset seen
    this._replays = new Map(); // room -> {until, kind} while a replay is arriving
    this._handlers = new Map();
    this._pending = new Map(); // ref -> {resolve, reject, hook, timer}
    this._jobs = new Map();
    this._orphans = [];
    this._uploads = new Map();
    this._ref = 0;
    this._closing = false;
    this._ready = null;
    this._setReady(false);
    this._wake = null;
    this._lastSeen = 0;
    this._watchdog = null;
    if (typeof window !== "undefined") {
      window.addEventListener("online", () => this._wake?.());
    }
  }

  // -- lifecycle -------------------------------------------------------------

  /** Open the first connection; resolves on the hub's welcome. */
  async connect() {
    if (this.state !== "idle" && this.state !== "closed") return this;
    this._closing = false;
    this.error = null;
    this._setState("connecting");
    await this._open();
    this._readyResolve();
    this._setState("open");
    return this;
  }

  /** Close for good (1000); pending requests reject with code "disconnected". */
  close() {
    this._closing = true;
    clearInterval(this._watchdog);
    this._wake?.();
    if (this.ws) this.ws.close(1000, "client closed");
    this._failPending("client closed");
    this._setState("closed");
  }

  get connected() {
    return this.state === "open";
  }

  /** Joined rooms and the last offset seen in each. */
  get rooms() {
    return Object.fromEntries(this._rooms);
  }

  // -- events ------------------------------------------------------------------

  /**
   * Call `fn(frame)` for a frame type ("message", "direct", "presence", "broadcast",
   * "joined", "error", "*") or a client event: "state" ({state}), "connect" (welcome),
   * "disconnect" ({code, reason}), "reconnect" ({rooms}). Returns an unsubscribe function.
   */
  on(kind, fn) {
    if (!this._handlers.has(kind)) this._handlers.set(kind, new Set());
    this._handlers.get(kind).add(fn);
    return () => this._handlers.get(kind)?.delete(fn);
  }

  _emit(kind, frame) {
    for (const set of [this._handlers.get(kind), this._handlers.get("*")]) {
      if (!set) continue;
      for (const fn of set) {
        try {
          fn(frame);
        } catch (err) {
          console.error("wirehub handler failed", err);
        }
      }
    }
  }

  // -- requests ----------------------------------------------------------------

  /** Join `room`; with `since` the hub replays messages after that offset. */
  //
  // Replayed messages carry `replay: "history"` (asked for with `since`) or
  // `replay: "missed"` (recovered by a re-join after a reconnect).
  join(room, { since } = {}) {
    return this._join(room, since, "history");
  }

  _join(room, since, replayKind, waitReady = true) {
    const frame = { type: "join", room };
    if (since !== undefined && since !== null) frame.since = since;
    return this._request(frame, (reply) => {
      if (reply.type !== "joined") return;
      const seen = this._rooms.get(room) ?? 0;
      this._rooms.set(room, since == null ? Math.max(seen, reply.offset) : since);
      if (since != null) this._replays.set(room, { until: reply.offset, kind: replayKind });
    }, waitReady);
  }

  async leave(room) {
    const reply = await this._request({ type: "leave", room });
    this._rooms.delete(room);
    return reply;
  }

  /** Publish; resolves with the message offset once the hub acknowledged it.
   *  `idempotencyKey`: a retry with the same key is not delivered twice (the ack
   *  carries the first offset). */
  async publish(room, data, { echo = false, idempotencyKey } = {}) {
    const frame = { type: "publish", room, data, echo };
    if (idempotencyKey !== undefined) frame.idempotency_key = idempotencyKey;
    const reply = await this._request(frame);
    if (!echo && this._rooms.has(room)) {
      this._rooms.set(room, Math.max(this._rooms.get(room), reply.offset));
    }
    return reply.offset;
  }

  /** Send `data` to one client (rejects with code "not_found" if it is not connected). */
  direct(to, data) {
    return this._request({ type: "direct", to, data });
  }

  /** {room, members, member_count} */
  presence(room) {
    return this._request({ type: "presence", room });
  }

  /** Any custom frame type handled by `@hub.on(type)` on the server. */
  request(type, fields = {}) {
    return this._request({ ...fields, type });
  }

  /** Give the live connection a new token (`getToken()` when none is given); resolves with
   * `refreshed {exp}`. Rooms the new token no longer grants are left (`left`, reason "revoked"). */
  async refresh(token) {
    if (token === undefined) token = await this._fetchToken();
    if (!token) throw new HubError("bad_request", "no token to refresh with");
    const reply = await this._request({ type: "refresh", token });
    this.token = token;
    this.refreshes += 1;
    return reply;
  }

  /** Submit a job; returns a Job whose `result` promise settles on job.result / job.failed. */
  async submit(name, args = {}, { onProgress, onOutput, ...fields } = {}) {
    let job = null;
    await this._request({ type: "job.submit", job: name, args, ...fields }, (reply) => {
      if (reply.type !== "job.accepted") return;
      job = new Job(reply.job_id, name, { onProgress, onOutput });
      this._jobs.set(job.jobId, job);
      const early = this._orphans.filter((f) => f.job_id === job.jobId);
      this._orphans = this._orphans.filter((f) => f.job_id !== job.jobId);
      for (const f of early) job._feed(f);
    });
    return job;
  }

  /** A Job handle for a job started another way (upload with `job`); early events are replayed. */
  follow(jobId, { job = "", onProgress, onOutput } = {}) {
    let handle = this._jobs.get(jobId);
    if (!handle) {
      handle = new Job(jobId, job, { onProgress, onOutput });
      this._jobs.set(jobId, handle);
      const early = this._orphans.filter((f) => f.job_id === jobId);
      this._orphans = this._orphans.filter((f) => f.job_id !== jobId);
      for (const f of early) handle._feed(f);
    }
    return handle;
  }

  /**
   * Upload a File/Blob/ArrayBuffer/Uint8Array in binary chunks; resolves with
   * upload.complete ({upload_id, job_id?}). `onProgress(ackedBytes, total)`.
   */
  async upload(source, { name, job, args, onProgress, uploadId } = {}) {
    const bytes = source instanceof Blob
      ? new Uint8Array(await source.arrayBuffer())
      : new Uint8Array(source instanceof ArrayBuffer ? source : source.buffer ?? source);
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    const sha256 = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
    const start = { type: "upload.start", name: name || source.name || "upload.bin",
      size: bytes.length, sha256 };
    if (job) {
      start.job = job;
      if (args) start.args = args;
    }
    for (let attempt = 0; ; attempt++) {
      if (uploadId) start.upload_id = uploadId;
      try {
        const ready = await this._request(start);
        uploadId = ready.upload_id;
        await this._sendChunks(uploadId, bytes, ready, onProgress);
        return await this._request({ type: "upload.finish", upload_id: uploadId });
      } catch (err) {
        if (err.code !== "disconnected" || this._closing || !this.reconnect || attempt >= 5) throw err;
        await this._ready;
      }
    }
  }

  async _sendChunks(uploadId, bytes, ready, onProgress) {
    const total = bytes.length;
    const chunk = Math.max(1, ready.chunk_size || 262144);
    let sent = ready.offset || 0;
    let acked = sent;
    const waiters = [];
    const inbox = [];
    this._uploads.set(uploadId, (frame) => {
      inbox.push(frame);
      waiters.splice(0).forEach((w) => w());
    });
    const next = () => new Promise((resolve, reject) => {
      const take = () => {
        clearTimeout(timer);
        resolve(inbox.shift());
      };
      const timer = setTimeout(() => reject(new HubError("disconnected", "no upload.ack in time")),
        this.requestTimeout);
      if (inbox.length) take();
      else waiters.push(take);
    });
    try {
      onProgress?.(acked, total);
      while (acked < total) {
        while (sent < total && sent - acked < chunk * this.uploadWindow) {
          if (!this.ws || this.state !== "open") throw new HubError("disconnected", "connection lost");
          this.ws.send(bytes.subarray(sent, Math.min(total, sent + chunk)));
          sent = Math.min(total, sent + chunk);
        }
        const frame = await next();
        if (frame.type === "disconnected") throw new HubError("disconnected", "connection lost");
        if (frame.type === "error") throw new HubError(frame.code, frame.message, frame);
        acked = Math.max(acked, frame.offset ?? acked);
        onProgress?.(acked, total);
      }
    } finally {
      this._uploads.delete(uploadId);
    }
  }

  // -- internals ---------------------------------------------------------------

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit("state", { type: "state", state });
  }

  _setReady(ready) {
    if (ready) {
      this._readyResolve?.();
      return;
    }
    this._ready = new Promise((resolve) => {
      this._readyResolve = resolve;
    });
  }

  _wsUrl() {
    const url = new URL(this.url, location.href);
    if (this.clientId) url.searchParams.set("client_id", this.clientId);
    if (this.token) url.searchParams.set("token", this.token);
    if (this.batch) url.searchParams.set("batch", "1");
    else url.searchParams.delete("batch");
    return url.toString();
  }

  async _fetchToken() {
    if (this.getToken) this.token = await this.getToken();
    return this.token;
  }

  async _open() {
    await this._fetchToken();
    return new Promise((resolve, reject) => {
      let welcomed = false;
      const ws = new WebSocket(this._wsUrl());
      ws.binaryType = "arraybuffer";
      const timer = setTimeout(() => {
        if (!welcomed) {
          ws.close();
          reject(new HubError("disconnected", "no welcome from the hub in time"));
        }
      }, this.requestTimeout);
      ws.onmessage = (event) => {
        if (typeof event.data !== "string") return;
        this._lastSeen = Date.now();
        // With `batch`, one text frame may carry several messages separated by LF
        // (the hub's JSON never holds a raw LF): each is handled as if it came alone.
        for (const text of this.batch ? event.data.split("\n") : [event.data]) {
          if (!text) continue;
          let frame;
          try {
            frame = JSON.parse(text);
          } catch (err) {
            console.warn("wirehub: dropped a message that is not JSON", err);
            continue;
          }
          if (!welcomed) {
            if (frame?.type !== "welcome") continue;
            welcomed = true;
            clearTimeout(timer);
            this.ws = ws;
            this.welcome = frame;
            this.clientId = frame.client_id;
            this._startWatchdog(frame.heartbeat);
            this._emit("connect", frame);
            resolve();
            continue;
          }
          if (frame && typeof frame === "object") this._dispatch(frame);
        }
      };
      ws.onclose = (event) => {
        clearTimeout(timer);
        if (!welcomed) {
          reject(new HubError("disconnected", `connection failed (${event.code})`));
          return;
        }
        if (this.ws === ws) this._lost(event.code, event.reason);
      };
    });
  }

  _startWatchdog(heartbeat) {
    clearInterval(this._watchdog);
    if (!heartbeat) return;
    // The hub pings a silent client every `heartbeat` s: hearing nothing for
    // much longer means the socket is dead even if the browser has not noticed.
    const limit = (heartbeat * 2 + 5) * 1000;
    this._watchdog = setInterval(() => {
      if (this.ws && Date.now() - this._lastSeen > limit) this.ws.close(4000, "heartbeat lost");
    }, Math.min(limit / 2, 5000));
  }

  _lost(code, reason) {
    this.ws = null;
    this.closeCode = code;
    this.closeReason = reason;
    clearInterval(this._watchdog);
    this._setReady(false);
    this._failPending(`connection closed (${code})`);
    this._emit("disconnect", { type: "disconnect", code, reason });
    if (code === REVOKED) {
      this.error = new HubError("revoked", `the hub revoked this client's token (${code} ${reason})`);
    } else if (code === TOKEN_EXPIRED && !this.getToken) {
      this.error = new HubError("expired", "the token expired and there is no getToken to renew it");
    }
    if (this.error) console.error(`wirehub: ${this.error.message}; not reconnecting`);
    if (this._closing || !this.reconnect || NO_RECONNECT_CODES.has(code) || this.error) {
      this._setState("closed");
      return;
    }
    this._setState("reconnecting");
    this._reconnectLoop(code === TOKEN_EXPIRED);
  }

  async _reconnectLoop(immediately = false) {
    const delays = backoff(this.backoffInitial, this.backoffCap);
    const windowMs = this._reconnectWindow;
    this._reconnectWindow = null;
    let first = true;
    while (!this._closing) {
      let delay = delays.next().value;
      // The hub said when to come back (spread over its window, never before it);
      // an expired token needs only a fresh one, not a backoff.
      if (first && windowMs) delay = windowMs[0] + Math.random() * (windowMs[1] - windowMs[0]);
      else if (first && immediately) delay = 0;
      first = false;
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, delay);
        this._wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this._wake = null;
      if (this._closing) return;
      try {
        await this._open();
      } catch {
        continue;
      }
      this.reconnects += 1;
      await this._rejoin();
      return;
    }
  }

  async _rejoin() {
    for (const [room, offset] of [...this._rooms]) {
      try {
        await this._join(room, offset, "missed", false);
      } catch (err) {
        if (err.code === "disconnected") return; // the next reconnect tries again
        console.warn(`wirehub: re-join of ${room} failed`, err);
        this._rooms.delete(room);
      }
    }
    this._setReady(true);
    this._setState("open");
    this._emit("reconnect", { type: "reconnect", rooms: this.rooms });
  }

  _failPending(why) {
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const p of pending) {
      clearTimeout(p.timer);
      p.reject(new HubError("disconnected", why));
    }
    for (const push of this._uploads.values()) push({ type: "disconnected" });
  }

  async _request(frame, hook = null, waitReady = true) {
    if (this._closing || this.state === "idle") {
      throw new HubError("disconnected", "client is not connected (call connect() first)");
    }
    if (waitReady && this.state !== "open") {
      if (this.state === "closed") throw new HubError("disconnected", "client is closed");
      let timer;
      const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new HubError("disconnected",
          `not reconnected in time; ${frame.type} not sent`)), this.requestTimeout);
      });
      try {
        await Promise.race([this._ready, timeout]);
      } finally {
        clearTimeout(timer);
      }
    }
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) throw new HubError("disconnected", "not connected");
    const ref = `j${++this._ref}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(ref);
        reject(new HubError("timeout", `no reply to ${frame.type} in time`));
      }, this.requestTimeout);
      this._pending.set(ref, { resolve, reject, hook, timer });
      ws.send(JSON.stringify({ ...frame, ref }));
    });
  }

  _dispatch(frame) {
    const kind = frame.type;
    if (kind === "ping") {
      this.ws?.send('{"type":"pong"}');
      return;
    }
    if (kind === "token.expiring") {
      if (this.getToken && !this._refreshing) {
        this._refreshing = this.refresh()
          .catch((err) => console.warn("wirehub: token refresh failed", err))
          .finally(() => { this._refreshing = null; });
      }
      this._emit(kind, frame);
      return;
    }
    if (kind === "reconnect") {
      // The hub is shutting down: come back after a random delay in its window.
      const w = frame.delay_ms;
      if (Array.isArray(w) && w.length === 2) this._reconnectWindow = [Math.max(0, w[0]), Math.max(w[0], w[1])];
      this._emit("shutdown", frame);
      return;
    }
    if (frame.ref !== undefined && this._pending.has(frame.ref)) {
      const p = this._pending.get(frame.ref);
      this._pending.delete(frame.ref);
      clearTimeout(p.timer);
      if (kind === "error") {
        p.reject(new HubError(frame.code, frame.message, frame));
        return;
      }
      p.hook?.(frame); // before any replayed message is dispatched
      p.resolve(frame);
      if (kind === "joined") this._emit("joined", frame);
      return;
    }
    if (kind === "message" && this._rooms.has(frame.room)) {
      if (frame.offset <= this._rooms.get(frame.room)) return; // seen before a reconnect
      this._rooms.set(frame.room, frame.offset);
      const replay = this._replays.get(frame.room);
      if (replay) {
        if (frame.offset <= replay.until) frame.replay = replay.kind;
        if (frame.offset >= replay.until) this._replays.delete(frame.room);
      }
    } else if (JOB_TYPES.has(kind)) {
      const job = this._jobs.get(frame.job_id);
      if (job) {
        job._feed(frame);
        if (job.done) this._jobs.delete(job.jobId);
      } else {
        this._orphans.push(frame);
        if (this._orphans.length > 256) this._orphans.shift();
      }
    } else if (kind === "upload.ack" || (kind === "error" && this._uploads.size)) {
      // A connection has one active upload: chunk errors carry no ref.
      let push = this._uploads.get(frame.upload_id);
      if (!push && kind === "error" && this._uploads.size === 1) push = [...this._uploads.values()][0];
      if (push) {
        push(frame);
        return;
      }
    }
    this._emit(kind, frame);
  }
}

/** `new HubClient(options)`, connected: `const hub = await connect({ getToken })`. */
export async function connect(options = {}) {
  return new HubClient(options).connect();
}

export default HubClient;
