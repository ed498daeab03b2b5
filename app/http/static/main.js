// graphpush web canvas: draws a workflow, runs it, and lights its nodes up from push
// messages (SPEC §4) received over WebSocket, or over SSE when a WebSocket cannot be had
// (SPEC §5). Query flags: ?transport=ws|sse|auto, ?token=<API key or scoped
// token> (POST /agents/tokens: a page never needs to hold a key). The URL hash keeps
// the selected workflow (#wf=<id>). This module wires the others to the page: it holds
// the page state and passes each view what it shows.

import { Api } from "./api.js";
import { GraphView } from "./canvas.js";
import { Controls } from "./controls.js";
import { $ } from "./dom.js";
import { followRuns } from "./feed.js";
import { HistoryTable, WorkflowList } from "./lists.js";
import { ActivityLog, NodePanel, RunBar } from "./panels.js";
import { PushConnection, followExecution, randomPushRef } from "./push.js";
import { FINISHED, RetryPanel } from "./retry.js";
import { ACTIVE, LIFECYCLE, Runs } from "./run.js";
import { Banner, ConnectionStatus } from "./status.js";
import { TimeTravel } from "./timetravel.js";

const query = new URLSearchParams(location.search);
const token = query.get("token") || sessionStorage.getItem("graphpush-token") || "";
const testid = (id) => $(`[data-testid="${id}"]`, document);

/** Everything the page shows, in one place; views get from it only what they draw. */
const page = {
  pushRef: randomPushRef(),
  workflows: [],
  workflow: null, // the selected workflow
  runs: new Runs(),
  followId: null, // the execution drawn on the canvas
  selectedNode: null,
  runsRequested: 0, // POST .../run requests not answered yet
  stopRuns: null, // stops the runs feed of the selected workflow
  runsWaiting: false, // the runs feed starts once the WebSocket is live
  adopting: null, // the workflow whose first runs snapshot is awaited
  stopWatching: null,
  pollTimer: null,
  toolsFor: null, // the finished run the retry panel and the scrubber were loaded for
  toolsLoading: null, // the finished run they are being loaded for
  retryFrom: undefined, // the node "Retry from here" picked (undefined: the server's default)
  frame: null, // the graph_state the scrubber shows, null for the run as it is
};

const banner = new Banner(testid("banner"), {
  onKey: (key) => {
    sessionStorage.setItem("graphpush-token", key);
    location.reload();
  },
});
const api = new Api({ token, onUnauthorized: (error) => banner.askForKey(error.message) });
const views = {
  graph: new GraphView(testid("graph"), testid("canvas-empty"), { onSelect: selectNode }),
  runBar: new RunBar(document),
  node: new NodePanel(testid("node-details"), { onRetryFrom: retryFrom }),
  log: new ActivityLog(testid("activity-log")),
  workflows: new WorkflowList(testid("workflow-list"), { onSelect: selectWorkflow }),
  history: new HistoryTable(testid("history-body"), testid("history-count"), { onOpen: openRun }),
  connection: new ConnectionStatus(testid("connection-status")),
};
const transport = ["ws", "sse"].includes(query.get("transport")) ? query.get("transport") : "auto";
const push = new PushConnection({
  pushRef: page.pushRef,
  transport,
  token,
  onMessage: onPush,
  onState: onConnection,
});
const controls = new Controls(document, page, { api, banner, follow, paint, refetchFollowed });
const tools = {
  retry: new RetryPanel(document, { onRetry: (id, body) => controls.retry(id, body) }),
  time: new TimeTravel(document, { api, onFrame: showFrame }),
};

// ---- push messages ------------------------------------------------------------------------

