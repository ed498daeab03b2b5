// graphpush web canvas: draws a workflow, runs it, and lights its nodes up from push
// messages (SPEC §4) received over WebSocket, or over SSE when a WebSocket cannot be had
// (SPEC §5). Plain ES module, no dependencies. Query flags: ?transport=ws|sse|auto,
// ?token=<API key>. The URL hash keeps the selected workflow (#wf=<id>).

const NODE_W = 184;
const NODE_H = 64;
const GAP_X = 240;
const GAP_Y = 120;
const ACTIVE = new Set(["new", "running", "waiting"]);
const LIFECYCLE = new Set([
  "executionStarted",
  "executionWaiting",
  "executionFinished",
  "executionRecovered",
]);
// Close codes after which reconnecting cannot help (app/push/connection.py): a cross-site
// Origin or bad pushRef, a missing API key. 1000 means another connection took this pushRef.
const FINAL_CLOSE = new Map([
  [1000, "replaced by a newer connection"],
  [1008, "refused by policy"],
  [4401, "API key needed"],
]);
const LOG_LIMIT = 200;
const SVG_NS = "http://www.w3.org/2000/svg";

// ---- small helpers ------------------------------------------------------------------------

const $ = (selector, root = document) => root.querySelector(selector);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function setAttrs(node, attrs) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
}

function randomPushRef() {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  const bytes = crypto.getRandomValues(new Uint8Array(10));
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join("");
}

function formatDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  const s = Math.floor(ms / 1000);
  return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
}

function formatTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  const sameDay = date.toDateString() === new Date().toDateString();
  return sameDay ? date.toLocaleTimeString() : date.toLocaleString();
}

function truncate(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function pretty(value, max = 6000) {
  return truncate(JSON.stringify(value, null, 2) ?? "undefined", max);
}

function parseJson(text) {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error) {
    return { ok: false, error: error.message };
  }
}

// ---- REST ---------------------------------------------------------------------------------

const query = new URLSearchParams(location.search);
let apiKey = query.get("token") || sessionStorage.getItem("graphpush-token") || "";

class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code;
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const error = new ApiError(response.status, data);
    if (response.status === 401) askForKey(error.message);
    throw error;
  }
  return data;
}

// ---- the push connection (SPEC §5) --------------------------------------------------------

/**
 * One pushRef channel. Prefers a WebSocket; if the WebSocket fails before it ever opens,
 * falls back to EventSource for the rest of the page. Reconnects with backoff and resumes
 * from the last message id (WS ?lastEventId=<meta.id>; SSE sends Last-Event-ID itself).
 * Calls onMessage(message) in order and onState({state, transport, detail, attempt}).
 */
class PushChannel {
  constructor({ pushRef, mode, onMessage, onState }) {
    this.pushRef = pushRef;
    this.mode = mode; // "auto" | "ws" | "sse"
    this.transport = mode === "sse" ? "sse" : "websocket";
    this.onMessage = onMessage;
    this.onState = onState;
    this.lastId = null;
    this.attempt = 0;
    this.socket = null;
    this.timer = null;
    this.inbox = Promise.resolve();
    this.live = false;
    this.everOpened = false;
    this.fallback = null; // why the WebSocket was given up for SSE
    this.lastDrop = null; // why the last connection ended (close code and reason)
    this.retryDetail = null;
    window.addEventListener("online", () => this.reconnectNow());
  }

  start() {
    this.transport === "sse" ? this.openSse() : this.openWebSocket();
  }

  send(command) {
    if (this.transport !== "websocket" || !this.live) return false;
    this.socket.send(JSON.stringify(command));
    return true;
  }

  url(protocol) {
    const url = new URL("/agents/push", location.href);
    url.protocol = protocol;
    url.searchParams.set("pushRef", this.pushRef);
    // Always ask for a resume, from 0 on the first connection: what a run sent to this
    // pushRef before the socket was up is then replayed instead of lost.
    url.searchParams.set("lastEventId", String(this.lastId ?? 0));
    if (apiKey) url.searchParams.set("token", apiKey);
    return url;
  }

  setState(state, detail = "") {
    this.live = state === "live";
    this.onState({ state, transport: this.transport, detail, attempt: this.attempt });
  }

