"""``brik.events`` against a real Brik Cloud: tracked events go out in batches, are loaded by
the worker and counted once however often they are sent; refusals come back and are logged;
a flush that fails keeps its events."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import brik
import httpx
import pytest

from tests.sdk.conftest import BrikServer
from tests.support.processes import free_port


@pytest.fixture(scope="module")
def shared(brik_server: BrikServer) -> dict[str, str]:
    """One organization's keys for the tests that need no counts of their own."""
    return brik_server.reserve_org()


@pytest.fixture(autouse=True)
def _fresh_default_client() -> Iterator[None]:
    yield
    if brik._default is not None:
        brik._default.close()
        brik._default = None


def loaded_impressions(server: BrikServer, secret: str, expected: int) -> int:
    """Widget impressions the summary counts, once the worker has loaded ``expected``."""
    deadline = time.monotonic() + 30  # a safety net, not a timing assertion
    while True:
        response = httpx.get(f"{server.url}/v1/analytics/summary",
                             headers={"Authorization": f"Bearer {secret}"})  # fmt: skip
        count = int(response.json()["widget_impressions"])
        if count >= expected or time.monotonic() > deadline:
            return count
        time.sleep(0.2)


def test_tracked_events_go_out_in_batches_and_count_once(
    brik_server: BrikServer, keys: dict[str, str]
) -> None:  # its own organization: it counts
    app = brik.Client(keys["test_publishable"], base_url=brik_server.url, event_batch_size=3)
    ids = [app.events.track("widget.impression", widget="Score", platform="ios",
                            user_id="u_42") for _ in range(3)]  # fmt: skip
    assert app.events.pending == 0  # the third filled a batch: sent
    ids.append(app.events.track("widget.impression", widget="Score"))
    assert app.events.pending == 1
    app.close()  # sends the rest
    assert loaded_impressions(brik_server, keys["test_secret"], 4) == 4

    # The same events again: a retry whose first answer was lost. Accepted, counted once.
    server = brik.Client(keys["test_secret"], base_url=brik_server.url)
    now = datetime.now(UTC).isoformat()
    resent = server.events.send([{"id": event_id, "name": "widget.impression", "widget": "Score",
                                  "timestamp": now} for event_id in ids])  # fmt: skip
    assert (resent.accepted, resent.rejected) == (4, 0)
    server.events.track("widget.impression", widget="Score")
    server.close()
    assert loaded_impressions(brik_server, keys["test_secret"], 5) == 5
    secret = {"Authorization": f"Bearer {keys['test_secret']}"}
    listed = httpx.get(f"{brik_server.url}/v1/analytics/events", params={"user_id": "u_42"},
                       headers=secret).json()  # fmt: skip
    assert sorted(item["id"] for item in listed["data"]) == sorted(ids[:3])


def test_refused_events_come_back_and_are_logged(
    brik_server: BrikServer, shared: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    brik.init(shared["test_publishable"], base_url=brik_server.url)
    brik.events.track("widget.click", widget="Score", action="open")
    brik.events.track("widget.click", widget="Score")  # no action
    with caplog.at_level(logging.WARNING, logger="brik"):
        result = brik.events.flush()
    assert (result.received, result.accepted, result.rejected) == (2, 1, 1)
    [refused] = result.errors
    assert (refused.index, refused.code, refused.param) == (1, "parameter_invalid",
                                                            "events.1.action")  # fmt: skip
    assert "widget.click events need action" in caplog.text
    assert brik.events.flush().received == 0  # nothing left


def test_the_async_client_tracks_and_flushes(
    brik_server: BrikServer, shared: dict[str, str]
) -> None:
    async def run() -> brik.EventBatch:
        async with brik.AsyncClient(shared["test_secret"], base_url=brik_server.url,
                                    event_batch_size=50) as client:  # fmt: skip
            for _ in range(3):
                await client.events.track("custom.level_completed", properties={"level": 4})
            assert client.events.pending == 3
            return await client.events.flush()

    result = asyncio.run(run())
    assert (result.accepted, result.rejected) == (3, 0)


def test_a_failed_flush_keeps_its_events_and_tracking_never_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nowhere = brik.Client("bk_sk_test_" + "x" * 40, base_url=f"http://127.0.0.1:{free_port()}",
                          max_retries=0, event_batch_size=2)  # fmt: skip
    nowhere.events.track("widget.impression", widget="Score")
    with caplog.at_level(logging.WARNING, logger="brik"):
        nowhere.events.track("widget.impression", widget="Score")  # its flush fails: logged
    assert "2 events kept for the next flush" in caplog.text
    assert nowhere.events.pending == 2
    with pytest.raises(brik.APIConnectionError):
        nowhere.events.flush()
    assert nowhere.events.pending == 2
    nowhere._transport.close()