function onPush(message) {
  views.log.add(message);
  const data = message.data ?? {};
  if (message.type === "resumeFailed") {
    // The server's buffer no longer covers the gap: REST has the truth (SPEC §5.4), and the
    // runs feed starts again from a snapshot (its subscription may be gone with the buffer).
    refetchFollowed();
    followWorkflowRuns();
    return;
  }
  onRunsFeed(message);
  if (!data.executionId || ["ack", "error", "pong"].includes(message.type)) return;
  const run = page.runs.apply(message);
  // A fast run can start (even finish) before its POST answers: follow it from its first message.
  const ours = page.runsRequested > 0 && run.workflowId === page.workflow?.id;
  if (message.type === "executionStarted" && ours && page.followId !== run.id) follow(run.id);
  if (run.id === page.followId) paint();
  if (message.type === "executionRecovered" && run.id === page.followId) refetchFollowed();
}

/** A message of the runs feed (SPEC §11): it keeps the runs table, without polling. */
function onRunsFeed(message) {
  if (message.type === "runsSnapshot") onRunsSnapshot(message.data);
  else if (LIFECYCLE.has(message.type) && views.history.apply(message, page.workflow?.id)) {
    views.history.mark(page.followId);
  }
}

function onConnection(connection) {
  views.connection.show(connection);
  if (connection.state === "offline" && connection.drop?.kind === "unauthorized") {
    banner.askForKey(connection.drop.reason || "an API key is required");
  }
  if (connection.state !== "live") startPolling();
  else if (page.runsWaiting) followWorkflowRuns();
}

// While the push channel is down, poll the followed run so the page never lies for long.
function startPolling() {
  if (page.pollTimer) return;
  page.pollTimer = setInterval(() => {
    const run = page.runs.get(page.followId);
    if (push.live || !run || !ACTIVE.has(run.status)) {
      clearInterval(page.pollTimer);
      page.pollTimer = null;
      return;
    }
    refetchFollowed();
  }, 2000);
}

async function refetchFollowed() {
  if (!page.followId) return;
  try {
    page.runs.fromDto(await api.execution(page.followId));
    paint();
  } catch (error) {
    banner.show(`Could not refetch the run: ${error.message}`);
  }
}

// ---- what the canvas shows ----------------------------------------------------------------

/** Paint the followed run (or idle nodes when no run is followed) everywhere it shows. */
function paint() {
  const run = page.runs.get(page.followId);
  views.graph.paint(page.frame && run ? { ...run, graphState: page.frame } : run);
  views.runBar.paint(run);
  renderNode();
  views.history.mark(page.followId);
  showRunTools(run);
}

/** Offer a retry and the scrubber once the followed run has finished (SPEC §9). */
async function showRunTools(run) {
  if (!run || !FINISHED.has(run.status) || !page.workflow) {
    tools.retry.hide();
    tools.time.hide();
    page.toolsFor = null;
    return;
  }
  if (page.toolsFor !== run.id) {
    if (page.toolsLoading === run.id) return;
    page.toolsLoading = run.id;
    try {
      // The stored run has the results of every node, also those a retry reused.
      page.runs.fromDto(await api.execution(run.id));
      await tools.time.load(run.id);
    } catch (error) {
      banner.show(`Could not load the finished run: ${error.message}`);
      return;
    } finally {
      page.toolsLoading = null;
    }
    page.toolsFor = run.id;
    if (page.followId !== run.id) return;
    renderNode();
  }
  tools.retry.show(run, page.workflow, page.retryFrom);
}

function retryFrom(name) {
  page.retryFrom = name;
  paint();
  testid("retry-state").focus();
}

/** Paint the graph as the scrubbed message left it (null: as the run is). */
function showFrame(graphState) {
  page.frame = graphState;
  const run = page.runs.get(page.followId);
  views.graph.paint(graphState && run ? { ...run, graphState } : run);
}

function renderNode() {
  const node = page.workflow?.nodes.find((n) => n.name === page.selectedNode);
  views.node.render(node, page.runs.get(page.followId), !page.workflow?.graph);
}

function selectNode(name) {
  page.selectedNode = name;
  views.graph.select(name);
  renderNode();
}

function follow(executionId) {
  page.stopWatching?.();
  page.stopWatching = null;
  page.followId = executionId;
  page.retryFrom = undefined;
  page.frame = null;
  paint();
}