  openWebSocket() {
    this.setState(this.attempt ? "reconnecting" : "connecting", this.retryDetail ?? "");
    const socket = new WebSocket(this.url(location.protocol === "https:" ? "wss:" : "ws:"));
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    this.retryDetail = null;
    let opened = false;
    socket.addEventListener("open", () => {
      opened = true;
      this.everOpened = true;
      this.attempt = 0;
      this.setState("live", this.lastDrop ? `resumed after ${this.lastDrop}` : "");
    });
    socket.addEventListener("message", (event) => this.receive(event.data, null));
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.onWebSocketClose(event, opened);
    });
  }

  onWebSocketClose(event, opened) {
    const why = `close ${event.code}${event.reason ? `: ${event.reason}` : ""}`;
    if (!opened && !this.everOpened && this.mode === "auto") {
      this.transport = "sse";
      this.fallback = `WebSocket failed (${why}), using SSE`;
      this.openSse();
      return;
    }
    const final = FINAL_CLOSE.get(event.code);
    if (final) {
      this.setState("offline", `${final} (${why})`);
      if (event.code === 4401) askForKey(event.reason || "an API key is required");
      return;
    }
    this.retryLater(why);
  }

  openSse() {
    this.setState(this.attempt ? "reconnecting" : "connecting", this.retryDetail ?? this.fallback);
    const source = new EventSource(this.url(location.protocol));
    this.socket = source;
    source.addEventListener("open", () => {
      this.attempt = 0;
      this.retryDetail = null;
      const resumed = this.lastDrop ? `resumed after ${this.lastDrop}` : "";
      this.setState("live", [this.fallback, resumed].filter(Boolean).join("; "));
    });
    source.addEventListener("message", (event) => {
      this.receive(event.data, event.lastEventId ? Number(event.lastEventId) : null);
    });
    source.addEventListener("error", () => {
      if (this.socket !== source) return;
      if (source.readyState === EventSource.CONNECTING) {
        // The stream ended; the browser reconnects by itself with Last-Event-ID.
        this.lastDrop = "the event stream ended";
        this.setState("reconnecting", "event stream ended; the browser resumes it");
        return;
      }
      source.close();
      this.socket = null;
      this.retryLater("event stream refused");
    });
  }

  retryLater(why) {
    this.attempt += 1;
    const base = Math.min(10_000, 500 * 2 ** (this.attempt - 1));
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this.lastDrop = why;
    this.retryDetail = `${why}; retrying in ${formatDuration(delay)}`;
    this.setState("reconnecting", this.retryDetail);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.start(), delay);
  }

  reconnectNow() {
    if (this.socket || !this.timer) return;
    clearTimeout(this.timer);
    this.start();
  }

  /** Decode one frame; binary WS frames (nodeExecuteAfterData) are JSON text too. */
  receive(data, sseId) {
    this.inbox = this.inbox
      .then(async () => {
        const text =
          typeof data === "string"
            ? data
            : new TextDecoder().decode(data instanceof Blob ? await data.arrayBuffer() : data);
        const message = JSON.parse(text);
        const id = message.meta?.id ?? sseId;
        if (message.meta?.id !== undefined && this.lastId !== null && id <= this.lastId) return;
        if (id !== null && id !== undefined) this.lastId = Math.max(this.lastId ?? 0, id);
        if (message.type === "resumeFailed") this.lastId = null;
        this.onMessage(message);
      })
      .catch((error) => console.error("bad push frame", error));
  }
}

/** A read-only follower of one execution over /agents/executions/{id}/stream (SSE). */
function watchExecution(executionId, onMessage) {
  const url = new URL(`/agents/executions/${encodeURIComponent(executionId)}/stream`, location.href);
  if (apiKey) url.searchParams.set("token", apiKey);
  const source = new EventSource(url);
  source.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    onMessage(message);
    if (message.type === "executionFinished") source.close();
  });
  return () => source.close();
}

// ---- graph layout -------------------------------------------------------------------------

function targetsOf(workflow, name) {
  const outputs = workflow.connections?.[name]?.main ?? [];
  return outputs.flatMap((targets, output) => (targets ?? []).map((t) => ({ to: t.node, output })));
}

function edgesOf(workflow) {
  return workflow.nodes.flatMap((node) =>
    targetsOf(workflow, node.name).map((t) => ({ from: node.name, to: t.to, output: t.output })),
  );
}

/** Node positions: the workflow's own when every node has one, else layers by depth. */
function layout(workflow) {
  const nodes = workflow.nodes;
  if (nodes.every((n) => Array.isArray(n.position))) {
    return new Map(nodes.map((n) => [n.name, { x: n.position[0], y: n.position[1] }]));
  }
  const incoming = new Set(edgesOf(workflow).map((e) => e.to));
  const depth = new Map();
  const queue = nodes.filter((n) => !incoming.has(n.name)).map((n) => n.name);
  queue.forEach((name) => depth.set(name, 0));
  for (let i = 0; i < queue.length; i += 1) {
    for (const { to } of targetsOf(workflow, queue[i])) {
      if (depth.has(to) || !nodes.some((n) => n.name === to)) continue;
      depth.set(to, depth.get(queue[i]) + 1);
      queue.push(to);
    }
  }
  const layers = new Map();
  for (const node of nodes) {
    const d = depth.get(node.name) ?? 0;
    layers.set(d, [...(layers.get(d) ?? []), node.name]);
  }
  const positions = new Map();
  for (const [d, names] of layers) {
    names.forEach((name, i) => {
      positions.set(name, { x: d * GAP_X, y: (i - (names.length - 1) / 2) * GAP_Y });
    });
  }
  return positions;
}

