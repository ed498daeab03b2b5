"""The ``GraphRunner`` seam: runs a compiled workflow and yields its task starts and results;
:class:`LangGraphRunner` is the implementation on LangGraph's ``astream``.

Node events come from LangGraph's own task stream (``stream_mode="tasks"``), so a graph
registered from Python reports its nodes exactly like a built-in workflow. A workflow whose
nodes may stream also runs with the ``messages`` and ``custom`` modes (SPEC §8): any chat
model called in a node, and any ``get_stream_writer()`` payload, arrive as chunks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from langgraph.types import Command
from langsmith.utils import tracing_is_enabled

from app.executions.streams import Chunk, custom_chunk, message_chunks
from app.workflows.compiler import CompiledWorkflow

STREAM_MODES: Any = ["tasks", "messages", "custom"]
#: LangGraph's checkpoint namespace separator (``parent:task|child:task``).
NS_SEP = "|"


@dataclass(slots=True)
class TaskStarted:
    task_id: str
    name: str


@dataclass(slots=True)
class TaskFinished:
    task_id: str
    name: str
    result: Any
    error: BaseException | None
    interrupts: list[Any] = field(default_factory=list)


@dataclass(slots=True)
class NodeStreamed:
    """Chunks (:mod:`app.executions.streams`) from the node task ``task_id``; None for a
    custom payload written by a top-level node, which LangGraph does not attribute."""

    task_id: str | None
    chunks: list[Chunk]


RunnerEvent = TaskStarted | TaskFinished | NodeStreamed


class GraphRunner(Protocol):
    """Streams one run (or the resumption of a paused one) of a compiled workflow."""

    def stream(
        self,
        compiled: CompiledWorkflow,
        *,
        thread_id: str,
        input: dict[str, Any] | None = None,
        resume: Any = None,
        resuming: bool = False,
        state: dict[str, Any] | None = None,
    ) -> AsyncIterator[RunnerEvent]:
        """Yield a :class:`TaskStarted` before each node runs and a :class:`TaskFinished`
        after, and between them the :class:`NodeStreamed` chunks the node produces. A
        failing node's ``TaskFinished`` carries the error, then the exception is raised from
        this iterator. Cancelling the consuming task cancels the running node. ``state``:
        the rest of a workflow run's initial state beside its input (a retry's reused
        results); not used on a resume.
        """
        ...


class LangGraphRunner:
    """:class:`GraphRunner` on ``Pregel.astream`` with ``stream_mode="tasks"`` (plus
    ``messages`` and ``custom`` when the workflow may stream)."""

    def __init__(self, *, traced: bool | None = None) -> None:
        """``traced``: whether runs are traced to LangSmith; by default, what LangSmith's
        settings (its environment variables) say when the runner is made."""
        self._traced = bool(tracing_is_enabled()) if traced is None else traced

    async def stream(
        self,
        compiled: CompiledWorkflow,
        *,
        thread_id: str,
        input: dict[str, Any] | None = None,
        resume: Any = None,
        resuming: bool = False,
        state: dict[str, Any] | None = None,
    ) -> AsyncIterator[RunnerEvent]:
        config = run_config(compiled, thread_id, traced=self._traced)
        key = compiled.input_key
        payload: Any = {key: input or {}, **(state or {})} if key else input or {}
        if resuming:
            payload = Command(resume=await _resume_map(compiled, config, resume))
        # With a checkpointer, state is saved once, when the run pauses or ends, not per step.
        options: Any = {"durability": "exit"} if compiled.graph.checkpointer else {}
        if not compiled.streams:
            async for chunk in compiled.graph.astream(
                payload, config, stream_mode="tasks", **options
            ):
                yield _event(chunk)
            return
        # subgraphs: a chat model inside a subgraph node streams too; its chunks are the
        # top-level node's (the first namespace segment names it).
        async for namespace, mode, chunk in compiled.graph.astream(
            payload, config, stream_mode=STREAM_MODES, subgraphs=True, **options
        ):
            event = _streamed(namespace, mode, chunk)
            if event is not None:
                yield event


def run_config(compiled: CompiledWorkflow, thread_id: str, *, traced: bool) -> Any:
    """LangGraph's config for one run of ``compiled`` (``traced``: to LangSmith).

    ``configurable.thread_id`` names the run's checkpoints, and a node's own code (a
    registered graph, a ``python`` or ``llm`` node) or a LangSmith trace may read it. A graph
    with no checkpointer whose nodes are all built-in and silent, untraced, has no reader
    for it and runs without it: LangGraph would copy it into every task's metadata and
    callback manager, ~4% of the CPU of a 3-node run (``bench/README.md``)."""
    config: dict[str, Any] = {"recursion_limit": compiled.recursion_limit}
    if compiled.graph.checkpointer or compiled.streams or traced:
        config["configurable"] = {"thread_id": thread_id}
    return config


async def _resume_map(compiled: CompiledWorkflow, config: Any, value: Any) -> dict[str, Any]:
    """``value`` for each pending interrupt, by interrupt id.

    Addressed by id, LangGraph takes any value: a bare ``Command(resume=None)`` would mean
    "no resume", and a bare ``{}`` would be read as an empty map of ids (the wait node would
    pause again)."""
    snapshot = await compiled.graph.aget_state(config)
    return {pending.id: value for pending in snapshot.interrupts}


def _streamed(namespace: tuple[str, ...], mode: str, chunk: Any) -> RunnerEvent | None:
    if mode == "tasks":
        return None if namespace else _event(chunk)
    if mode == "custom":
        return NodeStreamed(_task_id(namespace[0]) if namespace else None, [custom_chunk(chunk)])
    message, metadata = chunk
    chunks = message_chunks(message)
    if not chunks:
        return None
    owner = namespace[0] if namespace else str(metadata.get("langgraph_checkpoint_ns", ""))
    return NodeStreamed(_task_id(owner.split(NS_SEP)[0]), chunks)


def _task_id(segment: str) -> str:
    """The task id in a checkpoint namespace segment ``"<node>:<task id>"``."""
    return segment.rpartition(":")[2]


def _event(chunk: dict[str, Any]) -> TaskStarted | TaskFinished:
    if "input" in chunk and "triggers" in chunk:
        return TaskStarted(task_id=chunk["id"], name=chunk["name"])
    return TaskFinished(
        task_id=chunk["id"],
        name=chunk["name"],
        result=chunk.get("result"),
        error=chunk.get("error"),
        interrupts=list(chunk.get("interrupts") or ()),
    )
