"""``GET /openapi.json`` (SPEC §12): a valid OpenAPI 3.1 document of every REST route."""

from __future__ import annotations

import re

import httpx
import msgspec
from openapi_spec_validator import validate
from starlette.routing import Route

from app.http.api import OPERATIONS
from app.http.openapi import openapi_document
from app.main import create_app
from app.settings import Settings
from support.npm import installed

#: Routes that are not the REST API: the canvas and the reference documents themselves.
NOT_REST = {"canvas", "openapi", "api_docs", "asyncapi"}


async def test_the_document_is_valid_openapi_3_1(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["openapi"] == "3.1.0"
    validate(document)
    # The document the fuzzer (tests/e2e/test_openapi_fuzz.py) loads is this one.
    assert document == msgspec.json.decode(msgspec.json.encode(openapi_document(OPERATIONS)))


async def test_every_rest_route_and_method_is_documented(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    routes = [
        r for r in create_app(settings).routes if isinstance(r, Route) and r.name not in NOT_REST
    ]
    assert routes
    for route in routes:
        path = re.sub(r"{(\w+):\w+}", r"{\1}", route.path)  # {workflow_id:id}
        for method in (route.methods or set()) - {"HEAD"}:
            assert method.lower() in paths.get(path, {}), (method, route.path)


async def test_errors_are_documented_with_the_error_body(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    run = document["paths"]["/agents/workflows/{workflow_id}/run"]["post"]["responses"]
    assert run["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    assert "Retry-After" in run["503"]["headers"]
    error = document["components"]["schemas"]["ErrorInfo"]
    assert set(error["properties"]) == {"code", "message", "details"}


async def test_parameters_carry_their_limits(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    parameters = document["paths"]["/agents/executions"]["get"]["parameters"]
    limit = next(p for p in parameters if p["name"] == "limit")
    assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": 200, "default": 20}
    status = next(p for p in parameters if p["name"] == "status")
    assert "crashed" in status["schema"]["enum"]
    # The declared limit is the one enforced.
    assert (await client.get("/agents/executions?limit=201")).status_code == 422
    assert (await client.get("/agents/executions?limit=200")).status_code == 200


async def test_docs_page_and_its_assets_are_served_from_this_server(
    client: httpx.AsyncClient,
) -> None:
    installed("swagger-ui-dist/swagger-ui-bundle.js")
    page = await client.get("/docs")
    assert page.status_code == 200, page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"):
        response = await client.get(asset)
        assert response.status_code == 200, asset
    assert "http" not in page.text.replace("http-equiv", "")
