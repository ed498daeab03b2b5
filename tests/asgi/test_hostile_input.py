"""Hostile REST input through the real app (SPEC §3): whatever a client sends, the answer is
never a 5xx, and every 4xx carries the ``{"error": {"code", "message", "details"}}`` body.

Generated (Hypothesis) over every query parameter, path parameter, header and body the API
reads; the WebSocket and SSE sides are in ``test_hostile_push.py``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from app.http.requests import MAX_JSON_DEPTH
from app.main import create_app
from app.model.cursor import MAX_CURSOR
from app.settings import load_settings
from support.engine import chain, error_body, node
from support.hostile import (
    FOREIGN_RANDOM,
    HEADER_VALUE,
    JSON,
    STORES,
    TEXT,
    TOO_DEEP,
    store_options,
)

pytestmark = [pytest.mark.timeout(120), FOREIGN_RANDOM]

BOUNDED = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SIMPLE = chain(node("Start"), node("Set", "set", values={"x": 1}), name="simple")
JSON_TYPE = {"content-type": "application/json"}
WAITING = chain(node("Start"), node("Hold", "wait"), name="waiting")

QUERY_NAMES = ["limit", "offset", "after", "status", "workflow_id", "include_data", "token"]
QUERY = st.dictionaries(
    st.sampled_from(QUERY_NAMES) | st.text(max_size=4), TEXT | st.sampled_from(["success"])
)
HEADER_NAMES = ["push-ref", "last-event-id", "authorization", "content-type", "content-length"]
HEADERS = st.dictionaries(st.sampled_from(HEADER_NAMES), HEADER_VALUE, max_size=3)


def answered(response: httpx.Response) -> None:
    """No 5xx; a 4xx has the SPEC §3 error body."""
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400:
        error_body(response)


@pytest.fixture(scope="module", params=STORES)
def api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The app with a finished and a waiting run, and the ids the routes take."""
    options = {"data_dir": tmp_path_factory.mktemp("hostile"), "load_examples": False}
    app_settings = load_settings({**options, **store_options(request.param)}, environ={})
    with TestClient(create_app(app_settings), raise_server_exceptions=False) as client:
        ids = {"workflow": client.post("/agents/workflows", json=SIMPLE).json()["id"]}
        waiting = client.post("/agents/workflows", json=WAITING).json()["id"]
        ids["finished"] = client.post(f"/agents/workflows/{ids['workflow']}/run").json()[
            "execution_id"
        ]
        ids["waiting"] = client.post(f"/agents/workflows/{waiting}/run").json()["execution_id"]
        yield client, ids


def path_id(ids: dict[str, str]) -> st.SearchStrategy[str]:
    """A known id or any text, quoted for a path segment."""
    return (st.sampled_from(sorted(ids.values())) | TEXT).map(lambda text: quote(text, safe=""))


GET_ROUTES = [
    "/agents/workflows",
    "/agents/workflows/{id}",
    "/agents/workflows/{id}/executions",
    "/agents/executions",
    "/agents/executions/{id}",
    "/agents/executions/{id}/events",
    "/healthz",
    "/metrics",
    "/",
    "/static/{id}",
]


def test_any_query_path_or_header_on_a_read_is_answered(
    api: tuple[TestClient, dict[str, str]],
) -> None:
    client, ids = api

    @BOUNDED
    @given(st.sampled_from(GET_ROUTES), path_id(ids), QUERY, HEADERS)
    def check(route: str, id_: str, query: dict[str, str], headers: dict[str, bytes]) -> None:
        answered(client.get(route.format(id=id_), params=query, headers=headers))

    check()


