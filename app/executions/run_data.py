"""What a node run leaves in its :class:`ExecutionRecord`: its metadata (``run_data``), its
output (``outputs``), the n8n output it took, and the sources it ran from. Retries and
resumes read them back (:mod:`app.executions.retry`)."""

from __future__ import annotations

from typing import Any

import msgspec

from app import messages as m
from app.model.records import ExecutionRecord


def remember(
    record: ExecutionRecord,
    name: str,
    *,
    silent: bool,
    start: m.TaskStartedData,
    result: m.TaskResultData,
    counts: dict[str, list[int]],
    main: list[list[m.JsonObject]] | None,
) -> None:
    """Keep the node run's metadata and output in ``record``; a ``silent`` one (a waiting
    node resumed) finishes the run it began."""
    runs = record.run_data.setdefault(name, [])
    outputs = record.outputs.setdefault(name, [])
    if silent and runs:
        runs.pop()
        outputs.pop()
    runs.append(
        {
            "status": result.executionStatus,
            "start_time": start.startTime,
            "execution_index": start.executionIndex,
            "execution_time": result.executionTime,
            "item_count": counts,
            "source": msgspec.to_builtins(start.source),
        }
    )
    outputs.append({"main": main or []})


def sources(
    record: ExecutionRecord,
    predecessors: list[tuple[str, int]],
    routes: dict[str, int],
    *,
    fan_in: bool,
) -> list[m.SourceData]:
    """The node runs a node starts from: its predecessors that ran and took the output
    leading to it (only the latest one unless the node is ``fan_in``)."""
    runs = record.run_data
    done = [(src, out) for src, out in predecessors if runs.get(src) and routes.get(src, 0) == out]
    if not fan_in:
        done = sorted(done, key=lambda p: runs[p[0]][-1]["execution_index"])[-1:]
    return [m.SourceData(src, out, len(runs[src]) - 1) for src, out in done]


def node_output(name: str, result: Any) -> tuple[Any, int]:
    """The node's output JSON and the output index it took."""
    if isinstance(result, dict) and "agent_results" in result:
        output = result["agent_results"].get(name, {})
        index = int(result.get("routes", {}).get(name, 0))
    else:
        output, index = (result if result is not None else {}), 0
    if not isinstance(output, dict):
        output = {"value": output}
    return output, index


def output_index(output: dict[str, Any]) -> int:
    """The output a recorded node run took: the one holding its items (0 when none does)."""
    return next((i for i, items in enumerate(output.get("main", [])) if items), 0)
