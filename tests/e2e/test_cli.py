"""The ``graphpush`` CLI against a real server (in-process with capsys, or as a subprocess for
Ctrl-C), plus what needs no server: the SSE parser, the run tracker, stream resumption, the
Ctrl-C questions and the terminal view."""

from __future__ import annotations

import contextlib
import io
import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from rich.console import Console

from app.cli import main
from app.cli.client import GraphpushClient, SseEvent, parse_sse
from app.cli.live import RunView, follow
from app.cli.tracker import RunTracker
from app.settings import Settings
from support.app import Server, free_port

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]
Lines = queue.Queue[str]


@pytest.fixture
def server(serve: Callable[..., Server], settings: Settings) -> Server:
    """A real server with the example workflows loaded."""
    return serve(msgspec.structs.replace(settings, load_examples=True))


def cli(capsys: pytest.CaptureFixture[str], server: Server, *args: str) -> tuple[int, str, str]:
    code = main([*args, "--url", server.url])
    out, err = capsys.readouterr()
    return code, out, err


# ---- run --------------------------------------------------------------------------------------


def test_run_follow_shows_each_node_and_a_summary_and_exits_0_on_success(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, server, "run", "linear", "--input", '{"topic": "t"}', "--follow")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("execution ") and lines[0].endswith(" of linear queued")
    nodes = [line.strip() for line in lines if line.startswith("  ")]
    assert [n.split(" in ")[0] for n in nodes] == [
        "Start: running",
        "Start: success",
        "Greet: running",
        "Greet: success",
        "Sign: running",
        "Sign: success",
    ]
    summary = lines[-1]
    assert summary.startswith("✔ success · Linear: trigger, set, set · execution ")
    assert " · 3/3 nodes · " in summary and summary.endswith(" ms")


def test_run_follow_of_a_failing_workflow_exits_1_and_names_the_node_and_error(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, server, "run", "failing", "-f")
    assert code == 1
    assert "  Check: error in " in out
    assert "  Never:" not in out
    assert "✖ error · Fails in the middle · " in out and " · 2/3 nodes · " in out
    assert out.splitlines()[-1] == "error in node Check: the check failed"


def test_run_without_follow_prints_the_execution_id_only(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, server, "run", "linear")
    assert code == 0
    execution_id = out.strip()
    body = httpx.get(f"{server.url}/agents/executions/{execution_id}").json()
    assert body["workflow_id"] == "linear"


def test_executions_retry_follows_a_run_from_its_failed_node_with_the_saved_workflow(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, server, "run", "failing", "-f")
    failed = re.findall(r"execution (\w+)", out)[0]
    assert code == 1
    fixed = httpx.get(f"{server.url}/agents/workflows/failing").json()
    fixed["nodes"][1] = {"name": "Check", "type": "set", "parameters": {"values": {"ok": 1}}}
    assert httpx.put(f"{server.url}/agents/workflows/failing", json=fixed).status_code == 200

    again, out_again, _ = cli(capsys, server, "executions", "retry", failed, "--follow")
    code, out, _ = cli(capsys, server, "executions", "retry", failed, "--saved", "-f")

    assert again == 1 and "  Check: error in " in out_again
    assert code == 0
    lines = out.splitlines()
    assert re.fullmatch(rf"execution \w+ retries {failed}", lines[0])
    nodes = [line.strip().split(" in ")[0] for line in lines if line.startswith("  ")]
    assert nodes == ["Check: running", "Check: success", "Never: running", "Never: success"]
    assert lines[-1].startswith("✔ success") and " · 3/3 nodes · " in lines[-1]
    retry_id = lines[0].split()[1]
    body = httpx.get(f"{server.url}/agents/executions/{retry_id}").json()
    assert body["retry_of"] == failed


