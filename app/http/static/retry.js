// Retry and fork (SPEC §9) from the page: the node a retry starts from, the run state it
// reuses (shown as editable JSON), and the form that sends it. The helpers are pure; the
// panel renders what it is given and hands the request to `onRetry`.

import { $ } from "./dom.js";
import { parseJson, pretty } from "./format.js";

/** Run statuses a retry can start from (finished runs). */
export const FINISHED = new Set(["success", "error", "canceled", "crashed"]);

const testid = (root, id) => $(`[data-testid="${id}"]`, root);

/** The node the server starts a retry of `run` from when none is named (null: the whole run). */
export function defaultFromNode(run) {
  if (run.status === "success") return null;
  const failed = (run.graphState.errors ?? []).find((error) => error.node)?.node;
  if (failed) return failed;
  const unfinished = Object.entries(run.graphState.nodes ?? {})
    .filter(([, node]) => !["pending", "success"].includes(node.status))
    .sort(([a, x], [b, y]) => (x.started_at ?? 0) - (y.started_at ?? 0) || a.localeCompare(b));
  return unfinished[0]?.[0] ?? null;
}

/** `name` and every node after it in `workflow`, whatever output a node takes. */
export function downstream(workflow, name) {
  const seen = new Set([name]);
  const todo = [name];
  while (todo.length) {
    for (const targets of workflow.connections?.[todo.pop()]?.main ?? []) {
      for (const target of targets ?? []) {
        if (!seen.has(target.node)) {
          seen.add(target.node);
          todo.push(target.node);
        }
      }
    }
  }
  return seen;
}

/** What a retry of `run` from `fromNode` reuses: node name -> its recorded result. */
export function reusedState(run, workflow, fromNode) {
  if (!fromNode && run.status === "success") return {}; // it runs whole
  const rerun = fromNode ? downstream(workflow, fromNode) : new Set();
  const state = {};
  for (const [name, node] of Object.entries(run.graphState.nodes ?? {})) {
    const items = (run.outputs[name]?.main ?? []).find((branch) => branch?.length);
    if (node.status === "success" && !rerun.has(name) && items) state[name] = items[0].json;
  }
  return state;
}

/** The entries of `edited` that differ from `recorded`: the results the retry replaces. */
function changed(edited, recorded) {
  const out = {};
  for (const [name, value] of Object.entries(edited)) {
    if (JSON.stringify(value) !== JSON.stringify(recorded[name])) out[name] = value;
  }
  return out;
}

/**
 * The retry form of a finished run: where it starts, the reused state as JSON, the
 * "saved workflow" choice. `onRetry(executionId, body)` sends it (SPEC §9 body).
 */
export class RetryPanel {
  constructor(root, { onRetry }) {
    this.panel = testid(root, "retry-panel");
    this.from = testid(root, "retry-from");
    this.editor = testid(root, "retry-state");
    this.saved = testid(root, "retry-saved");
    this.button = testid(root, "retry-button");
    this.error = testid(root, "retry-error");
    this.target = null; // {runId, fromNode, recorded}
    this.onRetry = onRetry;
    this.button.addEventListener("click", () => this.submit());
  }

  /**
   * Offer a retry of `run` (finished) from `fromNode` (undefined: the server's default); a
   * registered Python graph (`workflow.graph`) is retried from its start only.
   */
  show(run, workflow, fromNode) {
    const from = workflow.graph ? null : fromNode === undefined ? defaultFromNode(run) : fromNode;
    const same = this.target?.runId === run.id && this.target.fromNode === from;
    this.panel.hidden = false;
    if (same) return; // keep what the user typed
    const recorded = reusedState(run, workflow, from);
    this.target = { runId: run.id, fromNode: from, recorded };
    this.from.textContent = from ? `Starts at “${from}”; the nodes before it are reused.` : "Runs the whole workflow again.";
    this.button.textContent = from ? `Retry from ${from}` : "Retry";
    this.editor.value = pretty(recorded);
    this.error.textContent = "";
  }

  hide() {
    this.panel.hidden = true;
    this.target = null;
  }

  async submit() {
    if (!this.target) return;
    const parsed = parseJson(this.editor.value);
    const value = parsed.ok ? parsed.value : null;
    if (!value || typeof value !== "object" || Array.isArray(value)) {
      this.error.textContent = parsed.ok ? "The state must be a JSON object." : `Not JSON: ${parsed.error}`;
      return;
    }
    const { runId, fromNode, recorded } = this.target;
    const body = { workflow: this.saved.checked ? "saved" : "original" };
    if (fromNode) body.from_node = fromNode;
    const state = changed(value, recorded);
    if (Object.keys(state).length) body.state = state;
    this.error.textContent = "";
    this.button.disabled = true;
    try {
      await this.onRetry(runId, body);
    } catch (error) {
      this.error.textContent = error.message;
    } finally {
      this.button.disabled = false;
    }
  }
}
