"""The ``graphpush`` command line (``python -m app`` is the same).

``serve`` runs the server in this process; every other command is a client of a running
server (:mod:`app.client`) at ``--url`` (``GRAPHPUSH_URL``), with ``--api-key``
(``GRAPHPUSH_API_KEY``) sent as ``Authorization: Bearer``.

Exit codes: 0 done (for ``run --follow``: the run ended ``success``); 1 the run ended
``error``, ``canceled`` or ``crashed``, or the server could not be reached or refused the
request; 2 bad usage or input; 130 stopped following with Ctrl-C (the run goes on).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import uvicorn
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.prompt import Confirm
from rich.table import Table
from rich.text import Text

from app.client import (
    DEFAULT_URL,
    ApiError,
    ClientError,
    GraphpushClient,
    JsonObject,
    NodeState,
    RunTracker,
    SseEvent,
)
from app.settings import load_settings
from transports.websocket import uvicorn_options

OK, FAILED, USAGE, DETACHED = 0, 1, 2, 130

EPILOG = (
    "Client commands talk to the server at --url (env GRAPHPUSH_URL, default "
    f"{DEFAULT_URL}); --api-key (env GRAPHPUSH_API_KEY) is sent as a Bearer token. "
    "Exit codes: 0 ok (run --follow: the run succeeded), 1 the run failed or was canceled, "
    "or the server is unreachable or refused the request, 2 bad usage, 130 stopped "
    "following with Ctrl-C."
)


class UsageError(Exception):
    """Bad input on the command line (exit code 2)."""


# ---- serve ----------------------------------------------------------------------------------


def serve(args: argparse.Namespace) -> int:
    from app.main import create_app

    try:
        settings = load_settings(
            {
                "host": args.host,
                "port": args.port,
                "data_dir": args.data_dir,
                "workers": args.workers,
                "database": args.database,
                "database_url": args.database_url,
                "redis_url": args.redis_url,
            }
        )
    except msgspec.ValidationError as exc:
        print(f"graphpush: bad setting: {exc}", file=sys.stderr)
        return USAGE
    loopback = settings.host in ("127.0.0.1", "localhost", "::1")
    if settings.api_keys == () and not loopback and not _truthy_env("GRAPHPUSH_ALLOW_OPEN"):
        print(
            "graphpush: refusing to listen beyond loopback without API keys; set "
            "GRAPHPUSH_API_KEYS, or GRAPHPUSH_ALLOW_OPEN=1 to do it anyway",
            file=sys.stderr,
        )
        return USAGE
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        **uvicorn_options(settings),
    )
    return OK


def _truthy_env(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


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


def _status(status: str) -> Text:
    symbol, style = LOOK.get(status, ("?", ""))
    return Text(f"{symbol} {status}", style=style)


def _print_json(console: Console, value: Any) -> None:
    if console.is_terminal:
        console.print_json(data=value)
    else:
        print(json.dumps(value, indent=2))


def _ms(value: int | None) -> str:
    return "" if value is None else f"{value} ms"


def nodes_table(tracker: RunTracker) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("node")
    table.add_column("status")
    table.add_column("time", justify="right")
    now_ms = int(time.time() * 1000)
    for node in list(tracker.nodes.values()):
        table.add_row(node.name, _status(node.status), _node_time(node, now_ms))
    return table


def _node_time(node: NodeState, now_ms: int) -> str:
    if node.status == "running" and node.started_at_ms is not None:
        return f"{max(0, now_ms - node.started_at_ms)} ms…"
    return _ms(node.execution_time_ms)


def print_summary(console: Console, execution: JsonObject, tracker: RunTracker) -> None:
    """One line: status, workflow, execution id, nodes done, duration; then the error."""
    status = str(execution["status"])
    line = Text.assemble(
        _status(status),
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
            _status(tracker.status),
            f"{(self.ended or time.monotonic()) - self.started:.1f} s",
        )
        return Group(nodes_table(tracker), bar)

    def show(self, event: SseEvent) -> None:
        node = self.tracker.apply(event.message, event.id)
        if event.type == "executionWaiting":
            self.console.print(
                f"waiting: resume with `graphpush executions resume {self.tracker.execution_id}"
                " --value '{...}'`",
                highlight=False,
            )
        if self.live is None and node is not None:
            detail = f" in {node.execution_time_ms} ms" if node.status != "running" else ""
            self.console.print(Text(f"  {node.name}: {node.status}{detail}"))

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


def _ask_cancel(console: Console, execution_id: str) -> Callable[[], bool]:
    def ask() -> bool:
        return Confirm.ask(f"Cancel execution {execution_id}?", console=console, default=False)

    return ask


# ---- client commands ------------------------------------------------------------------------


def _json_arg(raw: str, name: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{name} is not valid JSON: {exc}") from None


def read_workflow(path: Path) -> JsonObject:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    workflow = _json_arg(text, str(path))
    if not isinstance(workflow, dict):
        raise UsageError(f"{path} must hold a JSON object (a workflow)")
    return workflow


def _import(client: GraphpushClient, console: Console, path: Path) -> JsonObject:
    workflow, created = client.import_workflow(read_workflow(path))
    verb = "created" if created else "updated"
    console.print(f"{verb} workflow {workflow['id']} from {path}", highlight=False)
    return workflow


def cmd_run(client: GraphpushClient, args: argparse.Namespace, console: Console) -> int:
    run_input = _json_arg(args.input, "--input")
    if not isinstance(run_input, dict):
        raise UsageError("--input must be a JSON object")
    target: str = args.workflow
    if target.endswith(".json") or Path(target).is_file():
        workflow = _import(client, console, Path(target))
    else:
        workflow = client.get_workflow(target)
    accepted = client.run(str(workflow["id"]), run_input)
    execution_id = str(accepted["execution_id"])
    if not args.follow:
        print(execution_id)
        return OK
    console.print(f"execution {execution_id} of {workflow['id']} queued", highlight=False)
    tracker = RunTracker.for_workflow(execution_id, workflow)
    interactive = sys.stdin.isatty() and not args.yes_cancel
    ask = _ask_cancel(console, execution_id) if interactive else None
    with RunView(console, tracker) as view:
        stopped = follow(client, view, ask)
        if stopped is not None:
            return stopped
        view.finish()
    execution = client.get_execution(execution_id)
    print_summary(console, execution, tracker)
    return OK if execution["status"] == "success" else FAILED


def cmd_workflows(client: GraphpushClient, args: argparse.Namespace, console: Console) -> int:
    if args.action == "list":
        workflows = client.list_workflows()
        if args.json:
            _print_json(console, workflows)
            return OK
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for column in ("id", "name", "nodes"):
            table.add_column(column)
        for w in workflows:
            table.add_row(str(w["id"]), str(w.get("name", "")), str(len(w.get("nodes", []))))
        console.print(table)
    elif args.action == "show":
        _print_json(console, client.get_workflow(args.id))
    else:
        for path in args.files:
            _import(client, console, Path(path))
    return OK


def cmd_executions(client: GraphpushClient, args: argparse.Namespace, console: Console) -> int:
    match args.action:
        case "list":
            _list_executions(client, args, console)
        case "show":
            _show_execution(client, args, console)
        case "cancel":
            client.cancel(args.id)
            console.print(f"canceling execution {args.id}", highlight=False)
        case _:
            client.resume(args.id, _json_arg(args.value, "--value"))
            console.print(f"resumed execution {args.id}", highlight=False)
    return OK


def _list_executions(client: GraphpushClient, args: argparse.Namespace, console: Console) -> None:
    page = client.list_executions(
        workflow_id=args.workflow, status=args.status, limit=args.limit, offset=args.offset
    )
    if args.json:
        _print_json(console, page)
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in ("execution", "workflow", "status", "started", "duration"):
        table.add_column(column)
    for e in page["items"]:
        started = e["started_at"] or e["created_at"]
        row = (e["execution_id"], e["workflow_id"], _status(e["status"]), started)
        table.add_row(*row, _ms(e["duration_ms"]))
    console.print(table)
    console.print(f"{len(page['items'])} of {page['total']}", highlight=False)


def _show_execution(client: GraphpushClient, args: argparse.Namespace, console: Console) -> None:
    execution = client.get_execution(args.id)
    if args.json:
        _print_json(console, execution)
        return
    tracker = RunTracker(args.id, status=execution["status"])
    tracker.load_graph_state(execution["graph_state"])
    console.print(nodes_table(tracker))
    print_summary(console, execution, tracker)


# ---- the parser -----------------------------------------------------------------------------


def _client_options(suppress: bool) -> argparse.ArgumentParser:
    """``--url`` and ``--api-key``, accepted before or after the command. After it they
    only override (SUPPRESS), so a value given before is not reset by the default."""
    default = argparse.SUPPRESS if suppress else None
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("server")
    group.add_argument(
        "--url", default=default, help=f"graphpush server (env GRAPHPUSH_URL; {DEFAULT_URL})"
    )
    group.add_argument(
        "--api-key", default=default, help="API key, sent as Bearer (env GRAPHPUSH_API_KEY)"
    )
    return parent


def _add_serve(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve_ = commands.add_parser(
        "serve",
        help="start the server (REST, WebSocket and SSE push)",
        description="Start graphpush in this process. Flags override GRAPHPUSH_* variables; "
        "see the README's settings table.",
    )
    serve_.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve_.add_argument("--port", type=int, help="port (default 8000)")
    serve_.add_argument("--data-dir", help="where the SQLite files live (default ./var)")
    serve_.add_argument("--workers", type=int, help="execution workers in this process (default 1)")
    serve_.add_argument("--database", choices=["sqlite", "memory"], help="store (default sqlite)")
    serve_.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    _scale_out_options(serve_)
    serve_.set_defaults(handler=None)


def _scale_out_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", help="postgresql://... store (docs/deploy.md)")
    parser.add_argument("--redis-url", help="redis://... queue and push relay (docs/deploy.md)")


def _add_worker(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = commands.add_parser(
        "worker",
        help="execute queued runs only (no HTTP); needs --database-url and --redis-url",
    )
    worker.add_argument("--workers", type=int, help="concurrent executions (default 1)")
    worker.add_argument("--log-level", default="info", help="log level (default info)")
    _scale_out_options(worker)
    worker.set_defaults(handler=None)


def worker(args: argparse.Namespace) -> int:
    from app.worker import serve_worker

    try:
        settings = load_settings(
            {
                "workers": args.workers,
                "database_url": args.database_url,
                "redis_url": args.redis_url,
            }
        )
    except msgspec.ValidationError as exc:
        print(f"graphpush: bad setting: {exc}", file=sys.stderr)
        return USAGE
    if not settings.redis_url:
        print("graphpush: a worker needs --redis-url and --database-url", file=sys.stderr)
        return USAGE
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    serve_worker(settings)
    return OK


def _add_run(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], client: argparse.ArgumentParser
) -> None:
    run = commands.add_parser(
        "run",
        parents=[client],
        help="run a workflow (by id, or a .json file imported first)",
        description="Queue a run of a workflow. A .json file is imported first (created, or "
        "updating the stored workflow with its id). Without --follow, prints the execution "
        "id and exits 0; with it, shows every node live and exits 0 only if the run succeeds. "
        "Ctrl-C while following asks whether to cancel the run.",
    )
    run.add_argument("workflow", metavar="WORKFLOW", help="a workflow id or a workflow .json file")
    run.add_argument("--input", default="{}", help="the run input, a JSON object (default {})")
    run.add_argument("-f", "--follow", action="store_true", help="show the run live until it ends")
    run.add_argument(
        "--yes-cancel",
        action="store_true",
        help="on Ctrl-C cancel the run without asking (the default when stdin is not a terminal)",
    )
    run.set_defaults(handler=cmd_run)


def _add_workflows(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], client: argparse.ArgumentParser
) -> None:
    workflows = commands.add_parser(
        "workflows", help="list, show or import workflows", description="Manage workflows."
    )
    actions = workflows.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[client], help="list stored workflows")
    listing.add_argument("--json", action="store_true", help="print the JSON answer")
    show = actions.add_parser("show", parents=[client], help="print one workflow as JSON")
    show.add_argument("id", help="workflow id")
    imports = actions.add_parser(
        "import",
        parents=[client],
        help="create workflows from JSON files (or update those whose id exists)",
    )
    imports.add_argument("files", nargs="+", metavar="FILE", help="workflow .json files")
    workflows.set_defaults(handler=cmd_workflows)


def _add_executions(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], client: argparse.ArgumentParser
) -> None:
    executions = commands.add_parser(
        "executions", help="list, show, cancel or resume runs", description="Inspect runs."
    )
    actions = executions.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[client], help="list runs, newest first")
    listing.add_argument("--workflow", help="only runs of this workflow id")
    listing.add_argument("--status", help="only runs with this status (success, error, ...)")
    listing.add_argument("--limit", type=int, default=20, help="how many (1..200, default 20)")
    listing.add_argument("--offset", type=int, default=0, help="skip this many")
    listing.add_argument("--json", action="store_true", help="print the JSON answer")
    show = actions.add_parser("show", parents=[client], help="one run: its nodes and outcome")
    show.add_argument("id", help="execution id")
    show.add_argument("--json", action="store_true", help="print the AgentExecutionDto")
    cancel = actions.add_parser("cancel", parents=[client], help="cancel a queued/running run")
    cancel.add_argument("id", help="execution id")
    resume = actions.add_parser("resume", parents=[client], help="resume a waiting run")
    resume.add_argument("id", help="execution id")
    resume.add_argument("--value", default="null", help="the value the wait node returns (JSON)")
    executions.set_defaults(handler=cmd_executions)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="graphpush",
        description="Run LangGraph workflows and stream every step over WebSocket and SSE.",
        epilog=EPILOG,
        parents=[_client_options(suppress=False)],
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    client = _client_options(suppress=True)
    _add_serve(commands)
    _add_worker(commands)
    _add_run(commands, client)
    _add_workflows(commands, client)
    _add_executions(commands, client)
    return parser


Handler = Callable[[GraphpushClient, argparse.Namespace, Console], int]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "worker":
        return worker(args)
    handler: Handler = args.handler
    url = args.url or os.environ.get("GRAPHPUSH_URL") or DEFAULT_URL
    api_key = args.api_key or os.environ.get("GRAPHPUSH_API_KEY") or None
    console = Console(highlight=False, soft_wrap=not sys.stdout.isatty())
    try:
        with GraphpushClient(url, api_key=api_key) as client:
            return handler(client, args, console)
    except UsageError as exc:
        _fail(str(exc))
        return USAGE
    except KeyboardInterrupt:
        return DETACHED
    except ClientError as exc:
        _fail(str(exc), exc.details if isinstance(exc, ApiError) else None)
        return FAILED


def _fail(message: str, details: Any = None) -> None:
    print(f"graphpush: {message}", file=sys.stderr)
    if isinstance(details, list):
        for item in details:
            if isinstance(item, dict) and "path" in item:
                print(f"  {item['path']}: {item.get('message', '')}", file=sys.stderr)
            else:
                print(f"  {item}", file=sys.stderr)
    elif details is not None:
        print(f"  {json.dumps(details)}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
