"""A FastAPI app whose backend program is started, watched and stopped by the hub.

The tutorial starts a Java service from the lifespan, watches its output for
"Server - Started", waits for it with a timeout and waits for it on shutdown.
Here that is one ``[[services]]`` entry; the route calls the service through
``hub.services["backend"].client``, a shared ``httpx.AsyncClient``.

    uvicorn examples.supervised_service.app:app     # then GET /hello/ada
    BACKEND_PORT=9081 uvicorn examples.supervised_service.app:app

Follow the backend's output live by joining the ``$service:backend`` room
(``wirehub tail '$service:backend'``), its states in ``$services``, or
``GET /api/services/backend/logs?tail=20``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException

from wirehub import Hub, load_settings

__all__ = ["app", "hub"]

HERE = Path(__file__).parent
BACKEND_PORT = int(os.environ.get("BACKEND_PORT", "8081"))

settings = load_settings(
    None,
    services=[
        {
            "name": "backend",
            "command": [
                sys.executable,
                str(HERE / "stand_in_server.py"),
                "--port",
                str(BACKEND_PORT),
            ],
            # The hub does not take requests until this line is printed (or 15 s pass).
            "ready": {"log": r"Server - Started"},
            "ready_timeout": 15,
            "stop_timeout": 5,
            "restart": {"policy": "on-failure", "initial": 0.5, "cap": 10},
            "base_url": f"http://127.0.0.1:{BACKEND_PORT}",
        }
    ],
)
hub = Hub(settings)
app = FastAPI(title="supervised service example", lifespan=hub.lifespan)
app.include_router(hub.router)


@app.get("/hello/{name}")
async def hello(name: str) -> dict[str, Any]:
    backend = hub.services["backend"]
    if not backend.ready:
        # Restarting after a crash, or given up: say so instead of a connection error.
        raise HTTPException(503, f"backend is {backend.state}")
    response = await backend.client.get("/greet", params={"name": name}, timeout=5)
    response.raise_for_status()
    return {"backend": response.json(), "backend_pid": backend.pid, "restarts": backend.restarts}
