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
