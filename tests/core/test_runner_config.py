"""The LangGraph config of a run: ``thread_id`` whenever something may read it."""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.config import get_config
from langgraph.graph import START, StateGraph

from app.executions.runner import LangGraphRunner, TaskFinished, run_config
from app.workflows.builtin_nodes import builtin_registry
from app.workflows.compiler import CompiledWorkflow, compile_graph, compile_workflow
from app.workflows.schema import parse_workflow
from support.engine import chain, node

REGISTRY = builtin_registry()


def compiled(body: dict[str, Any], *, checkpointer: Any = None) -> CompiledWorkflow:
    parsed = parse_workflow(body, REGISTRY, python_modules=("json",))
    return compile_workflow(
        parsed, REGISTRY, checkpointer=checkpointer, default_recursion_limit=50, workflow_id="w"
    )


class _State(TypedDict, total=False):
    thread: str


def _reads_its_thread(state: _State) -> _State:
    return {"thread": get_config()["configurable"]["thread_id"]}


def registered() -> CompiledWorkflow:
    builder = StateGraph(_State)
    builder.add_node("reader", _reads_its_thread)
    builder.add_edge(START, "reader")
    return compile_graph("g", "reads its thread", builder.compile())


async def test_a_registered_graphs_node_reads_the_run_id_as_its_thread() -> None:
    events = [e async for e in LangGraphRunner().stream(registered(), thread_id="run-1", input={})]

    finished = [e for e in events if isinstance(e, TaskFinished)]
    assert [e.result for e in finished] == [{"thread": "run-1"}]


def test_a_silent_workflow_without_checkpointer_runs_without_a_thread() -> None:
    silent = compiled(chain(node("Start"), node("Set", "set", values={"k": 1})))

    assert run_config(silent, "run-1", traced=False) == {"recursion_limit": 50}


def test_a_thread_is_kept_for_checkpoints_user_code_and_traces() -> None:
    waits = compiled(chain(node("Start"), node("Wait", "wait")), checkpointer=InMemorySaver())
    code = compiled(chain(node("Start"), node("Code", "python", function="json:dumps")))
    silent = compiled(chain(node("Start"), node("Set", "set", values={"k": 1})))

    configs = [run_config(w, "run-1", traced=False) for w in (waits, code)]
    configs.append(run_config(silent, "run-1", traced=True))
    for config in configs:
        assert config["configurable"] == {"thread_id": "run-1"}
