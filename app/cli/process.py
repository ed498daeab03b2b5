"""What ``graphpush serve`` sets for its own process, as the process owner (a library
leaves the garbage collector's thresholds alone).

The server makes many short-lived objects per run and per request; CPython 3.11's
thresholds (700, 10, 10) start a young collection every 700 allocations, several per run.
:func:`tune_gc` collects the young generation less often. What exists once the app has
started is frozen out of the collector's reach by the lifespan (:mod:`app.collector`);
bench/README.md has the measurements of both.
"""

from __future__ import annotations

import gc
from typing import Final

#: ``gc.set_threshold`` of the server: a young collection every 50,000 allocations, a full
#: one every 400 of those.
GC_THRESHOLDS: Final = (50_000, 20, 20)


def tune_gc() -> None:
    """Raise the collector's thresholds for this process."""
    gc.set_threshold(*GC_THRESHOLDS)
