"""Workflows, and already compiled LangGraph graphs, to :class:`CompiledWorkflow` (SPEC §2).

A workflow node becomes one LangGraph node of the same name whose update is
``{"agent_results": {name: output}, "completed_nodes": [name], "routes": {name: index}}``.
Edges follow n8n's semantics:

- a node with one output sends its output to every target (fan-out, run in parallel);
- a node with several outputs (``if``, ``switch``) routes through a conditional edge to the
  targets of the output it took, or ends its branch when that output has none;
- a ``merge`` fed by several one-output nodes waits for all of them (one LangGraph join
  edge) and runs once. Its inputs through an ``if``/``switch`` output are not joined: each
  of them triggers it on its own. A join whose sources are on exclusive branches (the two
  sides of one ``if``) never fires, as in n8n's "wait for both inputs" mode.
"""

from __future__ import annotations

import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import msgspec
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.pregel import Pregel

from app.workflows.compiled import CompiledWorkflow, NodeInfo, RunState
from app.workflows.node_types import MERGE_TYPE, WAIT_TYPE, NodeFn, NodeRegistry, NodeType
from app.workflows.schema import Workflow

#: Auto layout of nodes without a position: one column per step from the entry.
COLUMN_WIDTH = 220.0
ROW_HEIGHT = 140.0
#: Built-in types that never stream (SPEC §8); a workflow of only these runs without the
#: ``messages`` and ``custom`` stream modes.
SILENT_TYPES = frozenset({"trigger", "set", "if", "switch", MERGE_TYPE, "delay", "fail", WAIT_TYPE})
#: ``NodeInfo.type`` of the nodes of a graph registered with :func:`compile_graph`.
LANGGRAPH_NODE_TYPE = "langgraph"

Update = dict[str, Any]


class _GraphNode(Protocol):
    """A LangGraph node function, as ``StateGraph.add_node`` types it."""

    def __call__(self, state: RunState) -> Awaitable[Update]: ...


def compile_workflow(
    workflow: Workflow,
    registry: NodeRegistry,
    *,
    checkpointer: BaseCheckpointSaver[Any] | None,
    default_recursion_limit: int,
    workflow_id: str,
) -> CompiledWorkflow:
    """Build the LangGraph graph of a workflow that :func:`app.workflow.parse_workflow` accepted.

    Raises ``ValueError`` for a workflow it would have refused (no entry, unknown type).
    """
    entry = workflow.entry_node()
    if entry is None:
        raise ValueError("the workflow has no single entry node: parse it first")
    nodes = _node_infos(workflow, registry, workflow_id, entry)
    predecessors: dict[str, list[tuple[str, int]]] = {name: [] for name in nodes}
    for source, index, target in workflow.edges():
        predecessors[target].append((source, index))
    builder = StateGraph(RunState)
    for name, info in nodes.items():
        sources = list(dict.fromkeys(source for source, _ in predecessors[name]))
        run = _node_type(registry, info.type).make(info)
        builder.add_node(name, _node_function(name, run, sources, fan_in=info.type == MERGE_TYPE))
    builder.add_edge(START, entry)
    _add_edges(builder, workflow, nodes)
    uses_interrupts = any(info.type == WAIT_TYPE for info in nodes.values())
    streams = any(info.type not in SILENT_TYPES for info in nodes.values())
    return CompiledWorkflow(
        workflow_id=workflow_id,
        name=workflow.name,
        # Only a run that can pause needs its state saved; the others skip the checkpointer.
        graph=builder.compile(checkpointer=checkpointer if uses_interrupts else None),
        nodes=nodes,
        predecessors=predecessors,
        recursion_limit=workflow.settings.recursion_limit or default_recursion_limit,
        uses_interrupts=uses_interrupts,
        settings=msgspec.to_builtins(workflow.settings),
        streams=streams,
    )


def compile_graph(
    workflow_id: str, name: str, graph: Pregel[Any, Any, Any, Any], *, recursion_limit: int = 100
) -> CompiledWorkflow:
    """Wrap any compiled LangGraph graph so the engine runs it like a workflow.

    Its nodes (``get_graph()`` without ``__start__``/``__end__``) get type ``"langgraph"``
    and predecessors from the drawn edges, all on output 0. ``recursion_limit`` applies
    unless the graph's own config sets one. A run's input is the graph's input state as is.
    """
    drawn = graph.get_graph()
    names = [node for node in drawn.nodes if node not in (START, END)]
    predecessors: dict[str, list[tuple[str, int]]] = {node: [] for node in names}
    successors: dict[str, list[str]] = {node: [] for node in names}
    entries: list[str] = []
    for edge in drawn.edges:
        if edge.source == START and edge.target in successors:
            entries.append(edge.target)
        elif edge.source in successors and edge.target in successors:
            predecessors[edge.target].append((edge.source, 0))
            successors[edge.source].append(edge.target)
    positions = _layout(names, entries, successors)
    nodes = {
        node: NodeInfo(
            id=_node_id(workflow_id, node),
            name=node,
            type=LANGGRAPH_NODE_TYPE,
            position=positions[node],
            parameters={},
        )
        for node in names
    }
    return CompiledWorkflow(
        workflow_id=workflow_id,
        name=name,
        graph=graph,
        nodes=nodes,
        predecessors=predecessors,
        recursion_limit=(graph.config or {}).get("recursion_limit", recursion_limit),
        uses_interrupts=graph.checkpointer not in (None, False),
        input_key=None,
    )


