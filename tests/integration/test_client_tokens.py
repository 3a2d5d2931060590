"""The Python client does it for the user: refresh before expiry, reconnect after 4401,
stop after 4403. Real hub, real tokens with 1-2 s lifetimes."""

from __future__ import annotations

import asyncio
import time

import pytest

from security_support import admin_api, jwt_auth, token
from support import TIMEOUT
from wirehub.client import HubClient, TokenRevoked

WARNING = 0.6
GRACE = 0.3


@pytest.fixture
async def secured(hub_server):
    return await hub_server(auth=jwt_auth(expiry_warning=WARNING, expiry_grace=GRACE))


class Minter:
    """``get_token`` for the client: short-lived tokens, counted; optionally a bad one."""

    def __init__(self, sub: str, ttl: float, *, bad_calls: tuple[int, ...] = ()) -> None:
        self.sub, self.ttl, self.bad_calls = sub, ttl, bad_calls
        self.calls = 0
        self.exps: list[float] = []

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls in self.bad_calls:
            return token(self.sub, key="not-the-hub-secret-but-32-chars-long!", rooms=["r"])
        exp = time.time() + self.ttl
        self.exps.append(exp)
        return token(self.sub, exp=exp, rooms=["r"])


async def test_the_client_refreshes_before_expiry_and_stays_connected(secured):
    minter = Minter("alice", ttl=1.5)
    disconnects: list[dict] = []
    async with HubClient(secured.ws, get_token=minter) as client:
        client.on("disconnect", disconnects.append)
        await client.join("r")
        first_exp = minter.exps[0]
        deadline = time.monotonic() + TIMEOUT
        while client.refreshes < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert client.refreshes >= 1 and client.expiry_warnings >= 1
        # Past the first token's end (+ grace) the same socket still works.
        await asyncio.sleep(max(0.0, first_exp + GRACE + 0.2 - time.time()))
        assert await client.publish("r", "still here") >= 1
        conn = secured.hub.node.clients["alice"]
        assert conn.meta["principal"].token.exp > first_exp + GRACE
    assert disconnects == [] or disconnects[-1]["code"] == 1000  # only our own close
    assert client.reconnects == 0


async def test_after_4401_the_client_reconnects_with_a_fresh_token_and_recovers(secured):
    # Call 1 connects; call 2 (the refresh on token.expiring) is refused; call 3 reconnects.
    minter = Minter("alice", ttl=1.5, bad_calls=(2,))
    codes: list[int] = []
    published: list[asyncio.Future[int]] = []

    def lost(event: dict) -> None:
        codes.append(event["code"])
        # Published while alice is away: the re-join with ``since`` must bring it.
        published.append(asyncio.ensure_future(secured.hub.publish("r", "while away")))

    async with HubClient(secured.ws, get_token=minter) as client:
        inbox = client.messages("r")
        client.on("disconnect", lost)
        await client.join("r")
        reconnected = asyncio.Event()
        client.on("reconnect", lambda _: reconnected.set())
        await asyncio.wait_for(reconnected.wait(), TIMEOUT)
        assert codes == [4401]
        assert minter.calls == 3 and client.reconnects == 1
        missed = await inbox.get(TIMEOUT)
        assert missed["data"] == "while away" and missed["offset"] == await published[0]
        # Back with the fresh token, in its room: live messages get through too.
        await secured.hub.publish("r", "welcome back")
        assert (await inbox.get(TIMEOUT))["data"] == "welcome back"
        await inbox.aclose()


async def test_after_4403_the_client_stops_with_a_clear_error(secured):
    client = HubClient(secured.ws, token=token("mallory", rooms=["r"]))
    await client.connect()
    await client.join("r")
    async with admin_api(secured.http) as http:
        assert (await http.post("/api/auth/revoke", json={"sub": "mallory"})).status_code == 200
    await asyncio.wait_for(client.wait_closed(), TIMEOUT)
    assert client.close_code == 4403
    assert isinstance(client.error, TokenRevoked)
    assert str(client.error) == "the hub revoked this client's token (4403 revoked)"
    with pytest.raises(TokenRevoked):
        await client.publish("r", "let me in")
    assert client.reconnects == 0
    assert "mallory" not in secured.hub.node.clients
    await client.close()


async def test_a_fixed_token_that_expires_stops_the_client(secured):
    client = HubClient(secured.ws, token=token("short", exp=time.time() + 1.0))
    await client.connect()
    await asyncio.wait_for(client.wait_closed(), TIMEOUT)
    assert client.close_code == 4401
    assert "no get_token to renew it" in str(client.error)
    await client.close()
