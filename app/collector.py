"""The garbage collector's pauses: what a process holds once it has started (modules,
compiled graphs, the app's routes, about 130,000 objects) is frozen out of the collector's
reach, so a full collection walks only what was made since.

Without it, a full (generation 2) collection walked every one of them: 20 to 85 ms on a
busy 2-core machine, every few hundred requests that build many objects (a page of 50
runs), which set the p99 of ``GET /agents/executions`` (bench/README.md, history). Frozen
objects are never collected while frozen; they are handed back on exit.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def startup_frozen() -> Iterator[None]:
    """Collect, then freeze every object still tracked (``gc.freeze``) until the block ends
    (the garbage of start-up is not kept alive frozen)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
