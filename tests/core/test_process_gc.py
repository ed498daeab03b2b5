"""The garbage collector: the thresholds ``graphpush serve`` sets for its process
(app/cli/process.py), and what the app freezes once started (app/collector.py)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from app.cli.process import GC_THRESHOLDS, tune_gc
from app.collector import startup_frozen


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_serve_raises_the_thresholds() -> None:
    tune_gc()
    assert gc.get_threshold() == GC_THRESHOLDS


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only a collection frees it


@pytest.mark.usefixtures("restored_gc")
def test_what_exists_at_start_is_frozen_until_the_app_stops() -> None:
    gc.unfreeze()
    gc.disable()
    try:
        garbage = weakref.ref(_Node())
        assert garbage() is not None
        with startup_frozen():
            assert garbage() is None  # collected, not kept alive frozen
            assert gc.get_freeze_count() > 0
        assert gc.get_freeze_count() == 0
    finally:
        gc.enable()
