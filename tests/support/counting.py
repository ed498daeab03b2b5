"""Functions for ``python`` nodes in tests that show which nodes really ran: each counts its
calls, and ``flaky`` fails while its name is in :data:`failing`. Allow-list the module with
:data:`MODULES` and reset it with :func:`reset` before a test."""

from __future__ import annotations

from collections import Counter
from typing import Any

MODULES = ("app.workflows.example_functions", "support.counting")
calls: Counter[str] = Counter()
failing: set[str] = set()


def reset() -> None:
    calls.clear()
    failing.clear()


def counted(item: dict[str, Any]) -> dict[str, Any]:
    """The item plus ``counted``: how many times this function has run."""
    calls["counted"] += 1
    return {**item, "counted": calls["counted"]}


def flaky(item: dict[str, Any]) -> dict[str, Any]:
    """The item plus ``flaky`` (its call count); raises while ``"flaky"`` is in ``failing``."""
    calls["flaky"] += 1
    if "flaky" in failing:
        raise RuntimeError("flaky is failing")
    return {**item, "flaky": calls["flaky"]}
