// The run controls: the input editor (checked as you type, remembered per workflow), Run,
// Cancel, Resume and Retry. They act through the REST API and tell the page what changed.

import { $ } from "./dom.js";
import { parseJson } from "./format.js";

const testid = (root, id) => $(`[data-testid="${id}"]`, root);

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

/** The editor's run input: `{value}` when it is a JSON object, else `{error}`. */
function readInput(text) {
  const parsed = parseJson(text);
  if (!parsed.ok) return { error: `Not JSON: ${parsed.error}` };
  const value = parsed.value;
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return { error: "The input must be a JSON object." };
  }
  return { value };
}

/**
 * Wires the buttons and editors under `root` to the page state `page` (its workflow,
 * runs, followId, pushRef, runsRequested). `actions`: the Api, the Banner, and the page's
 * follow(id), paint() and refetchFollowed().
 */
export class Controls {
  constructor(root, page, actions) {
    this.page = page;
    this.actions = actions;
    this.inputs = new Map(); // workflow id -> input text typed by the user
    this.editor = testid(root, "input-editor");
    this.inputError = testid(root, "input-error");
    this.runButton = testid(root, "run-button");
    this.cancelButton = testid(root, "cancel-button");
    this.resumeEditor = testid(root, "resume-editor");
    this.resumeError = testid(root, "resume-error");
    this.resumeButton = testid(root, "resume-button");
    this.runButton.addEventListener("click", () => this.run());
    this.cancelButton.addEventListener("click", () => this.cancel());
    this.resumeButton.addEventListener("click", () => this.resume());
    this.editor.addEventListener("input", () => {
      if (page.workflow) this.inputs.set(page.workflow.id, this.editor.value);
      this.validate();
    });
    this.editor.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        this.run();
      }
    });
  }

  /** Put `workflow`'s input in the editor: what the user typed for it, else a sample. */
  showInput(workflow) {
    this.editor.value = this.inputs.get(workflow.id) ?? sampleInput(workflow);
    this.validate();
  }

  /** Use the input of the workflow's latest run, unless the user typed one already. */
  adoptInput(workflow, input) {
    if (this.inputs.has(workflow.id) || !input || !Object.keys(input).length) return;
    this.editor.value = JSON.stringify(input, null, 2);
    this.validate();
  }

  validate() {
    const { error } = readInput(this.editor.value);
    this.editor.setAttribute("aria-invalid", error ? "true" : "false");
    this.inputError.textContent = error ?? "";
    this.runButton.disabled = Boolean(error) || !this.page.workflow;
    return !error;
  }

  async run() {
    const { page, actions } = this;
    const workflow = page.workflow;
    if (!workflow || !this.validate()) return;
    this.runButton.disabled = true;
    page.runsRequested += 1;
    try {
      const accepted = await actions.api.run(workflow.id, readInput(this.editor.value).value, page.pushRef);
      const run = page.runs.of(accepted.execution_id);
      Object.assign(run, { workflowId: workflow.id, pushRef: page.pushRef });
      if (page.followId !== run.id) actions.follow(run.id);
    } catch (error) {
      actions.banner.show(`Could not start the run: ${error.message}`);
    } finally {
      page.runsRequested -= 1;
      this.validate();
    }
  }

  /** Retry a finished run (SPEC §9 `body`) on this page's push channel and follow it. */
  async retry(executionId, body) {
    const { page, actions } = this;
    page.runsRequested += 1;
    try {
      const accepted = await actions.api.retry(executionId, { ...body, push_ref: page.pushRef });
      const run = page.runs.of(accepted.execution_id);
      Object.assign(run, { workflowId: page.workflow?.id ?? null, pushRef: page.pushRef });
      if (page.followId !== run.id) actions.follow(run.id);
    } finally {
      page.runsRequested -= 1;
    }
  }

  async cancel() {
    const id = this.page.followId;
    if (!id) return;
    this.cancelButton.disabled = true;
    try {
      await this.actions.api.cancel(id);
    } catch (error) {
      const text = error.status === 409 ? "The run had already finished." : `Could not cancel: ${error.message}`;
      this.actions.banner.show(text);
      this.actions.refetchFollowed();
    }
  }

  async resume() {
    const id = this.page.followId;
    const parsed = parseJson(this.resumeEditor.value);
    this.resumeError.textContent = parsed.ok ? "" : `Not JSON: ${parsed.error}`;
    if (!id || !parsed.ok) return;
    this.resumeButton.disabled = true;
    try {
      await this.actions.api.resume(id, parsed.value);
      const run = this.page.runs.of(id);
      if (run.status === "waiting") run.status = "running";
      this.actions.paint();
    } catch (error) {
      const text = error.status === 409 ? "The run is no longer waiting." : `Could not resume: ${error.message}`;
      this.actions.banner.show(text);
      this.actions.refetchFollowed();
    }
  }
}
