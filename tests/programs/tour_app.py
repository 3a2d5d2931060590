"""The README's tour app, exactly as written there, for the embedded-server tests.

``tests/integration/test_embedded_servers.py`` runs it as a user would:
``uvicorn tests.programs.tour_app:app``, gunicorn with uvicorn workers, granian.
Its settings come from ``WIREHUB_*`` environment variables (``Settings()``).
"""

from fastapi import FastAPI

from wirehub import Hub, Settings

hub = Hub(Settings())  # or wirehub.load_settings("hub.toml")
app = FastAPI(lifespan=hub.lifespan)  # starts/stops the hub with the app
app.include_router(hub.router)  # /ws, /api/*, /healthz, /readyz, /metrics


@app.post("/orders")
async def create_order(order: dict) -> dict:
    offset = await hub.publish("orders", order)  # every member of "orders" gets it
    return {"offset": offset}


@hub.on("chat.typing")  # a custom frame type
async def typing(conn, frame):
    await hub.publish(frame["room"], {"typing": conn.id}, sender=conn.id, exclude=conn.id)
    return {"type": "chat.typing.ok"}
