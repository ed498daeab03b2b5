"""Workflows, and already compiled LangGraph graphs, to :class:`CompiledWorkflow`: what the
engine runs (SPEC §2).

A workflow node becomes one LangGraph node of the same name whose update is
``{"agent_results": {name: output}, "completed_nodes": [name], "routes": {name: index}}``.
Edges follow n8n's semantics:

- a node with one output sends its output to every target (fan-out, run in parallel);
- a node with several outputs (``if``, ``switch``) routes through a conditional edge to the
  targets of the output it took, or ends its branch when that output has none;
- a fan-in node (``merge``) fed by several one-output nodes waits for all of them (one
  LangGraph join edge) and runs once. Its inputs through an ``if``/``switch`` output are
  not joined: each of them triggers it on its own. A join whose sources are on exclusive
  branches (the two sides of one ``if``) never fires, as in n8n's "wait for both inputs"
  mode.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.pregel import Pregel

from app.workflows.edges import add_edges, run_joins
from app.workflows.layout import layout, node_id
from app.workflows.node_types import (
    Capabilities,
    NodeFn,
    NodeInfo,
    NodeRegistry,
    NodeType,
    RunState,
)
from app.workflows.schema import Workflow

#: ``NodeInfo.type`` of the nodes of a graph registered with :func:`compile_graph`.
LANGGRAPH_NODE_TYPE = "langgraph"

Update = dict[str, Any]


@dataclass(frozen=True, slots=True)
class CompiledWorkflow:
    """What the engine runs: a compiled LangGraph graph, plus what the push messages need to
    know about its nodes (n8n's ``INode`` fields, outputs, predecessors)."""

    workflow_id: str
    name: str
    graph: Pregel[Any, Any, Any, Any]
    nodes: dict[str, NodeInfo]
    #: node name -> its incoming connections as ``(source node, source output index)``.
    predecessors: dict[str, list[tuple[str, int]]]
    recursion_limit: int
    #: True when a node may call ``interrupt()``: the run then needs a checkpointer.
    uses_interrupts: bool = False
    #: Workflow settings (``timeout_s`` ...), as given.
    settings: dict[str, Any] = field(default_factory=dict)
    #: The state key the run input goes under (``RunState.input``); None for a registered
    #: graph, whose input state is the run input itself.
    input_key: str | None = "input"
    #: False when no node can stream (SPEC §8): the run then skips LangGraph's ``messages``
    #: and ``custom`` modes and their cost.
    streams: bool = True


@dataclass(frozen=True, slots=True)
class Partial:
    """Where a run of part of a workflow starts, and the nodes whose results it reuses."""

    starts: tuple[str, ...]
    reused: frozenset[str] = frozenset()


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
    partial: Partial | None = None,
) -> CompiledWorkflow:
    """Build the LangGraph graph of a workflow that
    :func:`app.workflows.schema.parse_workflow` accepted; with ``partial``, the graph of a
    run that starts there (its reused nodes' results come in with the run state).

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
        builder.add_node(name, _node_function(name, run, sources, fan_in=info.fan_in))
    partial = partial or Partial((entry,))
    for start in partial.starts:
        builder.add_edge(START, start)
    add_edges(builder, workflow, nodes, run_joins(nodes, predecessors, partial.reused))
    uses_interrupts = any(info.pauses for info in nodes.values())
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
        streams=not all(info.silent for info in nodes.values()),
    )


def compile_graph(
    workflow_id: str, name: str, graph: Pregel[Any, Any, Any, Any], *, recursion_limit: int = 100
) -> CompiledWorkflow:
    """Wrap any compiled LangGraph graph so the engine runs it like a workflow.

    Its nodes (``get_graph()`` without ``__start__``/``__end__``) get type ``"langgraph"``
    and predecessors from the drawn edges, all on output 0. ``recursion_limit`` applies
    unless the graph's own config sets one. A run's input is the graph's input state as is.
    """
    names, entries, predecessors, successors = _drawn(graph)
    positions = layout(names, entries, successors)
    nodes = {
        node: NodeInfo(
            id=node_id(workflow_id, node),
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


def _drawn(
    graph: Pregel[Any, Any, Any, Any],
) -> tuple[list[str], list[str], dict[str, list[tuple[str, int]]], dict[str, list[str]]]:
    """The drawn graph's nodes, entries, predecessors (on output 0) and successors."""
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
    return names, entries, predecessors, successors


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
    drawn = layout(list(successors), [entry], successors)
    infos: dict[str, NodeInfo] = {}
    for node in workflow.nodes:
        node_type = _node_type(registry, node.type)
        capabilities = Capabilities.of(node_type)
        infos[node.name] = NodeInfo(
            id=node.id or node_id(workflow_id, node.name),
            name=node.name,
            type=node.type,
            position=(node.position[0], node.position[1]) if node.position else drawn[node.name],
            parameters=node.parameters,
            type_version=node.type_version,
            outputs=node_type.outputs(node.parameters),
            fan_in=capabilities.fan_in,
            pauses=capabilities.pauses,
            silent=capabilities.silent,
        )
    return infos


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
