"""The example workflows in ``examples/``, loaded on first start so there is something to run."""

from __future__ import annotations

import asyncio
from pathlib import Path

from app.errors import Conflict
from app.workflows.service import WorkflowService

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _bodies(folder: Path) -> list[bytes]:
    return [path.read_bytes() for path in sorted(folder.glob("*.json"))]


async def load_examples(workflows: WorkflowService, folder: Path = EXAMPLES) -> int:
    """Create each ``*.json`` workflow of ``folder`` that does not exist yet; returns how many."""
    created = 0
    for body in await asyncio.to_thread(_bodies, folder):
        try:
            await workflows.create(body)
            created += 1
        except Conflict:
            continue
    return created
