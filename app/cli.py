"""The ``graphpush`` command line (``python -m app`` is the same)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import msgspec
import uvicorn

from app.settings import load_settings


def _serve_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser("serve", help="start the server (REST, WebSocket and SSE push)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument("--data-dir", help="where the SQLite files live (default ./var)")
    serve.add_argument("--workers", type=int, help="execution workers in this process (default 1)")
    serve.add_argument("--database", choices=["sqlite", "memory"], help="store (default sqlite)")
    serve.add_argument("--log-level", default="info", help="uvicorn log level (default info)")


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
            }
        )
    except msgspec.ValidationError as exc:
        print(f"graphpush: bad setting: {exc}", file=sys.stderr)
        return 2
    if settings.api_keys == () and settings.host not in ("127.0.0.1", "localhost", "::1"):
        if not _truthy_env("GRAPHPUSH_ALLOW_OPEN"):
            print(
                "graphpush: refusing to listen beyond loopback without API keys; set "
                "GRAPHPUSH_API_KEYS, or GRAPHPUSH_ALLOW_OPEN=1 to do it anyway",
                file=sys.stderr,
            )
            return 2
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        ws_per_message_deflate=settings.ws_per_message_deflate,
        ws_max_size=settings.max_inbound_frame_bytes,
        ws_ping_interval=None,
        ws_ping_timeout=None,
    )
    return 0


def _truthy_env(name: str) -> bool:
    import os

    return os.environ.get(name, "").lower() in ("1", "true", "yes")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="graphpush",
        description="Run LangGraph workflows and stream every step over WebSocket and SSE.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _serve_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
