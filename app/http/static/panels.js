// The panels around the graph: the run bar (status, elapsed time, cancel, the waiting
// panel), the node inspector, and the log of push messages. Each renders what it is given.

import { $, el } from "./dom.js";
import { NODE_STATUS_TEXT, formatDuration, pretty, runStatusText } from "./format.js";
import { FINISHED } from "./retry.js";
import { ACTIVE, nodeStatus, streamedText } from "./run.js";

const testid = (root, id) => $(`[data-testid="${id}"]`, root);

/** The run's status badge, id and elapsed time, the Cancel button and the waiting panel. */
export class RunBar {
  constructor(root) {
    this.box = testid(root, "run-status");
    this.badge = testid(root, "run-status-badge");
    this.runId = testid(root, "run-id");
    this.elapsed = testid(root, "run-elapsed");
    this.cancel = testid(root, "cancel-button");
    this.waiting = testid(root, "waiting-panel");
    this.resume = testid(root, "resume-button");
    this.waitingText = $(".waiting-text", this.waiting);
  }

  paint(run) {
    this.box.dataset.status = run ? run.status : "idle";
    this.box.dataset.executionId = run?.id ?? "";
    this.badge.textContent = run ? runStatusText(run.status) : "No run";
    this.runId.textContent = run ? `#${run.id}` : "";
    this.tick(run);
    this.cancel.disabled = !(run && ACTIVE.has(run.status));
    const waiting = run?.status === "waiting";
    this.waiting.hidden = !waiting;
    this.resume.disabled = !waiting;
    if (waiting) {
      const node = Object.entries(run.graphState.nodes ?? {}).find(([, n]) => n.status === "waiting");
      this.waitingText.textContent = node
        ? `“${node[0]}” paused the run. Resume it with a JSON value; the next nodes get it.`
        : "The run paused at a wait node. Resume it with a JSON value.";
    }
  }

  /** Refresh the elapsed time: running time so far, or the stored duration once finished. */
  tick(run) {
    if (!run || !run.startedAt) {
      this.elapsed.textContent = "";
      return;
    }
    const active = ACTIVE.has(run.status);
    const end = active ? Date.now() : (run.stoppedAt ?? Date.now());
    const ms = !active && run.durationMs != null ? run.durationMs : end - run.startedAt;
    this.elapsed.textContent = formatDuration(Math.max(0, ms));
  }
}

/**
 * The inspector's node panel: a node's type, status, time, error, parameters and output;
 * on a finished run, "Retry from here" for a node that ran (`onRetryFrom(name)`).
 */
export class NodePanel {
  constructor(box, { onRetryFrom }) {
    this.box = box;
    this.onRetryFrom = onRetryFrom;
  }

  /** `retryable`: nodes of `run` can start a retry (not those of a registered graph). */
  render(node, run, retryable = true) {
    if (!node) {
      this.box.replaceChildren(el("p", { class: "muted", text: "Select a node to see its parameters and output." }));
      return;
    }
    const info = run?.graphState?.nodes?.[node.name];
    const status = nodeStatus(run, node.name);
    const time = info?.execution_time_ms;
    const rows = el(
      "dl",
      { class: "facts" },
      el("dt", { text: "Type" }),
      el("dd", { text: node.type }),
      el("dt", { text: "Status" }),
      el("dd", {}, el("span", { class: "status-badge", "data-status": status, text: NODE_STATUS_TEXT[status] })),
      el("dt", { text: "Time" }),
      el("dd", { text: time !== undefined ? formatDuration(time) : "—" }),
    );
    const parts = [el("h3", { class: "node-title", text: node.name }), rows];
    if (retryable && run && FINISHED.has(run.status) && !["pending", "idle"].includes(status)) {
      const retry = { type: "button", class: "btn btn-small", "data-testid": "retry-from-here" };
      parts.push(el("button", { ...retry, text: "Retry from here", onclick: () => this.onRetryFrom(node.name) }));
    }
    const error = run?.nodeErrors[node.name];
    if (error) parts.push(el("p", { class: "node-error", text: error }));
    parts.push(...streamParts(run, node.name, status));
    parts.push(el("h4", { text: "Parameters" }), el("pre", { class: "json", text: pretty(node.parameters ?? {}) }));
    const output = run?.outputs[node.name];
    if (output) parts.push(...outputParts(output));
    this.box.replaceChildren(...parts);
    const stream = $('[data-testid="node-stream"]', this.box);
    if (stream) stream.scrollTop = stream.scrollHeight; // the newest text in view
  }
}

/** What the node streamed (SPEC §8): its text, tool calls and last progress, live. */
function streamParts(run, name, status) {
  const parts = [];
  const live = status === "running" ? " (live)" : "";
  const text = streamedText(run, name);
  if (text) {
    parts.push(el("h4", { text: `Streamed text${live}` }));
    parts.push(el("pre", { class: "stream-text", "data-testid": "node-stream", text }));
  }
  const calls = Object.values(run?.toolCalls?.[name] ?? {});
  if (calls.length) {
    parts.push(el("h4", { text: `Tool calls${live}` }));
    parts.push(el("pre", { class: "json", text: calls.map((c) => `${c.name}(${c.args})`).join("\n") }));
  }
  const progress = run?.progress?.[name];
  if (progress !== undefined) {
    parts.push(el("h4", { text: `Progress${live}` }));
    parts.push(el("pre", { class: "json", "data-testid": "node-progress", text: pretty(progress) }));
  }
  return parts;
}

/** A node's output items as JSON: one list per output branch (just the list if one). */
function outputParts(output) {
  const items = (output.main ?? []).map((branch) => (branch ?? []).map((item) => item.json));
  const shown = items.length === 1 ? items[0] : items;
  const json = el("pre", { class: "json", "data-testid": "node-output", text: pretty(shown) });
  return [el("h4", { text: "Output" }), json];
}

const OUTCOME_GLYPH = { success: "✓", error: "✗", waiting: "‖", canceled: "⊘" };
const LOG_LIMIT = 200;

/** The newest push messages first, at most LOG_LIMIT of them. */
export class ActivityLog {
  constructor(list) {
    this.list = list;
  }

  add(message) {
    const data = message.data ?? {};
    const detail =
      data.nodeName ??
      data.status ??
      data.code ??
      (message.type === "resumeFailed" ? `after #${data.lastEventId}: refetching over REST` : "");
    const outcome = data.data?.executionStatus;
    const glyph = outcome
      ? el("span", { class: "log-outcome", "aria-label": outcome, text: OUTCOME_GLYPH[outcome] ?? outcome })
      : null;
    const item = el(
      "li",
      { "data-type": message.type, "data-status": outcome ?? data.status ?? "" },
      el("span", { class: "log-id", text: message.meta?.id !== undefined ? `#${message.meta.id}` : "" }),
      el("span", { class: "log-type", text: message.type }),
      el("span", { class: "log-detail", title: [detail, outcome].filter(Boolean).join(": ") }, detail, glyph),
    );
    this.list.prepend(item);
    while (this.list.children.length > LOG_LIMIT) this.list.lastElementChild.remove();
  }

  clear() {
    this.list.replaceChildren();
  }
}
