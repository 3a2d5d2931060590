"""The README's tour app (FastAPI + ``app.include_router(hub.router)``) on plain uvicorn.

What ``hub.router`` brings into an app that is not ``create_app``: the browser
client ``/static/wirehub.js`` always, the dashboard and chat pages with
``router_pages = true``, and the documented error shape on the hub's routes
while the app's own routes keep FastAPI's.
"""

from __future__ import annotations

import httpx

from embedded_support import serve, tour_app
from support import open_client


async def test_the_tour_app_serves_the_browser_client_and_publishes():
    app, _hub = tour_app()
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as http:
        client_js = await http.get("/static/wirehub.js")
        assert client_js.status_code == 200
        assert client_js.headers["content-type"].startswith("text/javascript")
        assert "export class HubClient" in client_js.text

        listener = await open_client(base.replace("http", "ws") + "/ws", "shop")
        await listener.request("join", room="orders")
        assert (await http.post("/orders", json={"sku": "A1"})).json() == {"offset": 1}
        message = await listener.expect("message", room="orders")
        assert message["data"] == {"sku": "A1"}
        await listener.close()

        # The pages are opt-in for an embedded app: its own "/" is its own.
        assert (await http.get("/")).status_code == 404
        assert (await http.get("/static/dashboard.js")).status_code == 404


async def test_the_hub_routes_keep_their_error_shape_inside_any_app():
    app, _hub = tour_app()
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as http:
        hub_error = await http.post("/api/rooms/r/publish", json={"nodata": 1})
        assert hub_error.status_code == 422
        assert hub_error.json()["detail"]["code"] == "bad_request"
        assert hub_error.json()["detail"]["errors"] == [
            {"field": "body.data", "message": "Field required"}
        ]
        # The app's own route keeps FastAPI's default: the hub does not touch it.
        own_error = await http.post("/orders", json=[1, 2])
        assert own_error.status_code == 422
        assert isinstance(own_error.json()["detail"], list)


async def test_router_pages_brings_the_dashboard_chat_and_favicon():
    app, _hub = tour_app(router_pages=True)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as http:
        index = await http.get("/")
        assert index.status_code == 200 and "<title>wirehub dashboard</title>" in index.text
        chat = await http.get("/chat")
        assert chat.status_code == 200 and "<title>wirehub chat</title>" in chat.text
        for asset, kind in [
            ("/static/dashboard.js", "text/javascript"),
            ("/static/chat.js", "text/javascript"),
            ("/static/wirehub.css", "text/css"),
            ("/favicon.ico", "image/x-icon"),
        ]:
            response = await http.get(asset)
            assert response.status_code == 200, asset
            assert response.headers["content-type"].startswith(kind), asset
        for bad in ("/static/nope.js", "/static/%2E%2E", "/static/index.html%00"):
            response = await http.get(bad)
            assert response.status_code == 404, bad
            assert response.json()["detail"]["code"] == "not_found", bad
        # A path out of the directory matches no route of the hub at all (the app's 404).
        escape = await http.get("/static/..%2F..%2Fsettings.py")
        assert escape.status_code == 404 and "BaseSettings" not in escape.text
