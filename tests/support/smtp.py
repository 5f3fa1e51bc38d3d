"""A real SMTP server for tests (aiosmtpd, in a thread): STARTTLS or TLS from the first byte
with a trustme certificate, AUTH against one account, and every message it accepted."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.support.processes import free_port

USER, PASSWORD = "brik", "s3cret pass"


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage
    over_tls: bool
    login: str | None


@dataclass
class MailServer:
    port: int
    ca_file: Path
    received: list[Received] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        auth = session.auth_data
        login = auth.login.decode() if isinstance(auth, LoginPassword) else None
        tls = server.transport.get_extra_info("ssl_object") is not None  # either way TLS began
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message,
                                      tls, login))  # fmt: skip
        return "250 Message accepted for delivery"


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> (
    AuthResult
):  # fmt: skip
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USER.encode(), PASSWORD.encode(),
    )  # fmt: skip
    return AuthResult(success=ok, handled=False, auth_data=data)


@contextlib.contextmanager
def mail_server(tmp_path: Path, *, implicit_tls: bool = False) -> Iterator[MailServer]:
    """STARTTLS (required) with AUTH on a free port, or TLS from the first byte."""
    ca = trustme.CA()
    certificate = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(context)
    ca_file = tmp_path / "smtp-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = MailServer(port=free_port(), ca_file=ca_file)
    options: dict[str, Any] = {"authenticator": _authenticator, "auth_require_tls": True}
    if implicit_tls:
        # aiosmtpd counts only STARTTLS as TLS for AUTH; this connection is TLS throughout.
        options["auth_require_tls"] = False
        controller = Controller(server, hostname="127.0.0.1", port=server.port,
                                ssl_context=context, **options)  # fmt: skip
    else:
        controller = Controller(server, hostname="127.0.0.1", port=server.port, tls_context=context,
                                require_starttls=True, **options)  # fmt: skip
    controller.start()
    try:
        yield server
    finally:
        controller.stop()