function describeNode(node) {
  const p = node.parameters ?? {};
  switch (node.type) {
    case "delay":
      return `delay · ${formatDuration(p.ms)}`;
    case "set":
      return `set · ${Object.keys(p.values ?? {}).join(", ") || "nothing"}`;
    case "if":
      return `if · ${p.field} ${p.op} ${p.value ?? ""}`.trim();
    case "python":
      return `python · ${String(p.function ?? "").split(":").pop()}`;
    case "wait":
      return "wait · until resumed";
    case "fail":
      return "fail · raises";
    default:
      return node.type;
  }
}

function outputLabel(node, output) {
  if (node?.type === "if") return output === 0 ? "true" : "false";
  if (node?.type === "switch") return String(output);
  return null;
}

// ---- the page state -----------------------------------------------------------------------

const state = {
  pushRef: randomPushRef(),
  workflows: [],
  workflow: null, // the selected workflow
  runs: new Map(), // execution id -> run (from push messages and REST)
  followId: null, // the execution drawn on the canvas
  selectedNode: null,
  history: [],
  runsRequested: 0, // POST .../run requests not answered yet
  inputs: new Map(), // workflow id -> input text typed by the user
  stopWatching: null,
  historyTimer: null,
};

function runOf(executionId) {
  let run = state.runs.get(executionId);
  if (!run) {
    run = {
      id: executionId,
      workflowId: null,
      status: "new",
      graphState: { nodes: {}, errors: [] },
      outputs: {},
      nodeErrors: {},
      startedAt: null,
      stoppedAt: null,
      durationMs: null,
    };
    state.runs.set(executionId, run);
  }
  return run;
}

function runFromDto(dto) {
  const run = runOf(dto.execution_id);
  Object.assign(run, {
    workflowId: dto.workflow_id,
    status: dto.status,
    graphState: dto.graph_state ?? run.graphState,
    startedAt: dto.started_at ? Date.parse(dto.started_at) : run.startedAt,
    stoppedAt: dto.stopped_at ? Date.parse(dto.stopped_at) : null,
    durationMs: dto.duration_ms,
    pushRef: dto.push_ref,
  });
  for (const [name, runs] of Object.entries(dto.data ?? {})) {
    if (runs.length) run.outputs[name] = runs.at(-1);
  }
  for (const error of dto.graph_state?.errors ?? []) {
    if (error.node) run.nodeErrors[error.node] = error.message;
  }
  return run;
}

function setNodeStatus(run, name, patch) {
  const nodes = run.graphState.nodes ?? (run.graphState.nodes = {});
  nodes[name] = { ...(nodes[name] ?? { runs: 0 }), ...patch };
}

/** Fold one execution message into its run. graph_state, when present, is authoritative. */
function applyToRun(message) {
  const data = message.data ?? {};
  const run = runOf(data.executionId);
  const task = data.data ?? {};
  switch (message.type) {
    case "executionStarted":
      Object.assign(run, { status: "running", workflowId: data.workflowId });
      run.startedAt = Date.parse(data.startedAt) || Date.now();
      break;
    case "nodeExecuteBefore":
      if (run.status === "new" || run.status === "waiting") run.status = "running";
      setNodeStatus(run, data.nodeName, { status: "running" });
      break;
    case "nodeExecuteAfter":
    case "nodeExecuteAfterData":
      setNodeStatus(run, data.nodeName, {
        status: task.executionStatus,
        execution_time_ms: task.executionTime,
      });
      if (task.error) run.nodeErrors[data.nodeName] = task.error.message;
      if (task.data) run.outputs[data.nodeName] = task.data;
      break;
    case "executionWaiting":
      run.status = "waiting";
      break;
    case "executionFinished":
      Object.assign(run, { status: data.status, workflowId: data.workflowId });
      run.stoppedAt = Date.now(); // until REST gives the stored duration (loadHistory)
      break;
    case "executionSnapshot":
      run.status = data.status;
      break;
    default:
      break;
  }
  if (data.graph_state) run.graphState = data.graph_state;
  return run;
}

// ---- push message handling ----------------------------------------------------------------

function onPush(message) {
  logMessage(message);
  const data = message.data ?? {};
  if (message.type === "resumeFailed") {
    // The server's buffer no longer covers the gap: REST has the truth (SPEC §5.4).
    refetchFollowed();
    scheduleHistory();
    return;
  }
  if (!data.executionId || ["ack", "error", "pong"].includes(message.type)) return;
  const run = applyToRun(message);
  // A fast run can start (even finish) before its POST answers: follow it from its first message.
  const ours = state.runsRequested > 0 && run.workflowId === state.workflow?.id;
  if (message.type === "executionStarted" && ours && state.followId !== run.id) follow(run.id);
  if (run.id === state.followId) paint();
  if (message.type === "executionRecovered" && run.id === state.followId) refetchFollowed();
  if (LIFECYCLE.has(message.type) && (!run.workflowId || run.workflowId === state.workflow?.id)) {
    scheduleHistory();
  }
}

