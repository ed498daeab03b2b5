"""The llm node's parts without a server (SPEC §8): prompt templating, model names, and the
fake model's word pieces."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.workflows.fake_chat import words
from app.workflows.llm_node import render, unusable_model
from app.workflows.node_types import RunState

STATE: RunState = {
    "input": {"topic": "refunds", "customer": {"name": "Ada"}, "n": 3},
    "agent_results": {"Tag": {"team": "billing"}, "v1.2": {"ok": True}, "Obj": {"x": {"a": [1]}}},
}


@pytest.mark.parametrize(
    ("template", "rendered"),
    [
        ("About {input.topic}", "About refunds"),
        ("Hi {input.customer.name}", "Hi Ada"),
        ("{input.n} items", "3 items"),
        ("team {results.Tag.team}", "team billing"),
        ("dotted {results.v1.2.ok}", "dotted true"),
        ("object {results.Obj.x}", 'object {"a":[1]}'),
        ("missing [{input.nope}] [{results.Ghost.x}]", "missing [] []"),
        ("not a reference {topic} {other.x}", "not a reference {topic} {other.x}"),
    ],
)
def test_prompts_name_the_run_state(template: str, rendered: str) -> None:
    assert render(template, STATE) == rendered


@pytest.mark.parametrize(
    ("model", "usable"),
    [("fake", True), ("gpt-4o", False), (":gpt", False), ("openai:", False)],
)
def test_a_model_is_fake_or_provider_and_name(model: str, usable: bool) -> None:
    assert (unusable_model(model) is None) is usable


@given(st.text())
def test_the_fake_model_s_pieces_add_up_to_its_answer(text: str) -> None:
    pieces = words(text)
    assert "".join(pieces) == text
    assert all(piece.strip() for piece in pieces[:-1])  # each but a trailing one has a word
