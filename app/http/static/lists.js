// The lists to pick from: workflows in the sidebar and the runs table of one workflow.

import { el } from "./dom.js";
import { formatDuration, formatTime, runStatusText } from "./format.js";
import { ACTIVE } from "./run.js";

/** The sidebar's workflows; `onSelect(workflowId)` when one is clicked. */
export class WorkflowList {
  constructor(list, { onSelect }) {
    this.list = list;
    this.onSelect = onSelect;
  }

  render(workflows) {
    if (!workflows.length) {
      this.list.replaceChildren(el("li", { class: "muted", text: "No workflows yet." }));
      return;
    }
    this.list.replaceChildren(...workflows.map((w) => el("li", {}, this.item(w))));
  }

  item(workflow) {
    return el(
      "button",
      {
        type: "button",
        class: "workflow-item",
        "data-testid": "workflow-item",
        "data-workflow-id": workflow.id,
        onclick: () => this.onSelect(workflow.id),
      },
      el("span", { class: "workflow-name", text: workflow.name }),
      el("span", { class: "workflow-sub", text: `${workflow.id} · ${workflow.nodes.length} nodes` }),
    );
  }

  failed() {
    this.list.replaceChildren(el("li", { class: "muted", text: "Could not load workflows." }));
  }

  /** Mark `workflowId` as the current one. */
  mark(workflowId) {
    for (const item of this.list.querySelectorAll('[data-testid="workflow-item"]')) {
      if (item.dataset.workflowId === workflowId) item.setAttribute("aria-current", "page");
      else item.removeAttribute("aria-current");
    }
  }
}

/**
 * The runs table of one workflow, kept by its runs feed (SPEC §11): a `runsSnapshot`
 * replaces the rows, a lifecycle message updates (or adds) its run's row. `onOpen(executionId)`
 * when a row is clicked.
 */
export class HistoryTable {
  constructor(body, count, { onOpen, limit = 20 }) {
    this.body = body;
    this.count = count;
    this.onOpen = onOpen;
    this.limit = limit;
    this.items = []; // list DTOs, newest first
  }

  clear() {
    this.items = [];
    this.body.replaceChildren();
  }

  /** Show `items` (list DTOs, newest first), as a `runsSnapshot` has them. */
  render(items) {
    this.items = items.slice(0, this.limit);
    this.count.textContent = String(this.items.length);
    if (!this.items.length) {
      const empty = el("td", { colspan: 5, class: "muted empty", text: "No runs yet. Press Run." });
      this.body.replaceChildren(el("tr", {}, empty));
      return;
    }
    this.body.replaceChildren(...this.items.map((dto) => this.row(dto)));
  }

  /** Fold a lifecycle message of a run of `workflowId` into its row; true if a row changed. */
  apply(message, workflowId) {
    const data = message.data ?? {};
    let dto = this.items.find((item) => item.execution_id === data.executionId);
    if (!dto && message.type === "executionStarted" && data.workflowId === workflowId) {
      dto = { execution_id: data.executionId, workflow_id: workflowId, created_at: data.startedAt };
      this.items.unshift(dto);
    }
    if (!dto) return false;
    Object.assign(dto, liveFields(message, dto));
    this.render(this.items);
    return true;
  }

  row(dto) {
    const id = dto.execution_id;
    const summary = dto.summary ?? {};
    const open = el("button", {
      type: "button",
      class: "link",
      text: `#${id.slice(-8)}`,
      title: id,
      "aria-label": `Open run ${id}`,
    });
    const badge = { class: "status-badge", "data-status": dto.status, text: runStatusText(dto.status) };
    const attrs = { "data-testid": "history-row", "data-execution-id": id, "data-status": dto.status };
    return el(
      "tr",
      { ...attrs, onclick: () => this.onOpen(id) },
      el("td", {}, open, this.retryOf(dto)),
      el("td", {}, el("span", badge)),
      el("td", { title: dto.started_at ?? "", text: formatTime(dto.started_at ?? dto.created_at) }),
      el("td", { text: ACTIVE.has(dto.status) ? "…" : formatDuration(dto.duration_ms) }),
      el("td", { text: summary.nodes_total ? `${summary.nodes_completed}/${summary.nodes_total}` : "—" }),
    );
  }

  /** For a retry, a link to the run it retries (the retry chain, newest first). */
  retryOf(dto) {
    if (!dto.retry_of) return null;
    const original = dto.retry_of;
    return el("button", {
      type: "button",
      class: "link retry-of",
      "data-testid": "retry-of",
      title: `retry of ${original}`,
      text: `↻ #${original.slice(-8)}`,
      "aria-label": `Retry of run ${original}: open it`,
      onclick: (event) => {
        event.stopPropagation();
        this.onOpen(original);
      },
    });
  }

  /** Highlight the row of `executionId` (the run on the canvas). */
  mark(executionId) {
    for (const row of this.body.querySelectorAll('[data-testid="history-row"]')) {
      const selected = row.dataset.executionId === executionId;
      row.classList.toggle("selected", selected);
      if (selected) row.setAttribute("aria-current", "true");
      else row.removeAttribute("aria-current");
    }
  }
}

/** What a lifecycle message says of a run's row: status, times, node counts. */
function liveFields(message, dto) {
  const data = message.data;
  const fields = {};
  if (message.type === "executionStarted") {
    Object.assign(fields, { status: "running", started_at: data.startedAt, retry_of: data.retryOf ?? null });
  }
  if (message.type === "executionWaiting") fields.status = "waiting";
  if (message.type === "executionFinished") {
    const started = Date.parse(dto.started_at ?? "");
    // The stored duration comes with the next snapshot; until then, the one seen here.
    Object.assign(fields, { status: data.status, duration_ms: started ? Math.max(0, Date.now() - started) : null });
  }
  const state = data.graph_state;
  if (state?.nodes) {
    const summary = { nodes_total: Object.keys(state.nodes).length, nodes_completed: state.completed_nodes?.length ?? 0 };
    fields.summary = { ...(dto.summary ?? {}), ...summary };
  }
  return fields;
}
