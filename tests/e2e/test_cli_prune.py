"""``graphpush executions prune [--dry-run]`` (SPEC §10) against a real server."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import msgspec
import pytest

from app.cli import main
from app.settings import Settings
from support.app import Server
from support.engine import chain, node
from support.wait import eventually_blocking

pytestmark = pytest.mark.timeout(30)


def test_prune_reports_then_deletes_the_runs_past_retention(
    serve: Callable[..., Server], settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve(msgspec.structs.replace(settings, history_max_count=1))
    with httpx.Client(base_url=server.url) as http:
        workflow = http.post("/agents/workflows", json=chain(node("Start"))).json()["id"]
        ids = [http.post(f"/agents/workflows/{workflow}/run").json()["execution_id"] for _ in "ab"]

        def finished() -> bool:
            statuses = [http.get(f"/agents/executions/{i}").json()["status"] for i in ids]
            return statuses == ["success", "success"]

        eventually_blocking(finished, within=10, what="both runs ended")

        assert main(["executions", "prune", "--dry-run", "--url", server.url]) == 0
        assert "would prune 1 finished runs" in capsys.readouterr().out
        assert http.get(f"/agents/executions/{ids[0]}").status_code == 200

        assert main(["executions", "prune", "--url", server.url]) == 0
        assert "pruned 1 finished runs" in capsys.readouterr().out
        assert http.get(f"/agents/executions/{ids[0]}").status_code == 404
        assert http.get(f"/agents/executions/{ids[1]}").status_code == 200
