// The reference client of the live protocol (docs/protocol.md): connect, resume, dedupe by seq,
// correlate replies by ref, and the HTTP API with the bearer token. No dependencies.

export function roomFromPath() {
  return decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
}

/** The token from the URL fragment (#token=...), remembered for this tab, or asked for. */
export function pageToken(room, { ask = true } = {}) {
  const key = `live-token:${room}`;
  const match = location.hash.match(/token=([^&]+)/);
  if (match) {
    sessionStorage.setItem(key, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  let token = sessionStorage.getItem(key);
  if (!token && ask) {
    token = (prompt("Paste your token (empty to watch anonymously)") || "").trim();
    if (token) sessionStorage.setItem(key, token);
  }
  return token || null;
}

/**
 * The overlay pages' `getToken` hook (docs/protocol.md, "Token refresh"). A fresh token comes
 * from `window.liveGetToken()` when the page defines it (a function returning a token or a
 * promise of one), else it is the latest token handed to the page: through its URL fragment
 * (`#token=...`, set again by the site that embeds it) or a `{type: "live-token", token}` message
 * posted to this window by that site's page.
 */
export function pageTokenSource(room) {
  const key = `live-token:${room}`;
  addEventListener("hashchange", () => pageToken(room, { ask: false }));
  addEventListener("message", (message) => {
    const data = message.data;
    if (message.source !== window.parent || data?.type !== "live-token") return;
    if (typeof data.token === "string" && data.token) sessionStorage.setItem(key, data.token);
  });
  return async () => {
    if (typeof window.liveGetToken === "function") return (await window.liveGetToken()) || null;
    return pageToken(room, { ask: false });
  };
}

export class ApiError extends Error {
  constructor(status, error, detail) {
    super(detail || error);
    this.status = status;
    this.error = error;
  }
}

export async function api(method, path, token, body, headers = {}) {
  const options = { method, headers: { ...headers } };
  if (token) options.headers.authorization = `Bearer ${token}`;
  if (body !== undefined) {
    options.headers["content-type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, data.error || "error", data.detail);
  return data;
}

const FATAL_CLOSES = new Set([4401, 4403, 4404]);
const UNAUTHORIZED = 4401;
const REFRESH_AT = 0.8; // share of the token's remaining life after which it is refreshed
const REFRESH_LEAD_MAX_S = 30; // ... but never earlier than this before it runs out
const REFRESH_RETRY_MS = 3000; // when no fresh token came, ask again after this (until exp)

/**
 * A room connection that keeps itself in step: on every (re)connect it asks to resume from the
 * last applied seq; the server answers with the missed events or a fresh snapshot.
 * Events: "status" {state, detail}, "welcome" (the frame), "snapshot" (the snapshot), "event"
 * (one room event), "direct" ({kind, data}: a message for this user only).
 * `now()` is the server's clock: synced to the snapshot's `server_time_ms`, then to a `ping`
 * after every welcome (half its round trip added), so countdowns end when the server's do.
 *
 * `getToken` (optional) returns a promise of a fresh token for the same user and room, or null:
 * it is called before the token runs out (the server says when, in `expires_in_s`) and after a
 * 4401 close; see docs/protocol.md, "Token refresh". One timer per client, whatever happens.
 */
export class LiveClient extends EventTarget {
  constructor(room, token, { getToken = null, connectParams = {} } = {}) {
    super();
    this.room = room;
    this.token = token;
    this.connectParams = connectParams; // more connect parameters, e.g. `share` (docs/protocol.md)
    this.getToken = getToken;
    this.refreshTimer = null;
    this.seq = 0;
    this.epoch = "";
    this.clockOffset = 0;
    this.pending = new Map();
    this.nextRef = 1;
    this.attempt = 0;
    this.ws = null;
    this.stopped = false;
  }

  now() {
    return Date.now() + this.clockOffset;
  }

  connect() {
    const params = new URLSearchParams(this.connectParams);
    if (this.token) params.set("token", this.token);
    if (this.epoch) {
      params.set("since", String(this.seq));
      params.set("epoch", this.epoch);
    }
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${scheme}//${location.host}/ws/rooms/${encodeURIComponent(this.room)}?${params}`;
    this.status(this.attempt ? "reconnecting" : "connecting");
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onmessage = (message) => this.receive(JSON.parse(message.data));
    ws.onclose = (close) => this.closed(ws, close);
  }

  async closed(ws, close) {
    if (ws !== this.ws) return;
    for (const { reject } of this.pending.values()) reject(new ApiError(0, "disconnected", "connection lost"));
    this.pending.clear();
    this.scheduleRefresh(null);
    if (this.stopped) return;
    const fresh = close.code === UNAUTHORIZED ? await this.freshToken() : null;
    if (fresh) this.token = fresh; // not final: reconnect (and resume) with the new token
    else if (FATAL_CLOSES.has(close.code)) {
      this.status("refused", close.reason || `closed (${close.code})`);
      return;
    }
    this.attempt += 1;
    const delay = Math.min(5000, 200 * 2 ** Math.min(this.attempt, 5)) * (0.5 + Math.random());
    this.status("reconnecting", `retrying in ${Math.round(delay / 100) / 10}s`);
    setTimeout(() => this.connect(), delay);
  }

  /** A token from `getToken` that differs from the current one, or null. */
  async freshToken() {
    if (!this.getToken) return null;
    try {
      const token = await this.getToken();
      return token && token !== this.token ? token : null;
    } catch {
      return null;
    }
  }

  /** (Re)arm the refresh for a token with `expiresInS` seconds left; null stops it. */
  scheduleRefresh(expiresInS) {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    if (!this.getToken || expiresInS == null) return;
    const endsAt = Date.now() + expiresInS * 1000;
    const lead = Math.min(REFRESH_LEAD_MAX_S, expiresInS * (1 - REFRESH_AT));
    this.refreshTimer = setTimeout(() => this.refresh(endsAt), (expiresInS - lead) * 1000);
  }

  /** Send a fresh token before the current one ends at `endsAt`; ask again until then. */
  async refresh(endsAt) {
    this.refreshTimer = null;
    const token = await this.freshToken();
    if (token) {
      try {
        const data = await this.send("auth", { token });
        this.token = token;
        this.scheduleRefresh(data.expires_in_s);
        return;
      } catch {
        // refused (another user, expired) or disconnected: ask again below while time is left
      }
    }
    if (this.refreshTimer === null && endsAt - Date.now() > REFRESH_RETRY_MS) {
      this.refreshTimer = setTimeout(() => this.refresh(endsAt), REFRESH_RETRY_MS);
    }
  }

  status(state, detail = "") {
    this.dispatchEvent(new CustomEvent("status", { detail: { state, detail } }));
  }

  receive(frame) {
    switch (frame.type) {
      case "welcome":
        this.attempt = 0;
        this.status(frame.resumed ? "resumed" : "live");
        this.scheduleRefresh(frame.expires_in_s);
        this.dispatchEvent(new CustomEvent("welcome", { detail: frame }));
        this.syncClock();
        break;
      case "snapshot": {
        const snapshot = frame.snapshot;
        this.seq = snapshot.seq;
        this.epoch = snapshot.epoch;
        this.clockOffset = snapshot.server_time_ms - Date.now();
        this.dispatchEvent(new CustomEvent("snapshot", { detail: snapshot }));
        break;
      }
      case "events":
        // The frame carries the log's epoch once (docs/protocol.md, Events); an empty snapshot
        // epoch (a room without events yet) takes the first frame's.
        if (!this.epoch) this.epoch = frame.epoch;
        if (frame.epoch !== this.epoch) break;
        for (const event of frame.events) {
          if (event.seq <= this.seq) continue;
          this.seq = event.seq;
          this.dispatchEvent(new CustomEvent("event", { detail: event }));
        }
        break;
      case "direct":
        this.dispatchEvent(new CustomEvent("direct", { detail: { kind: frame.kind, data: frame.data } }));
        break;
      case "reply":
      case "error": {
        const waiting = this.pending.get(frame.ref);
        if (!waiting) break;
        this.pending.delete(frame.ref);
        if (frame.ok) waiting.resolve(frame.data);
        else waiting.reject(new ApiError(0, frame.error, frame.detail));
        break;
      }
    }
  }

  /** Set `now()` to the server's clock by a ping (docs/protocol.md: `ping` answers `ts`). */
  async syncClock() {
    const sent = Date.now();
    try {
      const { ts } = await this.send("ping");
      const received = Date.now();
      this.clockOffset = ts + (received - sent) / 2 - received;
    } catch {
      // disconnected meanwhile: the next welcome syncs again
    }
  }

  /** Send a command; resolves with the reply's data or rejects with ApiError. */
  send(type, fields = {}) {
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
        reject(new ApiError(0, "disconnected", "not connected"));
        return;
      }
      const ref = String(this.nextRef++);
      this.pending.set(ref, { resolve, reject });
      setTimeout(() => {
        if (this.pending.delete(ref)) reject(new ApiError(0, "timeout", "no answer"));
      }, 10000);
      this.ws.send(JSON.stringify({ type, ref, ...fields }));
    });
  }
}

export function money(cents) {
  return (cents / 100).toLocaleString(undefined, { style: "currency", currency: "USD" });
}

export function countdown(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const minutes = Math.floor(total / 60);
  const seconds = String(total % 60).padStart(2, "0");
  return `${minutes}:${seconds}`;
}

export function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}
