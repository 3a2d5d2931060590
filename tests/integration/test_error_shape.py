"""One error shape over HTTP: ``{"detail": {"code", "message"}}`` (issue 14).

The standalone app (``create_app``) for every error a client can cause: a body
FastAPI cannot validate, an unknown route, a wrong method; OpenAPI says so; and
the same mistake over HTTP and WebSocket gets the same code.
"""

from __future__ import annotations

import httpx
import pytest


@pytest.fixture
async def http(hub):
    async with httpx.AsyncClient(base_url=hub.http) as client:
        yield client


async def test_a_body_that_does_not_validate_names_each_field(http):
    response = await http.post("/api/rooms/r/publish", json={"nodata": 1})
    assert response.status_code == 422
    assert response.json() == {
        "detail": {
            "code": "bad_request",
            "message": "invalid request: body.data: Field required",
            "errors": [{"field": "body.data", "message": "Field required"}],
        }
    }


async def test_broken_json_and_bad_query_values_are_bad_requests(http):
    broken = await http.post(
        "/api/rooms/r/publish", content=b"{broken", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422
    assert broken.json()["detail"]["code"] == "bad_request"
    assert broken.json()["detail"]["message"].startswith("invalid request: body.")
    page = await http.get("/api/rooms/r/history", params={"limit": 0})
    assert page.status_code == 422
    detail = page.json()["detail"]
    assert detail["code"] == "bad_request"
    assert [e["field"] for e in detail["errors"]] == ["query.limit"]


async def test_unknown_routes_and_wrong_methods_answer_in_the_same_shape(http):
    missing = await http.get("/api/nothing-here")
    assert missing.status_code == 404
    assert missing.json() == {
        "detail": {"code": "not_found", "message": "no route GET /api/nothing-here"}
    }
    wrong = await http.put("/api/broadcast", json={"data": 1})
    assert wrong.status_code == 405
    assert wrong.json() == {
        "detail": {"code": "method_not_allowed", "message": "PUT is not allowed on /api/broadcast"}
    }
    assert "allow" in {k.lower() for k in wrong.headers}


async def test_the_same_mistake_has_one_code_over_http_and_websocket(http, hub, ws_client):
    over_http = (await http.post("/api/rooms/a%20b/publish", json={"data": 1})).json()["detail"]
    client = await ws_client(hub.ws, "x")
    over_ws = await client.request("join", room="a b")
    assert over_http["code"] == over_ws["code"] == "bad_request"
    missing_http = (await http.get("/api/clients/ghost")).json()["detail"]
    missing_ws = await client.request("direct", to="ghost", data=1)
    assert missing_http == {"code": "not_found", "message": "client 'ghost' is not connected"}
    assert (missing_ws["code"], missing_ws["message"]) == (
        missing_http["code"],
        missing_http["message"],
    )


async def test_openapi_documents_the_error_body_on_every_api_operation(http):
    schema = (await http.get("/openapi.json")).json()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    body = schema["components"]["schemas"]["ErrorBody"]
    assert body["properties"]["detail"]["$ref"].endswith("/ErrorDetail")
    detail = schema["components"]["schemas"]["ErrorDetail"]
    assert set(detail["required"]) == {"code", "message"}
    operations = [
        (method, path, op)
        for path, item in schema["paths"].items()
        if path.startswith("/api")
        for method, op in item.items()
    ]
    assert len(operations) > 10
    for method, path, op in operations:
        error = op["responses"].get("4XX")
        assert error is not None, (method, path)
        ref = error["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorBody"), (method, path)
        assert "422" not in op["responses"], (method, path)


async def test_the_favicon_is_served(http):
    response = await http.get("/favicon.ico")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/x-icon"
    assert response.content[:4] == b"\x00\x00\x01\x00"  # an ICO header
