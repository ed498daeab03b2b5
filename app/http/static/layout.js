// Where each node of a workflow goes on the canvas. Pure geometry.

export const NODE_W = 184;
export const NODE_H = 64;
const GAP_X = 240;
const GAP_Y = 120;

function targetsOf(workflow, name) {
  const outputs = workflow.connections?.[name]?.main ?? [];
  return outputs.flatMap((targets, output) => (targets ?? []).map((t) => ({ to: t.node, output })));
}

/** Every connection as `{from, to, output}` (output: the source's output index). */
export function edgesOf(workflow) {
  return workflow.nodes.flatMap((node) =>
    targetsOf(workflow, node.name).map((t) => ({ from: node.name, to: t.to, output: t.output })),
  );
}

/** Depth of each node reachable from a node without incoming connections (breadth first). */
function depths(workflow) {
  const names = new Set(workflow.nodes.map((n) => n.name));
  const incoming = new Set(edgesOf(workflow).map((e) => e.to));
  const queue = [...names].filter((name) => !incoming.has(name));
  const depth = new Map(queue.map((name) => [name, 0]));
  for (let i = 0; i < queue.length; i += 1) {
    for (const { to } of targetsOf(workflow, queue[i])) {
      if (depth.has(to) || !names.has(to)) continue;
      depth.set(to, depth.get(queue[i]) + 1);
      queue.push(to);
    }
  }
  return depth;
}

/** Node name -> `{x, y}`: the workflow's own positions when every node has one, else
 * columns by depth, each column centred on y = 0. */
export function layout(workflow) {
  const nodes = workflow.nodes;
  if (nodes.every((n) => Array.isArray(n.position))) {
    return new Map(nodes.map((n) => [n.name, { x: n.position[0], y: n.position[1] }]));
  }
  const depth = depths(workflow);
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
