"""The ``graphpush`` commands: ``serve`` and ``worker`` run the server in this process, the
others are clients of a running one (:class:`app.cli.client.GraphpushClient`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import msgspec
import uvicorn
from rich import box
from rich.console import Console
from rich.table import Table

from app.cli.client import GraphpushClient, JsonObject
from app.cli.live import (
    FAILED,
    OK,
    RunView,
    ask_cancel,
    follow,
    format_ms,
    nodes_table,
    print_json,
    print_summary,
    status_text,
)
from app.cli.process import tune_gc
from app.cli.tracker import RunTracker
from app.settings import Settings, load_settings
from transports.websocket import uvicorn_options

#: Exit code for bad usage or input.
USAGE = 2


class UsageError(Exception):
    """Bad input on the command line (exit code 2)."""


# ---- serve ----------------------------------------------------------------------------------


def serve(args: argparse.Namespace) -> int:
    from app.main import create_app

    options = ("host", "port", "data_dir", "workers", "database", "database_url", "redis_url")
    settings = _settings(args, *options)
    loopback = settings.host in ("127.0.0.1", "localhost", "::1")
    if settings.api_keys == () and not loopback and not _truthy_env("GRAPHPUSH_ALLOW_OPEN"):
        raise UsageError(
            "refusing to listen beyond loopback without API keys; set "
            "GRAPHPUSH_API_KEYS, or GRAPHPUSH_ALLOW_OPEN=1 to do it anyway"
        )
    app = create_app(settings)
    tune_gc()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        **uvicorn_options(settings),
    )
    return OK


def _settings(args: argparse.Namespace, *options: str) -> Settings:
    """The settings, these command-line options over the environment's; raises
    :class:`UsageError` for a bad value."""
    try:
        return load_settings({name: getattr(args, name) for name in options})
    except msgspec.ValidationError as exc:
        raise UsageError(f"bad setting: {exc}") from None


def _truthy_env(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


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
    return _follow(client, console, RunTracker.for_workflow(execution_id, workflow), args)


def _follow(
    client: GraphpushClient, console: Console, tracker: RunTracker, args: argparse.Namespace
) -> int:
    """Show a queued run live, then its summary; OK only if it ends ``success``."""
    interactive = sys.stdin.isatty() and not args.yes_cancel
    ask = ask_cancel(console, tracker.execution_id) if interactive else None
    with RunView(console, tracker) as view:
        stopped = follow(client, view, ask)
        if stopped is not None:
            return stopped
        view.finish()
    execution = client.get_execution(tracker.execution_id)
    print_summary(console, execution, tracker)
    return OK if execution["status"] == "success" else FAILED


def cmd_retry(client: GraphpushClient, args: argparse.Namespace, console: Console) -> int:
    """``executions retry``: a new run of a finished one, from ``--from`` (default: where it
    failed or stopped), reusing the results before it (SPEC §9)."""
    body: JsonObject = {"workflow": "saved" if args.saved else "original"}
    if args.from_node:
        body["from_node"] = args.from_node
    if args.state is not None:
        state = _json_arg(args.state, "--state")
        if not isinstance(state, dict):
            raise UsageError("--state must be a JSON object (node name -> its result)")
        body["state"] = state
    execution_id = str(client.retry(args.id, body)["execution_id"])
    if not args.follow:
        print(execution_id)
        return OK
    console.print(f"execution {execution_id} retries {args.id}", highlight=False)
    tracker = RunTracker(execution_id)
    tracker.load_graph_state(client.get_execution(execution_id)["graph_state"])
    return _follow(client, console, tracker, args)


def cmd_workflows(client: GraphpushClient, args: argparse.Namespace, console: Console) -> int:
    if args.action == "list":
        workflows = client.list_workflows()
        if args.json:
            print_json(console, workflows)
            return OK
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for column in ("id", "name", "nodes"):
            table.add_column(column)
        for w in workflows:
            table.add_row(str(w["id"]), str(w.get("name", "")), str(len(w.get("nodes", []))))
        console.print(table)
    elif args.action == "show":
        print_json(console, client.get_workflow(args.id))
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
        case "retry":
            return cmd_retry(client, args, console)
        case "cancel":
            client.cancel(args.id)
            console.print(f"canceling execution {args.id}", highlight=False)
        case "prune":
            pruned = client.prune(dry_run=args.dry_run)["pruned"]
            verb = "would prune" if args.dry_run else "pruned"
            console.print(f"{verb} {pruned} finished runs", highlight=False)
        case _:
            client.resume(args.id, _json_arg(args.value, "--value"))
            console.print(f"resumed execution {args.id}", highlight=False)
    return OK


def _list_executions(client: GraphpushClient, args: argparse.Namespace, console: Console) -> None:
    page = client.list_executions(
        workflow_id=args.workflow, status=args.status, limit=args.limit, offset=args.offset
    )
    if args.json:
        print_json(console, page)
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in ("execution", "workflow", "status", "started", "duration"):
        table.add_column(column)
    for e in page["items"]:
        started = e["started_at"] or e["created_at"]
        row = (e["execution_id"], e["workflow_id"], status_text(e["status"]), started)
        table.add_row(*row, format_ms(e["duration_ms"]))
    console.print(table)
    console.print(f"{len(page['items'])} of {page['total']}", highlight=False)


def _show_execution(client: GraphpushClient, args: argparse.Namespace, console: Console) -> None:
    execution = client.get_execution(args.id)
    if args.json:
        print_json(console, execution)
        return
    tracker = RunTracker(args.id, status=execution["status"])
    tracker.load_graph_state(execution["graph_state"])
    console.print(nodes_table(tracker))
    print_summary(console, execution, tracker)


def worker(args: argparse.Namespace) -> int:
    from app.worker import serve_worker

    settings = _settings(args, "workers", "database_url", "redis_url")
    if not settings.redis_url:
        raise UsageError("a worker needs --redis-url and --database-url")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    serve_worker(settings)
    return OK
