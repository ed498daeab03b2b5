// The push connection of graphpush (SPEC §5), for any page or worker: no DOM, no imports.
//
//   import { PushConnection, randomPushRef } from "/static/push.js";
//   const push = new PushConnection({ pushRef: randomPushRef(), onMessage, onState });
//   push.start();  // then POST a run with {"push_ref": push.pushRef}
//
// It prefers a WebSocket and falls back to SSE (EventSource) when a WebSocket cannot be had;
// while on that fallback it tries a WebSocket again now and then and moves back to it when
// one opens. It reconnects with backoff and resumes from the last message id, so nothing is
// lost or repeated across a drop (SPEC §5.4), and it says why every connection ended.

/**
 * What ended a connection, by WebSocket close code (app/push/connection.py CloseCode).
 * `final`: reconnecting cannot help, so the connection goes offline instead of retrying.
 */
const CLOSE_KINDS = new Map([
  [1000, { kind: "replaced", final: true }], // another connection took this pushRef
  [1001, { kind: "going_away", final: false }], // the server is shutting down
  [1008, { kind: "refused", final: true }], // cross-site Origin, bad pushRef, token expired or out of scope
  [1009, { kind: "too_big", final: false }], // a command frame over 64 KiB
  [1011, { kind: "server_error", final: false }], // e.g. a missed heartbeat
  [4008, { kind: "slow_consumer", final: false }], // the outbound buffer filled up
  [4401, { kind: "unauthorized", final: true }], // no valid API key
]);

/**
 * @typedef {object} CloseReason Why a connection ended.
 * @property {string} kind one of the CLOSE_KINDS names; "closed" for another close code
 *   (1006: the network dropped); for SSE, which has no codes, "stream_ended" (the browser
 *   resumes it) or "stream_refused"; "client_closed" after close().
 * @property {number|null} code the WebSocket close code
 * @property {string} reason the close frame's reason
 * @property {string} why a short account for people ("close 4008: slow consumer: ...")
 * @property {boolean} final reconnecting cannot help: the connection went offline
 */

/** @returns {CloseReason} */
export function closeReason(code, reason = "") {
  const known = CLOSE_KINDS.get(code) ?? { kind: "closed", final: false };
  return { ...known, code, reason, why: `close ${code}${reason ? `: ${reason}` : ""}` };
}

const notClose = (kind, final, why) => ({ kind, final, code: null, reason: "", why });
const STREAM_ENDED = notClose("stream_ended", false, "the event stream ended");
const STREAM_REFUSED = notClose("stream_refused", false, "event stream refused");
const CLIENT_CLOSED = notClose("client_closed", true, "closed by this client");

/** A new pushRef as n8n makes them: 10 lowercase alphanumerics. */
export function randomPushRef() {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  const bytes = crypto.getRandomValues(new Uint8Array(10));
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join("");
}

