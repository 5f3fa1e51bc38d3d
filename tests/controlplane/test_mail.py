"""The mail sender is pluggable by import path; every attempt is logged in ``notifications``."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from controlplane.app import create_app
from controlplane.mail import NOT_CONFIGURED, Email, SmtpMailSender, load_sender
from controlplane.models import Invitation, Notification
from controlplane.settings import Settings
from tests.support.mail import RecordingSender
from tests.support.processes import brik_cloud_command, free_port, server_environment
from tests.support.servers import serving
from tests.support.smtp import PASSWORD, USER, MailServer, mail_server
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


def smtp_settings(make_settings: Callable[..., Settings], server: MailServer, url: str) -> (
    Settings
):  # fmt: skip
    return make_settings(
        mail_sender="smtp",
        smtp_url=url.format(port=server.port, user=USER, password=quote(PASSWORD)),
        smtp_ca_file=server.ca_file,
        mail_from="Brik Cloud <noreply@brik.example>",
    )


async def test_invitations_go_out_through_smtp_with_starttls_and_login(
    make_settings: Callable[..., Settings], database: None, tmp_path: Path
) -> None:
    with mail_server(tmp_path) as server:
        settings = smtp_settings(make_settings, server,
                                 "smtp+starttls://{user}:{password}@127.0.0.1:{port}")  # fmt: skip
        response = await invite_through(settings)
    assert response.status_code == 201, response.text
    [received] = server.received
    assert (received.over_tls, received.login) == (True, USER)
    assert received.sender == "noreply@brik.example"
    assert received.recipients == ["new@example.com"]
    assert received.message["From"] == "Brik Cloud <noreply@brik.example>"
    assert received.message["To"] == "new@example.com"
    assert received.message["X-Brik-Kind"] == "invitation"
    assert "Acme" in received.message["Subject"]
    assert "bk_inv_" in received.message.get_content()
    notification = await Notification.get()
    assert (notification.sender, notification.status) == ("smtp", "sent")


async def test_smtps_speaks_tls_from_the_first_byte(
    make_settings: Callable[..., Settings], database: None, tmp_path: Path
) -> None:
    with mail_server(tmp_path, implicit_tls=True) as server:
        settings = smtp_settings(make_settings, server,
                                 "smtps://{user}:{password}@127.0.0.1:{port}")  # fmt: skip
        assert (await invite_through(settings)).status_code == 201
    [received] = server.received
    assert received.over_tls
    assert (await Notification.get()).status == "sent"


@pytest.mark.parametrize(
    ("url", "trust", "reason"),
    [
        ("smtp+starttls://{user}:wrong@127.0.0.1:{port}", True, "535"),
        ("smtp+starttls://{user}:{password}@127.0.0.1:{port}", False, "CERTIFICATE_VERIFY_FAILED"),
        ("smtp://127.0.0.1:{port}", True, "530"),  # this server insists on STARTTLS
    ],
)
async def test_a_refused_login_an_untrusted_server_or_no_tls_is_recorded_as_failed(
    make_settings: Callable[..., Settings], database: None, tmp_path: Path,
    url: str, trust: bool, reason: str,
) -> None:  # fmt: skip
    with mail_server(tmp_path) as server:
        settings = smtp_settings(make_settings, server, url)
        if not trust:
            settings = settings.model_copy(update={"smtp_ca_file": None})
        response = await invite_through(settings)
    assert response.status_code == 201  # the invitation stands; it can be re-sent
    assert server.received == []
    notification = await Notification.get()
    assert notification.status == "failed"
    assert reason in notification.error


def test_a_subject_cannot_smuggle_headers(make_settings: Callable[..., Settings]) -> None:
    sender = SmtpMailSender(make_settings(mail_sender="smtp", smtp_url="smtp://127.0.0.1"))
    message = sender.message(
        Email(to="a@example.com", subject="Hi\r\nBcc: everyone@example.com", body="x", kind="t")
    )
    assert message["Subject"] == "Hi Bcc: everyone@example.com"
    assert message["Bcc"] is None


@pytest.mark.parametrize(
    "url", [None, "http://mail.example.com", "smtp://", "smtp://user:password@mail.example.com"]
)
def test_smtp_without_a_usable_url_is_a_clear_error(
    make_settings: Callable[..., Settings], url: str | None
) -> None:
    with pytest.raises(ValueError, match="BRIK_SMTP_URL"):
        load_sender(make_settings(mail_sender="smtp", smtp_url=url))


async def test_serve_without_a_mail_sender_says_so_once_and_logs_no_invitation(
    database_url: str, redis_url: str, database: None, tmp_path: Path
) -> None:
    # The log sender was the default everywhere, so `serve` wrote every invitation link — a
    # bearer token into the organization — into the API's log.
    acme = await make_tenant("Acme")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = server_environment(database_url, redis_url, "brik-test:mail")
    log = tmp_path / "serve.log"
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *brik_cloud_command(), "serve", "--host", "127.0.0.1", "--port", str(port),
            env=env, stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
        try:
            async with httpx.AsyncClient(base_url=url) as client:
                while True:
                    assert process.returncode is None, log.read_text()
                    with contextlib.suppress(httpx.TransportError):
                        if (await client.get("/healthz")).status_code == 200:
                            break
                    await asyncio.sleep(0.1)
                for email in ("one@example.com", "two@example.com"):
                    invited = await client.post(
                        f"/v1/organizations/{acme.organization.id}/invitations",
                        json={"email": email}, headers=acme.owner.headers,
                    )  # fmt: skip
                    assert invited.status_code == 201, invited.text
        finally:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)
    text = log.read_text()
    assert text.count("No mail sender is configured") == 1
    assert "invitations and quota warnings cannot be mailed" in text
    assert "bk_inv_" not in text
    assert "accept-invitation" not in text
    notifications = await Notification.filter(kind="invitation").values_list("status", "error")
    assert notifications == [("failed", NOT_CONFIGURED)] * 2


def test_serve_refuses_the_log_sender(database_url: str, redis_url: str) -> None:
    env = server_environment(database_url, redis_url, "brik-test:mail", BRIK_MAIL_SENDER="log")
    result = subprocess.run(
        [*brik_cloud_command(), "serve", "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "only brik-cloud dev uses it" in result.stderr
