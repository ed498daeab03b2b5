"""The example workflows in ``examples/``, loaded on first start so there is something to run."""

from __future__ import annotations

import logging
from pathlib import Path

from app.errors import Conflict
from app.service import ExecutionService

log = logging.getLogger("graphpush")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


async def load_examples(service: ExecutionService, folder: Path = EXAMPLES) -> int:
    """Create each ``*.json`` workflow of ``folder`` that does not exist yet; returns how many."""
    created = 0
    for path in sorted(folder.glob("*.json")):
        try:
            await service.create_workflow(path.read_bytes())
            created += 1
        except Conflict:
            continue
    return created