/** The delay before reconnect attempt `attempt` (1, 2, ...): doubling to 10 s, ±20 % jitter. */
function backoffMs(attempt) {
  const base = Math.min(10_000, 500 * 2 ** (attempt - 1));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

/**
 * @typedef {object} ConnectionState
 * @property {"connecting"|"live"|"reconnecting"|"offline"} state
 * @property {"websocket"|"sse"} transport
 * @property {number} attempt reconnect attempts since the last time it was live
 * @property {CloseReason|null} drop why the last connection ended (null until one did)
 * @property {number|null} retryInMs the wait before the current reconnect attempt
 * @property {CloseReason|null} fallback why the WebSocket was given up (while on SSE)
 */

/**
 * One pushRef channel on `/agents/push`.
 *
 * Options: `pushRef`; `transport` "auto" (WebSocket, SSE if a WebSocket never opens),
 * "ws" or "sse"; `token` (an API key or a scoped token from POST /agents/tokens, sent as
 * ?token=); `baseUrl` (default: the page's);
 * `wsRetryMs`, how long to stay on the SSE fallback before trying a WebSocket again
 * (doubling after each failed try, up to 8×).
 *
 * Callbacks: `onMessage(message)` once per message, in order, never twice for one id;
 * `onState(ConnectionState)` on every change.
 *
 * Call start() once; close() ends it for good.
 */
export class PushConnection {
  constructor({ pushRef, transport = "auto", token = "", baseUrl, wsRetryMs = 60_000, onMessage, onState }) {
    this.pushRef = pushRef;
    this.mode = transport;
    this.transport = transport === "sse" ? "sse" : "websocket";
    this.token = token;
    this.base = new URL(baseUrl ?? globalThis.location.href);
    this.wsRetryMs = wsRetryMs;
    this.onMessage = onMessage;
    this.onState = onState ?? (() => {});
    this.socket = null; // the WebSocket or EventSource messages are taken from
    this.timer = null; // the pending reconnect
    this.probe = null; // the pending or running WebSocket try while on the SSE fallback
    this.inbox = Promise.resolve(); // decoding, in arrival order
    Object.assign(this, { lastId: null, attempt: 0, probes: 0, live: false, everOpened: false });
    Object.assign(this, { fallback: null, drop: null, retryInMs: null, closed: false });
    this.onOnline = () => this.reconnectNow();
    globalThis.addEventListener?.("online", this.onOnline);
  }

  start() {
    this.transport === "sse" ? this.openSse() : this.openWebSocket();
  }

  /** Send a command (SPEC §5.1); false when it cannot go now (not live, or on SSE). */
  send(command) {
    if (this.transport !== "websocket" || !this.live) return false;
    this.socket.send(JSON.stringify(command));
    return true;
  }

  /** End the channel for good: no reconnect, no more messages. */
  close() {
    this.closed = true;
    clearTimeout(this.timer);
    this.stopProbe();
    globalThis.removeEventListener?.("online", this.onOnline);
    this.socket?.close();
    this.socket = null;
    this.drop = CLIENT_CLOSED;
    this.setState("offline");
  }

  url(protocol) {
    const url = new URL("/agents/push", this.base);
    url.protocol = protocol;
    url.searchParams.set("pushRef", this.pushRef);
    // Always ask for a resume, from 0 on the first connection: what a run sent to this
    // pushRef before the socket was up is then replayed instead of lost.
    url.searchParams.set("lastEventId", String(this.lastId ?? 0));
    if (this.token) url.searchParams.set("token", this.token);
    return url;
  }

  setState(state) {
    this.live = state === "live";
    const { transport, attempt, drop, retryInMs, fallback } = this;
    this.onState({ state, transport, attempt, drop, retryInMs, fallback });
  }

  /** A WebSocket whose messages go to receive() and whose close goes to onSocketClose(). */
  newWebSocket() {
    const socket = new WebSocket(this.url(this.base.protocol === "https:" ? "wss:" : "ws:"));
    socket.binaryType = "arraybuffer";
    socket.addEventListener("message", (event) => this.receive(event.data, null));
    socket.addEventListener("close", (event) => this.onSocketClose(socket, event));
    return socket;
  }

  openWebSocket() {
    this.setState(this.attempt ? "reconnecting" : "connecting");
    const socket = this.newWebSocket();
    this.socket = socket;
    socket.addEventListener("open", () => this.adopt(socket));
  }

  /** `socket` is open: it carries this pushRef from now on. */
  adopt(socket) {
    this.socket = socket;
    Object.assign(this, { transport: "websocket", everOpened: true, attempt: 0, retryInMs: null });
    this.setState("live");
  }

  onSocketClose(socket, event) {
    if (this.probe === socket) {
      this.probe = null;
      if (this.live && this.transport === "sse") this.scheduleProbe();
      return;
    }
    if (this.socket !== socket || this.closed) return;
    this.socket = null;
    const drop = closeReason(event.code, event.reason);
    if (!this.everOpened && this.mode === "auto") {
      this.transport = "sse";
      this.fallback = drop;
      this.openSse();
      return;
    }
    this.drop = drop;
    if (drop.final) this.setState("offline");
    else this.retryLater(drop);
  }

  openSse() {
    this.setState(this.attempt ? "reconnecting" : "connecting");
    const source = new EventSource(this.url(this.base.protocol));
    this.socket = source;
    source.addEventListener("open", () => {
      this.attempt = 0;
      this.retryInMs = null;
      this.setState("live");
      if (this.fallback && !this.probe) this.scheduleProbe();
    });
    source.addEventListener("message", (event) => {
      this.receive(event.data, event.lastEventId ? Number(event.lastEventId) : null);
    });
    source.addEventListener("error", () => {
      if (this.socket !== source) return;
      if (source.readyState === EventSource.CONNECTING) {
        // The stream ended; the browser reconnects by itself with Last-Event-ID.
        this.drop = STREAM_ENDED;
        this.setState("reconnecting");
        return;
      }
      source.close();
      this.socket = null;
      this.retryLater(STREAM_REFUSED);
    });
  }

  retryLater(drop) {
    this.stopProbe();
    this.attempt += 1;
    this.drop = drop;
    this.retryInMs = backoffMs(this.attempt);
    this.setState("reconnecting");
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.start(), this.retryInMs);
  }

  reconnectNow() {
    if (this.socket || !this.timer || this.closed) return;
    clearTimeout(this.timer);
    this.start();
  }

  // ---- back from the SSE fallback to a WebSocket ----------------------------------------

  scheduleProbe() {
    const delay = this.wsRetryMs * 2 ** Math.min(this.probes, 3);
    this.probe = setTimeout(() => this.tryWebSocket(), delay);
  }

  stopProbe() {
    if (this.probe instanceof WebSocket) this.probe.close();
    else clearTimeout(this.probe);
    this.probe = null;
  }

  /**
   * Open a WebSocket beside the live SSE stream. If it opens, the server has already moved
   * this pushRef to it (one connection per pushRef, SPEC §5.2) and replays from lastId, so
   * the EventSource is closed and the WebSocket takes over; if not, SSE carries on.
   */
  tryWebSocket() {
    this.probes += 1;
    const socket = this.newWebSocket();
    this.probe = socket;
    socket.addEventListener("open", () => {
      this.probe = null;
      this.socket?.close();
      Object.assign(this, { fallback: null, drop: null, probes: 0 });
      this.adopt(socket);
    });
  }

  // ---- messages ---------------------------------------------------------------------------

  /** Decode one frame in arrival order; binary WS frames (nodeExecuteAfterData) are JSON too. */
  receive(data, sseId) {
    this.inbox = this.inbox
      .then(async () => {
        const text =
          typeof data === "string"
            ? data
            : new TextDecoder().decode(data instanceof Blob ? await data.arrayBuffer() : data);
        const message = JSON.parse(text);
        // A WebSocket that took over from SSE replays what SSE may already have delivered.
        // (Only meta.id is checked: an SSE event without an id: line repeats the last one.)
        const fresh = message.meta?.id;
        if (fresh !== undefined && this.lastId !== null && fresh <= this.lastId) return;
        const id = fresh ?? sseId;
        if (id !== null) this.lastId = Math.max(this.lastId ?? 0, id);
        if (message.type === "resumeFailed") this.lastId = null;
        this.onMessage(message);
      })
      .catch((error) => console.error("bad push frame", error));
  }
}

/**
 * Follow one execution read-only over `/agents/executions/{id}/stream` (SSE, SPEC §5.4):
 * calls `onMessage` with its snapshot, then every message, until `executionFinished`.
 * Returns a function that stops following.
 */
export function followExecution(executionId, { onMessage, token = "", baseUrl } = {}) {
  const path = `/agents/executions/${encodeURIComponent(executionId)}/stream`;
  const url = new URL(path, baseUrl ?? globalThis.location?.href);
  if (token) url.searchParams.set("token", token);
  const source = new EventSource(url);
  source.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    onMessage(message);
    if (message.type === "executionFinished") source.close();
  });
  return () => source.close();
}