async function refetchFollowed() {
  if (!state.followId) return;
  try {
    runFromDto(await api("GET", `/agents/executions/${state.followId}?include_data=true`));
    paint();
  } catch (error) {
    showBanner(`Could not refetch the run: ${error.message}`);
  }
}

function onConnectionState({ state: connState, transport, detail, attempt }) {
  const box = $('[data-testid="connection-status"]');
  box.dataset.state = connState;
  box.dataset.transport = transport;
  box.dataset.attempt = String(attempt);
  const name = transport === "sse" ? "SSE" : "WebSocket";
  const labels = {
    connecting: `Connecting over ${name}…`,
    live: `Live over ${name}`,
    reconnecting: `Reconnecting over ${name}…`,
    offline: "Disconnected",
  };
  $('[data-testid="connection-label"]').textContent = labels[connState] ?? connState;
  const detailEl = $('[data-testid="connection-detail"]');
  detailEl.textContent = detail || "";
  detailEl.title = detail || "";
  if (connState !== "live") startPolling();
}

// While the push channel is down, poll the followed run so the page never lies for long.
let pollTimer = null;
function startPolling() {
  if (pollTimer) return;
  pollTimer = setInterval(() => {
    const run = state.runs.get(state.followId);
    if (channel.live || !run || !ACTIVE.has(run.status)) {
      clearInterval(pollTimer);
      pollTimer = null;
      return;
    }
    refetchFollowed();
  }, 2000);
}

// ---- rendering: the graph -----------------------------------------------------------------

const STATUS_TEXT = {
  idle: "not run",
  pending: "pending",
  running: "running",
  success: "success",
  error: "error",
  waiting: "waiting",
  canceled: "canceled",
};

// Run statuses are n8n's; "new" reads better as what it means.
const RUN_TEXT = { new: "queued", crashed: "crashed (process died)" };

function statusGlyph(status) {
  const g = svg("g", { class: "node-glyph", transform: `translate(${NODE_W - 26}, 22)` });
  g.append(svg("circle", { class: "glyph-ring", cx: 10, cy: 10, r: 9 }));
  const paths = {
    success: "M5.5 10.5l3 3 6-6.5",
    error: "M6.5 6.5l7 7M13.5 6.5l-7 7",
    waiting: "M7.5 6v8M12.5 6v8",
    canceled: "M5.5 14.5l9-9",
  };
  if (status === "running") g.append(svg("path", { class: "glyph-spin", d: "M10 1a9 9 0 0 1 9 9" }));
  if (paths[status]) g.append(svg("path", { class: "glyph-mark", d: paths[status] }));
  return g;
}

function drawGraph() {
  const graph = $('[data-testid="graph"]');
  graph.replaceChildren();
  const workflow = state.workflow;
  $('[data-testid="canvas-empty"]').hidden = Boolean(workflow);
  if (!workflow) return;
  const positions = layout(workflow);
  const byName = new Map(workflow.nodes.map((n) => [n.name, n]));
  const defs = svg(
    "defs",
    {},
    svg("clipPath", { id: "node-clip" }, svg("rect", { width: NODE_W, height: NODE_H, rx: 10 })),
    svg(
      "marker",
      { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" },
      svg("path", { d: "M0 1L9 5L0 9z", class: "arrow-head" }),
    ),
  );
  const edges = svg("g", { class: "edges" });
  for (const edge of edgesOf(workflow)) {
    const a = positions.get(edge.from);
    const b = positions.get(edge.to);
    if (!a || !b) continue;
    const [x1, y1, x2, y2] = [a.x + NODE_W, a.y + NODE_H / 2, b.x - 2, b.y + NODE_H / 2];
    const bend = Math.max(48, Math.abs(x2 - x1) / 2);
    const group = svg("g", { class: "edge", "data-from": edge.from, "data-to": edge.to });
    group.append(
      svg("path", {
        d: `M${x1} ${y1} C${x1 + bend} ${y1}, ${x2 - bend} ${y2}, ${x2} ${y2}`,
        "marker-end": "url(#arrow)",
      }),
    );
    const label = outputLabel(byName.get(edge.from), edge.output);
    if (label) {
      // Beside the arrow, where every edge runs level whatever its bend.
      const attrs = { class: "edge-label", x: x2 - 8, y: y2 - 7, "text-anchor": "end", text: label };
      group.append(svg("text", attrs));
    }
    edges.append(group);
  }
  const nodes = svg("g", { class: "nodes" });
  for (const node of workflow.nodes) nodes.append(drawNode(node, positions.get(node.name)));
  graph.append(defs, edges, nodes);
  fitView(graph, [...positions.values()]);
  graph.setAttribute("aria-label", `Graph of ${workflow.name}: ${workflow.nodes.length} nodes`);
}

function drawNode(node, pos) {
  const name = truncate(node.name, 20);
  const group = svg("g", {
    class: "node",
    "data-testid": "node",
    "data-node-name": node.name,
    "data-node-type": node.type,
    "data-status": "idle",
    transform: `translate(${pos.x}, ${pos.y})`,
    tabindex: 0,
    role: "button",
    "aria-label": `${node.name} (${node.type})`,
    onclick: () => selectNode(node.name),
    onkeydown: (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        selectNode(node.name);
      }
    },
  });
  group.append(
    svg("title", { text: `${node.name} · ${node.type}` }),
    svg("rect", { class: "node-box", width: NODE_W, height: NODE_H, rx: 10 }),
    svg("rect", { class: "node-stripe", width: 6, height: NODE_H, "clip-path": "url(#node-clip)" }),
    svg("text", { class: "node-name", x: 18, y: 27, text: name }),
    svg("text", { class: "node-type", x: 18, y: 47, text: truncate(describeNode(node), 20) }),
    svg("g", { class: "node-glyph-slot" }),
    svg("text", { class: "node-meta", x: 2, y: NODE_H + 18 }),
  );
  return group;
}

