// The workflow graph on the canvas: an SVG of nodes and edges, painted with a run's node
// statuses. Knows nothing of connections or REST; main.js tells it what to show.

import { $, fill } from "./dom.js";
import { NODE_STATUS_TEXT, formatDuration, truncate } from "./format.js";
import { NODE_H, NODE_W, edgesOf, layout } from "./layout.js";
import { nodeStatus, streamedText } from "./run.js";

const SVG_NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

const GLYPH_PATHS = {
  success: "M5.5 10.5l3 3 6-6.5",
  error: "M6.5 6.5l7 7M13.5 6.5l-7 7",
  waiting: "M7.5 6v8M12.5 6v8",
  canceled: "M5.5 14.5l9-9",
};

function statusGlyph(status) {
  const g = svg("g", { class: "node-glyph", transform: `translate(${NODE_W - 26}, 22)` });
  g.append(svg("circle", { class: "glyph-ring", cx: 10, cy: 10, r: 9 }));
  if (status === "running") g.append(svg("path", { class: "glyph-spin", d: "M10 1a9 9 0 0 1 9 9" }));
  if (GLYPH_PATHS[status]) g.append(svg("path", { class: "glyph-mark", d: GLYPH_PATHS[status] }));
  return g;
}

/** The second line of a node: its type and what it is set to do. */
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
    case "llm":
      return `llm · ${p.model ?? ""}`;
    default:
      return node.type;
  }
}

function outputLabel(node, output) {
  if (node?.type === "if") return output === 0 ? "true" : "false";
  if (node?.type === "switch") return String(output);
  return null;
}

function defs() {
  const arrow = {
    id: "arrow",
    viewBox: "0 0 10 10",
    refX: 9,
    refY: 5,
    markerWidth: 7,
    markerHeight: 7,
    orient: "auto",
  };
  return svg(
    "defs",
    {},
    svg("clipPath", { id: "node-clip" }, svg("rect", { width: NODE_W, height: NODE_H, rx: 10 })),
    svg("marker", arrow, svg("path", { d: "M0 1L9 5L0 9z", class: "arrow-head" })),
  );
}

function drawEdge(edge, a, b, label) {
  const [x1, y1, x2, y2] = [a.x + NODE_W, a.y + NODE_H / 2, b.x - 2, b.y + NODE_H / 2];
  const bend = Math.max(48, Math.abs(x2 - x1) / 2);
  const group = svg("g", { class: "edge", "data-from": edge.from, "data-to": edge.to });
  group.append(
    svg("path", {
      d: `M${x1} ${y1} C${x1 + bend} ${y1}, ${x2 - bend} ${y2}, ${x2} ${y2}`,
      "marker-end": "url(#arrow)",
    }),
  );
  if (label) {
    // Beside the arrow, where every edge runs level whatever its bend.
    const attrs = { class: "edge-label", x: x2 - 8, y: y2 - 7, "text-anchor": "end", text: label };
    group.append(svg("text", attrs));
  }
  return group;
}

function drawNode(node, pos, onSelect) {
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
    onclick: () => onSelect(node.name),
    onkeydown: (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        onSelect(node.name);
      }
    },
  });
  group.append(
    svg("title", { text: `${node.name} · ${node.type}` }),
    svg("rect", { class: "node-box", width: NODE_W, height: NODE_H, rx: 10 }),
    svg("rect", { class: "node-stripe", width: 6, height: NODE_H, "clip-path": "url(#node-clip)" }),
    svg("text", { class: "node-name", x: 18, y: 27, text: truncate(node.name, 20) }),
    svg("text", { class: "node-type", x: 18, y: 47, text: truncate(describeNode(node), 20) }),
    svg("g", { class: "node-glyph-slot" }),
    svg("text", { class: "node-meta", x: 2, y: NODE_H + 18 }),
    svg("text", { class: "node-live", "data-testid": "node-live", x: 2, y: NODE_H + 34 }),
  );
  return group;
}

