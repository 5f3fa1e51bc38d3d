"""The mail sender is pluggable by import path; every attempt is logged in ``notifications``."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from controlplane.app import create_app
from controlplane.mail import load_sender
from controlplane.models import Invitation, Notification
from controlplane.settings import Settings
from tests.support.mail import RecordingSender
from tests.support.servers import serving
from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database


async def invite_through(settings: Settings) -> httpx.Response:
    acme = await make_tenant("Acme")
    async with serving(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        return await client.post(
            f"/v1/organizations/{acme.organization.id}/invitations",
            json={"email": "new@example.com"},
            headers=acme.owner.headers,
        )


async def test_a_configured_sender_gets_the_mail(
    make_settings: Callable[..., Settings], database: None
) -> None:
    RecordingSender.sent.clear()
    response = await invite_through(make_settings(mail_sender="tests.support.mail:RecordingSender"))
    assert response.status_code == 201
    [email] = RecordingSender.sent
    assert (email.to, email.kind) == ("new@example.com", "invitation")
    assert "bk_inv_" in email.body
    assert (await Notification.get()).sender == "recording"


async def test_a_failing_sender_is_recorded_and_the_invitation_stands(
    make_settings: Callable[..., Settings], database: None
) -> None:
    response = await invite_through(make_settings(mail_sender="tests.support.mail:BrokenSender"))
    assert response.status_code == 201  # the invitation exists; it can be re-sent
    notification = await Notification.get()
    assert notification.status == "failed"
    assert "refused the connection" in notification.error
    assert await Invitation.filter(email="new@example.com").exists()


@pytest.mark.parametrize("path", ["nope", "tests.support.mail:Missing", "no.such.module:Sender"])
def test_a_sender_that_cannot_be_loaded_is_a_clear_error(
    make_settings: Callable[..., Settings], path: str
) -> None:
    with pytest.raises(ValueError, match="BRIK_MAIL_SENDER"):
        load_sender(make_settings(mail_sender=path))
