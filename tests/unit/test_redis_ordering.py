"""Per-room order and gap detection of the Redis broker, without Redis or a loop.

``RoomOrder`` takes offsets and frames in and gives decisions out; a timer is a
deadline value. These drive it the way the broker does: channel messages
(``offer``), joins (``hold``/``release``), a fired deadline (``expire``) and the
stream's answer (``fill``), a reconnect (``lost``/``resync``/``synced_now``).
"""

from __future__ import annotations

from wirehub.brokers.redis.ordering import Deliver, Gap, RoomOrder


def synced(at: int = 0, gap_timeout: float = 1.0) -> RoomOrder:
    order = RoomOrder(gap_timeout=gap_timeout)
    assert order.resync(at) == ("ok", [])
    assert order.synced_now(0.0) == []
    return order


def offsets(decisions) -> list[int]:
    return [d.offset for d in decisions if isinstance(d, Deliver)]


def test_in_order_messages_are_delivered_at_once_and_duplicates_dropped():
    order = synced(5)
    assert order.offer(6, "f6", None, 0.0) == [Deliver(6, "f6", None)]
    assert order.offer(7, "f7", "alice", 0.0) == [Deliver(7, "f7", "alice")]
    assert order.offer(7, "f7", "alice", 0.0) == []  # the echo of our own publish
    assert order.offer(3, "f3", None, 0.0) == []  # replayed from the stream already
    assert order.delivered == 7 and order.deadline is None


def test_a_message_ahead_of_a_hole_waits_and_the_deadline_starts_once():
    order = synced(0, gap_timeout=0.5)
    assert order.offer(2, "f2", None, 10.0) == []
    assert order.deadline == 10.5
    assert order.offer(3, "f3", None, 10.2) == []
    assert order.deadline == 10.5  # not pushed back by later arrivals
    # The missing one arrives by itself: everything goes, in order.
    assert offsets(order.offer(1, "f1", None, 10.3)) == [1, 2, 3]
    assert order.pending == {}
    # The timer still fires, but there is nothing left to read back.
    assert order.expire() is None and order.deadline is None


def test_an_expired_deadline_asks_for_the_missing_range_then_fill_delivers_it():
    order = synced(0)
    order.offer(4, "f4", None, 0.0)
    order.offer(5, "f5", None, 0.0)
    assert order.expire() == (1, 3)
    # The stream still has 1 and 3, not 2 (trimmed): 1, a gap for 2, then 3.
    got = order.fill([(1, "f1", None), (3, "f3", "bob")], 3)
    assert got == [
        Deliver(1, "f1", None),
        Gap(2, 2, "history_trimmed"),
        Deliver(3, "f3", "bob"),
    ]
    assert offsets(order.drain(1.0)) == [4, 5]
    assert order.delivered == 5


def test_fill_with_nothing_left_in_the_stream_is_one_gap_for_the_range():
    order = synced(10)
    order.offer(14, "f14", None, 0.0)
    assert order.expire() == (11, 13)
    assert order.fill([], 13) == [Gap(11, 13, "history_trimmed")]
    assert offsets(order.drain(0.0)) == [14]


def test_a_join_holds_live_messages_until_its_reply_is_queued():
    order = synced(0)
    order.hold()
    order.hold()  # two joins at once
    assert order.offer(1, "f1", None, 0.0) == []
    assert order.release(0.0) == []  # one join still replying
    assert offsets(order.release(0.0)) == [1]


def test_nothing_is_delivered_before_the_first_sync():
    order = RoomOrder()
    assert order.offer(8, "f8", None, 0.0) == []
    assert order.resync(7) == ("ok", [])  # first sync: start at the broker's head
    assert offsets(order.synced_now(0.0)) == [8]


def test_after_a_reconnect_a_lagging_node_catches_up_before_what_waited():
    order = synced(2)
    assert order.lost() == 2 and not order.synced
    assert order.offer(6, "f6", None, 0.0) == []  # arrives while resyncing
    assert order.resync(5) == ("catch_up", [])
    assert offsets(order.fill([(3, "f3", None), (4, "f4", None), (5, "f5", None)], 5)) == [
        3,
        4,
        5,
    ]
    assert offsets(order.synced_now(0.0)) == [6]


def test_a_broker_that_lost_its_data_is_a_reset_gap_and_offsets_keep_growing():
    order = synced(9)
    order.lost()
    order.offer(12, "f12", None, 0.0)
    action, decisions = order.resync(0)
    assert action == "reset" and decisions == [Gap(1, None, "broker_reset")]
    assert order.pending == {} and order.delivered == 9
    order.synced_now(0.0)
    assert offsets(order.offer(10, "f10", None, 0.0)) == [10]
