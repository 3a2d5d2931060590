"""Python client SDK: ``HubClient`` (asyncio) and ``SyncHubClient`` (for scripts).

::

    async with HubClient("ws://127.0.0.1:8000/ws", client_id="sensor-1") as hub:
        hub.on("message", lambda frame: print(frame["data"]))
        await hub.join("lobby")
        offset = await hub.publish("lobby", {"text": "hi"})  # waits for the ack

The package, one concern per module:

- ``connection``: :class:`HubClient`, the socket, requests and the reader;
- ``state``: :class:`Recovery`, the reconnect/recovery decisions without I/O;
- ``sync``: :class:`SyncHubClient`, the blocking facade;
- ``jobs``: :class:`JobHandle`, job-frame routing, :func:`submit_job`/:func:`follow_job`;
- ``uploads``: uploads streamed from disk in acknowledged chunks, :func:`upload_file`;
- ``subscription``: :class:`Subscription` and safe callbacks;
- ``wire``: the connect URL's parameters and the split of batched text frames;
- ``errors``: :class:`Disconnected`, :class:`TokenRevoked`, :class:`JobFailed`.

It needs no server extras: only websockets, orjson and wirehub's protocol,
backoff and errors modules (``import wirehub.client`` loads no FastAPI,
Starlette, uvicorn, prometheus_client, jwt, Celery or Redis).
"""

from wirehub.client.connection import HubClient, TokenSource
from wirehub.client.errors import (
    CONNECT_ERRORS,
    Disconnected,
    JobFailed,
    TokenRevoked,
    error_from_wire,
)
from wirehub.client.jobs import FINAL_EVENTS, JobHandle, follow_job, output_items, submit_job
from wirehub.client.state import NO_RECONNECT_CODES, CloseDecision, Recovery
from wirehub.client.subscription import Subscription
from wirehub.client.sync import SyncHubClient
from wirehub.client.uploads import UploadSource, file_sha256, upload_file

__all__ = [
    "CONNECT_ERRORS",
    "FINAL_EVENTS",
    "NO_RECONNECT_CODES",
    "CloseDecision",
    "Disconnected",
    "HubClient",
    "JobFailed",
    "JobHandle",
    "Recovery",
    "Subscription",
    "SyncHubClient",
    "TokenRevoked",
    "TokenSource",
    "UploadSource",
    "error_from_wire",
    "file_sha256",
    "follow_job",
    "output_items",
    "submit_job",
    "upload_file",
]
