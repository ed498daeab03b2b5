"""Where nodes without a position are drawn, and the ids of nodes given none."""

from __future__ import annotations

import uuid
from collections import Counter, deque
from collections.abc import Sequence

#: Auto layout of nodes without a position: one column per step from the entry.
COLUMN_WIDTH = 220.0
ROW_HEIGHT = 140.0


def node_id(workflow_id: str, name: str) -> str:
    """A stable id for a node given none: the same workflow and name give the same id."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"graphpush:{workflow_id}/{name}"))


def layout(
    names: Sequence[str], entries: Sequence[str], successors: dict[str, list[str]]
) -> dict[str, tuple[float, float]]:
    """Columns by distance from the entries, rows by declaration order within a column."""
    depth = dict.fromkeys(entries, 0)
    queue = deque(entries)
    while queue:
        source = queue.popleft()
        for target in successors[source]:
            if target not in depth:
                depth[target] = depth[source] + 1
                queue.append(target)
    rows: Counter[int] = Counter()
    positions: dict[str, tuple[float, float]] = {}
    for name in names:
        column = depth.get(name, 0)
        positions[name] = (column * COLUMN_WIDTH, rows[column] * ROW_HEIGHT)
        rows[column] += 1
    return positions
