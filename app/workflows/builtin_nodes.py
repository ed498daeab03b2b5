"""The built-in node types of SPEC §2: ``trigger``, ``set``, ``if``, ``switch``, ``merge``,
``delay``, ``fail``, ``wait`` and ``python``, all deterministic and offline.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import inspect
import operator
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

import msgspec
from langgraph.types import interrupt

from app.errors import NodeFailure, problem
from app.workflows.checks import NonEmpty, Problem, ValidationContext, check_value, join_path
from app.workflows.llm_node import LlmNode
from app.workflows.node_types import NodeFn, NodeInfo, NodeRegistry, NodeType, RunState

P = TypeVar("P", bound=msgspec.Struct)


class _Builtin(Generic[P]):
    """A node type whose parameters decode to the Struct ``params``; one output."""

    params: type[P]
    fan_in: ClassVar[bool] = False
    pauses: ClassVar[bool] = False
    #: Built-in nodes never stream, but ``python``, whose function may (SPEC §8).
    silent: ClassVar[bool] = True

    def outputs(self, parameters: dict[str, Any]) -> int:
        return 1

    def validate(
        self, parameters: dict[str, Any], path: str, ctx: ValidationContext
    ) -> list[Problem]:
        return check_value(parameters, self.params, path)

    def make(self, node: NodeInfo) -> NodeFn:
        return self.bind(msgspec.convert(node.parameters, self.params), node)

    def bind(self, params: P, node: NodeInfo) -> NodeFn:
        raise NotImplementedError


class _NoParams(msgspec.Struct, forbid_unknown_fields=True):
    pass


class _Passthrough(_Builtin[_NoParams]):
    """``trigger``: its input (the run input) is its output."""

    params = _NoParams

    def bind(self, params: _NoParams, node: NodeInfo) -> NodeFn:
        async def run(item: dict[str, Any], state: RunState) -> tuple[Any, int]:
            return item, 0

        return run


class _Merge(_Passthrough):
    """Fan-in: runs once all its inputs have arrived; its input is their merged outputs."""

    fan_in = True


class _SetParams(msgspec.Struct, forbid_unknown_fields=True):
    values: dict[str, Any] = {}


class _Set(_Builtin[_SetParams]):
    params = _SetParams

    def bind(self, params: _SetParams, node: NodeInfo) -> NodeFn:
        async def run(item: dict[str, Any], state: RunState) -> tuple[Any, int]:
            return {**item, **params.values}, 0

        return run


Op = Literal["eq", "ne", "gt", "gte", "lt", "lte", "contains", "exists"]

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
    "contains": lambda actual, expected: expected in actual,
    "exists": lambda actual, _: actual is not None,
}


class _IfParams(msgspec.Struct, forbid_unknown_fields=True):
    field: NonEmpty
    op: Op = "eq"
    value: Any = None


class _If(_Builtin[_IfParams]):
    """Output 0 when ``item[field] <op> value`` holds, else output 1 (n8n's true/false)."""

    params = _IfParams

    def outputs(self, parameters: dict[str, Any]) -> int:
        return 2

    def bind(self, params: _IfParams, node: NodeInfo) -> NodeFn:
        compare = _COMPARE[params.op]

        async def run(item: dict[str, Any], state: RunState) -> tuple[Any, int]:
            try:
                holds = bool(compare(_lookup(item, params.field), params.value))
            except TypeError:  # e.g. "gt" between a string and a number: the test fails
                holds = False
            return item, 0 if holds else 1

        return run


class _SwitchParams(msgspec.Struct, forbid_unknown_fields=True):
    field: NonEmpty
    cases: Annotated[list[Any], msgspec.Meta(min_length=1)]


class _Switch(_Builtin[_SwitchParams]):
    """Output ``i`` for the first ``cases[i]`` equal to ``item[field]``; the last is fallback."""

    params = _SwitchParams

    def outputs(self, parameters: dict[str, Any]) -> int:
        return len(parameters["cases"]) + 1

    def bind(self, params: _SwitchParams, node: NodeInfo) -> NodeFn:
        async def run(item: dict[str, Any], state: RunState) -> tuple[Any, int]:
            actual = _lookup(item, params.field)
            matches = (i for i, case in enumerate(params.cases) if case == actual)
            return item, next(matches, len(params.cases))

        return run


class _DelayParams(msgspec.Struct, forbid_unknown_fields=True):
    ms: Annotated[int, msgspec.Meta(ge=0)]


class _Delay(_Builtin[_DelayParams]):
    """Sleeps ``ms``; cancelling the task cancels the sleep at once."""

    params = _DelayParams

    def bind(self, params: _DelayParams, node: NodeInfo) -> NodeFn:
        async def run(item: dict[str, Any], state: RunState) -> tuple[Any, int]:
            await asyncio.sleep(params.ms / 1000)
            return item, 0

        return run


class _FailParams(msgspec.Struct, forbid_unknown_fields=True):
    message: NonEmpty
    description: str | None = None


class _Fail(_Builtin[_FailParams]):
    params = _FailParams

    def bind(self, params: _FailParams, node: NodeInfo) -> NodeFn:
        async def run(item: dict[str, Any], state: RunState) -> tuple[Any, int]:
            raise NodeFailure(params.message, params.description)

        return run


class _WaitParams(msgspec.Struct, forbid_unknown_fields=True):
    message: str | None = None


class _Wait(_Builtin[_WaitParams]):
    """Pauses the run with ``interrupt({"node": name, "message"?: ...})`` until resumed.

    The resume value is merged into the item when it is an object, else kept as ``value``.
    """

    params = _WaitParams
    pauses = True

    def bind(self, params: _WaitParams, node: NodeInfo) -> NodeFn:
        payload: dict[str, Any] = {"node": node.name}
        if params.message is not None:
            payload["message"] = params.message

        async def run(item: dict[str, Any], state: RunState) -> tuple[Any, int]:
            value = interrupt(payload)
            return {**item, **value} if isinstance(value, dict) else {**item, "value": value}, 0

        return run


class _PythonParams(msgspec.Struct, forbid_unknown_fields=True):
    function: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")]


class _Python(_Builtin[_PythonParams]):
    """Calls ``module:function`` (module in the allow-list) with a copy of the input item.

    Sync functions run in a worker thread, async ones are awaited; a result that is not an
    object is wrapped as ``{"value": result}``. The function may stream (SPEC §8): a chat
    model it calls, ``get_stream_writer()`` payloads.
    """

    params = _PythonParams
    silent = False

    def validate(
        self, parameters: dict[str, Any], path: str, ctx: ValidationContext
    ) -> list[Problem]:
        problems = super().validate(parameters, path, ctx)
        if problems:
            return problems
        reason = _unusable(parameters["function"], ctx.python_modules)
        return [problem(join_path(path, "function"), reason)] if reason else []

    def bind(self, params: _PythonParams, node: NodeInfo) -> NodeFn:
        module_name, _, attribute = params.function.partition(":")
        function = getattr(importlib.import_module(module_name), attribute)

        async def run(item: dict[str, Any], state: RunState) -> tuple[Any, int]:
            argument = copy.deepcopy(item)
            if inspect.iscoroutinefunction(function):
                result = await function(argument)
            else:
                result = await asyncio.to_thread(function, argument)
            return result if isinstance(result, dict) else {"value": result}, 0

        return run


def _unusable(reference: str, allowed: tuple[str, ...]) -> str | None:
    """Why ``module:function`` cannot be called, or None. Only allowed modules are imported."""
    module_name, _, attribute = reference.partition(":")
    if module_name not in allowed:
        listed = ", ".join(allowed) or "empty"
        return f"module {module_name!r} is not in the allow-list ({listed})"
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import failure is the workflow author's to fix
        return f"cannot import {module_name!r}: {exc}"
    if not callable(getattr(module, attribute, None)):
        return f"{reference!r} is not a callable"
    return None


def _lookup(item: dict[str, Any], field: str) -> Any:
    """``item[field]``, else the dotted path ``a.b.c`` through nested objects; None if absent."""
    if field in item:
        return item[field]
    value: Any = item
    for part in field.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


BUILTINS: dict[str, NodeType] = {
    "trigger": _Passthrough(),
    "set": _Set(),
    "if": _If(),
    "switch": _Switch(),
    "merge": _Merge(),
    "delay": _Delay(),
    "fail": _Fail(),
    "wait": _Wait(),
    "python": _Python(),
    "llm": LlmNode(),
}


def builtin_registry() -> NodeRegistry:
    """A registry of the built-in types, to which the Python API may add its own."""
    return NodeRegistry(BUILTINS)
