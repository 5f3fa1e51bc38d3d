"""State over real HTTP: ETags and conditional writes, TTLs, prefix listing, who may touch
what, and the plan's state bytes — exact under concurrency, never partially written."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from controlplane import state
from controlplane.auth.api_keys import issue_api_key
from controlplane.models import KeyKind, KeyMode, Project, Role, StateEntry, StateUsage
from tests.conftest import TEST_SECRET_KEY
from tests.support.tenants import Tenant, make_tenant

pytestmark = pytest.mark.database


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def key_of(tenant: Tenant, kind: KeyKind, mode: KeyMode = KeyMode.TEST) -> dict[str, str]:
    _, plaintext = await issue_api_key(
        tenant.project, name=f"{kind} {mode}", kind=kind, mode=mode, pepper=TEST_SECRET_KEY
    )
    return bearer(plaintext)


async def stored(tenant: Tenant, mode: KeyMode = KeyMode.TEST) -> int:
    """The organization's accounted state bytes, checked against the entries themselves."""
    usage = await StateUsage.get_or_none(organization_id=tenant.organization.id, mode=mode)
    accounted = usage.bytes if usage else 0
    sizes = await StateEntry.filter(
        project__organization_id=tenant.organization.id, mode=mode
    ).values_list("size_bytes", flat=True)
    assert accounted == sum(int(size) for size in sizes), "accounting drifted from the entries"
    return accounted


