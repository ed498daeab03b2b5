// Time travel over a finished run (SPEC §9): a slider over its logged messages that repaints
// the graph from each message's graph_state. It is a range input, so the keyboard moves it
// (arrows one message, Page Up/Down, Home/End); at the last message the run shows as it ended.

import { $ } from "./dom.js";

const testid = (root, id) => $(`[data-testid="${id}"]`, root);

/** One logged message as a frame: its seq, a label, and the graph_state it carried. */
function frame(item) {
  const data = item.message.data ?? {};
  const about = data.nodeName ?? data.status ?? "";
  return { seq: item.seq, label: `${item.message.type}${about ? ` · ${about}` : ""}`, graphState: data.graph_state };
}

/** The scrubber under the graph; `onFrame(graphState | null)` (null: the run as it is). */
export class TimeTravel {
  constructor(root, { api, onFrame }) {
    this.section = testid(root, "time-travel");
    this.slider = testid(root, "scrubber");
    this.label = testid(root, "scrubber-label");
    this.api = api;
    this.onFrame = onFrame;
    this.runId = null;
    this.frames = [];
    this.slider.addEventListener("input", () => this.show(Number(this.slider.value)));
  }

  /** Offer the frames of finished run `runId` (fetched once per run). */
  async load(runId) {
    if (this.runId === runId) return;
    this.runId = runId;
    const answer = await this.api.events(runId);
    if (this.runId !== runId) return;
    this.frames = answer.items.filter((item) => item.message.data?.graph_state).map(frame);
    if (!this.frames.length) return this.hide();
    this.slider.max = String(this.frames.length - 1);
    this.slider.value = this.slider.max;
    this.section.hidden = false;
    this.describe(this.frames.length - 1);
  }

  hide() {
    this.section.hidden = true;
    this.runId = null;
    this.frames = [];
  }

  show(index) {
    this.describe(index);
    this.onFrame(index >= this.frames.length - 1 ? null : this.frames[index].graphState);
  }

  describe(index) {
    const current = this.frames[index];
    const text = `${index + 1} / ${this.frames.length}: ${current.label}`;
    this.label.textContent = text;
    this.slider.setAttribute("aria-valuetext", text);
    this.section.dataset.seq = String(current.seq);
  }
}