def test_executions_retry_prints_the_new_id_and_refuses_bad_state(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = cli(capsys, server, "run", "linear", "-f")
    original = re.findall(r"execution (\w+)", out)[0]

    code, out, _ = cli(
        capsys,
        server,
        "executions",
        "retry",
        original,
        "--from",
        "Sign",
        "--state",
        '{"Greet": {"greeting": "edited"}}',
    )
    bad, _, err = cli(capsys, server, "executions", "retry", original, "--state", "[1]")
    unknown, _, err_unknown = cli(capsys, server, "executions", "retry", original, "--from", "X")

    assert code == 0
    body = httpx.get(f"{server.url}/agents/executions/{out.strip()}").json()
    assert body["retry_of"] == original
    assert bad == 2 and "--state must be a JSON object" in err
    assert unknown == 1 and "from_node: the workflow has no node 'X'" in err_unknown


def test_run_of_a_file_creates_the_workflow_then_updates_it_on_the_next_run(
    server: Server, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    workflow = json.loads((ROOT / "examples" / "linear.json").read_text())
    workflow["id"] = "from-file"
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(workflow))

    code, out, _ = cli(capsys, server, "run", str(path), "--follow")
    assert code == 0
    assert out.splitlines()[0] == f"created workflow from-file from {path}"

    workflow["name"] = "Renamed"
    path.write_text(json.dumps(workflow))
    code, out, _ = cli(capsys, server, "run", str(path), "--follow")
    assert code == 0
    assert out.splitlines()[0] == f"updated workflow from-file from {path}"
    assert "✔ success · Renamed · " in out
    assert httpx.get(f"{server.url}/agents/workflows/from-file").json()["name"] == "Renamed"


def test_run_of_a_branch_marks_the_branch_not_taken_as_skipped(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(
        capsys, server, "run", "support-triage", "--input", '{"topic": "other"}', "--follow"
    )
    assert code == 0
    assert "  Other: success" in out and "  Billing:" not in out
    assert " · 3/4 nodes · " in out


@contextlib.contextmanager
def sigint_not_ignored() -> Iterator[None]:
    """Children started meanwhile get Ctrl-C (SIGINT) as a foreground command of a terminal
    does, even when this process ignores it: a shell without job control starts a background
    job (``scripts/check &``) with SIGINT ignored, its children inherit that, and Python
    then keeps ignoring SIGINT instead of raising ``KeyboardInterrupt``. A handler, unlike
    ``SIG_IGN``, is not inherited: the child starts with SIGINT's default."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def follow_in_subprocess(url: str, *args: str) -> Iterator[tuple[subprocess.Popen[str], Lines]]:
    """``python -m app run ... --follow`` with stdin not a terminal; its output line by line."""
    with sigint_not_ignored():
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "run", *args, "--follow", "--url", url],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
        )
    assert process.stdout is not None
    stdout = process.stdout
    lines: Lines = queue.Queue()

    def pump() -> None:
        for line in stdout:
            lines.put(line.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        yield process, lines
    finally:
        process.kill()
        process.wait(timeout=5)
        reader.join(timeout=5)
        stdout.close()


def wait_for_line(lines: Lines, text: str, timeout: float = 10) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while not seen or text not in seen[-1]:
        seen.append(lines.get(timeout=max(0.01, deadline - time.monotonic())))
    return seen


def test_ctrl_c_without_a_terminal_cancels_the_run_and_follows_it_to_canceled(
    server: Server,
) -> None:
    with follow_in_subprocess(server.url, "slow") as (process, lines):
        seen = wait_for_line(lines, "Think: running")
        execution_id = seen[0].split()[1]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 1
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    assert f"canceling execution {execution_id}…" in rest
    assert rest[-1].startswith(
        f"⊘ canceled · Slow (one minute; try Cancel) · execution {execution_id}"
    )
    body = httpx.get(f"{server.url}/agents/executions/{execution_id}").json()
    assert body["status"] == "canceled"


# ---- workflows and executions -------------------------------------------------------------


def test_workflows_list_show_and_import(
    server: Server, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = cli(capsys, server, "workflows", "list")
    assert code == 0
    rows = {line.split()[0] for line in out.splitlines()[2:]}
    assert {"linear", "failing", "slow", "approval", "fan-out", "support-triage"} <= rows

    code, out, _ = cli(capsys, server, "workflows", "list", "--json")
    assert code == 0 and "linear" in {w["id"] for w in json.loads(out)}

    code, out, _ = cli(capsys, server, "workflows", "show", "linear")
    assert code == 0
    shown = json.loads(out)
    assert shown["id"] == "linear" and [n["name"] for n in shown["nodes"]] == [
        "Start",
        "Greet",
        "Sign",
    ]

    path = tmp_path / "new.json"
    path.write_text(json.dumps({**shown, "id": "imported", "name": "Imported"}))
    code, out, _ = cli(capsys, server, "workflows", "import", str(path))
    assert (code, out) == (0, f"created workflow imported from {path}\n")
    code, out, _ = cli(capsys, server, "workflows", "import", str(path))
    assert (code, out) == (0, f"updated workflow imported from {path}\n")


def test_executions_list_and_show(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, server, "run", "failing", "-f")[0] == 1
    code, out, _ = cli(capsys, server, "executions", "list", "--workflow", "failing")
    assert code == 0
    assert "failing" in out and "✖ error" in out and out.splitlines()[-1] == "1 of 1"
    execution_id = out.splitlines()[2].split()[0]

    code, out, _ = cli(capsys, server, "executions", "show", execution_id)
    assert code == 0
    assert "Check" in out and "✖ error" in out and "Never" in out
    assert out.splitlines()[-1] == "error in node Check: the check failed"

    code, out, _ = cli(capsys, server, "executions", "show", execution_id, "--json")
    assert json.loads(out)["status"] == "error"


# ---- errors -------------------------------------------------------------------------------


def test_an_unreachable_server_gets_one_clear_line_and_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["workflows", "list", "--url", url]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"graphpush: cannot reach graphpush at {url} (connection refused): "
        "is `graphpush serve` running?\n"
    )


def test_http_errors_print_the_servers_message_and_every_problem(
    server: Server, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = cli(capsys, server, "run", "nope", "--follow")
    assert code == 1
    assert err == "graphpush: 404 not_found: workflow 'nope' not found\n"

    path = tmp_path / "bad.json"
    bad = {
        "name": "bad",
        "nodes": [{"name": "Start", "type": "trigger"}, {"name": "D", "type": "delay"}],
        "connections": {"Start": {"main": [[{"node": "Z", "type": "main", "index": 0}]]}},
    }
    path.write_text(json.dumps(bad))
    code, _, err = cli(capsys, server, "workflows", "import", str(path))
    assert code == 1
    first, *problems = err.splitlines()
    assert first == "graphpush: 422 validation_failed: workflow is invalid"
    assert "  connections.Start.main[0][0].node: unknown node 'Z'" in problems


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "linear", "--input", "[1]"], "graphpush: --input must be a JSON object\n"),
        (["run", "linear", "--input", "{"], "graphpush: --input is not valid JSON: "),
        (["workflows", "import", "missing.json"], "graphpush: cannot read missing.json: "),
    ],
)
def test_bad_input_is_a_usage_error_before_any_request(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main([*args, "--url", f"http://127.0.0.1:{free_port()}"]) == 2
    assert capsys.readouterr().err.startswith(message)


def test_the_api_key_goes_as_a_bearer_token_from_the_flag_or_the_environment(
    serve: Callable[..., Server],
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = serve(msgspec.structs.replace(settings, load_examples=True, api_keys=("k1",)))
    monkeypatch.delenv("GRAPHPUSH_API_KEY", raising=False)
    code, _, err = cli(capsys, server, "workflows", "list")
    assert code == 1 and err.startswith("graphpush: 401 unauthorized: ")
    assert cli(capsys, server, "workflows", "list", "--api-key", "k1")[0] == 0
    monkeypatch.setenv("GRAPHPUSH_API_KEY", "k1")
    code, out, _ = cli(capsys, server, "run", "linear", "--follow")
    assert code == 0 and "✔ success" in out


def test_url_comes_from_the_environment_and_can_precede_the_command(
    server: Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAPHPUSH_URL", server.url)
    assert main(["workflows", "show", "linear"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == "linear"
    monkeypatch.setenv("GRAPHPUSH_URL", f"http://127.0.0.1:{free_port()}")
    assert main(["--url", server.url, "workflows", "show", "linear"]) == 0


def test_python_dash_m_app_is_the_same_cli_with_help_everywhere() -> None:
    for args in ([], ["run"], ["workflows", "import"], ["executions", "list"], ["serve"]):
        result = subprocess.run(
            [sys.executable, "-m", "app", *args, "--help"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("usage: graphpush")


# ---- the client's pure parts ----------------------------------------------------------------


def test_sse_parser_reads_ids_and_data_and_skips_comments() -> None:
    body = (
        ':ok\n\ndata: {"type":"executionSnapshot","data":{}}\n\n'
        ': ping\n\nid: 7\ndata: {"type":"x"}\n\n'
    )
    assert list(parse_sse(body.split("\n"))) == [
        SseEvent(None, {"type": "executionSnapshot", "data": {}}),
        SseEvent(7, {"type": "x"}),
    ]


def _message(kind: str, **data: Any) -> dict[str, Any]:
    return {"type": kind, "data": {"executionId": "e1", **data}}


def test_run_tracker_folds_node_events_and_a_cancel() -> None:
    tracker = RunTracker.for_workflow("e1", {"nodes": [{"name": "A"}, {"name": "B"}]})
    tracker.apply(_message("executionStarted"), 1)
    tracker.apply(_message("nodeExecuteBefore", nodeName="A", data={"startTime": 5}), 2)
    task = {"executionTime": 3, "executionStatus": "success"}
    tracker.apply(_message("nodeExecuteAfter", nodeName="A", data=task), 3)
    tracker.apply(_message("nodeExecuteBefore", nodeName="B", data={"startTime": 9}), 5)
    assert (tracker.status, tracker.done, tracker.last_seq) == ("running", 1, 5)
    assert tracker.nodes["A"].execution_time_ms == 3 and tracker.nodes["B"].status == "running"
    tracker.apply(_message("executionFinished", status="canceled"), 6)
    assert tracker.finished and tracker.nodes["B"].status == "canceled"


def test_follow_reopens_a_dropped_stream_from_the_last_seq_without_duplicates() -> None:
    """The first connection drops after seq 2; the second is asked for what follows."""
    snapshot = 'data: {"type":"executionSnapshot","data":{"status":"running"}}\n\n'
    event = 'id: {seq}\ndata: {{"type":"{kind}","data":{{"executionId":"e1"}}}}\n\n'
    asked: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.headers.get("last-event-id"))
        if len(asked) == 1:
            body = snapshot + event.format(seq=1, kind="executionStarted")
            body += event.format(seq=2, kind="nodeExecuteBefore")
        else:
            body = snapshot + event.format(seq=3, kind="executionFinished")
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    client = GraphpushClient("http://test", transport=httpx.MockTransport(handler))
    with client:
        seqs = [e.id for e in client.follow("e1") if e.id is not None]
    assert seqs == [1, 2, 3]
    assert asked == [None, "2"]


# ---- Ctrl-C and the terminal view, without a server -------------------------------------------


class InterruptedClient:
    """Streams ``before`` then a Ctrl-C on the first follow; the rest on the next one."""

    def __init__(self, before: list[SseEvent], after: list[SseEvent]) -> None:
        self.parts = [before, after]
        self.cancelled: list[str] = []
        self.asked_after: list[int] = []

    def follow(self, execution_id: str, after: int = 0) -> Iterator[SseEvent]:
        self.asked_after.append(after)
        events = self.parts.pop(0)
        yield from events
        if self.parts:
            raise KeyboardInterrupt

    def cancel(self, execution_id: str) -> dict[str, Any]:
        self.cancelled.append(execution_id)
        return {}


SLOW_START = [
    SseEvent(1, _message("executionStarted")),
    SseEvent(2, _message("nodeExecuteBefore", nodeName="A", data={"startTime": 1})),
]
CANCELED = [SseEvent(3, _message("executionFinished", status="canceled"))]


@pytest.mark.parametrize(
    ("answer", "stopped", "cancelled"), [(True, None, ["e1"]), (False, 130, [])]
)
def test_ctrl_c_asks_then_cancels_and_follows_on_or_stops_following(
    answer: bool, stopped: int | None, cancelled: list[str]
) -> None:
    client = InterruptedClient(SLOW_START, CANCELED)
    tracker = RunTracker.for_workflow("e1", {"nodes": [{"name": "A"}]})
    console = Console(file=io.StringIO())
    view = RunView(console, tracker)
    asked: list[bool] = []

    def ask() -> bool:
        asked.append(answer)
        return answer

    assert follow(client, view, ask) == stopped
    assert asked == [answer] and client.cancelled == cancelled
    if answer:
        assert client.asked_after == [0, 2]  # resumed after the last seq it had
        assert tracker.status == "canceled" and tracker.nodes["A"].status == "canceled"


def test_the_terminal_view_draws_nodes_their_times_and_a_progress_bar() -> None:
    tracker = RunTracker.for_workflow("e1", {"nodes": [{"name": n} for n in ("A", "B", "C")]})
    for event in SLOW_START:
        tracker.apply(event.message, event.id)
    task = {"executionTime": 7, "executionStatus": "success"}
    tracker.apply(_message("nodeExecuteAfter", nodeName="A", data=task), 3)
    tracker.apply(_message("nodeExecuteBefore", nodeName="B", data={"startTime": 1}), 5)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=80, color_system=None)
    console.print(RunView(console, tracker).render())
    text = out.getvalue()
    assert re.search(r"A +✔ success +7 ms", text)
    assert re.search(r"B +● running +\d+ ms…", text)
    assert re.search(r"C +○ pending", text)
    assert re.search(r"━+.* 1/3 nodes ● running \d+\.\d s", text)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["serve", "--host", "0.0.0.0"], "refusing to listen beyond loopback without API keys"),
        (["serve"], "bad setting: "),  # GRAPHPUSH_HISTORY_MAX_COUNT=many
        (["worker"], "a worker needs --redis-url and --database-url"),
    ],
)
def test_serve_and_worker_refuse_bad_settings_with_exit_code_2(
    argv: list[str],
    says: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("GRAPHPUSH_API_KEYS", "GRAPHPUSH_ALLOW_OPEN", "GRAPHPUSH_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GRAPHPUSH_HISTORY_MAX_COUNT", "many" if argv == ["serve"] else "0")
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(f"graphpush: {says}")


@pytest.mark.parametrize("given_by", ["flag", "environment"])
def test_serve_refuses_a_port_out_of_range_instead_of_wrapping_it(
    given_by: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GRAPHPUSH_PORT", raising=False)
    argv = ["serve"]
    if given_by == "flag":
        argv += ["--port", "70000"]
    else:
        monkeypatch.setenv("GRAPHPUSH_PORT", "70000")
    assert main(argv) == 2
    said = "graphpush: bad setting: port must be from 1 to 65535, not 70000"
    assert capsys.readouterr().err.startswith(said)