/** Open a past (or running) run: paint its stored graph_state, and follow it live if active. */
async function openRun(executionId) {
  try {
    const run = page.runs.fromDto(await api.execution(executionId));
    follow(executionId);
    if (ACTIVE.has(run.status) && run.pushRef !== page.pushRef) watch(executionId);
  } catch (error) {
    banner.show(`Could not open the run: ${error.message}`);
  }
}

function watch(executionId) {
  // Over WebSocket, subscribe on the page's own channel; over SSE, follow the execution stream.
  if (push.send({ type: "subscribe_execution", data: { executionId, after: 0 } })) {
    page.stopWatching = () => push.send({ type: "unsubscribe_execution", data: { executionId } });
  } else {
    page.stopWatching = followExecution(executionId, { onMessage: onPush, token });
  }
}

/** (Re)start the runs feed of the selected workflow: a snapshot, then live lifecycle messages. */
function followWorkflowRuns() {
  page.stopRuns?.();
  page.stopRuns = null;
  const workflow = page.workflow;
  // On a WebSocket the feed rides the page's own connection: wait until it is live.
  page.runsWaiting = Boolean(workflow) && push.transport === "websocket" && !push.live;
  if (workflow && !page.runsWaiting) {
    page.stopRuns = followRuns(workflow.id, { push, token, onMessage: onRunsFeed });
  }
}

function onRunsSnapshot({ workflowId, items }) {
  const workflow = page.workflow;
  if (!workflow || workflowId !== workflow.id) return;
  for (const dto of items) {
    const run = page.runs.get(dto.execution_id);
    if (run && !ACTIVE.has(dto.status)) run.durationMs = dto.duration_ms;
  }
  views.runBar.tick(page.runs.get(page.followId));
  views.history.render(items);
  views.history.mark(page.followId);
  if (page.adopting === workflow) {
    page.adopting = null;
    adoptLatest(workflow, items[0]);
  }
}

function selectWorkflow(workflowId) {
  const workflow = page.workflows.find((w) => w.id === workflowId);
  if (!workflow) return;
  page.workflow = workflow;
  page.selectedNode = null;
  history.replaceState(null, "", `${location.pathname}${location.search}#wf=${encodeURIComponent(workflow.id)}`);
  views.workflows.mark(workflow.id);
  testid("workflow-name").textContent = workflow.name;
  testid("workflow-meta").textContent = `${workflow.id} · ${workflow.nodes.length} nodes`;
  document.title = `${workflow.name} · graphpush`;
  controls.showInput(workflow);
  page.adopting = workflow;
  views.history.clear();
  views.graph.draw(workflow);
  follow(null);
  followWorkflowRuns();
}

/** On selecting a workflow: follow its newest run if still active, and reuse its input. */
function adoptLatest(workflow, latest) {
  if (!latest || page.workflow !== workflow) return;
  controls.adoptInput(workflow, latest.input);
  if (ACTIVE.has(latest.status) && !page.followId) openRun(latest.execution_id);
}

// ---- boot ---------------------------------------------------------------------------------

async function boot() {
  testid("push-ref").textContent = page.pushRef;
  testid("history-refresh").addEventListener("click", followWorkflowRuns);
  testid("activity-clear").addEventListener("click", () => views.log.clear());
  setInterval(() => views.runBar.tick(page.runs.get(page.followId)), 250);
  push.start();
  try {
    page.workflows = await api.workflows();
  } catch (error) {
    views.workflows.failed();
    if (error.status !== 401) banner.show(`Could not load workflows: ${error.message}`);
    return;
  }
  views.workflows.render(page.workflows);
  const wanted = new URLSearchParams(location.hash.slice(1)).get("wf");
  const first = page.workflows.find((w) => w.id === wanted) ?? page.workflows[0];
  if (first) selectWorkflow(first.id);
  document.body.dataset.ready = "true";
}

boot();
