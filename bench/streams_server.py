"""graphpush's CLI for :mod:`bench.streams`, with each word the ``fake`` model yields stamped
in the file named by ``GRAPHPUSH_BENCH_STAMPS`` (``<message id> <index> <epoch ns>``): the
moment a token enters LangGraph, measured in the server, never sent on the wire.

    python -m bench.streams_server serve --port 8000 ...
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from langchain_core.outputs import ChatGenerationChunk

from app.cli import main
from app.workflows.fake_chat import FakeChat


def stamp_tokens(path: str) -> None:
    original = FakeChat._astream

    async def stamped(
        self: FakeChat, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        lines = []
        async for chunk in original(self, messages, stop, run_manager, **kwargs):
            yielded_ns = time.time_ns()
            yield chunk
            # LangChain names the message once the chunk is handed over (its run id).
            lines.append(f"{chunk.message.id} {len(lines)} {yielded_ns}\n")
        _append(path, lines)  # once per answer: the bench reads them after the run

    FakeChat._astream = stamped  # type: ignore[method-assign]


def _append(path: str, lines: list[str]) -> None:
    with open(path, "a") as stamps:
        stamps.writelines(lines)


if __name__ == "__main__":
    stamp_tokens(os.environ.get("GRAPHPUSH_BENCH_STAMPS", os.devnull))
    sys.exit(main(sys.argv[1:]))
