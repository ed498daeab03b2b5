"""What ``graphpush serve`` sets for its process's garbage collector (app/cli/process.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from app.cli.process import GC_THRESHOLDS, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_serve_freezes_what_exists_and_raises_the_thresholds() -> None:
    gc.unfreeze()
    before = gc.get_freeze_count()
    tune_gc()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() > before
