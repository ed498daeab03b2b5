"""The docs run as written: the README's tour and settings table, and the two clients of
docs/protocol.md (browser JS under Node, examples/clients/python_client.py), against a
``python -m app serve`` started the way the README starts it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from app.settings import Settings
from support.app import clean_env, free_port, wait_until_healthy

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PROTOCOL = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
DOC_URL = "http://127.0.0.1:8000"


def fenced(text: str, info: str) -> list[str]:
    """The bodies of the fenced blocks whose info string is exactly ``info``."""
    return re.findall(rf"^```{re.escape(info)}\n(.*?)^```$", text, re.M | re.S)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m app serve`` on a free port and a fresh data dir; its URL."""
    tmp = tmp_path_factory.mktemp("served")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port), "--data-dir", str(tmp)],
        cwd=ROOT,
        env=clean_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_healthy(url, process, tmp / "server.log")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()


# ---- the README ---------------------------------------------------------------------------


def test_the_readme_tour_runs_as_written(server: str) -> None:
    (tour,) = fenced(README, "bash tour")
    bin_dir = Path(sys.executable).parent
    script = tour.replace(DOC_URL, server).replace(".venv/bin/", f"{bin_dir}/")
    # Every curl must succeed (an HTTP error is a failure), and so must every other line.
    prelude = 'set -euo pipefail\ncurl() { command curl --fail-with-body "$@"; }\n'
    result = subprocess.run(
        ["bash", "-c", prelude + script],
        cwd=ROOT,
        env=clean_env(GRAPHPUSH_URL=server),
        capture_output=True,
        text=True,
        timeout=45,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert '"id":"hello"' in out  # 1. created
    assert '"status":"new"' in out  # 2. queued
    assert 'data: {"type":"executionFinished"' in out  # 3. the stream ran to its end
    assert '"status":"success"' in out  # 4. stored as success
    assert '"seq":1,"type":"executionStarted"' in out  # 5. the log
    assert "✔ success · Linear: trigger, set, set" in out  # 6. the CLI


def test_the_readme_commands_are_the_ones_setup_and_ci_run() -> None:
    assert "scripts/setup && .venv/bin/graphpush serve" in README
    assert "\nscripts/check\n" in README
    setup = (ROOT / "scripts" / "setup").read_text()
    assert "python3 -m venv .venv" in setup and '-e ".[test]"' in setup
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci[-2:] == ["scripts/setup", "scripts/check"]


def _default(value: Any) -> str:
    """A default as the README's table spells it."""
    match value:
        case None | ():
            return "none"
        case bool():
            return str(value).lower()
        case tuple():
            return ",".join(map(str, value))
        case Path():
            return f"./{value}"
        case _:
            return str(value)


def test_the_readme_settings_table_lists_every_setting_with_its_env_var_and_default() -> None:
    rows = re.findall(r"^\| `(\w+)` \| `(GRAPHPUSH_\w+)` \| `?([^|`]*?)`? \| .+ \|$", README, re.M)
    documented = {name: (env, default) for name, env, default in rows}
    fields = msgspec.structs.fields(Settings)
    expected = {f.name: (f"GRAPHPUSH_{f.name.upper()}", _default(f.default)) for f in fields}
    assert documented == expected


# ---- the clients of docs/protocol.md ---------------------------------------------------------


def test_the_python_client_runs_a_workflow_and_prints_its_messages_in_order(server: str) -> None:
    client = ROOT / "examples" / "clients" / "python_client.py"
    result = subprocess.run(
        [sys.executable, str(client), "linear", "--input", '{"topic": "x"}', "--url", server],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[1] for line in lines[:-1]] == [
        "executionStarted",
        *["nodeExecuteBefore", "nodeExecuteAfter", "nodeExecuteAfterData"] * 3,
        "executionFinished",
    ]
    assert [int(line.split()[0]) for line in lines[:-1]] == list(range(1, 12))  # meta.id
    assert lines[-1] == "finished: success"


def test_the_python_client_resumes_a_waiting_run_and_exits_1_on_failure(server: str) -> None:
    client = ROOT / "examples" / "clients" / "python_client.py"
    approval = subprocess.run(
        [sys.executable, str(client), "approval", "--resume", '{"ok": true}', "--url", server],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert approval.returncode == 0, approval.stderr
    assert " executionWaiting" in approval.stdout and "Done success" in approval.stdout
    failing = subprocess.run(
        [sys.executable, str(client), "failing", "--url", server],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert failing.returncode == 1
    assert "Check error" in failing.stdout and failing.stdout.endswith("finished: error\n")


def _node_with_websocket() -> str | None:
    node = shutil.which("node")
    if node is None:
        return None
    probe = subprocess.run(
        [
            node,
            "--experimental-websocket",
            "-e",
            "process.exit(typeof WebSocket === 'function' ? 0 : 1)",
        ],
        capture_output=True,
        timeout=20,
    )
    return node if probe.returncode == 0 else None


DRIVER = """
runAndFollow(process.argv[2], process.argv[3], {topic: "x"}, (m) =>
  console.log(m.type + (m.data.nodeName ? " " + m.data.nodeName : ""))
).then((status) => { console.log("finished " + status); process.exit(0); },
       (error) => { console.log("rejected " + error.message); process.exit(0); });
"""


@pytest.mark.parametrize(
    ("workflow", "last"),
    [("linear", "finished success"), ("nope", "rejected workflow 'nope' not found")],
)
def test_the_browser_client_runs_under_node_as_written(
    server: str, tmp_path: Path, workflow: str, last: str
) -> None:
    node = _node_with_websocket()
    if node is None:
        pytest.skip("needs Node.js with a WebSocket global (node >= 20.10)")
    (client,) = fenced(PROTOCOL, "js client")
    script = tmp_path / "client.js"
    script.write_text(client + DRIVER)
    result = subprocess.run(
        [node, "--experimental-websocket", str(script), server, workflow],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == last
    if workflow == "linear":
        assert lines[0] == "executionStarted" and lines[-2] == "executionFinished"
        assert "nodeExecuteAfterData Sign" in lines  # the binary frame was decoded
