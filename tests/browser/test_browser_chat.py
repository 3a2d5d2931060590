"""The chat page in two real browsers: messages both ways, direct messages, and
recovery of what one of them missed while its network was down."""

from __future__ import annotations

import pytest

from support import FACTOR

pytestmark = pytest.mark.slow

WAIT = 10_000 * FACTOR  # ms


async def test_two_browsers_chat_and_one_recovers_after_a_drop(
    hub_server, new_page, screenshot_dir
):
    running = await hub_server(stats_interval=0)
    alice = await new_page(f"{running.http}/chat?name=alice&room=lobby")
    bob = await new_page(f"{running.http}/chat?name=bob&room=lobby")
    for page in (alice, bob):
        await page.wait_for_selector("#status.open", timeout=WAIT)
    # Presence: alice sees bob arrive.
    await alice.wait_for_selector('#members li[data-member="bob"]', timeout=WAIT)

    # Messages both ways.
    await bob.fill("#text", "hello alice")
    await bob.press("#text", "Enter")
    await alice.wait_for_selector(".msg.live:has-text('hello alice')", timeout=WAIT)
    await alice.fill("#text", "hi bob")
    await alice.click("#send")
    await bob.wait_for_selector(".msg.live:has-text('hi bob')", timeout=WAIT)

    # A direct message: alice clicks bob in the member list.
    await alice.click('#members li[data-member="bob"]')
    await alice.fill("#text", "just for you")
    await alice.press("#text", "Enter")
    await bob.wait_for_selector('#directs li[data-key="@alice"] .unread', timeout=WAIT)
    await bob.click('#directs li[data-key="@alice"]')
    await bob.wait_for_selector(".msg.direct:has-text('just for you')", timeout=WAIT)
    await alice.click('#rooms li[data-key="#lobby"]')

    # Alice's network drops: the socket goes and new connections fail.
    await alice.context.set_offline(True)
    await alice.evaluate("window.chat.hub.ws.close()")
    await alice.wait_for_selector("#status.reconnecting", timeout=WAIT)
    await alice.wait_for_selector(".banner.warn:has-text('reconnecting')", timeout=WAIT)
    await bob.click('#rooms li[data-key="#lobby"]')
    for text in ("you missed this", "and this"):
        await bob.fill("#text", text)
        await bob.press("#text", "Enter")
        await bob.wait_for_selector(f".msg.live:has-text('{text}')", timeout=WAIT)

    # Back online: alice reconnects, re-joins since her last offset, and shows both.
    await alice.context.set_offline(False)
    await alice.wait_for_selector("#status.open", timeout=WAIT)
    await alice.wait_for_selector(
        ".banner.ok:has-text('2 missed messages recovered')", timeout=WAIT
    )
    missed = await alice.locator(".msg.missed .body").all_inner_texts()
    assert missed == ["you missed this", "and this"]
    # Nothing was shown twice, and everything is in offset order.
    offsets = [
        int(o)
        for o in await alice.locator("#messages .msg[data-offset]").evaluate_all(
            "els => els.map(e => e.dataset.offset)"
        )
    ]
    assert offsets == sorted(set(offsets)) == [1, 2, 3, 4]
    await alice.screenshot(path=str(screenshot_dir / "chat-alice.png"))
    await bob.screenshot(path=str(screenshot_dir / "chat-bob.png"))

    # Live traffic goes on after the recovery.
    await bob.fill("#text", "welcome back")
    await bob.press("#text", "Enter")
    await alice.wait_for_selector(".msg.live:has-text('welcome back')", timeout=WAIT)


async def test_a_new_visitor_sees_the_room_history(hub_server, new_page):
    running = await hub_server(stats_interval=0)
    for i in range(3):
        await running.hub.publish("news", {"text": f"earlier {i}"}, sender="newsbot")
    page = await new_page(f"{running.http}/chat?name=carol&room=news")
    await page.wait_for_selector(".msg.history:has-text('earlier 2')", timeout=WAIT)
    assert await page.locator(".msg.history .who").all_inner_texts() == ["newsbot"] * 3
    # A publish into a system room is refused with a readable reason, and the page goes on.
    await page.fill("#newroom", "$hub.stats")
    await page.click("#joinform button")
    await page.wait_for_selector('#rooms li[data-key="#$hub.stats"].current', timeout=WAIT)
    await page.fill("#text", "nope")
    await page.press("#text", "Enter")
    await page.wait_for_selector(".msg.system:has-text('not sent (forbidden)')", timeout=WAIT)
