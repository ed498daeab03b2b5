"""The terminal view of a followed run (``graphpush run --follow``): a live table of nodes
with a progress bar on a terminal, one line per node event otherwise, then a summary.

What a running node streams (SPEC §8) shows as it comes: its text under the table (and the
answer stays printed when the node ends), its custom progress beside it; without a terminal
the text is written as it arrives on the node's own line, and each progress payload as one
line."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.prompt import Confirm
from rich.table import Table
from rich.text import Text

from app.cli.client import ApiError, GraphpushClient, JsonObject, SseEvent
from app.cli.tracker import NodeState, RunTracker

#: Exit codes: the run succeeded, it did not (or the server failed us), following stopped.
OK, FAILED, DETACHED = 0, 1, 130
#: Characters of a running node's streamed text shown under the live table.
STREAM_TAIL = 400


# ---- output helpers -------------------------------------------------------------------------

#: Node and run statuses: symbol and style.
LOOK: dict[str, tuple[str, str]] = {
    "pending": ("○", "dim"),
    "new": ("○", "dim"),
    "running": ("●", "yellow"),
    "success": ("✔", "green"),
    "error": ("✖", "red"),
    "waiting": ("⏸", "cyan"),
    "canceled": ("⊘", "magenta"),
    "crashed": ("✖", "red"),
    "skipped": ("-", "dim"),
    "unknown": ("?", "dim"),
}


def status_text(status: str) -> Text:
    symbol, style = LOOK.get(status, ("?", ""))
    return Text(f"{symbol} {status}", style=style)


def print_json(console: Console, value: Any) -> None:
    if console.is_terminal:
        console.print_json(data=value)
    else:
        print(json.dumps(value, indent=2))


def format_ms(value: int | None) -> str:
    return "" if value is None else f"{value} ms"


def nodes_table(tracker: RunTracker, notes: dict[str, str] | None = None) -> Table:
    """The nodes with status and time; ``notes`` (node -> text) adds a column."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("node")
    table.add_column("status")
    table.add_column("time", justify="right")
    if notes:
        table.add_column("live", overflow="ellipsis", no_wrap=True, max_width=60)
    now_ms = int(time.time() * 1000)
    for node in list(tracker.nodes.values()):
        row: list[RenderableType] = [node.name, status_text(node.status), _node_time(node, now_ms)]
        table.add_row(*row, *([notes.get(node.name, "")] if notes else []))
    return table


def _node_time(node: NodeState, now_ms: int) -> str:
    if node.status == "running" and node.started_at_ms is not None:
        return f"{max(0, now_ms - node.started_at_ms)} ms…"
    return format_ms(node.execution_time_ms)


def print_summary(console: Console, execution: JsonObject, tracker: RunTracker) -> None:
    """One line: status, workflow, execution id, nodes done, duration; then the error."""
    status = str(execution["status"])
    line = Text.assemble(
        status_text(status),
        f" · {execution['workflow_name']} · execution {execution['execution_id']}",
        f" · {tracker.done}/{len(tracker.nodes)} nodes",
    )
    if execution.get("duration_ms") is not None:
        line.append(f" · {execution['duration_ms']} ms")
    console.print(line)
    error = execution.get("error")
    if error:
        where = f" in node {error['node']}" if error.get("node") else ""
        console.print(Text(f"error{where}: {error['message']}", style="red"))


# ---- run --follow ---------------------------------------------------------------------------


