"""Hypothesis strategies for hostile input: what a careless or malicious client sends."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import strategies as st

from app.model.cursor import MAX_CURSOR
from app.push.commands import COMMAND_TYPES

#: Text that trips number parsers: non-ASCII digits, signs, separators, values past 64 bits.
NUMBERISH = st.sampled_from(
    [
        *("²", "\u0663", "\u06f3\u06f3", "\uff11", "1_0", "+1", "-1", " 1", "1.5", "1e3"),
        *("", "0", "200", "201", str(MAX_CURSOR), str(MAX_CURSOR + 1), "9" * 40, "\x00"),
    ]
)
TEXT = NUMBERISH | st.text(max_size=20) | st.integers(-(2**70), 2**70).map(str)
#: Header values an HTTP parser lets through: Latin-1 bytes but control characters, and no
#: surrounding spaces.
HEADER_VALUE = (NUMBERISH | st.text(st.characters(max_codepoint=0xFF), max_size=20)).map(
    lambda text: bytes(b for b in text.encode("latin-1", "replace") if 0x1F < b != 0x7F).strip()
)
JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=10,
)
#: JSON nested deeper than the interpreter's recursion limit, and truncated. (Built by
#: ``map``: a strategy's repr holds its literal values, and Hypothesis warns on a long one.)
TOO_DEEP = st.sampled_from([(b"[", b""), (b'{"a":', b""), (b"[", b"]")]).map(
    lambda parts: parts[0] * 5_000 + parts[1] * 5_000
)
#: The app under test runs in another thread, and LangGraph's checkpoint ids use the global
#: ``random``: Hypothesis, seeing its state move during a draw, takes it for a strategy's use.
FOREIGN_RANDOM = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)


def commands(execution_ids: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """WebSocket commands (SPEC §5.1), well-formed or not, about ``execution_ids`` or others."""
    cursor = st.integers() | st.sampled_from([MAX_CURSOR, MAX_CURSOR + 1]) | JSON
    data = st.fixed_dictionaries(
        {},
        optional={
            "executionId": (st.sampled_from(execution_ids) if execution_ids else TEXT) | JSON,
            "after": cursor,
        },
    )
    return st.fixed_dictionaries(
        {},
        optional={"type": st.sampled_from(sorted(COMMAND_TYPES)) | JSON, "data": data | JSON},
    )


#: The stores hostile input is tried against: text a store cannot hold (a NUL in a key for
#: PostgreSQL) must be refused before it reaches one.
STORES = ["sqlite", "postgres"]


def store_options(store: str) -> dict[str, Any]:
    """Settings that select ``store`` (a fresh PostgreSQL schema of its own)."""
    from support.scaleout import fresh_schema

    return {"database_url": fresh_schema()} if store == "postgres" else {}