@pytest.mark.parametrize(
    "query",
    [
        "limit=%C2%B2",
        "offset=%C2%B2",
        "limit=%D9%A3",
        "offset=%D9%A3",
        f"offset={MAX_CURSOR + 1}",
    ],
)
def test_numbers_that_are_not_ascii_digits_in_bounds_are_refused_by_name(
    api: tuple[TestClient, dict[str, str]], query: str
) -> None:
    client, ids = api
    for url in ("/agents/executions", f"/agents/workflows/{ids['workflow']}/executions"):
        response = client.get(f"{url}?{query}")

        assert response.status_code == 422, (url, response.text)
        assert [p["path"] for p in error_body(response)["details"]] == [query.split("=")[0]]


@pytest.mark.parametrize("after", ["%C2%B2", "%D9%A3", str(MAX_CURSOR + 1), "9" * 40])
def test_an_event_cursor_out_of_bounds_is_refused_by_name(
    api: tuple[TestClient, dict[str, str]], after: str
) -> None:
    client, ids = api

    response = client.get(f"/agents/executions/{ids['finished']}/events?after={after}")

    assert response.status_code == 422, response.text
    assert error_body(response)["details"][0]["path"] == "after"


def test_the_largest_event_cursor_reads_an_empty_rest_of_the_log(
    api: tuple[TestClient, dict[str, str]],
) -> None:
    client, ids = api

    response = client.get(f"/agents/executions/{ids['finished']}/events?after={MAX_CURSOR}")

    assert response.status_code == 200
    assert response.json()["items"] == [] and response.json()["last_seq"] == MAX_CURSOR


NODE_TYPES = ["trigger", "set", "if", "switch", "merge", "delay", "fail", "wait", "python"]
PARAMETERS = st.fixed_dictionaries(
    {},
    optional={
        "values": JSON,
        "field": TEXT,
        "op": st.sampled_from(["eq", "gt", "contains"]) | TEXT,
        "value": JSON,
        "cases": st.lists(JSON, max_size=3) | JSON,
        "ms": st.integers() | JSON,
        "message": TEXT | JSON,
        "function": st.just("app.workflows.example_functions:echo") | TEXT,
    },
)


@pytest.mark.parametrize("id_", ["a%00b", "a.b", "%C2%B2", "x" * 65, "%20"])
@pytest.mark.parametrize(
    "route", [r for r in GET_ROUTES if r.startswith("/agents/") and "{id}" in r]
)
def test_a_path_id_of_another_form_is_not_found(
    api: tuple[TestClient, dict[str, str]], route: str, id_: str
) -> None:
    client, _ = api

    response = client.get(route.format(id=id_))

    assert response.status_code == 404, response.text
    assert error_body(response)["code"] == "not_found"


def test_a_workflow_filter_of_another_form_is_refused_by_name(
    api: tuple[TestClient, dict[str, str]],
) -> None:
    client, _ = api

    response = client.get("/agents/executions?workflow_id=a%00b")

    assert response.status_code == 422, response.text
    assert error_body(response)["details"][0]["path"] == "workflow_id"


def nested_input(depth: int) -> bytes:
    """A run body whose JSON nests ``depth`` containers (the body itself is the first)."""
    return b'{"input":{"a":' + b"[" * (depth - 2) + b"]" * (depth - 2) + b"}}"


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 960])
def test_a_body_nested_past_the_limit_is_refused(
    api: tuple[TestClient, dict[str, str]], depth: int
) -> None:
    client, ids = api
    url = f"/agents/workflows/{ids['workflow']}/run"

    response = client.post(url, content=nested_input(depth), headers=JSON_TYPE)

    assert response.status_code == 400, response.text
    assert error_body(response)["code"] == "bad_request"
    assert (client.get("/agents/executions")).status_code == 200


def test_a_run_nested_to_the_limit_runs_and_reads_back(
    api: tuple[TestClient, dict[str, str]],
) -> None:
    client, ids = api
    url = f"/agents/workflows/{ids['workflow']}/run"

    response = client.post(url, content=nested_input(MAX_JSON_DEPTH), headers=JSON_TYPE)

    assert response.status_code == 202, response.text
    execution = f"/agents/executions/{response.json()['execution_id']}"
    deadline = time.monotonic() + 10
    while client.get(execution).json()["status"] != "success":
        assert time.monotonic() < deadline, client.get(execution).json()["status"]
        time.sleep(0.02)
    for url in (execution, f"{execution}/events", "/agents/executions"):
        assert client.get(url).status_code == 200, url


