"""How the Redis broker publishes: the script call, pipelined, then the local delivery.

A base class of :class:`~wirehub.brokers.redis.broker.RedisBroker`. The publish
script gives the message its offset, keeps it in the room's stream and
publishes it to the other nodes (scripts.py); its answer comes back through
the :class:`~wirehub.brokers.redis.pipeline.ScriptBatcher` in publish order,
and this node's members get the message then (``_apply``). While Redis is out
of reach a publish reaches this node's members only, without an offset.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from wirehub.brokers.keys import Keys
from wirehub.brokers.redis.pipeline import Group, ScriptBatcher
from wirehub.brokers.redis.session import FAILURES
from wirehub.core.idempotency import KeyTable
from wirehub.core.protocol import message_head

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from wirehub.brokers.redis.broker import RoomSync
    from wirehub.core.interfaces import Local

__all__ = ["Publishing"]


class Publishing:
    """publish / publish_soon / publish_nowait of the Broker seam, over Redis."""

    node_id: str
    keys: Keys
    idempotency: KeyTable
    duplicates: int
    _connected: bool
    _publish: ScriptBatcher
    _idem_ms: int
    _rooms: dict[str, RoomSync]
    _local_only: set[str]

    if TYPE_CHECKING:  # provided by RedisBroker and Session

        @property
        def local(self) -> Local: ...

        def _lost(self, exc: BaseException) -> None: ...

        def _apply(self, st: RoomSync, offset: int, frame: str, exclude: str | None) -> None: ...

        def _enqueue(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None: ...

    async def publish(
        self,
        room: str,
        sender: str,
        data: Any,
        *,
        exclude: str | None,
        idempotency_key: str | None = None,
    ) -> int:
        future: asyncio.Future[int | BaseException] = asyncio.get_running_loop().create_future()

        def done(result: int | BaseException) -> None:
            if not future.done():  # the caller may have given up (cancelled)
                future.set_result(result)

        self.publish_soon(
            room, sender, data, exclude=exclude, idempotency_key=idempotency_key, done=done
        )
        result = await future
        if isinstance(result, BaseException):
            raise result
        return result

    def publish_soon(
        self,
        room: str,
        sender: str,
        data: Any,
        *,
        exclude: str | None,
        idempotency_key: str | None = None,
        done: Callable[[int | BaseException], None],
    ) -> None:
        ts = time.time()
        # The ``message`` frame up to its offset: the script appends the offset it takes.
        head = message_head(room, sender, data, ts)
        if not self._connected:
            done(self._publish_locally(room, head, exclude, idempotency_key))
            return
        idem = "" if idempotency_key is None else self.keys.idempotency(room, idempotency_key)
        self._publish.submit(
            self._room_args(room),
            [idem],
            [head, exclude or ""],
            functools.partial(self._published, room, head, exclude, idempotency_key, done),
        )

    def _room_args(self, room: str) -> Group:
        """What a group of publishes to ``room`` sends the script once: keys, bounds, channel.

        Kept on the room's sync state while this node follows the room (one
        lookup per publish, not a policy match and three key formats), as
        bytes: redis-py passes bytes through where it encodes a str or an int.
        """
        st = self._rooms.get(room)
        if st is not None and st.publish_args is not None:
            return st.publish_args
        policy = self.local.policy_for(room)
        found: Group = (
            [self.keys.offset(room).encode(), self.keys.stream(room).encode()],
            [
                b"%d" % policy.history_size,
                b"%d" % self._ttl_ms(room),
                self.keys.room_channel(room).encode(),
                b"%d" % self._idem_ms,
            ],
        )
        if st is not None:
            st.publish_args = found
        return found

    def _published(
        self,
        room: str,
        head: str,
        exclude: str | None,
        idempotency_key: str | None,
        done: Callable[[int | BaseException], None],
        result: Any,
    ) -> None:
        """The publish script answered (in publish order): deliver here, then ``done``."""
        if isinstance(result, FAILURES):
            self._lost(result)
            done(self._publish_locally(room, head, exclude, idempotency_key))
            return
        if isinstance(result, BaseException):
            done(result)
            return
        offset = int(result)
        if offset < 0:  # the key was used in the window: nothing was published
            self.duplicates += 1
            done(-offset)
            return
        st = self._rooms.get(room)
        if st is not None:
            self._apply(st, offset, f"{head}{offset}}}", exclude)
        done(offset)

    def _publish_locally(
        self, room: str, head: str, exclude: str | None, idempotency_key: str | None
    ) -> int:
        # Degraded: this node's members only, without an offset (a key repeated
        # meanwhile is not delivered twice here; Redis never saw either).
        if idempotency_key is not None:
            if self.idempotency.get(room, idempotency_key) is not None:
                self.duplicates += 1
                return 0
            self.idempotency.put(room, idempotency_key, 0)
        self._local_only.add(room)
        self.local.deliver_event(room, f'{head}null,"local":true}}', exclude)
        return 0

    def publish_nowait(self, room: str, sender: str, data: Any, *, exclude: str | None) -> int:
        self._enqueue(self._publish_op, room, sender, data, exclude)
        return 0

    async def _publish_op(self, room: str, sender: str, data: Any, exclude: str | None) -> None:
        await self.publish(room, sender, data, exclude=exclude)

    def _ttl_ms(self, room: str) -> int:
        return max(1, int(self.local.policy_for(room).history_ttl * 1000))
