"""The REST API of SPEC §3 through the real app: statuses, error bodies, DTOs, paging, keys."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest

from app.settings import Settings
from support.app import create_workflow, run, running_app, wait_for_status
from support.engine import chain, error_body, node, workflow

pytestmark = pytest.mark.timeout(30)

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SIMPLE = chain(node("Start"), node("Set", "set", values={"x": 1}), name="simple")
FAILING = chain(node("Start"), node("Boom", "fail", message="no"), name="failing")
WAITING = chain(node("Start"), node("Hold", "wait"), name="waiting")


def replace(settings: Settings, **changes: Any) -> Settings:
    return msgspec.structs.replace(settings, **changes)


@pytest.fixture
async def idle_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app with no workers: runs stay queued (``new``)."""
    async with running_app(replace(settings, workers=0, queue_bound=1)) as (_, client):
        yield client


# ---- workflows ---------------------------------------------------------------------------


async def test_creating_a_workflow_answers_201_with_an_assigned_id(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/agents/workflows", json=SIMPLE)

    assert response.status_code == 201, response.text
    body = response.json()
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", body["id"])
    assert body["name"] == "simple"
    assert [n["name"] for n in body["nodes"]] == ["Start", "Set"]
    assert (await client.get(f"/agents/workflows/{body['id']}")).json() == body


async def test_creating_a_workflow_with_a_taken_id_is_a_conflict(
    client: httpx.AsyncClient,
) -> None:
    assert (
        await client.post("/agents/workflows", json={**SIMPLE, "id": "mine"})
    ).status_code == 201

    response = await client.post("/agents/workflows", json={**SIMPLE, "id": "mine", "name": "2"})

    assert response.status_code == 409
    assert error_body(response)["code"] == "conflict"
    assert (await client.get("/agents/workflows/mine")).json()["name"] == "simple"


async def test_workflows_are_listed_replaced_and_deleted(client: httpx.AsyncClient) -> None:
    first = await create_workflow(client, {**SIMPLE, "id": "one"})
    await create_workflow(client, {**FAILING, "id": "two"})

    listed = (await client.get("/agents/workflows")).json()
    assert [w["id"] for w in listed["items"]] == ["one", "two"] and listed["total"] == 2

    put = await client.put(f"/agents/workflows/{first}", json={**SIMPLE, "name": "renamed"})
    assert put.status_code == 200, put.text
    assert put.json()["id"] == "one"
    assert (await client.get("/agents/workflows/one")).json()["name"] == "renamed"

    assert (await client.delete("/agents/workflows/one")).status_code == 204
    assert (await client.get("/agents/workflows/one")).status_code == 404
    assert [w["id"] for w in (await client.get("/agents/workflows")).json()["items"]] == ["two"]


async def test_a_replaced_workflow_runs_in_its_new_form(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(client, SIMPLE)
    changed = chain(node("Start"), node("Set", "set", values={"x": 2}), name="simple")
    await client.put(f"/agents/workflows/{workflow_id}", json=changed)

    body = await wait_for_status(client, await run(client, workflow_id), "success", "error")
    full = await client.get(f"/agents/executions/{body['execution_id']}?include_data=true")

    assert full.json()["data"]["Set"][0]["main"][0][0]["json"] == {"x": 2}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/agents/workflows/ghost"),
        ("DELETE", "/agents/workflows/ghost"),
        ("POST", "/agents/workflows/ghost/run"),
        ("GET", "/agents/workflows/ghost/executions"),
        ("GET", "/agents/executions/ghost"),
        ("GET", "/agents/executions/ghost/events"),
        ("POST", "/agents/executions/ghost/resume"),
        ("GET", "/no/such/route"),
    ],
)
async def test_unknown_things_answer_404_with_an_error_body(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path)

    assert response.status_code == 404
    assert error_body(response)["code"] == "not_found"


async def test_replacing_an_unknown_workflow_is_not_found(client: httpx.AsyncClient) -> None:
    response = await client.put("/agents/workflows/ghost", json=SIMPLE)

    assert response.status_code == 404
    assert (await client.get("/agents/workflows/ghost")).status_code == 404


