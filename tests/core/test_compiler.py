"""compile_workflow and compile_graph: built-in nodes run as LangGraph graphs (SPEC §2)."""

from __future__ import annotations

import asyncio
import itertools
import operator
import time
import uuid
from typing import Annotated, Any, TypedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.errors import GraphRecursionError
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command

from app.errors import NodeFailure, ValidationFailed
from app.workflows.builtin_nodes import builtin_registry
from app.workflows.checks import Problem, ValidationContext
from app.workflows.compiler import CompiledWorkflow, compile_graph, compile_workflow
from app.workflows.node_types import NodeFn, NodeInfo, NodeRegistry, RunState
from app.workflows.schema import Workflow, parse_workflow
from support.engine import chain, node, workflow

REGISTRY = builtin_registry()
MODULES = ("app.workflows.example_functions", "json")


def compile_body(
    body: dict[str, Any], registry: NodeRegistry = REGISTRY, **options: Any
) -> CompiledWorkflow:
    parsed = parse_workflow(body, registry, python_modules=MODULES)
    options.setdefault("checkpointer", None)
    return compile_workflow(
        parsed, registry, default_recursion_limit=50, workflow_id="wf", **options
    )


async def run(body: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    """The final state of a run of ``body`` with ``item`` as input."""
    compiled = compile_body(body)
    async with asyncio.timeout(5):
        result: dict[str, Any] = await compiled.graph.ainvoke(
            {"input": item}, {"recursion_limit": compiled.recursion_limit}
        )
    return result


async def test_trigger_passes_the_input_on_and_set_merges_values() -> None:
    body = chain(node("Start"), node("Set", "set", values={"topic": "billing", "n": 2}))
    state = await run(body, {"n": 1, "text": "hi"})
    assert state["agent_results"] == {
        "Start": {"n": 1, "text": "hi"},
        "Set": {"n": 2, "text": "hi", "topic": "billing"},
    }
    assert state["completed_nodes"] == ["Start", "Set"]
    assert state["routes"] == {"Start": 0, "Set": 0}


def if_workflow(op: str, value: Any = None) -> dict[str, Any]:
    nodes = [
        node("Start"),
        node("Test", "if", field="x", op=op, value=value),
        node("Yes", "set", values={"branch": "true"}),
        node("No", "set", values={"branch": "false"}),
    ]
    return workflow(nodes, [("Start", 0, "Test"), ("Test", 0, "Yes"), ("Test", 1, "No")])


@pytest.mark.parametrize(
    ("op", "value", "item", "taken"),
    [
        ("eq", "billing", {"x": "billing"}, "Yes"),
        ("eq", "billing", {"x": "sales"}, "No"),
        ("ne", 1, {"x": 2}, "Yes"),
        ("gt", 1, {"x": 2}, "Yes"),
        ("gt", 2, {"x": 2}, "No"),
        ("gte", 2, {"x": 2}, "Yes"),
        ("lt", 2, {"x": 1}, "Yes"),
        ("lte", 1, {"x": 2}, "No"),
        ("gt", 1, {"x": "text"}, "No"),
        ("contains", "ill", {"x": "billing"}, "Yes"),
        ("contains", 3, {"x": [1, 2]}, "No"),
        ("contains", "a", {"x": None}, "No"),
        ("exists", None, {"x": 0}, "Yes"),
        ("exists", None, {"y": 0}, "No"),
    ],
)
async def test_if_takes_output_0_when_the_test_holds_else_output_1(
    op: str, value: Any, item: dict[str, Any], taken: str
) -> None:
    state = await run(if_workflow(op, value), item)
    skipped = "No" if taken == "Yes" else "Yes"
    assert state["completed_nodes"] == ["Start", "Test", taken]
    assert skipped not in state["agent_results"]
    assert state["routes"]["Test"] == (0 if taken == "Yes" else 1)
    assert state["agent_results"]["Test"] == item


async def test_if_reads_dotted_fields_from_nested_objects() -> None:
    body = if_workflow("eq", "x")
    body["nodes"][1]["parameters"]["field"] = "a.b"
    assert (await run(body, {"a": {"b": "x"}}))["completed_nodes"][-1] == "Yes"
    assert (await run(body, {"a": "flat"}))["completed_nodes"][-1] == "No"
    exact_key_first = {"a.b": "x", "a": {"b": "y"}}
    assert (await run(body, exact_key_first))["completed_nodes"][-1] == "Yes"


@pytest.mark.parametrize(("kind", "taken"), [("a", "A"), ("b", "B"), ("zzz", "Other")])
async def test_switch_takes_the_matching_case_or_the_fallback(kind: str, taken: str) -> None:
    nodes = [
        node("Start"),
        node("Switch", "switch", field="kind", cases=["a", "b"]),
        node("A", "set"),
        node("B", "set"),
        node("Other", "set"),
    ]
    edges = [("Start", 0, "Switch"), ("Switch", 0, "A"), ("Switch", 1, "B"), ("Switch", 2, "Other")]
    state = await run(workflow(nodes, edges), {"kind": kind})
    assert state["completed_nodes"] == ["Start", "Switch", taken]


async def test_an_output_without_targets_ends_the_branch() -> None:
    nodes = [node("Start"), node("Switch", "switch", field="kind", cases=["a"]), node("A", "set")]
    body = workflow(nodes, [("Start", 0, "Switch"), ("Switch", 0, "A")])
    state = await run(body, {"kind": "b"})
    assert state["completed_nodes"] == ["Start", "Switch"]
    assert state["routes"]["Switch"] == 1


async def test_merge_after_a_fan_out_runs_once_with_both_inputs() -> None:
    nodes = [
        node("Start"),
        node("Left", "set", values={"left": 1, "side": "left"}),
        node("Right", "set", values={"right": 1, "side": "right"}),
        node("Slow", "delay", ms=20),
        node("Merge", "merge"),
        node("After", "set", values={"after": True}),
    ]
    edges = [
        ("Start", 0, "Left"),
        ("Start", 0, "Right"),
        ("Right", 0, "Slow"),
        ("Left", 0, "Merge"),
        ("Slow", 0, "Merge"),
        ("Merge", 0, "After"),
    ]
    state = await run(workflow(nodes, edges), {"id": 7})
    assert state["completed_nodes"].count("Merge") == 1
    assert state["completed_nodes"][-2:] == ["Merge", "After"]
    # connection order: Left's output first, then Slow's, whose keys win
    merged = {"id": 7, "left": 1, "right": 1, "side": "right"}
    assert state["agent_results"]["Merge"] == merged
    assert state["agent_results"]["After"] == {**merged, "after": True}


async def test_a_node_fed_by_several_branches_reads_the_latest_output() -> None:
    nodes = [node("Start"), node("A", "set", values={"v": "a"}), node("Slow", "delay", ms=10)]
    nodes += [node("B", "set", values={"v": "b"}), node("End", "set")]
    edges = [("Start", 0, "A"), ("Start", 0, "Slow"), ("Slow", 0, "B"), ("A", 0, "End")]
    edges += [("B", 0, "End")]
    state = await run(workflow(nodes, edges), {})
    # End runs once per arrival (n8n without a merge): after A, then after B
    assert state["completed_nodes"].count("End") == 2
    assert state["completed_nodes"][-1] == "End"
    assert state["agent_results"]["End"] == {"v": "b"}


async def test_delay_sleeps_then_passes_its_input_on() -> None:
    started = time.monotonic()
    state = await run(chain(node("Start"), node("Delay", "delay", ms=50)), {"a": 1})
    assert time.monotonic() - started >= 0.05
    assert state["agent_results"]["Delay"] == {"a": 1}


async def test_a_long_delay_is_cancelled_promptly() -> None:
    compiled = compile_body(chain(node("Start"), node("Delay", "delay", ms=60_000)))
    task = asyncio.create_task(compiled.graph.ainvoke({"input": {}}))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(1):
            await task
    assert time.monotonic() - started < 1


async def test_fail_raises_node_failure_and_stops_the_run() -> None:
    body = chain(
        node("Start"),
        node("Fail", "fail", message="card declined", description="code 51"),
        node("Never", "set"),
    )
    with pytest.raises(NodeFailure) as caught:
        await run(body, {})
    assert (caught.value.message, caught.value.description) == ("card declined", "code 51")


@pytest.mark.parametrize(
    ("resume", "output"),
    [({"approved": True}, {"a": 1, "approved": True}), ("yes", {"a": 1, "value": "yes"})],
)
async def test_wait_interrupts_and_resumes_with_the_value(resume: Any, output: Any) -> None:
    body = chain(
        node("Start"),
        node("Wait", "wait", message="approve?"),
        node("Done", "set", values={"d": 1}),
    )
    compiled = compile_body(body, checkpointer=InMemorySaver())
    assert compiled.uses_interrupts
    config: Any = {"configurable": {"thread_id": str(uuid.uuid4())}}
    async with asyncio.timeout(5):
        paused = await compiled.graph.ainvoke({"input": {"a": 1}}, config)
        [pending] = paused["__interrupt__"]
        assert pending.value == {"node": "Wait", "message": "approve?"}
        assert paused["completed_nodes"] == ["Start"]
        done = await compiled.graph.ainvoke(Command(resume=resume), config)
    assert done["completed_nodes"] == ["Start", "Wait", "Done"]
    assert done["agent_results"]["Wait"] == output
    assert done["agent_results"]["Done"] == {**output, "d": 1}


async def test_wait_without_message_interrupts_with_the_node_name_only() -> None:
    compiled = compile_body(chain(node("S"), node("W", "wait")), checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t"}}
    paused = await compiled.graph.ainvoke({"input": {}}, config)
    assert paused["__interrupt__"][0].value == {"node": "W"}


@pytest.mark.parametrize(
    ("function", "item", "output"),
    [
        ("app.workflows.example_functions:word_count", {"text": "one two  three"}, {"words": 3}),
        (
            "app.workflows.example_functions:uppercase",
            {"text": "hi", "n": 1},
            {"text": "HI", "n": 1},
        ),
        ("app.workflows.example_functions:slow_echo", {"delay_ms": 5}, {"delay_ms": 5}),
        ("json:dumps", {"k": 1}, {"value": '{"k": 1}'}),
    ],
)
async def test_python_nodes_call_sync_and_async_functions(
    function: str, item: dict[str, Any], output: dict[str, Any]
) -> None:
    state = await run(chain(node("Start"), node("Py", "python", function=function)), item)
    expected = output if "value" in output else {**item, **output}
    assert state["agent_results"]["Py"] == expected
    assert state["agent_results"]["Start"] == item


async def test_a_python_function_cannot_change_its_predecessor_output() -> None:
    body = chain(node("Start"), node("Py", "python", function="json:dumps"))
    state = await run(body, {"nested": {"a": 1}})
    assert state["agent_results"]["Start"] == {"nested": {"a": 1}}


def test_python_nodes_outside_the_allow_list_are_refused() -> None:
    body = chain(node("Start"), node("Py", "python", function="os:getcwd"))
    with pytest.raises(ValidationFailed) as caught:
        parse_workflow(body, REGISTRY, python_modules=("app.workflows.example_functions",))
    assert caught.value.details[0]["path"] == "nodes[1].parameters.function"


async def test_a_bounded_loop_runs_until_its_recursion_limit() -> None:
    nodes = [node("Start"), node("Again?", "if", field="stop", op="exists"), node("Loop", "set")]
    edges = [("Start", 0, "Again?"), ("Again?", 1, "Loop"), ("Loop", 0, "Again?")]
    body = workflow(nodes, edges, settings={"recursion_limit": 9})
    assert compile_body(body).recursion_limit == 9
    with pytest.raises(GraphRecursionError):
        await run(body, {})
    assert (await run(body, {"stop": True}))["completed_nodes"] == ["Start", "Again?"]


def test_node_infos_predecessors_and_settings() -> None:
    body = if_workflow("eq", 1)
    body["nodes"][0].update(id="start-id", position=[10, 20])
    body["nodes"][2]["type_version"] = 2
    compiled = compile_body(body)
    assert compiled.workflow_id == "wf"
    assert compiled.name == "test"
    assert compiled.recursion_limit == 50
    assert not compiled.uses_interrupts
    assert compiled.settings == {
        "timeout_s": None,
        "max_concurrency": None,
        "recursion_limit": None,
        "webhook_url": None,
    }
    assert compiled.predecessors == {
        "Start": [],
        "Test": [("Start", 0)],
        "Yes": [("Test", 0)],
        "No": [("Test", 1)],
    }
    start, test, yes, no = compiled.nodes.values()
    assert (start.id, start.position, start.outputs) == ("start-id", (10.0, 20.0), 1)
    assert (test.type, test.outputs, test.position) == ("if", 2, (220.0, 0.0))
    assert (yes.position, no.position, yes.type_version) == ((440.0, 0.0), (440.0, 140.0), 2)
    assert yes.id == str(uuid.uuid5(uuid.NAMESPACE_URL, "graphpush:wf/Yes"))
    assert compile_body(body).nodes["Yes"].id == yes.id
    assert list(compiled.graph.get_graph().nodes) == [
        "__start__",
        "Start",
        "Test",
        "Yes",
        "No",
        "__end__",
    ]


class Doubler:
    """A node type registered through the Python API."""

    def outputs(self, parameters: dict[str, Any]) -> int:
        return 1

    def validate(
        self, parameters: dict[str, Any], path: str, ctx: ValidationContext
    ) -> list[Problem]:
        return (
            []
            if isinstance(parameters.get("key"), str)
            else [{"path": f"{path}.key", "message": "expected str"}]
        )

    def make(self, node: NodeInfo) -> NodeFn:
        key = node.parameters["key"]

        async def run(item: dict[str, Any], state: RunState) -> tuple[Any, int]:
            return {**item, key: item[key] * 2}, 0

        return run


async def test_a_registered_node_type_validates_and_runs() -> None:
    registry = builtin_registry()
    registry.register("double", Doubler())
    with pytest.raises(ValueError, match="already registered"):
        registry.register("double", Doubler())
    assert "double" in registry.names()
    assert REGISTRY.get("double") is None
    body = chain(node("Start"), node("Twice", "double", key="n"))
    with pytest.raises(ValidationFailed):
        parse_workflow(chain(node("S"), node("T", "double")), registry, python_modules=())
    compiled = compile_body(body, registry)
    state = await compiled.graph.ainvoke({"input": {"n": 21}})
    assert state["agent_results"]["Twice"] == {"n": 42}


def test_compile_workflow_refuses_what_parse_would_refuse() -> None:
    empty = Workflow(name="w", nodes=[])
    with pytest.raises(ValueError, match="entry"):
        compile_workflow(
            empty, REGISTRY, checkpointer=None, default_recursion_limit=5, workflow_id="x"
        )


class Plain(TypedDict, total=False):
    steps: Annotated[list[str], operator.add]


def plain_graph() -> StateGraph[Plain, Any, Plain, Plain]:
    def step(name: str) -> Any:  # a node function, as add_node accepts it
        def run(state: Plain) -> Plain:
            return {"steps": [name]}

        return run

    graph = StateGraph(Plain)
    for name in ("first", "second", "third"):
        graph.add_node(name, step(name))
    graph.add_edge(START, "first")
    graph.add_edge("first", "second")
    graph.add_edge("first", "third")
    graph.add_edge("second", END)
    return graph


async def test_compile_graph_wraps_a_plain_state_graph() -> None:
    compiled = compile_graph("plain", "Plain graph", plain_graph().compile())
    assert (compiled.workflow_id, compiled.name) == ("plain", "Plain graph")
    assert list(compiled.nodes) == ["first", "second", "third"]
    assert {info.type for info in compiled.nodes.values()} == {"langgraph"}
    assert compiled.predecessors == {"first": [], "second": [("first", 0)], "third": [("first", 0)]}
    positions = [info.position for info in compiled.nodes.values()]
    assert positions == [(0.0, 0.0), (220.0, 0.0), (220.0, 140.0)]
    assert compiled.recursion_limit == 100
    assert not compiled.uses_interrupts
    assert (await compiled.graph.ainvoke({"steps": []}))["steps"] == ["first", "second", "third"]


def test_compile_graph_keeps_the_graph_settings() -> None:
    graph = plain_graph().compile(checkpointer=InMemorySaver()).with_config(recursion_limit=7)
    compiled = compile_graph("plain", "Plain", graph)
    assert compiled.uses_interrupts
    assert compiled.recursion_limit == 7


NAMES = ["A", "B", "C", "D"]
PARAMETERS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "trigger": st.just({}),
    "set": st.fixed_dictionaries(
        {"values": st.dictionaries(st.sampled_from("xyz"), st.integers())}
    ),
    "if": st.fixed_dictionaries(
        {
            "field": st.just("x"),
            "op": st.sampled_from(["eq", "gt", "exists"]),
            "value": st.integers(0, 2),
        }
    ),
    "switch": st.fixed_dictionaries(
        {"field": st.just("x"), "cases": st.lists(st.integers(0, 2), min_size=1, max_size=3)}
    ),
    "merge": st.just({}),
    "delay": st.fixed_dictionaries({"ms": st.integers(0, 2)}),
}


@st.composite
def workflows(draw: st.DrawFn) -> dict[str, Any]:
    """Small workflows of built-in nodes: often a chain, with random extra (often invalid) edges."""
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    types = [draw(st.sampled_from(sorted(PARAMETERS))) for _ in names]
    nodes = [node(n, t, **draw(PARAMETERS[t])) for n, t in zip(names, types, strict=True)]
    edge = st.tuples(st.sampled_from(names), st.integers(0, 3), st.sampled_from(names))
    chained = [(a, 0, b) for a, b in itertools.pairwise(names)]
    edges = draw(st.lists(edge, max_size=3, unique=True)) + draw(st.sampled_from([chained, []]))
    extra = draw(st.fixed_dictionaries({}, optional={"settings": st.just({"recursion_limit": 12})}))
    return workflow(nodes, edges, **extra)


@settings(max_examples=150, deadline=None)
@given(workflows(), st.integers(0, 2))
async def test_every_accepted_workflow_compiles_and_runs(body: dict[str, Any], x: int) -> None:
    try:
        compiled = compile_body(body)
    except ValidationFailed:
        return
    assert set(compiled.nodes) == {n["name"] for n in body["nodes"]}
    try:
        state = await run(body, {"x": x})
    except GraphRecursionError:
        assert body.get("settings")  # only loops, which need a bound, can recurse
        return
    assert (
        state["completed_nodes"][0]
        == parse_workflow(body, REGISTRY, python_modules=()).entry_node()
    )


class Join(Doubler):
    """A node type of the Python API that declares itself fan-in, as ``merge`` does."""

    fan_in = True

    def validate(
        self, parameters: dict[str, Any], path: str, ctx: ValidationContext
    ) -> list[Problem]:
        return []

    def make(self, node: NodeInfo) -> NodeFn:
        async def run(item: dict[str, Any], state: RunState) -> tuple[Any, int]:
            return item, 0

        return run


async def test_a_node_type_declaring_fan_in_runs_once_with_every_input_merged() -> None:
    registry = builtin_registry()
    registry.register("join", Join())
    nodes = [node("Start"), node("A", "set", values={"a": 1}), node("Slow", "delay", ms=10)]
    nodes += [node("B", "set", values={"b": 2}), node("Join", "join")]
    edges = [("Start", 0, "A"), ("Start", 0, "Slow"), ("Slow", 0, "B")]
    edges += [("A", 0, "Join"), ("B", 0, "Join")]
    compiled = compile_body(workflow(nodes, edges), registry)
    state = await compiled.graph.ainvoke({"input": {}})
    assert state["completed_nodes"].count("Join") == 1
    assert state["agent_results"]["Join"] == {"a": 1, "b": 2}
    assert compiled.nodes["Join"].fan_in and not compiled.nodes["A"].fan_in
