"""schemathesis against the OpenAPI schema of a real running hub (auth on).

Every operation the schema lists is called with generated (valid and invalid)
input: with an API key the hub never answers 5xx and its JSON matches the
documented schema; without one every ``/api`` operation answers 401 — the
security scheme covers the whole API, including routes added later.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from security_support import API_KEY, jwt_auth
from support import RunningHub, start_hub


class ThreadedHub:
    """A hub on its own event loop in a thread, for synchronous test clients."""

    def __init__(self, **overrides: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="schema-hub", daemon=True)
        self.thread.start()
        self.running: RunningHub = self._call(start_hub(**overrides))

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def stop(self) -> None:
        self._call(self.running.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def schema_hub() -> Iterator[ThreadedHub]:
    hub = ThreadedHub(auth=jwt_auth(), stats_interval=0, demo=False)
    yield hub
    hub.stop()


def _operations(hub: ThreadedHub) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{hub.running.http}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def _run(operation: Any, max_examples: int, check: Any) -> None:
    # schemathesis' own pytest plugin does not run on this pytest; drive its
    # strategies with hypothesis directly (same generation, same checks).
    @given(case=operation.as_strategy())
    @settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        check(case)

    run()


def test_no_input_makes_the_api_fail(schema_hub: ThreadedHub) -> None:
    def check(case: Any) -> None:
        response = case.call(headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10)
        case.validate_response(response, checks=[not_a_server_error])
        assert response.status_code != 401, (case.method, case.path, response.text)

    operations = _operations(schema_hub)
    assert len(operations) > 10
    for operation in operations:
        _run(operation, 8, check)


def test_every_api_operation_refuses_without_a_credential(schema_hub: ThreadedHub) -> None:
    def check(case: Any) -> None:
        response = case.call(timeout=10)
        if case.path.startswith("/api"):
            assert response.status_code == 401, (case.method, case.path, response.status_code)
            assert response.json()["detail"]["code"] == "unauthorized"
        else:
            assert response.status_code < 500

    for operation in _operations(schema_hub):
        _run(operation, 3, check)