function fitView(graph, points) {
  const pad = 48;
  const xs = points.map((p) => p.x);
  const ys = points.map((p) => p.y);
  let [minX, minY] = [Math.min(...xs) - pad, Math.min(...ys) - pad];
  let width = Math.max(...xs) + NODE_W + pad - minX;
  let height = Math.max(...ys) + NODE_H + pad + 20 - minY;
  // A small graph is shown at a readable size, centred, instead of blown up.
  const [minW, minH] = [760, 280];
  if (width < minW) [minX, width] = [minX - (minW - width) / 2, minW];
  if (height < minH) [minY, height] = [minY - (minH - height) / 2, minH];
  graph.setAttribute("viewBox", `${minX} ${minY} ${width} ${height}`);
  graph.setAttribute("preserveAspectRatio", "xMidYMid meet");
}

/** Paint the followed run's node statuses (or idle nodes when no run is followed). */
function paint() {
  const run = state.runs.get(state.followId);
  const nodes = run?.graphState?.nodes ?? {};
  for (const group of document.querySelectorAll('[data-testid="node"]')) {
    const name = group.dataset.nodeName;
    const info = nodes[name];
    const status = run ? (info?.status ?? "pending") : "idle";
    const changed = group.dataset.status !== status;
    group.dataset.status = status;
    if (changed) $(".node-glyph-slot", group).replaceChildren(statusGlyph(status));
    const error = run?.nodeErrors[name];
    const time = info?.execution_time_ms;
    const meta =
      status === "error" && error
        ? truncate(error, 30)
        : time !== undefined && status !== "running"
          ? `${STATUS_TEXT[status]} · ${formatDuration(time)}`
          : STATUS_TEXT[status];
    $(".node-meta", group).textContent = run ? meta : "";
    group.setAttribute("aria-label", `${name} (${group.dataset.nodeType}): ${STATUS_TEXT[status]}`);
  }
  for (const edge of document.querySelectorAll(".edge")) {
    const from = nodes[edge.dataset.from]?.status;
    const to = nodes[edge.dataset.to]?.status;
    const reached = run && from === "success" && to && to !== "pending";
    edge.dataset.flow = reached ? (to === "running" ? "active" : "done") : "";
  }
  paintRunStatus(run);
  renderNodeDetails();
  markHistorySelection();
}

function paintRunStatus(run) {
  const box = $('[data-testid="run-status"]');
  box.dataset.status = run ? run.status : "idle";
  box.dataset.executionId = run?.id ?? "";
  $('[data-testid="run-status-badge"]').textContent = run ? RUN_TEXT[run.status] ?? run.status : "No run";
  $('[data-testid="run-id"]').textContent = run ? `#${run.id}` : "";
  updateElapsed();
  const active = Boolean(run && ACTIVE.has(run.status));
  $('[data-testid="cancel-button"]').disabled = !active;
  const waiting = run?.status === "waiting";
  $('[data-testid="waiting-panel"]').hidden = !waiting;
  $('[data-testid="resume-button"]').disabled = !waiting;
  if (waiting) {
    const node = Object.entries(run.graphState.nodes ?? {}).find(([, n]) => n.status === "waiting");
    $(".waiting-text").textContent = node
      ? `“${node[0]}” paused the run. Resume it with a JSON value; the next nodes get it.`
      : "The run paused at a wait node. Resume it with a JSON value.";
  }
}

function updateElapsed() {
  const run = state.runs.get(state.followId);
  const target = $('[data-testid="run-elapsed"]');
  if (!run || !run.startedAt) {
    target.textContent = "";
    return;
  }
  const end = ACTIVE.has(run.status) ? Date.now() : (run.stoppedAt ?? Date.now());
  const ms = !ACTIVE.has(run.status) && run.durationMs != null ? run.durationMs : end - run.startedAt;
  target.textContent = formatDuration(Math.max(0, ms));
}