async def test_a_server_writes_reads_replaces_and_deletes_an_entry(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    server = bearer(acme.secret_key)
    value = {"eta_minutes": 12, "stage": "packed", "courier": "Zoë"}

    created = await client.put("/v1/state/order:A-1", json={"value": value}, headers=server)

    assert created.status_code == 200, created.text
    entry = created.json()
    assert (entry["object"], entry["key"], entry["value"]) == ("state_entry", "order:A-1", value)
    assert (entry["created"], entry["version"], entry["public"]) == (True, 1, False)
    assert entry["etag"] == created.headers["etag"]
    assert entry["etag"][0] == entry["etag"][-1] == '"'
    # Key plus the compact JSON of the value, in UTF-8 ("ë" is two bytes).
    compact = '{"eta_minutes":12,"stage":"packed","courier":"Zoë"}'
    assert entry["size_bytes"] == len("order:A-1") + len(compact.encode())
    read = await client.get("/v1/state/order:A-1", headers=server)
    assert read.status_code == 200
    assert read.json()["value"] == value
    assert read.headers["etag"] == entry["etag"]

    replaced = await client.put(
        "/v1/state/order:A-1", json={"value": {**value, "eta_minutes": 9}}, headers=server
    )
    assert (replaced.json()["created"], replaced.json()["version"]) == (False, 2)
    assert replaced.headers["etag"] not in (entry["etag"], None)
    assert replaced.json()["created_at"] == entry["created_at"]
    assert await stored(acme) == replaced.json()["size_bytes"]

    deleted = await client.delete("/v1/state/order:A-1", headers=server)
    assert deleted.json() == {"object": "state_entry", "key": "order:A-1", "deleted": True}
    gone = await client.get("/v1/state/order:A-1", headers=server)
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "resource_missing"
    assert (await client.delete("/v1/state/order:A-1", headers=server)).status_code == 404
    assert await stored(acme) == 0


async def test_a_stale_if_match_is_412_with_the_current_etag_and_changes_nothing(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    server = bearer(acme.secret_key)
    path = "/v1/state/flags"
    first = (await client.put(path, json={"value": {"beta": False}}, headers=server)).json()
    second = await client.put(
        path, json={"value": {"beta": True}}, headers={**server, "If-Match": first["etag"]}
    )
    assert second.status_code == 200, second.text

    stale = await client.put(
        path, json={"value": {"beta": "lost"}}, headers={**server, "If-Match": first["etag"]}
    )

    assert stale.status_code == 412
    assert stale.json()["error"] == {
        "type": "invalid_request_error", "code": "precondition_failed", "param": "If-Match",
        "message": stale.json()["error"]["message"],
    }  # fmt: skip
    assert stale.headers["etag"] == second.headers["etag"]
    assert (await client.get(path, headers=server)).json()["value"] == {"beta": True}
    stale_delete = await client.delete(path, headers={**server, "If-Match": first["etag"]})
    assert stale_delete.status_code == 412
    # A weak tag never matches a strong comparison; a list may name the current one.
    weak = "W/" + second.headers["etag"]
    assert (await client.put(path, json={"value": 1}, headers={**server, "If-Match": weak})
            ).status_code == 412  # fmt: skip
    listed = f'"nope", {second.headers["etag"]}'
    assert (await client.put(path, json={"value": 2}, headers={**server, "If-Match": listed})
            ).status_code == 200  # fmt: skip
    # If-None-Match: * creates only; If-Match needs an entry to be there.
    exists = await client.put(path, json={"value": 3}, headers={**server, "If-None-Match": "*"})
    assert exists.status_code == 412
    assert exists.json()["error"]["param"] == "If-None-Match"
    fresh = await client.put(
        "/v1/state/fresh", json={"value": 1}, headers={**server, "If-None-Match": "*"}
    )
    assert fresh.json()["created"] is True
    absent = await client.put(
        "/v1/state/absent", json={"value": 1}, headers={**server, "If-Match": "*"}
    )
    assert absent.status_code == 412
    assert not await StateEntry.filter(key="absent").exists()
    current = await client.get(path, headers=server)
    assert (current.json()["value"], current.json()["version"]) == (2, 3)
    assert (await client.delete(path, headers={**server, "If-Match": current.headers["etag"]})
            ).status_code == 200  # fmt: skip


async def test_concurrent_read_modify_write_loops_lose_no_update(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    server = bearer(acme.secret_key)
    path = "/v1/state/counter"
    await client.put(path, json={"value": 0}, headers=server)
    refused: Counter[int] = Counter()

    async def increment() -> None:
        while True:
            read = await client.get(path, headers=server)
            written = await client.put(
                path, json={"value": read.json()["value"] + 1},
                headers={**server, "If-Match": read.headers["etag"]},
            )  # fmt: skip
            if written.status_code == 200:
                return
            assert written.status_code == 412, written.text
            refused[written.status_code] += 1

    await asyncio.gather(*(increment() for _ in range(12)))

    final = (await client.get(path, headers=server)).json()
    assert (final["value"], final["version"]) == (12, 13)


async def test_an_expired_entry_is_invisible_at_once_and_replaced_by_a_new_one(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    server = bearer(acme.secret_key)
    written = await client.put(
        "/v1/state/session:1", json={"value": "x", "ttl_seconds": 60}, headers=server
    )
    entry = written.json()
    expires = datetime.fromisoformat(entry["expires_at"])
    assert timedelta(seconds=59) < expires - datetime.now(UTC) <= timedelta(seconds=60)
    await client.put("/v1/state/session:2", json={"value": "y"}, headers=server)
    # A minute passes.
    await StateEntry.filter(key="session:1").update(expires_at=datetime.now(UTC))

    assert (await client.get("/v1/state/session:1", headers=server)).status_code == 404
    listed = (await client.get("/v1/state", headers=server)).json()
    assert [item["key"] for item in listed["data"]] == ["session:2"]
    assert (await client.delete("/v1/state/session:1", headers=server)).status_code == 404
    stale = await client.put(
        "/v1/state/session:1", json={"value": "z"}, headers={**server, "If-Match": entry["etag"]}
    )
    assert stale.status_code == 412
    # Its bytes stay counted until it is purged or replaced; a write replaces it whole.
    assert await stored(acme) == entry["size_bytes"] + listed["data"][0]["size_bytes"]
    again = await client.put("/v1/state/session:1", json={"value": "zz"}, headers=server)
    assert (again.json()["created"], again.json()["version"]) == (True, 1)
    assert again.json()["etag"] != entry["etag"]
    assert again.json()["expires_at"] is None
    assert await stored(acme) == again.json()["size_bytes"] + listed["data"][0]["size_bytes"]


async def test_a_prefix_lists_its_keys_in_order_page_by_page(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    server = bearer(acme.secret_key)
    keys = [f"feed:{n:03}" for n in range(23)]
    # Look-alikes: another case, LIKE's wildcards, and a key that is the prefix's stem.
    others = ["Feed:000", "feedx:1", "feed", "fee_:1", "a"]
    for key in keys + others:
        assert (await client.put(f"/v1/state/{key}", json={"value": key}, headers=server)
                ).status_code == 200  # fmt: skip

    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        params = {"prefix": "feed:", "limit": "10", **({"starting_after": after} if after else {})}
        page = (await client.get("/v1/state", params=params, headers=server)).json()
        pages += 1
        seen += [item["key"] for item in page["data"]]
        assert all(item["value"] == item["key"] for item in page["data"])
        if not page["has_more"]:
            break
        after = page["data"][-1]["key"]

    assert seen == keys
    assert pages == 3
    wildcard = (await client.get("/v1/state", params={"prefix": "fee_"}, headers=server)).json()
    assert [item["key"] for item in wildcard["data"]] == ["fee_:1"]
    everything = await client.get("/v1/state", params={"limit": "100"}, headers=server)
    assert len(everything.json()["data"]) == len(keys) + len(others)
    # The cursor is a key, not an object: it need not exist any more.
    gone = await client.get(
        "/v1/state", params={"prefix": "feed:", "starting_after": "feed:0195"}, headers=server
    )
    assert [item["key"] for item in gone.json()["data"]] == keys[20:]


async def test_test_keys_never_see_live_state(client: httpx.AsyncClient, database: None) -> None:
    acme = await make_tenant("Acme")
    test = bearer(acme.secret_key)
    live = await key_of(acme, KeyKind.SECRET, KeyMode.LIVE)
    await client.put("/v1/state/theme", json={"value": "live"}, headers=live)

    assert (await client.get("/v1/state/theme", headers=test)).status_code == 404
    assert (await client.get("/v1/state", headers=test)).json()["data"] == []
    await client.put("/v1/state/theme", json={"value": "test"}, headers=test)
    assert (await client.get("/v1/state/theme", headers=live)).json()["value"] == "live"
    assert (await client.get("/v1/state/theme", headers=test)).json()["value"] == "test"
    assert (await client.delete("/v1/state/theme", headers=test)).status_code == 200
    assert (await client.get("/v1/state/theme", headers=live)).json()["value"] == "live"


async def test_publishable_keys_read_public_entries_and_write_only_where_the_project_allows(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    server = bearer(acme.secret_key)
    app = await key_of(acme, KeyKind.PUBLISHABLE)
    await client.put("/v1/state/config:theme", json={"value": "dark", "public": True},
                     headers=server)  # fmt: skip
    await client.put("/v1/state/billing:plan", json={"value": "gold"}, headers=server)

    public = await client.get("/v1/state/config:theme", headers=app)
    assert (public.status_code, public.json()["value"]) == (200, "dark")
    private = await client.get("/v1/state/billing:plan", headers=app)
    missing = await client.get("/v1/state/nothing:here", headers=app)
    # A private entry answers an app exactly as a missing one does.
    assert private.status_code == missing.status_code == 404
    assert private.json()["error"]["message"].replace("billing:plan", "K") == (
        missing.json()["error"]["message"].replace("nothing:here", "K")
    )
    listed = (await client.get("/v1/state", headers=app)).json()
    assert [item["key"] for item in listed["data"]] == ["config:theme"]

    refused = await client.put("/v1/state/config:theme", json={"value": "x"}, headers=app)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "state_write_forbidden"
    assert (await client.delete("/v1/state/config:theme", headers=app)).status_code == 403

    # The project's admins open a prefix to apps.
    opened = await client.patch(
        f"/v1/projects/{acme.project.id}",
        json={"state_public_write_prefixes": ["votes:", "votes:"]}, headers=acme.owner.headers,
    )  # fmt: skip
    assert opened.json()["state_public_write_prefixes"] == ["votes:"]
    assert opened.json()["name"] == "Acme app"
    vote = await client.put("/v1/state/votes:u1", json={"value": 5}, headers=app)
    assert (vote.status_code, vote.json()["public"]) == (200, True)
    assert (await client.get("/v1/state/votes:u1", headers=app)).json()["value"] == 5
    not_public = await client.put(
        "/v1/state/votes:u2", json={"value": 1, "public": False}, headers=app
    )
    assert (not_public.status_code, not_public.json()["error"]["param"]) == (400, "public")
    await client.put("/v1/state/votes:tally", json={"value": 99}, headers=server)
    over_private = await client.put("/v1/state/votes:tally", json={"value": 0}, headers=app)
    assert over_private.status_code == 403
    assert over_private.json()["error"]["code"] == "state_entry_private"
    assert (await client.delete("/v1/state/votes:tally", headers=app)).status_code == 403
    assert (await client.get("/v1/state/votes:tally", headers=server)).json()["value"] == 99
    assert (await client.delete("/v1/state/votes:u1", headers=app)).status_code == 200
    # Viewers and developers cannot change what apps may write.
    for role in (Role.DEVELOPER, Role.VIEWER):
        denied = await client.patch(
            f"/v1/projects/{acme.project.id}",
            json={"state_public_write_prefixes": ["config:"]}, headers=acme.people[role].headers,
        )  # fmt: skip
        assert denied.status_code == 403
    assert (await client.put("/v1/state/config:theme", json={"value": "x"}, headers=app)
            ).status_code == 403  # fmt: skip


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "code", "param"),
    [
        ("/v1/state/.hidden", {"value": 1}, {}, 400, "parameter_invalid", "key"),
        ("/v1/state/" + "k" * 257, {"value": 1}, {}, 400, "parameter_invalid", "key"),
        ("/v1/state/a%20b", {"value": 1}, {}, 400, "parameter_invalid", "key"),
        ("/v1/state/activity:act_1", {"value": 1}, {}, 400, "reserved_key", "key"),
        ("/v1/state/k", {}, {}, 400, "parameter_missing", "value"),
        ("/v1/state/k", {"value": 1, "ttl_seconds": 0}, {}, 400, "parameter_invalid",
         "ttl_seconds"),
        ("/v1/state/k", {"value": 1, "ttl_seconds": "60"}, {}, 400, "parameter_invalid",
         "ttl_seconds"),
        ("/v1/state/k", {"value": 1, "ttl": 60}, {}, 400, "parameter_invalid", "ttl"),
        ("/v1/state/k", {"value": 1, "public": "yes"}, {}, 400, "parameter_invalid", "public"),
        ("/v1/state/k", {"value": "\u0000"}, {}, 400, "parameter_invalid", "value"),
        ("/v1/state/k", {"value": "x" * 65_535}, {}, 413, "value_too_large", "value"),
        ("/v1/state/k", {"value": 1}, {"If-Match": ","}, 400, "parameter_invalid", "If-Match"),
    ],
)  # fmt: skip
async def test_bad_keys_and_values_are_refused_with_the_error_body_and_nothing_stored(
    client: httpx.AsyncClient, database: None, path: str, body: dict[str, Any],
    headers: dict[str, str], status: int, code: str, param: str,
) -> None:  # fmt: skip
    acme = await make_tenant("Acme")

    response = await client.put(path, json=body, headers={**bearer(acme.secret_key), **headers})

    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param)
    assert error["message"]
    assert await StateEntry.all().count() == 0
    assert await stored(acme) == 0


async def test_the_largest_value_fits_and_reads_of_bad_keys_are_400(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    server = bearer(acme.secret_key)
    largest = "x" * (64 * 1024 - 2)  # plus its two quotes: 65,536 bytes of JSON
    written = await client.put("/v1/state/big", json={"value": largest}, headers=server)
    assert written.status_code == 200, written.text
    assert written.json()["size_bytes"] == len("big") + 64 * 1024
    for path in ("/v1/state/-x", "/v1/state/activity:act_1"):
        assert (await client.delete(path, headers=server)).status_code == 400
    assert (await client.get("/v1/state/-x", headers=server)).status_code == 400
    # activity:{id} reads a Live Activity's state (tests/controlplane/api/test_activities.py).
    assert (await client.get("/v1/state/activity:act_1", headers=server)).status_code == 404
    bad_prefix = await client.get("/v1/state", params={"prefix": "a b"}, headers=server)
    assert (bad_prefix.status_code, bad_prefix.json()["error"]["param"]) == (400, "prefix")


async def test_the_state_quota_is_exact_under_fifty_concurrent_writers(
    start: Callable[..., Any],
) -> None:
    value = "v" * 93  # with its quotes and a 5-character key: 100 bytes an entry
    client = await start(plan_free_state_bytes=3_750)
    acme = await make_tenant("Acme")
    server = bearer(acme.secret_key)

    answers = await asyncio.gather(*(
        client.put(f"/v1/state/k{n:04}", json={"value": value}, headers=server)
        for n in range(50)
    ))  # fmt: skip

    statuses = Counter(answer.status_code for answer in answers)
    assert statuses == {200: 37, 429: 13}
    refusals = [answer.json()["error"] for answer in answers if answer.status_code == 429]
    assert {(e["type"], e["code"], e["param"]) for e in refusals} == {
        ("quota_exceeded", "state_quota_exceeded", "value")
    }
    assert "3,750 bytes its plan allows" in refusals[0]["message"]
    assert await StateEntry.all().count() == 37
    assert await stored(acme) == 3_700

    # Overwrites count only what they add; one that does not fit changes nothing.
    kept = next(answer.json()["key"] for answer in answers if answer.status_code == 200)
    fits = await client.put(f"/v1/state/{kept}", json={"value": value + "x" * 50},
                            headers=server)  # fmt: skip
    assert (fits.status_code, await stored(acme)) == (200, 3_750)
    grown = await client.put(f"/v1/state/{kept}", json={"value": value + "x" * 51},
                             headers=server)  # fmt: skip
    assert grown.status_code == 429
    assert (await client.get(f"/v1/state/{kept}", headers=server)).json()["version"] == 2
    assert await stored(acme) == 3_750
    shrunk = await client.put(f"/v1/state/{kept}", json={"value": 1}, headers=server)
    assert shrunk.status_code == 200
    assert await stored(acme) == 3_600 + 6
    # Deleting gives bytes back; concurrent overwrites of one key are counted once.
    assert (await client.delete(f"/v1/state/{kept}", headers=server)).status_code == 200
    same = await asyncio.gather(*(
        client.put("/v1/state/hot", json={"value": value[:-2]}, headers=server)
        for _ in range(20)
    ))  # fmt: skip
    assert {answer.status_code for answer in same} == {200}
    assert sorted(answer.json()["version"] for answer in same) == list(range(1, 21))
    assert await stored(acme) == 3_600 + 96
    usage = (await client.get("/v1/usage", headers=server)).json()
    assert usage["test"]["state_bytes"] == {"used": 3_696, "limit": 3_750, "remaining": 54}
    assert usage["live"]["state_bytes"]["used"] == 0


async def test_test_mode_and_live_mode_have_separate_state_quotas(
    start: Callable[..., Any],
) -> None:
    client = await start(plan_free_state_bytes=100)
    acme = await make_tenant("Acme")
    live = await key_of(acme, KeyKind.SECRET, KeyMode.LIVE)
    test = bearer(acme.secret_key)
    assert (await client.put("/v1/state/k", json={"value": "x" * 90}, headers=test)
            ).status_code == 200  # fmt: skip
    assert (await client.put("/v1/state/k2", json={"value": "x" * 90}, headers=test)
            ).status_code == 429  # fmt: skip
    assert (await client.put("/v1/state/k2", json={"value": "x" * 90}, headers=live)
            ).status_code == 200  # fmt: skip


async def test_deleting_a_project_gives_its_state_bytes_back(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    other = await Project.create(organization=acme.organization, name="Other app")
    _, other_key = await issue_api_key(other, name="k", kind=KeyKind.SECRET, mode=KeyMode.TEST,
                                       pepper=TEST_SECRET_KEY)  # fmt: skip
    kept = await client.put("/v1/state/a", json={"value": 1}, headers=bearer(acme.secret_key))
    for n in range(3):
        await client.put(f"/v1/state/b{n}", json={"value": n}, headers=bearer(other_key))
    assert await stored(acme) == kept.json()["size_bytes"] + 3 * 3

    deleted = await client.delete(f"/v1/projects/{other.id}", headers=acme.owner.headers)

    assert deleted.status_code == 200, deleted.text
    assert await StateEntry.filter(project_id=other.id).count() == 0
    assert await stored(acme) == kept.json()["size_bytes"]


async def test_the_openapi_document_says_etag_412_and_the_key_rule(
    client: httpx.AsyncClient, database: None
) -> None:
    paths = (await client.get("/v1/openapi.json")).json()["paths"]
    entry = paths["/v1/state/{key}"]
    assert "ETag" in entry["get"]["responses"]["200"]["headers"]
    assert "ETag" in entry["put"]["responses"]["200"]["headers"]
    assert "412" in entry["put"]["responses"]
    assert "412" in entry["delete"]["responses"]
    [key] = entry["get"]["parameters"]
    assert key["schema"]["pattern"] == state.KEY_PATTERN
    assert "not" not in key["schema"]  # activity:{id} and widget:{kind} are read
    [written] = entry["put"]["parameters"]
    assert written["schema"]["not"] == {"pattern": "^(activity:|widget:)"}
