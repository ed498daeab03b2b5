"""The ``AgentWorkflowDto`` (SPEC §2) as msgspec Structs, and its validation.

:func:`parse_workflow` is the one gate untrusted workflow JSON passes through: what it
returns is safe to hand to :func:`app.workflows.compiler.compile_workflow`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, cast

import msgspec

from app.errors import ValidationFailed, problem
from app.model.ids import Identifier
from app.workflows.checks import (
    NonEmpty,
    Problem,
    ValidationContext,
    check_value,
    from_msgspec,
    join_path,
)

if TYPE_CHECKING:
    from app.workflows.node_types import NodeRegistry

#: A workflow id, and the id a graph registered from Python takes.


class Connection(msgspec.Struct, frozen=True):
    """One target of an output: n8n's ``IConnection``."""

    node: str
    type: str = "main"
    #: The target's input (n8n); kept as given, every node here has one input.
    index: Annotated[int, msgspec.Meta(ge=0)] = 0


class WorkflowNode(msgspec.Struct, frozen=True):
    """One node: n8n's ``INode`` with snake_case names; ``parameters`` depend on ``type``."""

    name: NonEmpty
    type: NonEmpty
    parameters: dict[str, Any] = {}
    position: Annotated[list[float], msgspec.Meta(min_length=2, max_length=2)] | None = None
    id: str | None = None
    type_version: int = 1


class WorkflowSettings(msgspec.Struct, frozen=True):
    #: Longest a run may execute; the server's ``execution_timeout_s`` applies if smaller.
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] | None = None
    #: Running runs of this workflow at once (SPEC §10); more wait their turn, queued.
    max_concurrency: Annotated[int, msgspec.Meta(ge=1)] | None = None
    #: The bound on LangGraph steps; loops are refused unless it is set.
    recursion_limit: Annotated[int, msgspec.Meta(ge=1)] | None = None
    #: Where each run's completion webhook goes (SPEC §11), unless the run names its own.
    webhook_url: str | None = None


class Workflow(msgspec.Struct, frozen=True, kw_only=True):
    id: Identifier | None = None
    name: NonEmpty
    nodes: Annotated[list[WorkflowNode], msgspec.Meta(min_length=1)]
    #: n8n's shape: source name -> connection type -> one list per output -> targets.
    connections: dict[str, dict[str, list[list[Connection]]]] = {}
    settings: WorkflowSettings = WorkflowSettings()
    #: The node the run starts at; needed only when several nodes have no incoming connection.
    entry: str | None = None

    def edges(self) -> Iterator[tuple[str, int, str]]:
        """Every ``(source, output index, target)`` of ``main`` connections, in order."""
        for source, by_type in self.connections.items():
            for index, targets in enumerate(by_type.get("main", [])):
                for target in targets:
                    yield source, index, target.node

    def roots(self) -> list[str]:
        """The names of the nodes no other node connects to, in node order."""
        names = dict.fromkeys(node.name for node in self.nodes)
        targets = {target for source, _, target in self.edges() if source in names}
        return [name for name in names if name not in targets]

    def entry_node(self) -> str | None:
        """``entry`` if set, else the only node without an incoming connection (or None)."""
        if self.entry is not None:
            return self.entry
        roots = self.roots()
        return roots[0] if len(roots) == 1 else None


def parse_workflow(
    body: bytes | dict[str, Any], registry: NodeRegistry, *, python_modules: tuple[str, ...]
) -> Workflow:
    """Decode and validate a workflow; raise :class:`ValidationFailed` naming every problem.

    ``details`` lists ``{"path", "message"}`` entries (``nodes[3].parameters.ms``). Shape
    problems (JSON types) are all reported first; the checks that need a well-typed workflow
    (names, node types, parameters, connections, entry, cycles, reachability) run once the
    shape is right, and all of theirs are reported together.
    """
    raw = _decode(body)
    problems = check_value(raw, Workflow, "")
    if problems:
        raise _invalid(problems)
    try:
        workflow = msgspec.convert(raw, Workflow)
    except msgspec.ValidationError as exc:  # a mismatch the walk does not see (non-str keys)
        raise _invalid([from_msgspec(exc, "")]) from None
    problems = _semantic_problems(workflow, registry, ValidationContext(python_modules))
    if problems:
        raise _invalid(problems)
    return workflow


def workflow_to_json(workflow: Workflow) -> dict[str, Any]:
    """The workflow as JSON-ready builtins for storage, without the fields that are None."""
    return cast(dict[str, Any], _without_none(workflow))


def _decode(body: bytes | dict[str, Any]) -> Any:
    if isinstance(body, dict):
        return body
    try:
        return msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise _invalid([problem("$", f"invalid JSON: {exc}")]) from None


def _invalid(problems: list[Problem]) -> ValidationFailed:
    return ValidationFailed("workflow is invalid", details=problems)


def _without_none(value: Any) -> Any:
    if isinstance(value, msgspec.Struct):
        fields = msgspec.structs.fields(value)
        pairs = ((f.encode_name, getattr(value, f.name)) for f in fields)
        return {name: _without_none(v) for name, v in pairs if v is not None}
    if isinstance(value, list):
        return [_without_none(item) for item in value]
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items()}
    return value


# --- checks that need a well-typed workflow -------------------------------------------

