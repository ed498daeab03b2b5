"""Wake the engine when a stream flush is due, even while LangGraph yields nothing.

A node that streamed a few tokens and then thinks for a second must not hold them back:
:func:`paced` runs the runner's iterator in its own task and, while a flush is due
(``deadline()``), waits for the next event only until then, yielding :data:`FLUSH` instead.
The runner's iterator runs start to end in that one task, so LangGraph's context variables
stay in one context.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Final, Protocol, TypeVar

from app.executions.runner import GraphRunner, RunnerEvent
from app.model.records import ExecutionRecord
from app.workflows.compiler import CompiledWorkflow

T = TypeVar("T")


class Flush:
    __slots__ = ()

    def __repr__(self) -> str:
        return "FLUSH"


#: Yielded by :func:`paced` when ``deadline()`` has passed.
FLUSH: Final = Flush()


class _End:
    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


async def paced(
    events: AsyncIterator[T],
    deadline: Callable[[], float | None],
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[T | Flush]:
    """``events`` in order, with :data:`FLUSH` whenever ``deadline()`` (a ``clock`` time)
    has passed. An exception of ``events`` is raised here after the events before it.
    Closing or cancelling this iterator cancels ``events`` (and so the running node)."""
    queue: asyncio.Queue[T | _End] = asyncio.Queue()
    producer = asyncio.create_task(_produce(events, queue))
    try:
        while True:
            due = deadline()
            if due is not None and clock() >= due:
                yield FLUSH  # before the events already waiting: a busy stream flushes too
                continue
            if due is None or not queue.empty():
                item = await queue.get()
            else:
                try:
                    async with asyncio.timeout(due - clock()):
                        item = await queue.get()
                except TimeoutError:
                    continue
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        producer.cancel()
        await asyncio.wait([producer])


async def _produce(events: AsyncIterator[T], queue: asyncio.Queue[T | _End]) -> None:
    try:
        async for event in events:
            queue.put_nowait(event)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        queue.put_nowait(_End(exc))
    else:
        queue.put_nowait(_End(None))


class Recording(Protocol):
    """What :func:`run_events` needs of the run's recorder."""

    @property
    def record(self) -> ExecutionRecord: ...

    def stream_deadline(self) -> float | None: ...


def run_events(
    runner: GraphRunner,
    compiled: CompiledWorkflow,
    recorder: Recording,
    resuming: bool,
    state: dict[str, Any] | None,
) -> AsyncIterator[RunnerEvent | Flush]:
    """The runner's events for ``recorder``'s run (``state``: see
    :meth:`GraphRunner.stream`), :func:`paced` by its stream flushes when the workflow may
    stream (SPEC §8)."""
    record = recorder.record
    events = runner.stream(
        compiled,
        thread_id=record.id,
        input=record.input,
        resume=record.resume_value,
        resuming=resuming,
        state=state,
    )
    return paced(events, recorder.stream_deadline) if compiled.streams else events
