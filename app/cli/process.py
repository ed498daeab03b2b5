"""What ``graphpush serve`` sets for its own process, as the process owner (a library
leaves the garbage collector alone).

The server holds many long-lived objects (the modules of LangGraph, Starlette and uvicorn,
then per connection uvicorn's protocol, websockets' parser and Starlette's middleware
chain), and CPython's full collections walk all of them. :func:`tune_gc` moves what exists
after start-up out of the collector's reach (``gc.freeze``) and collects the young
generation less often; bench/README.md has the measurements.
"""

from __future__ import annotations

import gc
from typing import Final

#: ``gc.set_threshold`` of the server. CPython 3.11's (700, 10, 10) starts a young
#: collection every 700 allocations, several per run, and a full one every ~70,000.
GC_THRESHOLDS: Final = (50_000, 20, 20)


def tune_gc() -> None:
    """Freeze what exists now (call it once the app is built) and raise the thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