class RunView:
    """A followed run: on a terminal a live table of nodes and a progress bar; otherwise one
    plain line per node event (logs, pipes, CI)."""

    def __init__(self, console: Console, tracker: RunTracker) -> None:
        self.console = console
        self.tracker = tracker
        self.started = time.monotonic()
        self.ended: float | None = None
        self.live: Live | None = None
        #: Running node -> the text it streamed so far, and its last progress payload.
        self.texts: dict[str, str] = {}
        self.progress: dict[str, str] = {}
        #: Without a terminal: the node whose text line is being written.
        self._open: str | None = None
        if console.is_terminal:
            self.live = Live(console=console, get_renderable=self.render, refresh_per_second=8)

    def __enter__(self) -> RunView:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.stop()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Stop redrawing (to ask a question), then go on."""
        if self.live is not None:
            self.live.stop()
        try:
            yield
        finally:
            if self.live is not None:
                self.live.start()

    def render(self) -> RenderableType:
        tracker = self.tracker
        total = max(len(tracker.nodes), 1)
        done = tracker.done + sum(1 for n in tracker.nodes.values() if n.status == "skipped")
        bar = Table.grid(padding=(0, 1))
        bar.add_row(
            ProgressBar(total=total, completed=done, width=30),
            f"{tracker.done}/{len(tracker.nodes)} nodes",
            status_text(tracker.status),
            f"{(self.ended or time.monotonic()) - self.started:.1f} s",
        )
        texts = [
            Text.assemble((f"{name} ", "bold yellow"), text[-STREAM_TAIL:])
            for name, text in self.texts.items()
        ]
        return Group(nodes_table(tracker, self._notes()), *texts, bar)

    def _notes(self) -> dict[str, str]:
        notes = {name: " ".join(text[-80:].split()) for name, text in self.texts.items()}
        return {**notes, **self.progress}

    def show(self, event: SseEvent) -> None:
        if event.type == "nodeExecuteStream":
            self.tracker.apply(event.message, event.id)
            self._streamed(event.message["data"])
            return
        node = self.tracker.apply(event.message, event.id)
        if event.type == "nodeExecuteAfter" and node is not None:
            self._stream_ended(node.name)
        if event.type == "executionWaiting":
            self.console.print(
                f"waiting: resume with `graphpush executions resume {self.tracker.execution_id}"
                " --value '{...}'`",
                highlight=False,
            )
        if node is not None:
            detail = f" in {node.execution_time_ms} ms" if node.status != "running" else ""
            self._line(Text(f"  {node.name}: {node.status}{detail}"))

    def _streamed(self, data: JsonObject) -> None:
        name = str(data["nodeName"])
        for chunk in data["chunks"]:
            if chunk["kind"] == "text":
                self._text(name, chunk["text"])
            elif chunk["kind"] == "custom":
                note = json.dumps(chunk["data"], ensure_ascii=False)
                self.progress[name] = note
                self._line(Text(f"  {name}: progress {note}"))

    def _text(self, name: str, text: str) -> None:
        self.texts[name] = self.texts.get(name, "") + text
        if self.live is None:
            if self._open != name:
                self._close_line()
                self._write(f"  {name}> ")
                self._open = name
            self._write(text)

    def _stream_ended(self, name: str) -> None:
        """The node's text stays on screen: printed above the live view, or its line ends."""
        text = self.texts.pop(name, None)
        self.progress.pop(name, None)
        if text is not None and self.live is not None:
            self.console.print(Text.assemble((f"{name}> ", "bold"), text))
        self._close_line()

    def _line(self, line: Text) -> None:
        """One plain line (no terminal): after the text line it interrupts."""
        if self.live is None:
            self._close_line()
            self.console.print(line)

    def _close_line(self) -> None:
        if self._open is not None:
            self._write("\n")
            self._open = None

    def _write(self, text: str) -> None:
        # Raw, as it comes: rich would wrap and re-flow a line written piece by piece.
        self.console.file.write(text)
        self.console.file.flush()

    def finish(self) -> None:
        self.ended = time.monotonic()
        if self.tracker.status == "success":
            self.tracker.mark_skipped()
        if self.live is not None:
            self.live.refresh()


def follow(
    client: GraphpushClient, view: RunView, ask_cancel: Callable[[], bool] | None
) -> int | None:
    """Show the run's events until it ends (None) or the user stops following (130).

    Ctrl-C asks ``ask_cancel`` (None: cancel without asking); yes cancels the run and keeps
    following until it ends ``canceled``, no (or a second Ctrl-C) stops following.
    """
    tracker, canceling = view.tracker, False
    while True:
        try:
            for event in client.follow(tracker.execution_id, tracker.last_seq):
                view.show(event)
            return None
        except KeyboardInterrupt:
            if canceling:
                return _detached(view.console, tracker)
            with view.paused():
                try:
                    confirmed = ask_cancel is None or ask_cancel()
                except (KeyboardInterrupt, EOFError):
                    confirmed = False
            if not confirmed:
                return _detached(view.console, tracker)
            _request_cancel(client, view.console, tracker.execution_id)
            canceling = True


def _request_cancel(client: GraphpushClient, console: Console, execution_id: str) -> None:
    try:
        client.cancel(execution_id)
        console.print(f"canceling execution {execution_id}…", highlight=False)
    except ApiError as exc:
        if exc.status != 409:
            raise
        console.print(f"execution {execution_id} already finished", highlight=False)


def _detached(console: Console, tracker: RunTracker) -> int:
    console.print(
        f"stopped following; the run goes on: graphpush executions show {tracker.execution_id}",
        highlight=False,
    )
    return DETACHED


def ask_cancel(console: Console, execution_id: str) -> Callable[[], bool]:
    def ask() -> bool:
        return Confirm.ask(f"Cancel execution {execution_id}?", console=console, default=False)

    return ask
