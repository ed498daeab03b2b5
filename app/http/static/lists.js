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

/** The runs table (`GET .../executions` page); `onOpen(executionId)` when a row is clicked. */
export class HistoryTable {
  constructor(body, count, { onOpen }) {
    this.body = body;
    this.count = count;
    this.onOpen = onOpen;
  }

  clear() {
    this.body.replaceChildren();
  }

  render(page) {
    const count = page.total > page.items.length ? `latest ${page.items.length} of ${page.total}` : page.total;
    this.count.textContent = String(count);
    if (!page.items.length) {
      const empty = el("td", { colspan: 5, class: "muted empty", text: "No runs yet. Press Run." });
      this.body.replaceChildren(el("tr", {}, empty));
      return;
    }
    this.body.replaceChildren(...page.items.map((dto) => this.row(dto)));
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
