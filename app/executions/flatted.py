"""``flatted`` serialisation (the format of n8n's ``flattedRunData``), for JSON-like values.

Every object, array and string is stored once in a flat array and referenced by its index
as a string; numbers, booleans and null stay inline. ``stringify({})`` is ``"[{}]"``.
"""

from __future__ import annotations

import json
from typing import Any, Final

from app.model.records import ExecutionRecord

#: One encoder for every item: ``json.dumps`` with these options builds a new one per call.
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def stringify(value: Any) -> str:
    table: list[Any] = []
    by_id: dict[int, str] = {}
    by_string: dict[str, str] = {}

    def ref(item: Any) -> Any:
        if isinstance(item, str):
            if item not in by_string:
                by_string[item] = str(len(table))
                table.append(item)
            return by_string[item]
        if isinstance(item, dict | list | tuple):
            if id(item) not in by_id:
                by_id[id(item)] = str(len(table))
                table.append(item)
            return by_id[id(item)]
        return item

    if ref(value) is value:  # a number, boolean or null root still takes slot 0
        table.append(value)
    out: list[str] = []
    index = 0
    while index < len(table):
        item = table[index]
        if isinstance(item, dict):
            flat: Any = {str(k): ref(v) for k, v in item.items()}
        elif isinstance(item, list | tuple):
            flat = [ref(v) for v in item]
        else:
            flat = item
        out.append(_dumps(flat))
        index += 1
    return "[" + ",".join(out) + "]"


#: ``flattedRunData`` of a run with no prior run data (every fresh run): ``"[{}]"``.
NO_RUN_DATA: Final = stringify({})


def prior_run_data(record: ExecutionRecord) -> dict[str, Any]:
    """Prior run data in n8n's ``IRunData`` shape, for ``flattedRunData``."""
    return {
        name: [
            {**_task_meta(meta), "data": output}
            for meta, output in zip(record.run_data[name], outputs, strict=False)
        ]
        for name, outputs in record.outputs.items()
    }


def _task_meta(meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "startTime": meta["start_time"],
        "executionIndex": meta["execution_index"],
        "source": meta.get("source", []),
        "hints": [],
        "executionTime": meta["execution_time"],
        "executionStatus": meta["status"],
    }
