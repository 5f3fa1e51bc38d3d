"""Outbound email through a pluggable sender, every message logged in ``notifications``.

``BRIK_MAIL_SENDER`` picks the sender: ``smtp`` (through the server in ``BRIK_SMTP_URL``) or
the import path ``package.module:ClassName`` of any class implementing :class:`MailSender`
(built with the settings). Whatever the sender, each message gets a ``notifications`` row with
its body encrypted by the key ring, and a failed delivery is recorded as ``failed`` with the
reason.

Left unset, nothing can be mailed: :class:`NoMailSender` records each message as ``failed``
("no mail sender is configured") and writes nothing of it to the log, and the API says so once
when it starts. The ``log`` sender, which writes whole messages — invitation links, which are
bearer tokens, included — to the application log, is how ``brik-cloud dev`` shows them; only
``dev`` may use it: ``brik-cloud serve`` refuses to start with it, since an API's log goes to
places (aggregators, support tickets) that must never hold a way into an organization.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol
from urllib.parse import unquote, urlsplit

from controlplane.crypto import KeyRing
from controlplane.models import Notification
from controlplane.settings import Settings

logger = logging.getLogger("brik.mail")


@dataclass(frozen=True, slots=True)
class Email:
    to: str
    subject: str
    body: str
    kind: str
    organization_id: str | None = None


class MailSender(Protocol):
    name: str

    async def deliver(self, email: Email) -> None:
        """Hand ``email`` over for delivery; raise to report a failure."""


LOG_SENDER = "log"
NOT_CONFIGURED = "no mail sender is configured (BRIK_MAIL_SENDER)"


class MailNotConfigured(RuntimeError):
    """There is no mail sender: the message cannot go out."""


class NoMailSender:
    """What an API without ``BRIK_MAIL_SENDER`` has: every message fails, quietly."""

    name = "none"

    async def deliver(self, email: Email) -> None:
        raise MailNotConfigured(NOT_CONFIGURED)


class LogMailSender:
    """Writes each message to the log (``brik.mail``): ``brik-cloud dev`` only."""

    name = "log"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def deliver(self, email: Email) -> None:
        logger.info(
            "email to %s: %s\n%s",
            email.to,
            email.subject,
            email.body,
            extra={"mail_kind": email.kind, "recipient": email.to},
        )


# URL scheme → default port and how TLS starts.
SMTP_SCHEMES: dict[str, tuple[int, str | None]] = {
    "smtp": (25, None),
    "smtp+starttls": (587, "starttls"),
    "smtps": (465, "tls"),
}


class SmtpMailSender:
    """Sends through an SMTP server: ``BRIK_SMTP_URL`` says where and how.

    ``smtp://host:25`` (a local relay, no TLS), ``smtp+starttls://user:password@host:587``
    (STARTTLS, required) or ``smtps://user:password@host:465`` (TLS from the first byte); user
    and password, when given, log in. One connection per message, in a thread (mail is rare:
    invitations and quota warnings).
    """

    name = "smtp"

    def __init__(self, settings: Settings) -> None:
        if settings.smtp_url is None:
            raise ValueError("BRIK_MAIL_SENDER=smtp needs BRIK_SMTP_URL (smtp+starttls://…)")
        url = urlsplit(settings.smtp_url.get_secret_value())
        if url.scheme not in SMTP_SCHEMES or not url.hostname:
            raise ValueError(
                "BRIK_SMTP_URL must look like smtp://host:25, "
                "smtp+starttls://user:password@host:587 or smtps://user:password@host:465"
            )
        default_port, self._tls = SMTP_SCHEMES[url.scheme]
        if url.username and self._tls is None:
            raise ValueError(
                "BRIK_SMTP_URL has a password but no TLS: use smtp+starttls:// or smtps:// "
                "so it is not sent in the clear"
            )
        self._host, self._port = url.hostname, url.port or default_port
        self._user = unquote(url.username) if url.username else None
        self._password = unquote(url.password) if url.password else ""
        self._sender = settings.mail_from
        self._timeout = settings.smtp_timeout_seconds
        self._context = ssl.create_default_context(
            cafile=str(settings.smtp_ca_file) if settings.smtp_ca_file else None
        )

    def message(self, email: Email) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = email.to
        message["Subject"] = " ".join(email.subject.split())  # no header injection
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=self._host)
        message["X-Brik-Kind"] = email.kind
        message.set_content(email.body)
        return message

    async def deliver(self, email: Email) -> None:
        await asyncio.to_thread(self._send, self.message(email))

    def _send(self, message: EmailMessage) -> None:
        if self._tls == "tls":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                self._host, self._port, timeout=self._timeout, context=self._context
            )
        else:
            client = smtplib.SMTP(self._host, self._port, timeout=self._timeout)
        with client:
            if self._tls == "starttls":
                client.starttls(context=self._context)
            if self._user:
                client.login(self._user, self._password)
            client.send_message(message)


def warn_if_mail_cannot_be_sent(sender: MailSender) -> None:
    """Say at start-up, once, what an API without a mail sender cannot do."""
    if isinstance(sender, NoMailSender):
        logger.warning(
            "No mail sender is configured (BRIK_MAIL_SENDER): invitations and quota warnings "
            "cannot be mailed. Set BRIK_MAIL_SENDER=smtp and BRIK_SMTP_URL (see "
            "docs/configuration.md)."
        )


def load_sender(settings: Settings) -> MailSender:
    if settings.mail_sender is None:
        return NoMailSender()
    if settings.mail_sender == LOG_SENDER:
        return LogMailSender(settings)
    if settings.mail_sender == "smtp":
        return SmtpMailSender(settings)
    module_name, _, class_name = settings.mail_sender.partition(":")
    try:
        sender_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(
            f"BRIK_MAIL_SENDER={settings.mail_sender!r} is not 'log', 'smtp' nor an importable "
            f"'module:Class' ({exc})"
        ) from None
    sender: MailSender = sender_class(settings)
    return sender


async def send(email: Email, sender: MailSender, keyring: KeyRing) -> Notification:
    """Deliver ``email`` and record the attempt; never raises for a delivery failure."""
    status, error = "sent", ""
    try:
        await sender.deliver(email)
    except MailNotConfigured as exc:  # said once at start-up; no traceback per message
        logger.warning("%s email to %s not sent: %s", email.kind, email.to, exc)
        status, error = "failed", str(exc)
    except Exception as exc:  # a sender's failure is recorded, not the caller's problem
        logger.exception("mail sender %s failed", sender.name)
        status, error = "failed", f"{type(exc).__name__}: {exc}"[:2000]
    return await Notification.create(
        organization_id=email.organization_id,
        kind=email.kind,
        recipient=email.to,
        subject=email.subject,
        body_encrypted=keyring.encrypt(email.body.encode()),
        sender=sender.name,
        status=status,
        error=error,
    )