// ---- rendering: inspector, activity, history ----------------------------------------------

function selectNode(name) {
  state.selectedNode = name;
  for (const group of document.querySelectorAll('[data-testid="node"]')) {
    group.classList.toggle("selected", group.dataset.nodeName === name);
  }
  renderNodeDetails();
}

function renderNodeDetails() {
  const box = $('[data-testid="node-details"]');
  const node = state.workflow?.nodes.find((n) => n.name === state.selectedNode);
  if (!node) {
    box.replaceChildren(el("p", { class: "muted", text: "Select a node to see its parameters and output." }));
    return;
  }
  const run = state.runs.get(state.followId);
  const info = run?.graphState?.nodes?.[node.name];
  const status = run ? (info?.status ?? "pending") : "idle";
  const rows = el(
    "dl",
    { class: "facts" },
    el("dt", { text: "Type" }),
    el("dd", { text: node.type }),
    el("dt", { text: "Status" }),
    el("dd", {}, el("span", { class: "status-badge", "data-status": status, text: STATUS_TEXT[status] })),
    el("dt", { text: "Time" }),
    el("dd", { text: info?.execution_time_ms !== undefined ? formatDuration(info.execution_time_ms) : "—" }),
  );
  const parts = [el("h3", { class: "node-title", text: node.name }), rows];
  const error = run?.nodeErrors[node.name];
  if (error) parts.push(el("p", { class: "node-error", text: error }));
  parts.push(
    el("h4", { text: "Parameters" }),
    el("pre", { class: "json", text: pretty(node.parameters ?? {}) }),
  );
  const output = run?.outputs[node.name];
  if (output) {
    const items = (output.main ?? []).map((branch) => (branch ?? []).map((item) => item.json));
    const shown = items.length === 1 ? items[0] : items;
    parts.push(
      el("h4", { text: "Output" }),
      el("pre", { class: "json", "data-testid": "node-output", text: pretty(shown) }),
    );
  }
  box.replaceChildren(...parts);
}

const OUTCOME_GLYPH = { success: "✓", error: "✗", waiting: "‖", canceled: "⊘" };

function logMessage(message) {
  const list = $('[data-testid="activity-log"]');
  const data = message.data ?? {};
  const detail =
    data.nodeName ??
    data.status ??
    data.code ??
    (message.type === "resumeFailed" ? `after #${data.lastEventId}: refetching over REST` : "");
  const outcome = data.data?.executionStatus;
  const item = el(
    "li",
    { "data-type": message.type, "data-status": outcome ?? data.status ?? "" },
    el("span", { class: "log-id", text: message.meta?.id !== undefined ? `#${message.meta.id}` : "" }),
    el("span", { class: "log-type", text: message.type }),
    el(
      "span",
      { class: "log-detail", title: [detail, outcome].filter(Boolean).join(": ") },
      detail,
      outcome
        ? el("span", { class: "log-outcome", "aria-label": outcome, text: OUTCOME_GLYPH[outcome] ?? outcome })
        : null,
    ),
  );
  list.prepend(item);
  while (list.children.length > LOG_LIMIT) list.lastElementChild.remove();
}

function scheduleHistory() {
  clearTimeout(state.historyTimer);
  state.historyTimer = setTimeout(loadHistory, 200);
}

async function loadHistory() {
  const workflow = state.workflow;
  if (!workflow) return;
  try {
    const page = await api("GET", `/agents/workflows/${encodeURIComponent(workflow.id)}/executions?limit=20`);
    if (state.workflow !== workflow) return;
    state.history = page.items;
    for (const dto of page.items) {
      const run = state.runs.get(dto.execution_id);
      if (run && !ACTIVE.has(dto.status)) run.durationMs = dto.duration_ms;
    }
    updateElapsed();
    renderHistory(page);
  } catch (error) {
    showBanner(`Could not load the runs: ${error.message}`);
  }
}

function renderHistory(page) {
  const body = $('[data-testid="history-body"]');
  const count = page.total > page.items.length ? `latest ${page.items.length} of ${page.total}` : page.total;
  $('[data-testid="history-count"]').textContent = String(count);
  if (!page.items.length) {
    const empty = el("td", { colspan: 5, class: "muted empty", text: "No runs yet. Press Run." });
    body.replaceChildren(el("tr", {}, empty));
    return;
  }
  body.replaceChildren(
    ...page.items.map((dto) => {
      const summary = dto.summary ?? {};
      const id = dto.execution_id;
      const open = el("button", {
        type: "button",
        class: "link",
        text: `#${id.slice(-8)}`,
        title: id,
        "aria-label": `Open run ${id}`,
      });
      const status = dto.status;
      const badge = { class: "status-badge", "data-status": status, text: RUN_TEXT[status] ?? status };
      return el(
        "tr",
        { "data-testid": "history-row", "data-execution-id": id, "data-status": status, onclick: () => openRun(id) },
        el("td", {}, open),
        el("td", {}, el("span", badge)),
        el("td", { title: dto.started_at ?? "", text: formatTime(dto.started_at ?? dto.created_at) }),
        el("td", { text: ACTIVE.has(dto.status) ? "…" : formatDuration(dto.duration_ms) }),
        el("td", { text: summary.nodes_total ? `${summary.nodes_completed}/${summary.nodes_total}` : "—" }),
      );
    }),
  );
  markHistorySelection();
}

