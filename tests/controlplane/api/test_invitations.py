"""Invitations: sent through the mail sender, redeemed once, within their lifetime."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from starlette.applications import Starlette

from controlplane.mail import LOG_SENDER
from controlplane.models import AuditEvent, Invitation, Membership, Notification, Role, User
from controlplane.settings import Settings
from tests.support.secret_keys import NEW, api_at
from tests.support.tenants import make_person, make_tenant

pytestmark = pytest.mark.database

TOKEN = re.compile(r"bk_inv_[0-9A-Za-z]+")


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """As under brik-cloud dev: mail goes to the log, where these tests read the links."""
    return make_settings(mail_sender=LOG_SENDER)


async def invite(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    organization_id: str,
    email: str,
    role: str = "developer",
) -> httpx.Response:
    return await client.post(
        f"/v1/organizations/{organization_id}/invitations",
        json={"email": email, "role": role},
        headers=headers,
    )


async def test_an_invitation_is_mailed_logged_and_redeemed_once(
    app: Starlette, client: httpx.AsyncClient, database: None, caplog: pytest.LogCaptureFixture
) -> None:
    acme = await make_tenant("Acme")
    with caplog.at_level(logging.INFO, logger="brik.mail"):
        sent = await invite(
            client, acme.people[Role.ADMIN].headers, acme.organization.id, "New.Hire@Example.com"
        )
    assert sent.status_code == 201, sent.text
    assert sent.json()["status"] == "pending"
    assert sent.json()["email"] == "new.hire@example.com"
    # The default sender writes the mail to the log …
    mailed = [r.getMessage() for r in caplog.records if r.name == "brik.mail"]
    assert len(mailed) == 1
    token = TOKEN.search(mailed[0])
    assert token is not None
    # … and every message is kept in the notifications table, its body encrypted.
    notification = await Notification.get(kind="invitation")
    assert (notification.recipient, notification.status) == ("new.hire@example.com", "sent")
    assert token[0] not in notification.body_encrypted
    body = app.state.keyring.decrypt(notification.body_encrypted).decode()
    assert token[0] in body
    assert notification.organization_id == acme.organization.id

    accepted = await client.post(
        "/v1/invitations/accept",
        json={"token": token[0], "name": "New Hire", "password": "a long enough password"},
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["user_created"] is True
    assert accepted.json()["member"]["role"] == "developer"
    user = await User.get(email="new.hire@example.com")
    assert await Membership.filter(user=user, organization=acme.organization).exists()
    login = await client.post(
        "/v1/auth/login",
        json={"email": "new.hire@example.com", "password": "a long enough password"},
    )
    assert login.status_code == 200

    replay = await client.post("/v1/invitations/accept", json={"token": token[0]})
    assert replay.status_code == 400
    assert replay.json()["error"]["code"] == "invitation_unusable"
    assert await Membership.filter(user=user).count() == 1
    actions = set(await AuditEvent.all().values_list("action", flat=True))
    assert {"invitation.created", "invitation.accepted", "member.added", "user.created"} <= actions


async def test_an_existing_user_joins_without_a_new_account(
    client: httpx.AsyncClient, database: None, caplog: pytest.LogCaptureFixture
) -> None:
    acme = await make_tenant("Acme")
    bob = await make_person("bob@example.com")
    with caplog.at_level(logging.INFO, logger="brik.mail"):
        await invite(client, acme.owner.headers, acme.organization.id, "bob@example.com", "admin")
    token = TOKEN.search(caplog.text)
    assert token is not None
    accepted = await client.post("/v1/invitations/accept", json={"token": token[0]})
    assert accepted.json()["user_created"] is False
    orgs = (await client.get("/v1/organizations", headers=bob.headers)).json()["data"]
    assert [(org["id"], org["role"]) for org in orgs] == [(acme.organization.id, "admin")]


async def test_who_may_invite_whom(client: httpx.AsyncClient, database: None) -> None:
    acme = await make_tenant("Acme")
    org = acme.organization.id
    dev = await invite(client, acme.people[Role.DEVELOPER].headers, org, "x@example.com")
    assert dev.status_code == 403
    admin_owner = await invite(
        client, acme.people[Role.ADMIN].headers, org, "x@example.com", "owner"
    )
    assert admin_owner.status_code == 403
    member = await invite(client, acme.owner.headers, org, acme.people[Role.VIEWER].user.email)
    assert member.status_code == 400
    assert member.json()["error"]["code"] == "already_member"
    bad = await invite(client, acme.owner.headers, org, "not-an-email")
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "email"
    assert await Invitation.all().count() == 0


async def test_withdrawn_and_expired_invitations_cannot_be_used(
    client: httpx.AsyncClient, database: None, caplog: pytest.LogCaptureFixture
) -> None:
    acme = await make_tenant("Acme")
    org = acme.organization.id
    with caplog.at_level(logging.INFO, logger="brik.mail"):
        first = await invite(client, acme.owner.headers, org, "a@example.com")
        second = await invite(client, acme.owner.headers, org, "b@example.com")
    tokens = list(dict.fromkeys(TOKEN.findall(caplog.text)))  # each mail names it twice
    assert len(tokens) == 2
    withdrawn = await client.delete(
        f"/v1/organizations/{org}/invitations/{first.json()['id']}", headers=acme.owner.headers
    )
    assert withdrawn.json()["status"] == "revoked"
    await Invitation.filter(id=second.json()["id"]).update(
        expires_at=datetime.now(UTC) - timedelta(minutes=1)
    )
    listed = await client.get(f"/v1/organizations/{org}/invitations", headers=acme.owner.headers)
    assert {i["status"] for i in listed.json()["data"]} == {"revoked", "expired"}
    for token in tokens:
        response = await client.post(
            "/v1/invitations/accept", json={"token": token, "password": "a long enough password"}
        )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invitation_unusable"
    assert not await User.filter(email__in=["a@example.com", "b@example.com"]).exists()


async def test_a_new_account_needs_a_password_and_nothing_is_half_done(
    client: httpx.AsyncClient, database: None, caplog: pytest.LogCaptureFixture
) -> None:
    acme = await make_tenant("Acme")
    with caplog.at_level(logging.INFO, logger="brik.mail"):
        await invite(client, acme.owner.headers, acme.organization.id, "c@example.com")
    token = TOKEN.findall(caplog.text)[0]
    short = await client.post("/v1/invitations/accept", json={"token": token, "password": "short"})
    assert short.status_code == 400
    assert short.json()["error"]["param"] == "password"
    missing = await client.post("/v1/invitations/accept", json={"token": token})
    assert missing.status_code == 400
    assert missing.json()["error"]["param"] == "password"
    # The failed attempts did not use up the invitation.
    ok = await client.post(
        "/v1/invitations/accept", json={"token": token, "password": "a long enough password"}
    )
    assert ok.status_code == 200


async def test_invitations_are_listed_by_status(
    client: httpx.AsyncClient, database: None, caplog: pytest.LogCaptureFixture
) -> None:
    acme = await make_tenant("Acme")
    org, headers = acme.organization.id, acme.owner.headers
    with caplog.at_level(logging.INFO, logger="brik.mail"):
        withdrawn = await invite(client, headers, org, "a@example.com")
        resent = await invite(client, headers, org, "a@example.com")  # withdraws the first
        expired = await invite(client, headers, org, "b@example.com")
        accepted = await invite(client, headers, org, "c@example.com")
    token = TOKEN.findall(caplog.text)[-1]
    await client.post(
        "/v1/invitations/accept", json={"token": token, "password": "a long enough password"}
    )
    await Invitation.filter(id=expired.json()["id"]).update(
        expires_at=datetime.now(UTC) - timedelta(minutes=1)
    )
    listed = {}
    for status in ("pending", "revoked", "expired", "accepted"):
        response = await client.get(
            f"/v1/organizations/{org}/invitations", params={"status": status}, headers=headers
        )
        assert response.status_code == 200, response.text
        listed[status] = [(i["id"], i["status"]) for i in response.json()["data"]]
    assert listed == {
        "pending": [(resent.json()["id"], "pending")],
        "revoked": [(withdrawn.json()["id"], "revoked")],
        "expired": [(expired.json()["id"], "expired")],
        "accepted": [(accepted.json()["id"], "accepted")],
    }
    bad = await client.get(
        f"/v1/organizations/{org}/invitations", params={"status": "sent"}, headers=headers
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "status"


async def test_an_invitation_from_before_a_secret_key_rotation_is_honoured_until_the_old_key_goes(
    make_settings: Callable[..., Settings], database: None, caplog: pytest.LogCaptureFixture
) -> None:
    """Its token is only in the email, so it cannot be re-hashed: a previous key redeems it."""
    acme = await make_tenant("Acme", roles=(Role.OWNER,))
    owner = acme.owner.headers

    async def sent(client: httpx.AsyncClient, email: str) -> str:
        with caplog.at_level(logging.INFO, logger="brik.mail"):
            answer = await invite(client, owner, acme.organization.id, email)
        assert answer.status_code == 201, answer.text
        # The mail to this address (another logger may have written since).
        mailed = [r.getMessage() for r in caplog.records if email in r.getMessage()]
        token = TOKEN.search(mailed[-1])
        assert token is not None
        return token[0]

    async with api_at(make_settings, "before", mail_sender=LOG_SENDER) as before:
        redeemed, lapsed = await sent(before, "a@example.com"), await sent(before, "b@example.com")
    body = {"password": "a long enough password"}
    async with api_at(make_settings, "promoted", mail_sender=LOG_SENDER) as promoted:
        accepted = await promoted.post("/v1/invitations/accept", json={"token": redeemed, **body})
        assert accepted.status_code == 200, accepted.text
        fresh = await sent(promoted, "c@example.com")
        assert (await Invitation.get(email="c@example.com")).pepper_id == NEW.current.id
    async with api_at(make_settings, "dropped", mail_sender=LOG_SENDER) as dropped:
        refused = await dropped.post("/v1/invitations/accept", json={"token": lapsed, **body})
        assert refused.json()["error"]["code"] == "invitation_unusable"
        ok = await dropped.post("/v1/invitations/accept", json={"token": fresh, **body})
        assert ok.status_code == 200, ok.text
