// graphpush's JavaScript client: the REST API (/openapi.json) and the push channels
// (/asyncapi.yaml) for browsers and workers. One ES module, no build step, no dependencies;
// its connection logic is push.js (the same file the web canvas uses). Types: graphpush.d.ts.
//
//   import { Graphpush } from "./graphpush.js";
//   const client = new Graphpush({ baseUrl: location.origin });
//   const channel = client.connect();
//   const { execution_id } = await client.run("linear", { pushRef: channel.pushRef });
//   for await (const message of channel) if (message.type === "executionFinished") break;

import { PushConnection, followExecution, randomPushRef } from "./push.js";

export { PushConnection, closeReason, followExecution, randomPushRef } from "./push.js";

/** A non-2xx answer, with the `code`, `message` and `details` of its error body. */
export class GraphpushError extends Error {
  constructor(status, body) {
    super(body?.error?.message ?? `HTTP ${status}`);
    this.name = "GraphpushError";
    this.status = status;
    this.code = body?.error?.code ?? "http_error";
    this.details = body?.error?.details ?? null;
  }
}

/**
 * Messages as an async iterator: what is pushed before next() is asked for waits in order.
 * It is fed from its creation on; with `keep`, leaving a loop (break) keeps it, and the next
 * loop goes on from there, so nothing is missed between two loops.
 */
class Inbox {
  constructor(onDone, keep = false) {
    Object.assign(this, { items: [], waiting: [], done: false, onDone, keep });
  }

  push(value) {
    const waiter = this.waiting.shift();
    if (waiter) waiter({ value, done: false });
    else this.items.push(value);
  }

  end() {
    if (this.done) return;
    this.done = true;
    for (const waiter of this.waiting.splice(0)) waiter({ value: undefined, done: true });
    this.onDone(this);
  }

  next() {
    if (this.items.length) return Promise.resolve({ value: this.items.shift(), done: false });
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  return() {
    if (!this.keep) this.end();
    for (const waiter of this.waiting.splice(0)) waiter({ value: undefined, done: true });
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator]() {
    return this;
  }
}

/** Fans messages out to callbacks and to every open iterator. */
class Outlet {
  constructor(onMessage) {
    this.onMessage = onMessage ?? (() => {});
    this.inboxes = new Set();
  }

  deliver(message) {
    this.onMessage(message);
    for (const inbox of this.inboxes) inbox.push(message);
  }

  iterator(keep = false) {
    const inbox = new Inbox((done) => this.inboxes.delete(done), keep);
    this.inboxes.add(inbox);
    return inbox;
  }

  end() {
    for (const inbox of [...this.inboxes]) inbox.end();
  }
}

const enc = encodeURIComponent;

/** A refused or unanswered command, as a GraphpushError with no HTTP status (0). */
const replyError = (code, message) => new GraphpushError(0, { error: { code, message } });

/** The REST API, and the push channels opened from it. */
export class Graphpush {
  constructor({ baseUrl, token = "", fetch: fetchImpl } = {}) {
    this.baseUrl = new URL(baseUrl ?? globalThis.location.href);
    this.token = token;
    this.fetch = fetchImpl ?? globalThis.fetch.bind(globalThis);
  }