#: LangGraph refuses these node names (its reserved names and namespace separators).
_RESERVED_NAMES = frozenset({"__start__", "__end__"})
_RESERVED_CHARS = ("|", ":")


def _semantic_problems(
    workflow: Workflow, registry: NodeRegistry, ctx: ValidationContext
) -> list[Problem]:
    """Names, types and parameters; then connections (output counts known); then the graph."""
    outputs: dict[str, int] = {}
    problems = _name_problems(workflow.nodes)
    for i, node in enumerate(workflow.nodes):
        node_type = registry.get(node.type)
        if node_type is None:
            known = ", ".join(registry.names())
            problems.append(
                problem(f"nodes[{i}].type", f"unknown node type {node.type!r} ({known})")
            )
            continue
        found = node_type.validate(node.parameters, f"nodes[{i}].parameters", ctx)
        if not found:
            outputs[node.name] = node_type.outputs(node.parameters)
        problems += found
    problems += _connection_problems(workflow, outputs)
    problems += _graph_problems(workflow)
    return problems


def _name_problems(nodes: Sequence[WorkflowNode]) -> list[Problem]:
    problems: list[Problem] = []
    first_name: dict[str, int] = {}
    first_id: dict[str, int] = {}
    for i, node in enumerate(nodes):
        if node.name in _RESERVED_NAMES or any(c in node.name for c in _RESERVED_CHARS):
            problems.append(problem(f"nodes[{i}].name", "reserved name, or contains '|' or ':'"))
        if node.name in first_name:
            problems.append(
                problem(f"nodes[{i}].name", f"duplicate of nodes[{first_name[node.name]}]")
            )
        if node.id is not None and node.id in first_id:
            problems.append(problem(f"nodes[{i}].id", f"duplicate of nodes[{first_id[node.id]}]"))
        first_name.setdefault(node.name, i)
        if node.id is not None:
            first_id.setdefault(node.id, i)
    return problems


def _connection_problems(workflow: Workflow, outputs: dict[str, int]) -> list[Problem]:
    """Sources and targets exist, types are ``main``, output indexes are in range."""
    names = {node.name for node in workflow.nodes}
    problems: list[Problem] = []
    for source, by_type in workflow.connections.items():
        at = join_path("connections", source)
        if source not in names:
            problems.append(problem(at, f"unknown source node {source!r}"))
        for kind, lists in by_type.items():
            if kind != "main":
                problems.append(problem(join_path(at, kind), "only 'main' connections exist"))
                continue
            for i, targets in enumerate(lists):
                if targets and source in outputs and i >= outputs[source]:
                    message = f"no output {i}: {source!r} has {outputs[source]}"
                    problems.append(problem(f"{join_path(at, 'main')}[{i}]", message))
                for j, target in enumerate(targets):
                    here = f"{join_path(at, 'main')}[{i}][{j}]"
                    if target.node not in names:
                        problems.append(problem(f"{here}.node", f"unknown node {target.node!r}"))
                    if target.type != "main":
                        problems.append(problem(f"{here}.type", "only 'main' connections exist"))
    return problems


def _graph_problems(workflow: Workflow) -> list[Problem]:
    """One entry, no unbounded cycle, every node reachable from the entry."""
    names = [node.name for node in workflow.nodes]
    successors: dict[str, list[str]] = {name: [] for name in names}
    for source, _, target in workflow.edges():
        if source in successors and target in successors:
            successors[source].append(target)
    entry = workflow.entry_node()
    if workflow.entry is not None and entry not in successors:
        return [problem("entry", f"unknown node {workflow.entry!r}")]
    if entry is None:
        return [problem("connections", _no_single_root(workflow))]
    problems: list[Problem] = []
    if workflow.settings.recursion_limit is None:
        problems += [
            problem("connections", f"cycle {' -> '.join(cycle)} needs settings.recursion_limit")
            for cycle in _cycles(entry, successors)
        ]
    reached = reachable(entry, successors)
    problems += [
        problem(f"nodes[{i}]", f"{name!r} is not reachable from the entry {entry!r}")
        for i, name in enumerate(names)
        if name not in reached
    ]
    return problems


def _no_single_root(workflow: Workflow) -> str:
    roots = workflow.roots()
    if not roots:
        return "every node has an incoming connection: name the entry node in 'entry'"
    listed = ", ".join(repr(root) for root in roots)
    return f"several nodes have no incoming connection ({listed}): name one in 'entry'"


def reachable(entry: str, successors: Mapping[str, Sequence[str]]) -> set[str]:
    """``entry`` and every node reachable from it over ``successors`` (node -> targets)."""
    seen, stack = {entry}, [entry]
    while stack:
        for target in successors.get(stack.pop(), ()):
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


def _cycles(entry: str, successors: dict[str, list[str]]) -> list[list[str]]:
    """One cycle per back edge found by a depth-first walk (from the entry, then the rest)."""
    cycles: list[list[str]] = []
    done: set[str] = set()
    for root in [entry, *successors]:
        if root in done:
            continue
        path, iters = [root], [iter(successors[root])]
        while iters:
            target = next(iters[-1], None)
            if target is None:
                done.add(path.pop())
                iters.pop()
            elif target in path:
                cycles.append([*path[path.index(target) :], target])
            elif target not in done:
                path.append(target)
                iters.append(iter(successors[target]))
    return cycles
