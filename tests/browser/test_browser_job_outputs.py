"""wirehub.js in real Chromium: coalesced ``job.output`` frames reach ``onOutput`` one by one."""

from __future__ import annotations

from support import FACTOR

WAIT = 10_000 * FACTOR  # ms


async def test_wirehub_js_calls_on_output_once_per_output_in_order(hub_server, new_page):
    running = await hub_server(jobs={"modules": ["jobs_fixtures"]})
    page = await new_page(f"{running.http}/healthz")  # any page of the hub's origin
    result = await page.evaluate(
        """async () => {
          const { connect } = await import("/static/wirehub.js");
          const hub = await connect();
          const seen = [];
          const job = await hub.submit("flood", { n: 5000 }, { onOutput: (d) => seen.push(d.i) });
          const value = await job.result;
          hub.close();
          const inOrder = seen.every((v, i) => v === i);
          return { value, count: seen.length, inOrder, kept: job.outputs.length };
        }"""
    )
    assert result == {"value": 5000, "count": 5000, "inOrder": True, "kept": 5000}
    # The hub did coalesce them (otherwise this test would prove nothing about ``items``).
    assert running.hub.jobs.frames < 5000 // 10
