"""``brik.state`` against a real Brik Cloud: typed entries with ETags, conditional writes mapped
to the error tree, retries answered once, publishable keys refused where they must be."""

from __future__ import annotations

from collections.abc import Iterator

import brik
import pytest

from tests.sdk.conftest import STATE_QUOTA, BrikServer, api_get

pytestmark = pytest.mark.usefixtures("environment")


@pytest.fixture(autouse=True)
def _fresh_default_client() -> Iterator[None]:
    yield
    if brik._default is not None:
        brik._default.close()
        brik._default = None


def test_set_get_delete_and_list_with_etags(brik_server: BrikServer, keys: dict[str, str]) -> None:
    brik.init()
    first = brik.state.set("order:A-1", {"stage": "packed", "eta_minutes": 12}, ttl=3600)
    assert isinstance(first, brik.StateEntry)
    assert (first.created, first.version, first.public) == (True, 1, False)
    assert first.expires_at is not None
    read = brik.state.get("order:A-1")
    assert read is not None
    assert (read.value, read.etag) == ({"stage": "packed", "eta_minutes": 12}, first.etag)
    stored = api_get(brik_server, keys["test_secret"], "/v1/state/order:A-1")
    assert stored["etag"] == first.etag

    second = brik.state.set("order:A-1", {"stage": "shipped", "eta_minutes": 9},
                            if_match=read.etag)  # fmt: skip
    assert (second.created, second.version, second.expires_at) == (False, 2, None)
    with pytest.raises(brik.PreconditionFailedError) as stale:
        brik.state.set("order:A-1", {"stage": "lost"}, if_match=first.etag)
    assert (stale.value.status, stale.value.code) == (412, "precondition_failed")
    assert stale.value.etag == second.etag
    with pytest.raises(brik.PreconditionFailedError):
        brik.state.set("order:A-1", {"stage": "again"}, create_only=True)
    with pytest.raises(brik.PreconditionFailedError):
        brik.state.delete("order:A-1", if_match=first.etag)
    current = brik.state.get("order:A-1")
    assert current is not None
    assert current.value == {"stage": "shipped", "eta_minutes": 9}

    for n in range(5):
        brik.state.set(f"order:B-{n}", n)
    page = brik.state.list(prefix="order:B-", limit=2)
    assert ([entry.key for entry in page.data], page.has_more) == (["order:B-0", "order:B-1"], True)
    assert [entry.value for entry in brik.state.iterate(prefix="order:B-", page_size=2)] == [
        0, 1, 2, 3, 4,
    ]  # fmt: skip

    deleted = brik.state.delete("order:A-1", if_match=current.etag)
    assert (deleted.key, deleted.deleted) == ("order:A-1", True)
    assert brik.state.get("order:A-1") is None
    with pytest.raises(brik.NotFoundError):
        brik.state.delete("order:A-1")


def test_a_retried_conditional_write_gets_its_first_answer_not_a_412(
    keys: dict[str, str],
) -> None:
    # What the SDK does when a connection drops after the server committed: the same call,
    # with the same Idempotency-Key, again.
    brik.init()
    entry = brik.state.set("counter", 1)
    once = brik.state.set("counter", 2, if_match=entry.etag, idempotency_key="bump-1")
    again = brik.state.set("counter", 2, if_match=entry.etag, idempotency_key="bump-1")
    assert (again.version, again.etag) == (once.version, once.etag) == (2, once.etag)
    deleted = brik.state.delete("counter", idempotency_key="drop-1")
    assert brik.state.delete("counter", idempotency_key="drop-1") == deleted


def test_errors_map_to_the_tree(keys: dict[str, str]) -> None:
    brik.init()
    big = "x" * 60_000
    brik.state.set("big:1", big)
    brik.state.set("big:2", big)
    brik.state.set("big:3", big)
    with pytest.raises(brik.QuotaExceededError) as full:
        brik.state.set("big:4", big)  # 240,000 bytes do not fit in 200,000
    assert (full.value.status, full.value.code) == (429, "state_quota_exceeded")
    assert f"{STATE_QUOTA:,}" in full.value.message
    with pytest.raises(brik.InvalidRequestError) as too_large:
        brik.state.set("huge", "x" * 70_000)
    assert (too_large.value.status, too_large.value.code) == (413, "value_too_large")
    with pytest.raises(brik.InvalidRequestError) as reserved:
        brik.state.set("activity:act_1", {})
    assert reserved.value.code == "reserved_key"
    # A key that could leave its path is refused before anything is sent.
    for key in ("../credentials/apns", "a/b", "a?b", ".."):
        with pytest.raises(brik.InvalidRequestError) as refused:
            brik.state.get(key)
        assert (refused.value.param, refused.value.body) == ("key", None)
    with pytest.raises(ValueError, match="create_only"):
        brik.state.set("k", 1, if_match='"x"', create_only=True)


def test_publishable_keys_read_public_entries_and_are_refused_writes(
    brik_server: BrikServer, keys: dict[str, str]
) -> None:
    server = brik.init()
    server.state.set("config:theme", "dark", public=True)
    server.state.set("billing:plan", "gold")
    with brik.Client(keys["test_publishable"], base_url=brik_server.url) as app:
        theme = app.state.get("config:theme")
        assert theme is not None
        assert (theme.value, theme.public) == ("dark", True)
        assert app.state.get("billing:plan") is None  # private: as if missing
        assert [entry.key for entry in app.state.iterate()] == ["config:theme"]
        with pytest.raises(brik.PermissionError) as refused:
            app.state.set("config:theme", "light")
        assert refused.value.code == "state_write_forbidden"
    entry = server.state.get("config:theme")
    assert entry is not None
    assert entry.value == "dark"


async def test_the_async_client_does_the_same(
    brik_server: BrikServer, keys: dict[str, str]
) -> None:
    async with brik.AsyncClient(keys["test_secret"], base_url=brik_server.url) as client:
        first = await client.state.set("eta", 12, public=True)
        assert (first.created, first.public) == (True, True)
        second = await client.state.set("eta", 9, if_match=first.etag)
        with pytest.raises(brik.PreconditionFailedError):
            await client.state.set("eta", 7, if_match=first.etag)
        read = await client.state.get("eta")
        assert read is not None
        assert (read.value, read.etag) == (9, second.etag)
        await client.state.set("eta:later", 1)
        assert [entry.key async for entry in client.state.iterate(prefix="eta")] == [
            "eta", "eta:later",
        ]  # fmt: skip
        page = await client.state.list(limit=1)
        assert page.has_more
        await client.state.delete("eta")
        assert await client.state.get("eta") is None