function markHistorySelection() {
  for (const row of document.querySelectorAll('[data-testid="history-row"]')) {
    const selected = row.dataset.executionId === state.followId;
    row.classList.toggle("selected", selected);
    if (selected) row.setAttribute("aria-current", "true");
    else row.removeAttribute("aria-current");
  }
}

// ---- actions ------------------------------------------------------------------------------

function follow(executionId) {
  state.stopWatching?.();
  state.stopWatching = null;
  state.followId = executionId;
  paint();
}

/** Open a past (or running) run: paint its stored graph_state, and follow it live if active. */
async function openRun(executionId) {
  try {
    const run = runFromDto(await api("GET", `/agents/executions/${executionId}?include_data=true`));
    follow(executionId);
    if (ACTIVE.has(run.status) && run.pushRef !== state.pushRef) watch(executionId);
  } catch (error) {
    showBanner(`Could not open the run: ${error.message}`);
  }
}

function watch(executionId) {
  // Over WebSocket, subscribe on the page's own channel; over SSE, follow the execution stream.
  if (channel.send({ type: "subscribe_execution", data: { executionId, after: 0 } })) {
    state.stopWatching = () => channel.send({ type: "unsubscribe_execution", data: { executionId } });
  } else {
    state.stopWatching = watchExecution(executionId, onPush);
  }
}

function readInput() {
  const parsed = parseJson($('[data-testid="input-editor"]').value);
  if (!parsed.ok) return { error: `Not JSON: ${parsed.error}` };
  const value = parsed.value;
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return { error: "The input must be a JSON object." };
  }
  return { value };
}

function validateInput() {
  const { error } = readInput();
  const editor = $('[data-testid="input-editor"]');
  editor.setAttribute("aria-invalid", error ? "true" : "false");
  $('[data-testid="input-error"]').textContent = error ?? "";
  $('[data-testid="run-button"]').disabled = Boolean(error) || !state.workflow;
  return !error;
}

async function runWorkflow() {
  if (!state.workflow || !validateInput()) return;
  const button = $('[data-testid="run-button"]');
  button.disabled = true;
  state.runsRequested += 1;
  try {
    const accepted = await api("POST", `/agents/workflows/${encodeURIComponent(state.workflow.id)}/run`, {
      input: readInput().value,
      push_ref: state.pushRef,
    });
    const run = runOf(accepted.execution_id);
    run.workflowId = state.workflow.id;
    run.pushRef = state.pushRef;
    if (state.followId !== run.id) follow(run.id);
    scheduleHistory();
  } catch (error) {
    showBanner(`Could not start the run: ${error.message}`);
  } finally {
    state.runsRequested -= 1;
    validateInput();
  }
}

async function cancelRun() {
  const id = state.followId;
  if (!id) return;
  $('[data-testid="cancel-button"]').disabled = true;
  try {
    await api("POST", `/agents/executions/${id}/cancel`);
  } catch (error) {
    showBanner(error.status === 409 ? "The run had already finished." : `Could not cancel: ${error.message}`);
    refetchFollowed();
  }
}

async function resumeRun() {
  const id = state.followId;
  const parsed = parseJson($('[data-testid="resume-editor"]').value);
  $('[data-testid="resume-error"]').textContent = parsed.ok ? "" : `Not JSON: ${parsed.error}`;
  if (!id || !parsed.ok) return;
  $('[data-testid="resume-button"]').disabled = true;
  try {
    await api("POST", `/agents/executions/${id}/resume`, { value: parsed.value });
    const run = runOf(id);
    if (run.status === "waiting") run.status = "running";
    paint();
  } catch (error) {
    showBanner(error.status === 409 ? "The run is no longer waiting." : `Could not resume: ${error.message}`);
    refetchFollowed();
  }
}

