// Run state: what the canvas knows of each execution, folded from push messages (SPEC §4)
// and REST answers (SPEC §3). Pure: no DOM, no connection.

/** Run statuses in which a run can still change. */
export const ACTIVE = new Set(["new", "running", "waiting"]);

/** Messages that change a run's row in the runs table. */
export const LIFECYCLE = new Set([
  "executionStarted",
  "executionWaiting",
  "executionFinished",
  "executionRecovered",
]);

/**
 * A run: `{id, workflowId, status, graphState: {nodes: {name: {status, ...}}}, outputs,
 * nodeErrors, streams, progress, toolCalls, startedAt, stoppedAt, durationMs, pushRef}`
 * (times in ms since the epoch). What a node streams (SPEC §8), by node name: `streams`
 * `{messageId: text so far}`, `progress` its last custom payload, `toolCalls`
 * `{"<messageId>/<index>": {name, args}}`.
 */
function newRun(id) {
  return {
    id,
    workflowId: null,
    status: "new",
    graphState: { nodes: {}, errors: [] },
    outputs: {},
    nodeErrors: {},
    streams: {},
    progress: {},
    toolCalls: {},
    startedAt: null,
    stoppedAt: null,
    durationMs: null,
    pushRef: null,
  };
}

/** The status a node shows for `run`: "idle" when there is no run, "pending" until it ran. */
export function nodeStatus(run, name) {
  if (!run) return "idle";
  return run.graphState?.nodes?.[name]?.status ?? "pending";
}

function setNodeStatus(run, name, patch) {
  const nodes = run.graphState.nodes ?? (run.graphState.nodes = {});
  nodes[name] = { ...(nodes[name] ?? { runs: 0 }), ...patch };
}

function applyNodeAfter(run, data) {
  const task = data.data ?? {};
  setNodeStatus(run, data.nodeName, {
    status: task.executionStatus,
    execution_time_ms: task.executionTime,
  });
  if (task.error) run.nodeErrors[data.nodeName] = task.error.message;
  if (task.data) run.outputs[data.nodeName] = task.data;
}

/** Fold one `nodeExecuteStream` message's chunks into its node's streams. */
function applyStream(run, data) {
  const name = data.nodeName;
  for (const chunk of data.chunks ?? []) {
    if (chunk.kind === "text") {
      const texts = run.streams[name] ?? (run.streams[name] = {});
      texts[chunk.messageId] = (texts[chunk.messageId] ?? "") + chunk.text;
    } else if (chunk.kind === "custom") {
      run.progress[name] = chunk.data;
    } else if (chunk.kind === "tool_call") {
      const calls = run.toolCalls[name] ?? (run.toolCalls[name] = {});
      const call = calls[`${chunk.messageId}/${chunk.index}`] ?? { name: "", args: "" };
      calls[`${chunk.messageId}/${chunk.index}`] = { name: chunk.name ?? call.name, args: call.args + chunk.args };
    }
  }
}

/** A node starts (again): what it streams starts from nothing (a replay re-adds it all). */
function forgetStreams(run, name) {
  delete run.streams[name];
  delete run.progress[name];
  delete run.toolCalls[name];
}

/** The text `name` streamed in `run`, its messages one after the other ("" for none). */
export function streamedText(run, name) {
  return Object.values(run?.streams?.[name] ?? {}).join("\n\n");
}

/** Every run the page has heard of, by execution id. */
export class Runs {
  constructor() {
    this.byId = new Map();
  }

  get(executionId) {
    return this.byId.get(executionId);
  }

  /** The run of `executionId`, created (status "new") on first mention. */
  of(executionId) {
    let run = this.byId.get(executionId);
    if (!run) {
      run = newRun(executionId);
      this.byId.set(executionId, run);
    }
    return run;
  }

  /** Fold a `GET /agents/executions/{id}` answer into its run; REST is the truth. */
  fromDto(dto) {
    const run = this.of(dto.execution_id);
    Object.assign(run, {
      workflowId: dto.workflow_id,
      status: dto.status,
      graphState: dto.graph_state ?? run.graphState,
      startedAt: dto.started_at ? Date.parse(dto.started_at) : run.startedAt,
      stoppedAt: dto.stopped_at ? Date.parse(dto.stopped_at) : null,
      durationMs: dto.duration_ms,
      pushRef: dto.push_ref,
    });
    Object.assign(run.streams, dto.streams ?? {});
    for (const [name, runs] of Object.entries(dto.data ?? {})) {
      if (runs.length) run.outputs[name] = runs.at(-1);
    }
    for (const error of dto.graph_state?.errors ?? []) {
      if (error.node) run.nodeErrors[error.node] = error.message;
    }
    return run;
  }

  /** Fold one execution message into its run; graph_state, when present, is authoritative. */
  apply(message) {
    const data = message.data ?? {};
    const run = this.of(data.executionId);
    switch (message.type) {
      case "executionStarted":
        Object.assign(run, { status: "running", workflowId: data.workflowId });
        run.startedAt = Date.parse(data.startedAt) || Date.now();
        break;
      case "nodeExecuteBefore":
        if (run.status === "new" || run.status === "waiting") run.status = "running";
        setNodeStatus(run, data.nodeName, { status: "running" });
        forgetStreams(run, data.nodeName);
        break;
      case "nodeExecuteStream":
        applyStream(run, data);
        break;
      case "nodeExecuteAfter":
      case "nodeExecuteAfterData":
        applyNodeAfter(run, data);
        break;
      case "executionWaiting":
        run.status = "waiting";
        break;
      case "executionFinished":
        Object.assign(run, { status: data.status, workflowId: data.workflowId });
        run.stoppedAt = Date.now(); // until REST gives the stored duration
        break;
      case "executionSnapshot":
        run.status = data.status;
        Object.assign(run.streams, data.streams ?? {});
        break;
      default:
        break;
    }
    if (data.graph_state) run.graphState = data.graph_state;
    return run;
  }
}