/** A viewBox around `points`; a small graph is shown at a readable size, centred. */
function fitView(graph, points) {
  const pad = 48;
  const xs = points.map((p) => p.x);
  const ys = points.map((p) => p.y);
  let [minX, minY] = [Math.min(...xs) - pad, Math.min(...ys) - pad];
  let width = Math.max(...xs) + NODE_W + pad - minX;
  let height = Math.max(...ys) + NODE_H + pad + 20 - minY;
  const [minW, minH] = [760, 280];
  if (width < minW) [minX, width] = [minX - (minW - width) / 2, minW];
  if (height < minH) [minY, height] = [minY - (minH - height) / 2, minH];
  graph.setAttribute("viewBox", `${minX} ${minY} ${width} ${height}`);
  graph.setAttribute("preserveAspectRatio", "xMidYMid meet");
}

/** The line under a node: its error, or its status and time. */
function nodeMeta(status, info, error) {
  if (status === "error" && error) return truncate(error, 30);
  const time = info?.execution_time_ms;
  if (time !== undefined && status !== "running") return `${NODE_STATUS_TEXT[status]} · ${formatDuration(time)}`;
  return NODE_STATUS_TEXT[status];
}

/** A running node's live excerpt: the end of its streamed text, else its last progress. */
function liveExcerpt(run, name) {
  const text = streamedText(run, name).replace(/\s+/g, " ").trim();
  if (text) return text.length > 30 ? `…${text.slice(-29)}` : text;
  const progress = run?.progress?.[name];
  return progress === undefined ? "" : truncate(JSON.stringify(progress), 30);
}

/** The graph in `graph` (an <svg>); `empty` is shown instead while there is no workflow. */
export class GraphView {
  constructor(graph, empty, { onSelect }) {
    this.graph = graph;
    this.empty = empty;
    this.onSelect = onSelect;
  }

  /** Draw `workflow` (or nothing), every node idle. */
  draw(workflow) {
    this.graph.replaceChildren();
    this.empty.hidden = Boolean(workflow);
    if (!workflow) return;
    const positions = layout(workflow);
    const byName = new Map(workflow.nodes.map((n) => [n.name, n]));
    const edges = svg("g", { class: "edges" });
    for (const edge of edgesOf(workflow)) {
      const [a, b] = [positions.get(edge.from), positions.get(edge.to)];
      if (a && b) edges.append(drawEdge(edge, a, b, outputLabel(byName.get(edge.from), edge.output)));
    }
    const nodes = svg("g", { class: "nodes" });
    for (const node of workflow.nodes) nodes.append(drawNode(node, positions.get(node.name), this.onSelect));
    this.graph.append(defs(), edges, nodes);
    fitView(this.graph, [...positions.values()]);
    this.graph.setAttribute("aria-label", `Graph of ${workflow.name}: ${workflow.nodes.length} nodes`);
  }

  /** Show `run`'s node statuses, errors and times (idle nodes when `run` is undefined). */
  paint(run) {
    for (const group of this.graph.querySelectorAll('[data-testid="node"]')) {
      const name = group.dataset.nodeName;
      const status = nodeStatus(run, name);
      if (group.dataset.status !== status) {
        group.dataset.status = status;
        $(".node-glyph-slot", group).replaceChildren(statusGlyph(status));
      }
      const info = run?.graphState?.nodes?.[name];
      $(".node-meta", group).textContent = run ? nodeMeta(status, info, run.nodeErrors[name]) : "";
      $(".node-live", group).textContent = status === "running" ? liveExcerpt(run, name) : "";
      group.setAttribute("aria-label", `${name} (${group.dataset.nodeType}): ${NODE_STATUS_TEXT[status]}`);
    }
    const nodes = run?.graphState?.nodes ?? {};
    for (const edge of this.graph.querySelectorAll(".edge")) {
      const from = nodes[edge.dataset.from]?.status;
      const to = nodes[edge.dataset.to]?.status;
      const reached = run && from === "success" && to && to !== "pending";
      edge.dataset.flow = reached ? (to === "running" ? "active" : "done") : "";
    }
  }

  /** Outline the node named `name` (none when null). */
  select(name) {
    for (const group of this.graph.querySelectorAll('[data-testid="node"]')) {
      group.classList.toggle("selected", group.dataset.nodeName === name);
    }
  }
}
