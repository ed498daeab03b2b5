"""What the engine runs: a compiled LangGraph graph plus what the push messages need to
know about its nodes (n8n's ``INode`` fields, outputs, predecessors).

Built by :mod:`app.compiler` from an ``AgentWorkflowDto`` or from a registered LangGraph
graph; consumed by :mod:`app.runner`.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict

from langgraph.pregel import Pregel


def merge_dicts(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    return {**left, **right}


class RunState(TypedDict, total=False):
    """The LangGraph state of a built-in workflow run.

    A built-in node returns ``{"agent_results": {name: output}, "completed_nodes": [name],
    "routes": {name: output_index}}``; ``output_index`` is the n8n output it took.
    """

    input: dict[str, Any]
    agent_results: Annotated[dict[str, Any], merge_dicts]
    completed_nodes: Annotated[list[str], operator.add]
    errors: Annotated[list[dict[str, Any]], operator.add]
    routes: Annotated[dict[str, int], merge_dicts]


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One node as n8n's ``INode`` describes it, plus its number of outputs."""

    id: str
    name: str
    type: str
    position: tuple[float, float]
    parameters: dict[str, Any]
    type_version: int = 1
    outputs: int = 1

    def to_inode(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "typeVersion": self.type_version,
            "position": [self.position[0], self.position[1]],
            "parameters": self.parameters,
        }


@dataclass(frozen=True, slots=True)
class CompiledWorkflow:
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