def workflow_shaped(names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Bodies close enough to a workflow to reach the validator and the compiler."""
    name = st.sampled_from(names) | TEXT
    link = st.fixed_dictionaries(
        {"node": name}, optional={"type": st.just("main") | TEXT, "index": st.integers()}
    )
    node_ = st.fixed_dictionaries(
        {"name": name, "type": st.sampled_from(NODE_TYPES) | TEXT},
        optional={"parameters": PARAMETERS | JSON, "position": JSON, "type_version": JSON},
    )
    return st.fixed_dictionaries(
        {"name": st.just("hostile") | TEXT, "nodes": st.lists(node_, min_size=1, max_size=4)},
        optional={
            "id": TEXT,
            "connections": st.dictionaries(
                name, st.fixed_dictionaries({"main": st.lists(st.lists(link, max_size=2))})
            )
            | JSON,
            "settings": st.fixed_dictionaries(
                {}, optional={"timeout_s": JSON, "recursion_limit": JSON}
            )
            | JSON,
            "entry": name | JSON,
        },
    )


def body_of(value: Any) -> st.SearchStrategy[bytes]:
    return st.just(msgspec.json.encode(value))


BODY = st.one_of(
    workflow_shaped(["Start", "Set", "If"]).flatmap(body_of),
    st.binary(max_size=40),
    TOO_DEEP | st.just(b"") | st.just(5_000).map(lambda n: b'{"input":' + b"[" * n),
    JSON.flatmap(body_of),
    st.fixed_dictionaries({}, optional={"input": JSON, "push_ref": JSON, "value": JSON}).flatmap(
        body_of
    ),
)
WRITE_ROUTES = [
    ("POST", "/agents/workflows"),
    ("PUT", "/agents/workflows/{id}"),
    ("DELETE", "/agents/workflows/{id}"),
    ("POST", "/agents/workflows/{id}/run"),
    ("POST", "/agents/executions/{id}/cancel"),
    ("POST", "/agents/executions/{id}/resume"),
]


def test_any_body_on_a_write_is_answered(api: tuple[TestClient, dict[str, str]]) -> None:
    client, ids = api
    counter = itertools.count()

    @BOUNDED
    @given(st.sampled_from(WRITE_ROUTES), path_id(ids), BODY, HEADERS)
    def check(route: tuple[str, str], id_: str, body: bytes, headers: dict[str, bytes]) -> None:
        method, path = route
        if method == "DELETE":  # delete a copy: the routes keep a workflow to work on
            id_ = f"copy{next(counter)}"
            client.post("/agents/workflows", json={**SIMPLE, "id": id_})
        headers = {"content-type": b"application/json", **headers}
        answered(client.request(method, path.format(id=id_), content=body, headers=headers))

    check()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data_dir = Path(tmp_path_factory.mktemp("keyed"))
    options = {"data_dir": data_dir, "load_examples": False, "api_keys": ("k1",)}
    app_settings = load_settings(options, environ={})
    with TestClient(create_app(app_settings), raise_server_exceptions=False) as client:
        yield client


@BOUNDED
@given(
    st.sampled_from(GET_ROUTES),
    st.fixed_dictionaries({}, optional={"authorization": HEADER_VALUE, "cookie": HEADER_VALUE}),
    st.fixed_dictionaries({}, optional={"token": TEXT}),
)
def test_any_credentials_are_answered_when_keys_are_on(
    keyed: TestClient, route: str, headers: dict[str, bytes], query: dict[str, str]
) -> None:
    response = keyed.get(route.format(id="x"), headers=headers, params=query)

    answered(response)
    if route.startswith("/agents/"):  # operations and the canvas's files need no key
        assert response.status_code == 401