def _node_type(registry: NodeRegistry, type_name: str) -> NodeType:
    node_type = registry.get(type_name)
    if node_type is None:
        raise ValueError(f"unknown node type {type_name!r}: parse the workflow first")
    return node_type


def _node_infos(
    workflow: Workflow, registry: NodeRegistry, workflow_id: str, entry: str
) -> dict[str, NodeInfo]:
    successors: dict[str, list[str]] = {node.name: [] for node in workflow.nodes}
    for source, _, target in workflow.edges():
        successors[source].append(target)
    layout = _layout(list(successors), [entry], successors)
    return {
        node.name: NodeInfo(
            id=node.id or _node_id(workflow_id, node.name),
            name=node.name,
            type=node.type,
            position=(node.position[0], node.position[1]) if node.position else layout[node.name],
            parameters=node.parameters,
            type_version=node.type_version,
            outputs=_node_type(registry, node.type).outputs(node.parameters),
        )
        for node in workflow.nodes
    }


def _node_id(workflow_id: str, name: str) -> str:
    """A stable id for a node given none: the same workflow and name give the same id."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"graphpush:{workflow_id}/{name}"))


def _layout(
    names: Sequence[str], entries: Sequence[str], successors: dict[str, list[str]]
) -> dict[str, tuple[float, float]]:
    """Columns by distance from the entries, rows by declaration order within a column."""
    depth = dict.fromkeys(entries, 0)
    queue = deque(entries)
    while queue:
        source = queue.popleft()
        for target in successors[source]:
            if target not in depth:
                depth[target] = depth[source] + 1
                queue.append(target)
    rows: Counter[int] = Counter()
    positions: dict[str, tuple[float, float]] = {}
    for name in names:
        column = depth.get(name, 0)
        positions[name] = (column * COLUMN_WIDTH, rows[column] * ROW_HEIGHT)
        rows[column] += 1
    return positions


def _node_function(name: str, run: NodeFn, sources: list[str], *, fan_in: bool) -> _GraphNode:
    """The LangGraph node: compute the input item, run the node type, record its output."""

    async def node(state: RunState) -> Update:
        item = _merged_item(state, sources) if fan_in else _latest_item(state, sources)
        output, index = await run(item, state)
        return {"agent_results": {name: output}, "completed_nodes": [name], "routes": {name: index}}

    return node


def _latest_item(state: RunState, sources: list[str]) -> dict[str, Any]:
    """The output of the predecessor that completed last; the run input when none has."""
    results = state.get("agent_results", {})
    for done in reversed(state.get("completed_nodes", [])):
        if done in sources:
            return _as_item(results.get(done))
    return dict(state.get("input", {}))


def _merged_item(state: RunState, sources: list[str]) -> dict[str, Any]:
    """The predecessors' outputs merged in connection order (later keys win)."""
    results = state.get("agent_results", {})
    outputs = [_as_item(results[source]) for source in sources if source in results]
    if not outputs:
        return dict(state.get("input", {}))
    return {key: value for output in outputs for key, value in output.items()}


def _as_item(output: Any) -> dict[str, Any]:
    return output if isinstance(output, dict) else {"value": output}


def _add_edges(
    builder: StateGraph[RunState, Any, RunState, RunState],
    workflow: Workflow,
    nodes: dict[str, NodeInfo],
) -> None:
    targets: dict[str, list[list[str]]] = {
        name: [[] for _ in range(info.outputs)] for name, info in nodes.items()
    }
    for source, index, target in workflow.edges():
        if target not in targets[source][index]:
            targets[source][index].append(target)
    joins = _joins(nodes, targets)
    for name, outputs in targets.items():
        if nodes[name].outputs > 1:
            reachable = [*dict.fromkeys(t for output in outputs for t in output), END]
            builder.add_conditional_edges(name, _router(name, outputs), reachable)
            continue
        for target in outputs[0]:
            if target not in joins:
                builder.add_edge(name, target)
    for target, sources in joins.items():
        builder.add_edge(sources, target)


def _joins(nodes: dict[str, NodeInfo], targets: dict[str, list[list[str]]]) -> dict[str, list[str]]:
    """``merge`` node -> its one-output sources, for merges with at least two of them."""
    sources: dict[str, list[str]] = {}
    for name, outputs in targets.items():
        if nodes[name].outputs == 1:
            for target in outputs[0]:
                if nodes[target].type == MERGE_TYPE:
                    sources.setdefault(target, []).append(name)
    return {target: names for target, names in sources.items() if len(names) > 1}


def _router(name: str, outputs: list[list[str]]) -> Callable[[RunState], list[str] | str]:
    """Route to the targets of the output ``name`` took (``state["routes"][name]``), or END."""

    def route(state: RunState) -> list[str] | str:
        return outputs[state["routes"][name]] or END

    return route
