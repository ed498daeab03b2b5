"""``graphpush run --follow`` shows what a running node streams (SPEC §8): its text as it
comes and its custom progress, on a real server."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from rich.console import Console

from app.cli import main
from app.cli.client import SseEvent
from app.cli.live import RunView
from app.cli.tracker import RunTracker
from app.settings import Settings
from support.app import Server

pytestmark = pytest.mark.timeout(30)

AGENT = json.loads((Path(__file__).resolve().parents[2] / "examples" / "agent.json").read_text())
ANSWER = AGENT["nodes"][2]["parameters"]["response"]


def test_follow_without_a_terminal_writes_the_text_on_the_node_line_and_each_progress(
    serve: Callable[..., Server], settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve(msgspec.structs.replace(settings, load_examples=True))
    args = ["run", "agent", "--input", '{"delay_ms": 1}', "--follow", "--url", server.url]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    answer = lines.index(f"  Answer> {ANSWER}")
    assert lines[answer - 1] == "  Answer: running"
    assert lines[answer + 1].startswith("  Answer: success in ")
    progress = [line for line in lines if line.startswith("  Research: progress ")]
    assert [json.loads(line.split("progress ", 1)[1])["step"] for line in progress] == [1, 2, 3]


def stream(seq: int, text: str) -> SseEvent:
    chunks = [{"kind": "text", "messageId": "m1", "text": text}]
    return SseEvent(
        seq, {"type": "nodeExecuteStream", "data": {"nodeName": "Ask", "chunks": chunks}}
    )


def test_on_a_terminal_the_running_text_is_drawn_live_and_kept_when_the_node_ends() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, color_system=None)
    tracker = RunTracker.for_workflow("e1", {"nodes": [{"name": "Ask"}]})
    view = RunView(console, tracker)
    view.show(SseEvent(1, {"type": "nodeExecuteBefore", "data": {"nodeName": "Ask", "data": {}}}))
    view.show(stream(2, "Half an"))
    view.show(stream(3, " answer"))
    assert view.texts == {"Ask": "Half an answer"}
    drawn = _render(view)
    assert "Ask Half an answer" in drawn  # under the table
    after = {"nodeName": "Ask", "data": {"executionStatus": "success", "executionTime": 5}}
    with view:
        view.show(SseEvent(4, {"type": "nodeExecuteAfter", "data": after}))
    assert view.texts == {} and tracker.last_seq == 4
    assert "Ask> Half an answer" in out.getvalue()


def _render(view: RunView) -> str:
    console = Console(file=io.StringIO(), width=100, color_system=None, record=True)
    console.print(view.render())
    return console.export_text()
