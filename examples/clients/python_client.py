"""A minimal graphpush push client: run a workflow, print its push messages as they come.

    python examples/clients/python_client.py linear --input '{"topic": "billing"}'
    python examples/clients/python_client.py approval --resume '{"approved": true}'

What a client has to do (docs/protocol.md):

1. Open the WebSocket ``/agents/push?pushRef=<ref>`` *before* starting the run, with a
   fresh pushRef and ``lastEventId=0`` so nothing sent to the pushRef is missed.
2. ``POST /agents/workflows/{id}/run`` with ``push_ref``; the answer (202) has the id.
3. Read frames: text, or binary for ``nodeExecuteAfterData``; both are one JSON object.
   Remember ``meta.id``: after a drop, reconnect with ``lastEventId=<it>`` and the server
   replays what was missed. ``resumeFailed`` means it could not: refetch over REST.
4. Stop at ``executionFinished``. ``executionWaiting`` means the run waits for
   ``POST /agents/executions/{id}/resume``.

Needs ``httpx`` and ``websockets`` (both come with graphpush). Exit code 0 on ``success``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

FINISHED = {"success", "error", "canceled", "crashed", "unknown"}


def describe(message: dict[str, Any]) -> str:
    """One line per message: cursor, type, node, outcome."""
    data = message["data"]
    task = data.get("data") if isinstance(data.get("data"), dict) else {}
    parts = [
        str(message.get("meta", {}).get("id", "-")).rjust(3),
        message["type"].ljust(21),
        data.get("nodeName", ""),
        task.get("executionStatus", "") or data.get("status", ""),
    ]
    return " ".join(p for p in parts if p).rstrip()


async def run_and_follow(url: str, workflow_id: str, run_input: dict[str, Any], resume: Any) -> str:
    """Run ``workflow_id`` and print its messages; returns its final status."""
    push_ref = secrets.token_hex(5)  # 10 lowercase alphanumerics, as n8n's editor makes them
    push_url = f"ws{url.removeprefix('http')}/agents/push?pushRef={push_ref}"
    last_id, execution_id = 0, None
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        for _attempt in range(5):
            try:
                async with connect(f"{push_url}&lastEventId={last_id}") as ws:
                    if execution_id is None:  # first connection: start the run now
                        body = {"input": run_input, "push_ref": push_ref}
                        answer = await http.post(f"/agents/workflows/{workflow_id}/run", json=body)
                        answer.raise_for_status()
                        execution_id = answer.json()["execution_id"]
                    async for frame in ws:
                        message = json.loads(frame)  # str, or bytes for nodeExecuteAfterData
                        last_id = message.get("meta", {}).get("id", last_id)
                        print(describe(message), flush=True)
                        match message["type"]:
                            case "executionFinished":
                                return str(message["data"]["status"])
                            case "executionWaiting":
                                await http.post(
                                    f"/agents/executions/{execution_id}/resume",
                                    json={"value": resume},
                                )
                            case "resumeFailed":  # the gap is gone: ask REST where it stands
                                execution = await http.get(f"/agents/executions/{execution_id}")
                                if execution.json()["status"] in FINISHED:
                                    return str(execution.json()["status"])
            except (ConnectionClosedError, OSError) as exc:
                print(f"connection lost ({exc}); resuming after {last_id}", file=sys.stderr)
            await asyncio.sleep(1)
    raise RuntimeError("gave up reconnecting")


def main() -> int:
    parser = argparse.ArgumentParser(description="Run a graphpush workflow and print its push.")
    parser.add_argument("workflow", help="workflow id")
    parser.add_argument("--input", default="{}", help="run input (a JSON object)")
    parser.add_argument("--resume", default="null", help="value to resume a waiting run with")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="graphpush server")
    args = parser.parse_args()
    run_input, resume = json.loads(args.input), json.loads(args.resume)
    status = asyncio.run(run_and_follow(args.url, args.workflow, run_input, resume))
    print(f"finished: {status}")
    return 0 if status == "success" else 1


if __name__ == "__main__":
    raise SystemExit(main())
