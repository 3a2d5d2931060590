"""wirehub inside an application that already has its own FastAPI app."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import uvicorn
from fastapi import FastAPI

from support import open_client, unused_port
from wirehub import Hub, Settings


async def test_hub_router_and_lifespan_in_a_user_app():
    hub = Hub(Settings(stats_interval=0))
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router)

    @app.post("/orders")
    async def create_order(order: dict) -> dict:
        offset = await hub.publish("orders", order)
        return {"offset": offset}

    port = unused_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_config=None, ws="websockets-sansio"))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        client = await open_client(f"ws://127.0.0.1:{port}/ws", "shop")
        await client.request("join", room="orders")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            created = await http.post("/orders", json={"sku": "A1"})
            assert created.json() == {"offset": 1}
            assert (await http.get("/readyz")).status_code == 200
        msg = await client.expect("message", room="orders")
        assert msg["data"] == {"sku": "A1"}
        await client.close()
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert not hub.accepting


async def test_create_app_serves_the_demo_page(hub):
    async with httpx.AsyncClient(base_url=hub.http) as http:
        page = await http.get("/")
    assert page.status_code == 200 and "wirehub" in page.text
