"""docs/activities.md's order-tracking walk-through, run as it stands, through APNs and FCM.

The Python blocks of its "Order tracking from Python, end to end" section are executed one
after the other with the real SDK (in a thread: the blocking client, while the API, the worker
and the fakes run on this test's event loop), against a live project whose APNs and FCM
credentials point at the local fakes. Between two blocks the test waits until what the last one
sent is delivered, as minutes would pass between an order's steps. Then it checks what each fake
received, the outputs the page prints in its comments, and that the README's short version is
made of lines of the walk-through.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import brik
import pytest

from tests.support.apple import SigningKey
from tests.workers.test_deliver import bearer, until_final
from tests.workers.test_deliver_activities import App, fake_settings, live_project
from workers.fakes.apns import FakeAPNs
from workers.fakes.fcm import FakeFCM

pytestmark = pytest.mark.database

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Order tracking from Python, end to end"
APNS_TOKEN = "ab" * 32
PUSH_TO_START_TOKEN = "cd" * 32
ACTIVITY_TOKEN = "ef" * 32
FCM_TOKEN = "pixel-token-" + "q" * 30


def walk_through() -> list[str]:
    """The section's Python blocks, in order."""
    page = (ROOT / "docs" / "activities.md").read_text()
    section = page[page.index(SECTION) :]
    following = section.find("\n## ", len(SECTION))
    section = section if following == -1 else section[:following]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def printed_comments(block: str) -> list[str]:
    """What the block's ``print(…)  # shown`` lines say they show."""
    return re.findall(r"^print\(.*\)  # (.*)$", block, flags=re.MULTILINE)


@pytest.fixture
def _default_client_closed() -> Iterator[None]:
    yield
    if brik._default is not None:
        brik._default.close()
        brik._default = None


async def settled(app: App) -> None:
    """Every push of the project delivered (or otherwise final)."""
    listed = await app.client.get("/v1/pushes", params={"limit": 100}, headers=bearer(app.secret))
    for push in listed.json()["data"]:
        await until_final(app.client, app.secret, push["id"])


def aps_to(apns_fake: FakeAPNs, token: str) -> list[tuple[dict[str, str], dict[str, Any]]]:
    return [(r.headers, r.payload["aps"]) for r in apns_fake.accepted() if r.token == token]


@pytest.mark.usefixtures("_default_client_closed")
async def test_the_order_tracking_walk_through_reaches_both_phones(
    pipeline: Callable[..., Any], apns_fake: FakeAPNs, fcm_fake: FakeFCM,
    signing_key: SigningKey, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    client = await pipeline(**fake_settings(apns_fake, fcm_fake))
    app = await live_project(client, signing_key, fcm_fake)
    monkeypatch.setenv("BRIK_API_KEY", app.secret)
    monkeypatch.setenv("BRIK_API_URL", str(client.base_url))
    shown: list[str] = []
    namespace: dict[str, Any] = {
        "publishable_key": app.publishable, "apns_token": APNS_TOKEN,
        "push_to_start_token": PUSH_TO_START_TOKEN, "fcm_token": FCM_TOKEN,
        "activity_token": ACTIVITY_TOKEN,
        "print": lambda *values: shown.append(" ".join(str(value) for value in values)),
    }  # fmt: skip
    blocks = walk_through()
    assert len(blocks) == 7
    promised = []
    for block in blocks:
        await asyncio.to_thread(exec, compile(block, "docs/activities.md", "exec"), namespace)
        await settled(app)
        promised += printed_comments(block)
    namespace["app"].close()
    assert shown == promised == [
        "starting 2", "delivered 0", "ended 8",
    ]  # fmt: skip
    order = namespace["order"]

    # The iPhone: a push-to-start, then the activity's own token gets two updates and the end.
    [(start_headers, start)] = aps_to(apns_fake, PUSH_TO_START_TOKEN)
    assert start_headers["apns-push-type"] == "liveactivity"
    assert start_headers["apns-topic"] == "com.example.app.push-type.liveactivity"
    assert start_headers["apns-priority"] == "10"
    assert (start["event"], start["attributes-type"]) == ("start", "OrderTracking")
    assert start["attributes"] == {"orderId": "A-1042", "merchantName": "Pasta Place",
                                   "brik_activity_id": order.id}  # fmt: skip
    assert start["content-state"] == {"status": "preparing", "eta": 30, "progress": 0.1}
    changes = aps_to(apns_fake, ACTIVITY_TOKEN)
    assert [aps["event"] for _, aps in changes] == ["update", "update", "end"]
    assert [aps["content-state"]["eta"] for _, aps in changes] == [12, 3, 0]
    assert [headers["apns-priority"] for headers, _ in changes] == ["5", "5", "10"]
    ios_stamps = [start["timestamp"]] + [aps["timestamp"] for _, aps in changes]
    assert ios_stamps == sorted(set(ios_stamps))  # strictly increasing
    assert aps_to(apns_fake, APNS_TOKEN) == []  # the device's own token carries no activity

    # The Android phone: the same four changes as data messages on its FCM token.
    messages = [m.message for m in fcm_fake.accepted() if m.token == FCM_TOKEN]
    data = [message["data"] for message in messages]
    assert [d["brik_live_activity_event"] for d in data] == ["start", "update", "update", "end"]
    assert [json.loads(d["brik_live_activity_state"])["eta"] for d in data] == [30, 12, 3, 0]
    assert {d["brik_activity_id"] for d in data} == {order.id}
    assert data[0]["brik_live_activity_type"] == "OrderTracking"
    assert json.loads(data[0]["brik_live_activity_attributes"])["orderId"] == "A-1042"
    android_stamps = [int(d["brik_live_activity_timestamp"]) for d in data]
    assert android_stamps == sorted(set(android_stamps))
    assert android_stamps == ios_stamps  # each change is stamped once, for every device

    # Read back: the state and the activity say the same.
    detail = (await client.get(f"/v1/activities/{order.id}", headers=bearer(app.secret))).json()
    assert (detail["status"], detail["content_state"]["status"]) == ("ended", "delivered")
    assert {d["status"] for d in detail["last_deliveries"]} == {"delivered"}


def test_the_readme_shows_lines_of_the_walk_through() -> None:
    readme = (ROOT / "README.md").read_text()
    anchor = readme.index("docs/activities.md#order-tracking-from-python-end-to-end")
    short = re.search(r"```python\n(.*?)```", readme[anchor:], flags=re.DOTALL)
    assert short is not None
    tested = {line for block in walk_through() for line in block.splitlines()}
    for line in short.group(1).splitlines():
        assert line in tested, f"the README shows a line the walk-through does not run: {line}"
