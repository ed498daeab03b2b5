"""parse_workflow: every problem of a workflow body is named, with its JSON path (SPEC §2)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import ValidationFailed
from app.workflows.builtin_nodes import builtin_registry
from app.workflows.schema import Workflow, parse_workflow, workflow_to_json
from support.engine import chain, node

REGISTRY = builtin_registry()
MODULES = ("app.workflows.example_functions",)

SPEC_EXAMPLE: dict[str, Any] = {
    "id": "support-triage",
    "name": "Support triage",
    "nodes": [
        {"name": "Start", "type": "trigger", "parameters": {}, "position": [0, 0]},
        {"name": "Classify", "type": "set", "parameters": {"values": {"topic": "billing"}}},
        {
            "name": "Is billing?",
            "type": "if",
            "parameters": {"field": "topic", "op": "eq", "value": "billing"},
        },
        {"name": "Billing", "type": "delay", "parameters": {"ms": 50}},
        {"name": "Other", "type": "set", "parameters": {"values": {"routed": "general"}}},
    ],
    "connections": {
        "Start": {"main": [[{"node": "Classify", "type": "main", "index": 0}]]},
        "Classify": {"main": [[{"node": "Is billing?", "type": "main", "index": 0}]]},
        "Is billing?": {
            "main": [
                [{"node": "Billing", "type": "main", "index": 0}],
                [{"node": "Other", "type": "main", "index": 0}],
            ]
        },
    },
    "settings": {"timeout_s": 300},
}


def problems(body: Any, python_modules: tuple[str, ...] = MODULES) -> list[tuple[str, str]]:
    with pytest.raises(ValidationFailed) as caught:
        parse_workflow(body, REGISTRY, python_modules=python_modules)
    assert caught.value.message == "workflow is invalid"
    return [(p["path"], p["message"]) for p in caught.value.details]


def test_the_spec_example_is_valid_from_bytes_and_from_a_dict() -> None:
    from_bytes = parse_workflow(json.dumps(SPEC_EXAMPLE).encode(), REGISTRY, python_modules=())
    from_dict = parse_workflow(SPEC_EXAMPLE, REGISTRY, python_modules=())
    assert from_bytes == from_dict
    assert from_bytes.id == "support-triage"
    assert from_bytes.nodes[3].parameters == {"ms": 50}
    assert from_bytes.settings.timeout_s == 300
    assert from_bytes.entry_node() == "Start"


def test_a_wrong_parameter_type_is_named_by_its_path() -> None:
    body = chain(node("A"), node("B", "set"), node("C", "set"), node("D", "delay", ms="50"))
    assert problems(body) == [("nodes[3].parameters.ms", "expected int, got str")]


def test_body_that_is_not_json_or_not_an_object() -> None:
    [(path, message)] = problems(b"{nope")
    assert path == "$"
    assert message.startswith("invalid JSON")
    assert problems(b"[1, 2]") == [("$", "expected object, got array")]
    assert problems(b"[" * 100_000)[0][0] == "$"


def test_every_shape_problem_is_reported_at_once() -> None:
    body = {
        "id": "not ok!",
        "name": "",
        "nodes": [
            {"name": "A", "type": "trigger", "position": [1]},
            {"name": 3, "type": "set", "type_version": "1"},
            {"type": "set", "parameters": []},
        ],
        "connections": {"A": {"main": [[{"node": 5, "index": -1}]]}},
        "settings": {"timeout_s": 0, "recursion_limit": "x"},
        "entry": 7,
    }
    assert problems(body) == [
        ("id", "expected str matching regex '^[A-Za-z0-9_-]{1,64}$'"),
        ("name", "expected str of length >= 1"),
        ("nodes[0].position", "expected array of length >= 2"),
        ("nodes[1].name", "expected str, got int"),
        ("nodes[1].type_version", "expected int, got str"),
        ("nodes[2].name", "required field missing"),
        ("nodes[2].parameters", "expected object, got array"),
        ("connections.A.main[0][0].node", "expected str, got int"),
        ("connections.A.main[0][0].index", "expected int >= 0"),
        ("settings.timeout_s", "expected float > 0.0"),
        ("settings.recursion_limit", "expected int | null, got str"),
        ("entry", "expected str | null, got int"),
    ]


def test_missing_name_and_nodes_and_empty_nodes() -> None:
    assert problems(b"{}") == [
        ("name", "required field missing"),
        ("nodes", "required field missing"),
    ]
    assert problems({"name": "w", "nodes": []}) == [("nodes", "expected array of length >= 1")]


def test_every_semantic_problem_is_reported_at_once() -> None:
    body = {
        "name": "w",
        "nodes": [
            node("Start"),
            node("Check", "if", field="x", op="near"),
            node("Check", "set"),
            node("Odd", "teleport"),
            node("Wait", "delay", ms=-1, extra=True),
        ],
        "connections": {
            "Start": {"main": [[{"node": "Check"}, {"node": "Ghost"}]], "ai_tool": [[]]},
            "Ghost": {"main": [[{"node": "Start"}]]},
            "Check": {"main": [[{"node": "Odd", "type": "error"}]]},
            "Odd": {"main": [[{"node": "Wait"}]]},
        },
    }
    known = "delay, fail, if, llm, merge, python, set, switch, trigger, wait"
    assert problems(body) == [
        ("nodes[2].name", "duplicate of nodes[1]"),
        ("nodes[1].parameters.op", "invalid enum value 'near'"),
        ("nodes[3].type", f"unknown node type 'teleport' ({known})"),
        ("nodes[4].parameters.ms", "expected int >= 0"),
        ("nodes[4].parameters.extra", "unknown field"),
        ("connections.Start.main[0][1].node", "unknown node 'Ghost'"),
        ("connections.Start.ai_tool", "only 'main' connections exist"),
        ("connections.Ghost", "unknown source node 'Ghost'"),
        ("connections.Check.main[0][0].type", "only 'main' connections exist"),
    ]


def test_an_output_index_beyond_the_source_outputs() -> None:
    body = {
        "name": "w",
        "nodes": [node("S"), node("If", "if", field="x", value=1), node("A", "set")],
        "connections": {
            "S": {"main": [[{"node": "If"}], [{"node": "A"}]]},
            "If": {"main": [[], [], [{"node": "A"}]]},
        },
    }
    assert problems(body) == [
        ("connections.S.main[1]", "no output 1: 'S' has 1"),
        ("connections.If.main[2]", "no output 2: 'If' has 2"),
    ]


def test_switch_outputs_follow_its_cases() -> None:
    switch = node("Sw", "switch", field="k", cases=["a", "b"])
    body = {
        "name": "w",
        "nodes": [node("S"), switch, node("A", "set"), node("B", "set")],
        "connections": {
            "S": {"main": [[{"node": "Sw"}]]},
            "Sw": {"main": [[{"node": "A"}], [], [{"node": "B"}], [{"node": "A"}]]},
        },
    }
    assert problems(body) == [("connections.Sw.main[3]", "no output 3: 'Sw' has 3")]


def test_node_names_langgraph_cannot_hold_are_refused() -> None:
    body = chain(node("a:b"), node("c|d", "set"), node("__end__", "set"))
    message = "reserved name, or contains '|' or ':'"
    assert problems(body) == [(f"nodes[{i}].name", message) for i in range(3)]


def test_node_ids_are_unique() -> None:
    body = chain({**node("A"), "id": "n1"}, {**node("B", "set"), "id": "n1"})
    assert problems(body) == [("nodes[1].id", "duplicate of nodes[0]")]


@pytest.mark.parametrize(
    ("type_", "parameters", "expected"),
    [
        ("trigger", {"x": 1}, [("p.x", "unknown field")]),
        ("set", {"values": [1]}, [("p.values", "expected object, got array")]),
        ("if", {}, [("p.field", "required field missing")]),
        ("if", {"field": ""}, [("p.field", "expected str of length >= 1")]),
        ("switch", {"field": "k", "cases": []}, [("p.cases", "expected array of length >= 1")]),
        ("merge", {"mode": "append"}, [("p.mode", "unknown field")]),
        ("delay", {"ms": 1.5}, [("p.ms", "expected int, got float")]),
        ("delay", {}, [("p.ms", "required field missing")]),
        ("fail", {"message": ""}, [("p.message", "expected str of length >= 1")]),
        (
            "fail",
            {"message": "x", "description": 3},
            [("p.description", "expected str | null, got int")],
        ),
        ("wait", {"message": 1}, [("p.message", "expected str | null, got int")]),
        ("python", {}, [("p.function", "required field missing")]),
    ],
)
def test_parameters_of_each_builtin_type(
    type_: str, parameters: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    body = chain(node("S", "set"), node("N", type_, **parameters))
    at = "nodes[1].parameters"
    assert problems(body) == [(path.replace("p", at, 1), message) for path, message in expected]


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("os:system", "module 'os' is not in the allow-list (app.workflows.example_functions, "),
        (
            "app.workflows.example_functions:nope",
            "'app.workflows.example_functions:nope' is not a callable",
        ),
        (
            "app.workflows.example_functions:MAX_ECHO_DELAY_MS",
            "'app.workflows.example_functions:MAX_ECHO_DELAY_MS' is not a callable",
        ),
        ("graphpush_missing_module:f", "cannot import 'graphpush_missing_module': "),
        ("no colon", "expected str matching regex "),
    ],
)
def test_python_nodes_call_only_callables_of_allowed_modules(function: str, message: str) -> None:
    allowed = (*MODULES, "graphpush_missing_module")
    body = chain(node("S"), node("Py", "python", function=function))
    [(path, found)] = problems(body, python_modules=allowed)
    assert path == "nodes[1].parameters.function"
    assert found.startswith(message)


def test_an_empty_allow_list_refuses_every_module() -> None:
    body = chain(
        node("S"), node("Py", "python", function="app.workflows.example_functions:uppercase")
    )
    assert problems(body, python_modules=()) == [
        (
            "nodes[1].parameters.function",
            "module 'app.workflows.example_functions' is not in the allow-list (empty)",
        )
    ]


def test_several_roots_need_an_entry() -> None:
    body = {"name": "w", "nodes": [node("A"), node("B")]}
    assert problems(body) == [
        ("connections", "several nodes have no incoming connection ('A', 'B'): name one in 'entry'")
    ]
    assert problems({**body, "entry": "C"}) == [("entry", "unknown node 'C'")]
    assert problems({**body, "entry": "A"}) == [
        ("nodes[1]", "'B' is not reachable from the entry 'A'")
    ]


def test_a_ring_without_root_needs_an_entry_and_a_bound() -> None:
    ring = {
        "name": "w",
        "nodes": [node("A"), node("B", "set")],
        "connections": {"A": {"main": [[{"node": "B"}]]}, "B": {"main": [[{"node": "A"}]]}},
    }
    assert problems(ring) == [
        ("connections", "every node has an incoming connection: name the entry node in 'entry'")
    ]
    assert problems({**ring, "entry": "A"}) == [
        ("connections", "cycle A -> B -> A needs settings.recursion_limit")
    ]
    bounded = {**ring, "entry": "A", "settings": {"recursion_limit": 20}}
    assert parse_workflow(bounded, REGISTRY, python_modules=()).entry_node() == "A"


def test_every_cycle_is_named() -> None:
    body = chain(node("S"), node("A", "set"), node("B", "set"), node("C", "set"))
    body["connections"]["B"]["main"][0].append({"node": "A"})
    body["connections"]["C"] = {"main": [[{"node": "C"}]]}
    assert problems(body) == [
        ("connections", "cycle C -> C needs settings.recursion_limit"),
        ("connections", "cycle A -> B -> A needs settings.recursion_limit"),
    ]


def test_unreachable_nodes_are_named() -> None:
    body = chain(node("S"), node("A", "set"), entry="S")
    body["nodes"] += [node("Island", "set"), node("Shore", "set")]
    body["connections"]["Island"] = {"main": [[{"node": "Shore"}]]}
    assert problems(body) == [
        ("nodes[2]", "'Island' is not reachable from the entry 'S'"),
        ("nodes[3]", "'Shore' is not reachable from the entry 'S'"),
    ]


def test_keys_that_are_not_identifiers_are_quoted_in_paths() -> None:
    body = chain(node("Is billing?"), node("B", "set"))
    body["connections"]["Is billing?"]["main"][0][0]["node"] = None
    assert problems(body) == [
        ('connections["Is billing?"].main[0][0].node', "expected str, got null")
    ]


def test_workflow_to_json_omits_none_and_round_trips() -> None:
    workflow = parse_workflow(SPEC_EXAMPLE, REGISTRY, python_modules=())
    stored = workflow_to_json(workflow)
    assert "entry" not in stored
    assert "recursion_limit" not in stored["settings"]
    assert "id" not in stored["nodes"][1]
    assert "position" not in stored["nodes"][1]
    assert stored["nodes"][0]["position"] == [0.0, 0.0]
    assert stored["id"] == "support-triage"
    assert parse_workflow(stored, REGISTRY, python_modules=()) == workflow
    assert msgspec.json.decode(msgspec.json.encode(stored)) == stored


def test_a_workflow_without_id_stays_without_one() -> None:
    workflow = parse_workflow(chain(node("S")), REGISTRY, python_modules=())
    assert workflow.id is None
    assert "id" not in workflow_to_json(workflow)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def outcome(body: bytes | dict[str, Any]) -> Workflow | None:
    """The parsed workflow, or None when refused; any other exception fails the test."""
    try:
        return parse_workflow(body, REGISTRY, python_modules=MODULES)
    except ValidationFailed as exc:
        assert exc.details
        assert all(set(p) == {"path", "message"} for p in exc.details)
        return None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_ever_fail_validation(body: bytes) -> None:
    outcome(body)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_random_json_only_ever_fails_validation(value: Any) -> None:
    outcome(msgspec.json.encode(value))
    if isinstance(value, dict):
        outcome(value)


NODE_DICT = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["A", "B", "C", "", "a:b"]) | JSON,
        "type": st.sampled_from(["set", "if", "delay", "x"]) | JSON,
    },
    optional={
        "parameters": st.dictionaries(st.sampled_from(["ms", "field", "values"]), JSON, max_size=2)
        | JSON
    },
)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {"name": st.text(max_size=3) | JSON, "nodes": st.lists(NODE_DICT, max_size=4) | JSON},
        optional={
            "connections": st.dictionaries(
                st.sampled_from(["A", "B", "Z"]),
                st.dictionaries(st.sampled_from(["main", "x"]), JSON | st.just([[{"node": "B"}]])),
                max_size=3,
            )
            | JSON,
            "settings": JSON,
            "entry": JSON,
        },
    )
)
def test_workflow_shaped_json_only_ever_fails_validation(value: dict[str, Any]) -> None:
    outcome(value)
