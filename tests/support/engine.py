"""Helpers for the engine and REST tests: workflow bodies, event-log views, n8n shapes."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import httpx

from support.app import logged_messages
from support.wait import eventually

REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "n8n-push"
NODE_EVENTS = ("nodeExecuteBefore", "nodeExecuteAfter", "nodeExecuteAfterData")


def node(name: str, type_: str = "trigger", **parameters: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "parameters": parameters}


def workflow(
    nodes: list[dict[str, Any]], edges: list[tuple[str, int, str]], **extra: Any
) -> dict[str, Any]:
    """A workflow body from ``(source, output index, target)`` edges."""
    connections: dict[str, Any] = {}
    for source, index, target in edges:
        outputs = connections.setdefault(source, {"main": []})["main"]
        while len(outputs) <= index:
            outputs.append([])
        outputs[index].append({"node": target, "type": "main", "index": 0})
    return {"name": "test", "nodes": nodes, "connections": connections, **extra}


def chain(*nodes: dict[str, Any], name: str = "chain", **extra: Any) -> dict[str, Any]:
    """``nodes`` connected one after the other on output 0; ``extra`` are more body fields."""
    names = [n["name"] for n in nodes]
    edges = [(a, 0, b) for a, b in itertools.pairwise(names)]
    return workflow(list(nodes), edges, **{"name": name, **extra})


def kinds(messages: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """Each message as ``(type, nodeName)``; ``nodeName`` is None for lifecycle messages."""
    return [(m["type"], m["data"].get("nodeName")) for m in messages]


def node_triples(*names: str) -> list[tuple[str, str | None]]:
    return [(kind, name) for name in names for kind in NODE_EVENTS]


def null_paths(value: Any, path: str = "$") -> list[str]:
    """Every place in ``value`` that holds JSON ``null``."""
    if value is None:
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in null_paths(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in null_paths(v, f"{path}[{i}]")]
    return []


def shape(value: Any, opaque: frozenset[str] = frozenset({"json", "parameters"})) -> Any:
    """The JSON value with leaves replaced by their type names; keys in ``opaque`` (node
    output, node parameters) are not looked into; ``graph_state`` (our extension) is dropped."""
    if isinstance(value, dict):
        return {
            k: "object" if k in opaque else shape(v, opaque)
            for k, v in value.items()
            if k != "graph_state"
        }
    if isinstance(value, list):
        return [shape(v, opaque) for v in value]
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def reference(name: str) -> list[dict[str, Any]]:
    """A captured n8n run: ``{"type", "data"}`` per push message."""
    lines = (REFERENCE / name).read_text().splitlines()
    return [{"type": m["type"], "data": m["data"]} for m in map(json.loads, lines)]


async def wait_for_log(
    client: httpx.AsyncClient,
    execution_id: str,
    type_: str,
    node_name: str | None = None,
    within: float = 5,
) -> list[dict[str, Any]]:
    """Poll the event log until it holds a ``type_`` message (of ``node_name``, if given)."""

    def holds(messages: list[dict[str, Any]]) -> bool:
        return any(kind == type_ and node_name in (None, name) for kind, name in kinds(messages))

    return await eventually(
        lambda: logged_messages(client, execution_id),
        until=holds,
        within=within,
        what=f"{type_} {node_name or ''} in the log of {execution_id}",
    )


def error_body(response: httpx.Response) -> dict[str, Any]:
    """The SPEC §3 error object of ``response``, checked for its three keys."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["message"], body
    error: dict[str, Any] = body["error"]
    return error
