"""Node types: what a kind of workflow node accepts as parameters, how many outputs it has,
what it does when it runs and what the compiler must know of it; and the
:class:`NodeRegistry` that names them (SPEC §2). The built-in types are in
:mod:`app.workflows.builtin_nodes`.

A node function takes the node's input item (a JSON object) and the run state, and returns
``(output, output_index)``: the JSON its successors receive and the n8n output it took.
Node functions emit nothing: the engine builds push events from LangGraph's task stream.
"""

from __future__ import annotations

import operator
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Protocol, TypedDict

from app.workflows.checks import Problem, ValidationContext


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
    #: The node type's :class:`Capabilities`, copied here for the compiler and the engine.
    fan_in: bool = False
    pauses: bool = False
    silent: bool = False

    def to_inode(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "typeVersion": self.type_version,
            "position": [self.position[0], self.position[1]],
            "parameters": self.parameters,
        }


NodeFn = Callable[[dict[str, Any], RunState], Awaitable[tuple[Any, int]]]


class NodeType(Protocol):
    """One kind of node.

    ``outputs`` and ``make`` are only called with parameters ``validate`` accepted, and a
    node function must return an output index below ``outputs(parameters)``.

    A type may also declare capabilities as attributes (all False when absent, see
    :class:`Capabilities`): ``fan_in`` (the compiler joins its inputs and hands it their
    merged outputs), ``pauses`` (it may call ``interrupt()``, so its runs keep a
    checkpoint) and ``silent`` (it never streams tokens or progress, SPEC §8: a workflow of
    silent nodes runs without LangGraph's ``messages`` and ``custom`` modes, and reads
    nothing of its LangGraph config: such a run has no ``thread_id`` there unless it keeps
    a checkpoint or is traced).
    """

    def outputs(self, parameters: dict[str, Any]) -> int: ...

    def validate(
        self, parameters: dict[str, Any], path: str, ctx: ValidationContext
    ) -> list[Problem]: ...

    def make(self, node: NodeInfo) -> NodeFn: ...


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the compiler and the engine must know of a node type beyond its methods."""

    fan_in: bool = False
    pauses: bool = False
    silent: bool = False

    @classmethod
    def of(cls, node_type: NodeType) -> Capabilities:
        """The capabilities ``node_type`` declares; a type that declares none has neither."""
        return cls(
            fan_in=bool(getattr(node_type, "fan_in", False)),
            pauses=bool(getattr(node_type, "pauses", False)),
            silent=bool(getattr(node_type, "silent", False)),
        )


class NodeRegistry:
    """Node types by type name; the Python API registers its own beside the built-ins."""

    def __init__(self, types: dict[str, NodeType] | None = None) -> None:
        self._types: dict[str, NodeType] = {}
        for name, node_type in (types or {}).items():
            self.register(name, node_type)

    def register(self, type_name: str, node_type: NodeType) -> None:
        """Add a type; raise ``ValueError`` if the name is taken."""
        if type_name in self._types:
            raise ValueError(f"node type {type_name!r} is already registered")
        self._types[type_name] = node_type

    def get(self, type_name: str) -> NodeType | None:
        return self._types.get(type_name)

    def names(self) -> list[str]:
        return sorted(self._types)
