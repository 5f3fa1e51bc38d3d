"""The signed-in user's account and personal access tokens."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from controlplane.models import AuditEvent, PersonalAccessToken
from tests.support.tenants import PASSWORD, make_person

pytestmark = pytest.mark.database


async def signed_in(client: httpx.AsyncClient, email: str) -> None:
    response = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200


async def test_access_tokens_are_made_in_a_session_shown_once_and_revocable(
    client: httpx.AsyncClient, database: None
) -> None:
    ada = await make_person("ada@example.com")
    with_token = await client.post(
        "/v1/user/access_tokens", json={"name": "ci"}, headers=ada.headers
    )
    assert with_token.status_code == 403
    assert with_token.json()["error"]["code"] == "session_required"

    await signed_in(client, "ada@example.com")
    created = await client.post(
        "/v1/user/access_tokens",
        json={"name": "ci", "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat()},
    )
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    assert token.startswith("bk_pat_")
    listed = await client.get("/v1/user/access_tokens")
    assert token not in listed.text
    assert {t["name"] for t in listed.json()["data"]} == {"tests", "ci"}

    async with httpx.AsyncClient(base_url=str(client.base_url)) as automation:
        auth = {"Authorization": f"Bearer {token}"}
        me = await automation.get("/v1/user", headers=auth)
        assert me.json()["email"] == "ada@example.com"
        revoked = await client.delete(f"/v1/user/access_tokens/{created.json()['id']}")
        assert revoked.json()["revoked_at"] is not None
        refused = await automation.get("/v1/user", headers=auth)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "access_token_revoked"
    events = await client.get("/v1/user/audit_events")
    actions = {event["action"] for event in events.json()["data"]}
    assert {"access_token.created", "access_token.revoked", "user.login_succeeded"} <= actions


async def test_expired_and_malformed_tokens_say_why(
    client: httpx.AsyncClient, database: None
) -> None:
    ada = await make_person("ada@example.com")
    await PersonalAccessToken.filter(user=ada.user).update(
        expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    expired = await client.get("/v1/user", headers=ada.headers)
    assert expired.json()["error"]["code"] == "access_token_expired"
    for header, code in (
        ("Bearer bk_pat_short", "invalid_access_token"),
        ("Basic abc", "invalid_access_token"),
    ):
        response = await client.get("/v1/user", headers={"Authorization": header})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == code
    assert (await client.get("/v1/user")).json()["error"]["code"] == "not_authenticated"


async def test_failed_sign_ins_show_in_the_accounts_security_log(
    client: httpx.AsyncClient, database: None
) -> None:
    ada = await make_person("ada@example.com")
    await client.post("/v1/auth/login", json={"email": "ada@example.com", "password": "guess"})
    events = (await client.get("/v1/user/audit_events", headers=ada.headers)).json()["data"]
    assert [(e["action"], e["details"]["reason"]) for e in events] == [
        ("user.login_failed", "invalid_credentials")
    ]
    assert await AuditEvent.filter(action="user.login_failed", target_id=ada.user.id).exists()


async def test_renaming_yourself(client: httpx.AsyncClient, database: None) -> None:
    ada = await make_person("ada@example.com")
    renamed = await client.patch("/v1/user", json={"name": "Ada L."}, headers=ada.headers)
    assert renamed.json()["name"] == "Ada L."
    stray = await client.patch("/v1/user", json={"email": "x@y.z"}, headers=ada.headers)
    assert stray.status_code == 400


async def test_guessing_the_current_password_is_throttled_like_sign_in_and_audited(
    client: httpx.AsyncClient, database: None
) -> None:
    """A personal access token's holder guessing the password it does not know: the slot is
    taken before the password is hashed, so guesses sent at once stop at the sign-in limit (5
    per account), and then even the right password waits for the window."""
    ada = await make_person("ada@example.com")
    guesses = await asyncio.gather(*(
        client.post("/v1/user/password", headers=ada.headers,
                    json={"current_password": f"guess {n}", "new_password": "mine now, thanks"})
        for n in range(12)
    ))  # fmt: skip
    statuses = sorted(guess.status_code for guess in guesses)
    assert statuses == [400] * 5 + [429] * 7, statuses
    locked = next(guess for guess in guesses if guess.status_code == 429)
    assert locked.json()["error"]["code"] == "too_many_login_attempts"
    assert int(locked.headers["retry-after"]) > 0
    right = await client.post("/v1/user/password", headers=ada.headers,
                              json={"current_password": PASSWORD,
                                    "new_password": "mine now, thanks"})  # fmt: skip
    assert right.status_code == 429
    signed_in = await client.post(
        "/v1/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
    )
    assert signed_in.status_code == 429  # one account, one count
    failed = await AuditEvent.filter(action="user.password_change_failed", target_id=ada.user.id)
    reasons = sorted(event.details["reason"] for event in failed)
    assert reasons == ["incorrect_password"] * 5 + ["locked"] * 8


async def test_a_missing_current_password_says_it_is_missing(
    client: httpx.AsyncClient, database: None
) -> None:
    ada = await make_person("ada@example.com")
    missing = await client.post("/v1/user/password", headers=ada.headers,
                                json={"new_password": "a brand new passphrase"})  # fmt: skip
    assert missing.status_code == 400
    error = missing.json()["error"]
    assert (error["code"], error["param"]) == ("parameter_missing", "current_password")
    assert "missing" in error["message"]


async def test_sessions_are_listed_with_the_current_one_marked_and_revoked_one_by_one(
    client: httpx.AsyncClient, database: None
) -> None:
    ada = await make_person("ada@example.com")
    await make_person("bob@example.com")
    base_url = str(client.base_url)
    async with (
        httpx.AsyncClient(base_url=base_url, headers={"User-Agent": "laptop/1.0"}) as laptop,
        httpx.AsyncClient(base_url=base_url, headers={"User-Agent": "phone/2.0"}) as phone,
        httpx.AsyncClient(base_url=base_url) as bobs,
    ):
        await signed_in(laptop, "ada@example.com")
        await signed_in(phone, "ada@example.com")
        await signed_in(bobs, "bob@example.com")
        listed = await laptop.get("/v1/user/sessions")
        assert listed.status_code == 200, listed.text
        sessions = listed.json()["data"]
        assert [(s["user_agent"], s["current"], s["method"]) for s in sessions] == [
            ("phone/2.0", False, "password"),
            ("laptop/1.0", True, "password"),
        ]
        assert sessions[0]["ip"] == "127.0.0.1"
        assert sessions[0]["expires_at"] > sessions[0]["created_at"]
        phone_id = sessions[0]["id"]
        # A personal access token sees the same sessions, none of them its own.
        with_token = (await client.get("/v1/user/sessions", headers=ada.headers)).json()
        assert [s["current"] for s in with_token["data"]] == [False, False]

        revoked = await laptop.delete(f"/v1/user/sessions/{phone_id}")
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["revoked_at"] is not None
        assert revoked.json()["current"] is False
        signed_out = await phone.get("/v1/user")
        assert signed_out.status_code == 401
        assert signed_out.json()["error"]["code"] == "session_expired"
        assert (await laptop.get("/v1/user")).status_code == 200
        left = (await laptop.get("/v1/user/sessions")).json()["data"]
        assert [s["user_agent"] for s in left] == ["laptop/1.0"]
        again = await laptop.delete(f"/v1/user/sessions/{phone_id}")
        assert again.json()["revoked_at"] == revoked.json()["revoked_at"]

        # Another user's session is out of reach, as if it did not exist.
        bob_session = (await bobs.get("/v1/user/sessions")).json()["data"][0]["id"]
        for method in ("GET", "DELETE"):
            foreign = await laptop.request(method, f"/v1/user/sessions/{bob_session}")
            assert foreign.status_code == 404, method
        assert (await bobs.get("/v1/user")).status_code == 200

        # Revoking the current session is signing out.
        own = left[0]["id"]
        assert (await laptop.delete(f"/v1/user/sessions/{own}")).json()["current"] is True
        assert (await laptop.get("/v1/user")).status_code == 401
    events = await AuditEvent.filter(action="session.revoked").order_by("created_at")
    assert [(e.target_id, e.actor_id, e.details["current"]) for e in events] == [
        (phone_id, ada.user.id, False),
        (own, ada.user.id, True),
    ]


async def test_a_password_change_ends_the_other_sessions_and_keeps_this_browser(
    client: httpx.AsyncClient, database: None
) -> None:
    await make_person("ada@example.com")
    async with httpx.AsyncClient(base_url=str(client.base_url)) as other:
        await signed_in(client, "ada@example.com")
        await signed_in(other, "ada@example.com")
        changed = await client.post(
            "/v1/user/password",
            json={"current_password": PASSWORD, "new_password": "a brand new passphrase"},
        )
        assert changed.status_code == 200, changed.text
        assert (await other.get("/v1/user")).status_code == 401
        sessions = (await client.get("/v1/user/sessions")).json()["data"]
        assert [s["current"] for s in sessions] == [True]