  /** One REST call: the decoded JSON answer (null for 204), or a GraphpushError. */
  async request(method, path, { body, query, headers = {} } = {}) {
    const url = new URL(path, this.baseUrl);
    for (const [name, value] of Object.entries(query ?? {})) {
      if (value !== undefined && value !== null) url.searchParams.set(name, String(value));
    }
    const sent = { Accept: "application/json", ...headers };
    if (this.token) sent.Authorization = `Bearer ${this.token}`;
    if (body !== undefined) sent["Content-Type"] = "application/json";
    const response = await this.fetch(url, {
      method,
      headers: sent,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    const data = text ? JSON.parse(text) : null;
    if (!response.ok) throw new GraphpushError(response.status, data);
    return data;
  }

  // ---- workflows ------------------------------------------------------------------------

  async workflows() {
    return (await this.request("GET", "/agents/workflows")).items;
  }

  workflow(workflowId) {
    return this.request("GET", `/agents/workflows/${enc(workflowId)}`);
  }

  createWorkflow(workflow) {
    return this.request("POST", "/agents/workflows", { body: workflow });
  }

  // ---- runs -----------------------------------------------------------------------------

  /** Queue a run; its push messages go to the channel of `pushRef`. Answers 202's body. */
  run(workflowId, { input, pushRef } = {}) {
    const body = { input, push_ref: pushRef };
    return this.request("POST", `/agents/workflows/${enc(workflowId)}/run`, { body });
  }

  execution(executionId, { includeData = false } = {}) {
    const query = includeData ? { include_data: "true" } : {};
    return this.request("GET", `/agents/executions/${enc(executionId)}`, { query });
  }

  executions({ workflowId, status, retryOf, limit, offset } = {}) {
    const query = { workflow_id: workflowId, status, retry_of: retryOf, limit, offset };
    return this.request("GET", "/agents/executions", { query });
  }

  /** The stored messages of a run after seq `after`: `{execution_id, items, last_seq}`. */
  events(executionId, { after = 0 } = {}) {
    return this.request("GET", `/agents/executions/${enc(executionId)}/events`, {
      query: { after },
    });
  }

  cancel(executionId) {
    return this.request("POST", `/agents/executions/${enc(executionId)}/cancel`);
  }

  resume(executionId, value) {
    return this.request("POST", `/agents/executions/${enc(executionId)}/resume`, {
      body: { value },
    });
  }

  /**
   * Run a finished run again as a new one, from `fromNode` (default: where it failed or
   * stopped), reusing the results of the nodes before it; `state` replaces some of those
   * results and `input` the run input. `workflow`: "original" (default) or "saved".
   */
  retry(executionId, { fromNode, workflow, state, input, pushRef } = {}) {
    const body = { from_node: fromNode, workflow, state, input, push_ref: pushRef };
    return this.request("POST", `/agents/executions/${enc(executionId)}/retry`, { body });
  }

  /** Cancel every new, running or waiting run of `workflowId` (or with one of `status`). */
  cancelExecutions({ workflowId, status }) {
    const body = { workflow_id: workflowId, status };
    return this.request("POST", "/agents/executions/cancel", { body });
  }

  // ---- push -----------------------------------------------------------------------------

  /** Open a push channel (a WebSocket, SSE when none can be had); see PushChannel. */
  connect(options = {}) {
    const channel = new PushChannel(this, options);
    channel.start();
    return channel;
  }

  /**
   * Follow one run over `/agents/executions/{id}/stream`: its snapshot, then its messages
   * after seq `after` (all when omitted), ending after `executionFinished`.
   */
  followExecution(executionId, { after, onMessage } = {}) {
    return new ExecutionFollower(this, executionId, { after, onMessage });
  }
}

/**
 * One run's stream, as an async iterator or as `onMessage`; close() stops it. Without
 * `onMessage`, the first loop gets every message from the start, however late it begins.
 */
export class ExecutionFollower {
  constructor(client, executionId, { after, onMessage }) {
    this.outlet = new Outlet(onMessage);
    this.first = onMessage ? null : this.outlet.iterator();
    this.stop = followExecution(executionId, {
      after,
      token: client.token,
      baseUrl: client.baseUrl.href,
      onMessage: (message) => {
        this.outlet.deliver(message);
        if (message.type === "executionFinished") this.outlet.end();
      },
    });
  }

  close() {
    this.stop();
    this.outlet.end();
  }

  [Symbol.asyncIterator]() {
    const first = this.first;
    this.first = null;
    return first ?? this.outlet.iterator();
  }
}

/**
 * One pushRef channel on `/agents/push`: every message of the runs started with its pushRef
 * and of the executions it subscribed to, in order, never twice, across reconnects.
 *
 * Options: `pushRef` (default: a new one), `transport` ("auto", "ws", "sse"), `lastEventId`
 * (resume after it), `wsRetryMs`; callbacks `onMessage(message)`, `onState(state)` and
 * `onClose(reason)` (why a connection ended, typed). Read it with `for await` or with
 * `onMessage`. Without `onMessage`, messages wait for a loop from the channel's creation on:
 * a run's first messages, which may come while `run()` is still answering, are not missed,
 * nor what comes between two loops (with `onMessage`, loops get what comes from the first
 * one on). The iteration ends when the channel goes offline for good (a final close, or
 * close()).
 */
export class PushChannel {
  constructor(client, options = {}) {
    const { pushRef, transport, lastEventId, wsRetryMs, onMessage, onState, onClose } = options;
    this.client = client;
    this.outlet = new Outlet(onMessage);
    this.onState = onState ?? (() => {});
    this.onClose = onClose ?? (() => {});
    this.pending = new Map(); // "command:executionId" -> {resolve, reject}
    this.followers = new Map(); // executionId -> stop, while on SSE
    // Every loop reads this one inbox; fed from now on unless onMessage reads the channel.
    this.inbox = onMessage ? null : this.outlet.iterator(true);
    this.state = null;
    this.connection = new PushConnection({
      pushRef: pushRef ?? randomPushRef(),
      transport,
      lastEventId,
      wsRetryMs,
      token: client.token,
      baseUrl: client.baseUrl.href,
      onMessage: (message) => this.receive(message),
      onState: (state) => this.changed(state),
    });
  }

  get pushRef() {
    return this.connection.pushRef;
  }

  /** The id of the last message received: reconnect (or reload) with it as `lastEventId`. */
  get lastEventId() {
    return this.connection.lastId;
  }

  start() {
    this.connection.start();
  }

  /** End the channel for good: its iterations end, and so do followed runs (on SSE). */
  close() {
    for (const stop of this.followers.values()) stop();
    this.followers.clear();
    this.connection.close();
  }

  /** One inbox for every loop over the channel: a loop after a `break` misses nothing. */
  [Symbol.asyncIterator]() {
    this.inbox ??= this.outlet.iterator(true);
    return this.inbox;
  }

  /**
   * Also receive the messages of `executionId`, the logged ones after seq `after` first
   * (`after: 0`: the whole run so far). Over WebSocket this is the `subscribe_execution`
   * command and resolves with its ack (a GraphpushError for an `error` reply); over SSE,
   * which carries no commands, the run's own stream is followed into this channel.
   */
  subscribeExecution(executionId, { after } = {}) {
    if (this.connection.transport === "sse") {
      this.followers.get(executionId)?.();
      const stop = followExecution(executionId, {
        after,
        token: this.client.token,
        baseUrl: this.client.baseUrl.href,
        onMessage: (message) => this.outlet.deliver(message),
      });
      this.followers.set(executionId, stop);
      return Promise.resolve({ command: "subscribe_execution", executionId });
    }
    const data = after === undefined ? { executionId } : { executionId, after };
    return this.command("subscribe_execution", data);
  }

  unsubscribeExecution(executionId) {
    const stop = this.followers.get(executionId);
    if (stop) {
      stop();
      this.followers.delete(executionId);
      return Promise.resolve({ command: "unsubscribe_execution", executionId });
    }
    return this.command("unsubscribe_execution", { executionId });
  }

  /** Send a command and wait for its reply; rejects when it cannot be sent now. */
  command(type, data) {
    const key = `${type}:${data.executionId}`;
    return new Promise((resolve, reject) => {
      if (!this.connection.send({ type, data })) {
        reject(replyError("not_connected", "no live WebSocket to send it on"));
        return;
      }
      this.pending.set(key, { resolve, reject });
    });
  }

  receive(message) {
    const { type, data } = message;
    const key = `${data?.command}:${data?.executionId}`;
    const waiter = (type === "ack" || type === "error") && this.pending.get(key);
    if (waiter) {
      this.pending.delete(key);
      if (type === "ack") waiter.resolve(data);
      else waiter.reject(replyError(data.code, data.message));
    }
    this.outlet.deliver(message);
  }

  changed(state) {
    const previous = this.state;
    this.state = state;
    this.onState(state);
    if (state.drop && state.drop !== previous?.drop) this.onClose(state.drop);
    if (state.state !== "live") this.failPending(state);
    if (state.state === "offline") this.outlet.end();
  }

  /** Commands in flight get no reply once their connection is gone. */
  failPending(state) {
    for (const { reject } of this.pending.values()) {
      reject(replyError("connection_closed", state.drop?.why ?? "the connection ended"));
    }
    this.pending.clear();
  }
}