async def test_replacing_a_workflow_with_another_id_is_refused(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(client, SIMPLE)

    response = await client.put(f"/agents/workflows/{workflow_id}", json={**SIMPLE, "id": "x"})

    assert response.status_code == 422
    assert [p["path"] for p in error_body(response)["details"]] == ["id"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PATCH", "/agents/workflows/any"),
        ("DELETE", "/agents/executions/any"),
        ("GET", "/agents/workflows/any/run"),
        ("PUT", "/healthz"),
    ],
)
async def test_a_wrong_method_answers_405_with_an_error_body(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path)

    assert response.status_code == 405
    assert error_body(response)["code"] == "method_not_allowed"


# ---- bodies ------------------------------------------------------------------------------


async def test_a_malformed_json_body_is_a_bad_request(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/agents/workflows", content=b'{"name": ', headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    assert error_body(response)["code"] == "bad_request"


@pytest.mark.parametrize("body", [b"", b"[1, 2]", b'"text"'])
async def test_a_workflow_body_must_be_a_json_object(
    client: httpx.AsyncClient, body: bytes
) -> None:
    response = await client.post(
        "/agents/workflows", content=body, headers={"content-type": "application/json"}
    )

    assert response.status_code in (400, 422)
    assert error_body(response)["code"] in ("bad_request", "validation_failed")
    assert (await client.get("/agents/workflows")).json()["total"] == 0


async def test_an_optional_body_may_be_left_out_but_whitespace_is_not_json(
    client: httpx.AsyncClient,
) -> None:
    json_type = {"content-type": "application/json"}
    empty = await client.post("/agents/executions/prune", content=b"", headers=json_type)
    blank = await client.post("/agents/executions/prune", content=b"\n\n", headers=json_type)

    assert empty.status_code == 200, empty.text
    assert blank.status_code == 400
    assert error_body(blank)["code"] == "bad_request"


async def test_a_body_that_is_not_json_is_an_unsupported_media_type(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/agents/workflows", content=b"name=x", headers={"content-type": "text/plain"}
    )

    assert response.status_code == 415
    assert error_body(response)["code"] == "unsupported_media_type"


async def test_a_body_over_the_limit_is_refused_before_it_is_read_whole(
    settings: Settings,
) -> None:
    big = {**SIMPLE, "name": "x" * 2048}
    async with running_app(replace(settings, max_body_bytes=1024)) as (_, client):
        declared = await client.post("/agents/workflows", json=big)

        async def chunks() -> AsyncIterator[bytes]:
            payload = msgspec.json.encode(big)
            for i in range(0, len(payload), 256):
                yield payload[i : i + 256]

        streamed = await client.post(
            "/agents/workflows", content=chunks(), headers={"content-type": "application/json"}
        )
        small = await client.post("/agents/workflows", json=SIMPLE)

    for response in (declared, streamed):
        assert response.status_code == 413
        assert error_body(response)["code"] == "payload_too_large"
    assert small.status_code == 201


async def test_an_invalid_workflow_lists_every_problem_with_its_path(
    client: httpx.AsyncClient,
) -> None:
    body = workflow(
        [
            node("Start"),
            node("Start", "set", values={}),
            node("Sleep", "delay", ms="soon"),
            node("Odd", "teleport"),
        ],
        [("Start", 0, "Sleep"), ("Sleep", 0, "Nowhere")],
    )

    response = await client.post("/agents/workflows", json=body)

    assert response.status_code == 422
    error = error_body(response)
    assert error["code"] == "validation_failed"
    paths = {p["path"]: p["message"] for p in error["details"]}
    assert all(isinstance(m, str) and m for m in paths.values())
    assert "nodes[2].parameters.ms" in paths
    assert "nodes[3].type" in paths
    assert any(p.startswith("nodes[1]") and "name" in p for p in paths), paths
    assert any(p.startswith("connections") for p in paths), paths
    assert (await client.get("/agents/workflows")).json()["total"] == 0


# ---- runs --------------------------------------------------------------------------------


async def test_a_run_is_accepted_with_its_links(idle_client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(idle_client, SIMPLE)

    response = await idle_client.post(
        f"/agents/workflows/{workflow_id}/run", json={"input": {"q": 1}, "push_ref": "tab-1"}
    )

    assert response.status_code == 202, response.text
    body = response.json()
    execution_id = body["execution_id"]
    assert body["status"] == "new"
    assert body["push_ref"] == "tab-1"
    assert body["status_url"] == body["polling_url"] == f"/agents/executions/{execution_id}"
    assert body["stream_url"] == f"/agents/executions/{execution_id}/stream"
    stored = (await idle_client.get(body["status_url"])).json()
    assert stored["status"] == "new" and stored["input"] == {"q": 1}
    assert stored["push_ref"] == "tab-1"


async def test_a_run_takes_its_push_ref_from_the_header(idle_client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(idle_client, SIMPLE)

    response = await idle_client.post(
        f"/agents/workflows/{workflow_id}/run", headers={"push-ref": "abc123defg"}
    )

    assert response.status_code == 202, response.text
    assert response.json()["push_ref"] == "abc123defg"


@pytest.mark.parametrize(
    ("body", "headers", "path"),
    [
        ({"push_ref": "not ok!"}, {}, "push_ref"),
        ({}, {"push-ref": "x" * 65}, "push_ref"),
        ({"input": [1, 2]}, {}, "input"),
        ({"inputs": {}}, {}, "inputs"),
    ],
    ids=["bad-push-ref", "bad-push-ref-header", "input-not-object", "unknown-field"],
)
async def test_a_bad_run_body_is_refused_naming_the_field(
    idle_client: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str], path: str
) -> None:
    workflow_id = await create_workflow(idle_client, SIMPLE)

    response = await idle_client.post(
        f"/agents/workflows/{workflow_id}/run", json=body, headers=headers
    )

    assert response.status_code == 422
    error = error_body(response)
    assert error["code"] == "validation_failed"
    assert path in [p["path"] for p in error["details"]]
    assert (await idle_client.get("/agents/executions")).json()["total"] == 0


async def test_a_full_queue_answers_503_with_retry_after_and_keeps_nothing(
    idle_client: httpx.AsyncClient,
) -> None:
    workflow_id = await create_workflow(idle_client, SIMPLE)
    await run(idle_client, workflow_id)

    response = await idle_client.post(f"/agents/workflows/{workflow_id}/run", json={})

    assert response.status_code == 503
    assert error_body(response)["code"] == "queue_full"
    assert int(response.headers["retry-after"]) >= 1
    assert (await idle_client.get("/agents/executions")).json()["total"] == 1


# ---- executions --------------------------------------------------------------------------


async def test_a_finished_execution_has_every_dto_field(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(client, SIMPLE)
    execution_id = await run(client, workflow_id)

    body = await wait_for_status(client, execution_id, "success")

    assert body["execution_id"] == execution_id
    assert (body["workflow_id"], body["workflow_name"]) == (workflow_id, "simple")
    assert body["mode"] == "manual"
    assert ISO_MS.match(body["started_at"]) and ISO_MS.match(body["stopped_at"])
    assert body["started_at"] <= body["stopped_at"]
    assert isinstance(body["duration_ms"], int) and body["duration_ms"] >= 0
    assert body["error"] is None and body["retry_of"] is None
    assert body["summary"] == {
        **body["summary"],
        "nodes_total": 2,
        "nodes_completed": 2,
        "nodes_failed": 0,
        "duration_ms": body["duration_ms"],
        "last_node_executed": "Set",
    }
    assert list(body["run_data_meta"]) == ["Start", "Set"]
    meta = body["run_data_meta"]["Set"][0]
    assert meta["status"] == "success" and ISO_MS.match(meta["start_time"])
    assert meta["execution_time_ms"] >= 0 and meta["item_count"] == {"main": [1]}
    assert body["graph_state"]["completed_nodes"] == ["Start", "Set"]
    base = f"/agents/executions/{execution_id}"
    assert body["links"] == {
        **body["links"],
        "self": base,
        "events": f"{base}/events",
        "stream": f"{base}/stream",
        "cancel": f"{base}/cancel",
        "workflow": f"/agents/workflows/{workflow_id}",
    }


async def test_a_failed_execution_names_its_error(client: httpx.AsyncClient) -> None:
    body = await wait_for_status(
        client, await run(client, await create_workflow(client, FAILING)), "error"
    )

    assert body["error"] == {"message": "no", "node": "Boom", "type": "NodeOperationError"}
    assert body["summary"]["nodes_failed"] == 1 and body["summary"]["nodes_completed"] == 1
    assert body["run_data_meta"]["Boom"][0]["status"] == "error"


async def test_a_waiting_execution_has_no_stop_time(client: httpx.AsyncClient) -> None:
    body = await wait_for_status(
        client, await run(client, await create_workflow(client, WAITING)), "waiting"
    )

    assert body["stopped_at"] is None and body["duration_ms"] is None
    assert body["summary"]["duration_ms"] is None
    assert ISO_MS.match(body["started_at"])


async def test_events_after_n_are_the_rest_of_the_log(client: httpx.AsyncClient) -> None:
    execution_id = await run(client, await create_workflow(client, SIMPLE))
    await wait_for_status(client, execution_id, "success")

    whole = (await client.get(f"/agents/executions/{execution_id}/events")).json()
    rest = (await client.get(f"/agents/executions/{execution_id}/events?after=3")).json()
    bad = await client.get(f"/agents/executions/{execution_id}/events?after=-1")

    assert [i["seq"] for i in whole["items"]] == list(range(1, 9))
    assert rest["items"] == whole["items"][3:]
    assert rest["last_seq"] == whole["last_seq"] == 8
    assert bad.status_code == 422 and error_body(bad)["details"][0]["path"] == "after"


async def make_history(client: httpx.AsyncClient) -> tuple[str, str, list[str]]:
    """Three successful runs of one workflow and one failed run of another, in that order."""
    simple = await create_workflow(client, SIMPLE)
    failing = await create_workflow(client, FAILING)
    ids = []
    for workflow_id in (simple, simple, simple, failing):
        ids.append(await run(client, workflow_id))
        await wait_for_status(client, ids[-1], "success", "error")
    return simple, failing, ids


async def page_ids(client: httpx.AsyncClient, url: str) -> tuple[list[str], dict[str, Any]]:
    response = await client.get(url)
    assert response.status_code == 200, response.text
    body = response.json()
    return [item["execution_id"] for item in body["items"]], body


async def test_executions_are_listed_newest_first_with_total_and_paging(
    client: httpx.AsyncClient,
) -> None:
    _, _, ids = await make_history(client)
    newest_first = ids[::-1]

    listed, body = await page_ids(client, "/agents/executions")
    assert listed == newest_first
    assert (body["total"], body["limit"], body["offset"]) == (4, 20, 0)

    listed, body = await page_ids(client, "/agents/executions?limit=2&offset=1")
    assert listed == newest_first[1:3]
    assert (body["total"], body["limit"], body["offset"]) == (4, 2, 1)

    listed, body = await page_ids(client, "/agents/executions?offset=10")
    assert listed == [] and body["total"] == 4


async def test_executions_are_filtered_by_status_and_workflow(client: httpx.AsyncClient) -> None:
    simple, failing, ids = await make_history(client)

    assert (await page_ids(client, "/agents/executions?status=error"))[0] == [ids[3]]
    listed, body = await page_ids(client, f"/agents/executions?workflow_id={simple}")
    assert listed == ids[2::-1] and body["total"] == 3
    listed, body = await page_ids(client, f"/agents/workflows/{simple}/executions?limit=1")
    assert listed == [ids[2]] and body["total"] == 3
    listed, _ = await page_ids(client, f"/agents/workflows/{failing}/executions?status=success")
    assert listed == []
    listed, body = await page_ids(client, "/agents/executions?status=success&limit=200")
    assert listed == ids[2::-1] and body["limit"] == 200


@pytest.mark.parametrize(
    ("query", "paths"),
    [
        ("limit=0", ["limit"]),
        ("limit=201", ["limit"]),
        ("limit=ten", ["limit"]),
        ("offset=-1", ["offset"]),
        ("status=done", ["status"]),
        ("limit=0&offset=x&status=done", ["limit", "offset", "status"]),
    ],
)
async def test_bad_paging_values_are_refused_naming_each(
    client: httpx.AsyncClient, query: str, paths: list[str]
) -> None:
    workflow_id = await create_workflow(client, SIMPLE)
    for url in ("/agents/executions", f"/agents/workflows/{workflow_id}/executions"):
        response = await client.get(f"{url}?{query}")

        assert response.status_code == 422, url
        assert sorted(p["path"] for p in error_body(response)["details"]) == paths


# ---- operations --------------------------------------------------------------------------


async def test_healthz_answers_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_metrics_are_prometheus_text_that_counts_finished_runs(
    client: httpx.AsyncClient,
) -> None:
    for _ in range(2):
        await wait_for_status(
            client, await run(client, await create_workflow(client, SIMPLE)), "success"
        )

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    lines = response.text.splitlines()
    sample = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? \S+$')
    for line in lines:
        assert line.startswith("# TYPE ") or sample.match(line), line
    assert 'graphpush_executions_finished_total{status="success"} 2' in lines
    assert any(line.startswith("graphpush_queue_depth ") for line in lines)


# ---- API keys ----------------------------------------------------------------------------


@pytest.fixture
async def keyed_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(replace(settings, api_keys=("k1", "k2"))) as (_, client):
        yield client


def key(name: str) -> dict[str, str]:
    return {"authorization": f"Bearer {name}"}


@pytest.mark.parametrize("headers", [{}, key("wrong"), {"authorization": "Basic k1"}])
async def test_without_a_valid_key_the_api_answers_401(
    keyed_client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    for method, path in (
        ("GET", "/agents/workflows"),
        ("POST", "/agents/workflows"),
        ("GET", "/agents/executions"),
        ("GET", "/agents/executions/any"),
    ):
        response = await keyed_client.request(method, path, headers=headers, json=SIMPLE)

        assert response.status_code == 401, (method, path)
        assert error_body(response)["code"] == "unauthorized"


async def test_with_keys_metrics_need_one_and_the_probes_stay_open(
    keyed_client: httpx.AsyncClient,
) -> None:
    refused = await keyed_client.get("/metrics")
    assert refused.status_code == 401
    assert error_body(refused)["code"] == "unauthorized"
    metrics = await keyed_client.get("/metrics", headers=key("k2"))
    assert metrics.status_code == 200
    assert "graphpush_queue_depth" in metrics.text
    for probe in ("/healthz", "/readyz"):
        assert (await keyed_client.get(probe)).status_code == 200, probe


async def test_a_key_sees_and_cancels_only_its_own_executions(
    keyed_client: httpx.AsyncClient,
) -> None:
    client = keyed_client
    response = await client.post("/agents/workflows", json=WAITING, headers=key("k1"))
    workflow_id = response.json()["id"]
    run_response = await client.post(
        f"/agents/workflows/{workflow_id}/run", json={}, headers=key("k1")
    )
    execution_id = run_response.json()["execution_id"]
    mine = f"/agents/executions/{execution_id}"

    assert (await client.get(mine, headers=key("k1"))).status_code == 200
    for method, path in (
        ("GET", mine),
        ("GET", f"{mine}/events"),
        ("POST", f"{mine}/cancel"),
        ("POST", f"{mine}/resume"),
    ):
        response = await client.request(method, path, headers=key("k2"))
        assert response.status_code == 404, (method, path)
        assert error_body(response)["code"] == "not_found"
    assert (await client.get("/agents/executions", headers=key("k2"))).json()["total"] == 0
    theirs = await client.get(f"/agents/workflows/{workflow_id}/executions", headers=key("k2"))
    assert theirs.json()["items"] == []
    assert (await client.get("/agents/executions", headers=key("k1"))).json()["total"] == 1
    assert (await client.post(f"{mine}/cancel", headers=key("k1"))).status_code == 202


async def test_healthz_needs_no_key(keyed_client: httpx.AsyncClient) -> None:
    assert (await keyed_client.get("/healthz")).status_code == 200