function selectWorkflow(workflowId) {
  const workflow = state.workflows.find((w) => w.id === workflowId);
  if (!workflow) return;
  state.workflow = workflow;
  state.selectedNode = null;
  const hash = `#wf=${encodeURIComponent(workflow.id)}`;
  history.replaceState(null, "", `${location.pathname}${location.search}${hash}`);
  for (const item of document.querySelectorAll('[data-testid="workflow-item"]')) {
    const current = item.dataset.workflowId === workflow.id;
    if (current) item.setAttribute("aria-current", "page");
    else item.removeAttribute("aria-current");
  }
  $('[data-testid="workflow-name"]').textContent = workflow.name;
  $('[data-testid="workflow-meta"]').textContent = `${workflow.id} · ${workflow.nodes.length} nodes`;
  document.title = `${workflow.name} · graphpush`;
  $('[data-testid="input-editor"]').value = state.inputs.get(workflow.id) ?? sampleInput(workflow);
  state.history = [];
  $('[data-testid="history-body"]').replaceChildren();
  drawGraph();
  follow(null);
  validateInput();
  loadHistory().then(() => adoptLatest(workflow));
}

/** A first input that takes the first branch of each `if` (e.g. {"topic": "billing"}). */
function sampleInput(workflow) {
  const sample = {};
  for (const node of workflow.nodes) {
    const p = node.parameters ?? {};
    if (node.type === "if" && p.field && ["eq", "gte", "lte", "contains", "exists"].includes(p.op)) {
      sample[p.field] = p.value ?? true;
    }
  }
  return JSON.stringify(sample, null, 2);
}

/** On selecting a workflow: follow its newest run if still active, and reuse its input. */
function adoptLatest(workflow) {
  const latest = state.history[0];
  if (!latest || state.workflow !== workflow) return;
  if (!state.inputs.has(workflow.id) && latest.input && Object.keys(latest.input).length) {
    $('[data-testid="input-editor"]').value = JSON.stringify(latest.input, null, 2);
    validateInput();
  }
  if (ACTIVE.has(latest.status) && !state.followId) openRun(latest.execution_id);
}

function renderWorkflows() {
  const list = $('[data-testid="workflow-list"]');
  if (!state.workflows.length) {
    list.replaceChildren(el("li", { class: "muted", text: "No workflows yet." }));
    return;
  }
  list.replaceChildren(
    ...state.workflows.map((w) =>
      el(
        "li",
        {},
        el(
          "button",
          {
            type: "button",
            class: "workflow-item",
            "data-testid": "workflow-item",
            "data-workflow-id": w.id,
            onclick: () => selectWorkflow(w.id),
          },
          el("span", { class: "workflow-name", text: w.name }),
          el("span", { class: "workflow-sub", text: `${w.id} · ${w.nodes.length} nodes` }),
        ),
      ),
    ),
  );
}

// ---- banner and API key -------------------------------------------------------------------

let bannerTimer = null;
function showBanner(text, { sticky = false } = {}) {
  const banner = $('[data-testid="banner"]');
  $(".banner-text", banner).textContent = text;
  banner.hidden = false;
  clearTimeout(bannerTimer);
  if (!sticky) bannerTimer = setTimeout(() => (banner.hidden = true), 8000);
}

function askForKey(reason) {
  showBanner(`This server needs an API key: ${reason}`, { sticky: true });
  $(".key-form").hidden = false;
}

// ---- boot ---------------------------------------------------------------------------------

const mode = ["ws", "sse"].includes(query.get("transport")) ? query.get("transport") : "auto";
const channel = new PushChannel({
  pushRef: state.pushRef,
  mode,
  onMessage: onPush,
  onState: onConnectionState,
});

function wireControls() {
  $('[data-testid="push-ref"]').textContent = state.pushRef;
  $('[data-testid="run-button"]').addEventListener("click", runWorkflow);
  $('[data-testid="cancel-button"]').addEventListener("click", cancelRun);
  $('[data-testid="resume-button"]').addEventListener("click", resumeRun);
  $('[data-testid="history-refresh"]').addEventListener("click", loadHistory);
  const log = $('[data-testid="activity-log"]');
  $('[data-testid="activity-clear"]').addEventListener("click", () => log.replaceChildren());
  const editor = $('[data-testid="input-editor"]');
  editor.addEventListener("input", () => {
    if (state.workflow) state.inputs.set(state.workflow.id, editor.value);
    validateInput();
  });
  editor.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      runWorkflow();
    }
  });
  $(".banner-close").addEventListener("click", () => ($('[data-testid="banner"]').hidden = true));
  $(".key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem("graphpush-token", $("#api-key").value);
    location.reload();
  });
  setInterval(updateElapsed, 250);
}

async function boot() {
  wireControls();
  channel.start();
  try {
    state.workflows = (await api("GET", "/agents/workflows")).items;
  } catch (error) {
    const failed = el("li", { class: "muted", text: "Could not load workflows." });
    $('[data-testid="workflow-list"]').replaceChildren(failed);
    if (error.status !== 401) showBanner(`Could not load workflows: ${error.message}`);
    return;
  }
  renderWorkflows();
  const wanted = new URLSearchParams(location.hash.slice(1)).get("wf");
  const first = state.workflows.find((w) => w.id === wanted) ?? state.workflows[0];
  if (first) selectWorkflow(first.id);
  document.body.dataset.ready = "true";
}

boot();
