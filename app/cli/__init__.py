"""The ``graphpush`` command line (``python -m app`` is the same).

``serve`` runs the server in this process; every other command is a client of a running
server (:mod:`app.cli.client`) at ``--url`` (``GRAPHPUSH_URL``), with ``--api-key``
(``GRAPHPUSH_API_KEY``) sent as ``Authorization: Bearer``.

Exit codes: 0 done (for ``run --follow``: the run ended ``success``); 1 the run ended
``error``, ``canceled`` or ``crashed``, or the server could not be reached or refused the
request; 2 bad usage or input; 130 stopped following with Ctrl-C (the run goes on).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console

from app.cli.client import DEFAULT_URL, ApiError, ClientError, GraphpushClient
from app.cli.commands import (
    USAGE,
    UsageError,
    cmd_executions,
    cmd_run,
    cmd_workflows,
    serve,
    worker,
)
from app.cli.live import DETACHED, FAILED

EPILOG = (
    "Client commands talk to the server at --url (env GRAPHPUSH_URL, default "
    f"{DEFAULT_URL}); --api-key (env GRAPHPUSH_API_KEY) is sent as a Bearer token. "
    "Exit codes: 0 ok (run --follow: the run succeeded), 1 the run failed or was canceled, "
    "or the server is unreachable or refused the request, 2 bad usage, 130 stopped "
    "following with Ctrl-C."
)


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
        "executions",
        help="list, show, cancel, resume, retry or prune runs",
        description="Inspect runs.",
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
    retry = actions.add_parser(
        "retry",
        parents=[client],
        help="run a finished run again from a node, reusing the results before it",
        description="Queue a retry of a finished run: it starts at --from (default: the node "
        "that failed, or the first that did not finish) and reuses the original's results of "
        "the nodes before it. Prints the new execution id, or follows it with --follow.",
    )
    retry.add_argument("id", help="execution id of the run to retry")
    retry.add_argument("--from", dest="from_node", metavar="NODE", help="the node to start at")
    retry.add_argument("--saved", action="store_true", help="use the workflow as saved now")
    retry.add_argument("--state", help="results replacing reused ones, JSON {node: result}")
    retry.add_argument("-f", "--follow", action="store_true", help="show the run live")
    retry.add_argument(
        "--yes-cancel", action="store_true", help="on Ctrl-C cancel the run without asking"
    )
    resume = actions.add_parser("resume", parents=[client], help="resume a waiting run")
    resume.add_argument("id", help="execution id")
    resume.add_argument("--value", default="null", help="the value the wait node returns (JSON)")
    prune = actions.add_parser(
        "prune", parents=[client], help="delete finished runs past the server's retention now"
    )
    prune.add_argument("--dry-run", action="store_true", help="only count them")
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
    try:
        if args.command == "serve":
            return serve(args)
        if args.command == "worker":
            return worker(args)
    except UsageError as exc:
        _fail(str(exc))
        return USAGE
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
