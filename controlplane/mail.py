"""Outbound email through a pluggable sender, every message logged in ``notifications``.

``BRIK_MAIL_SENDER`` picks the sender: ``log`` (the default: writes the message to the
application log, which is how ``brik-cloud dev`` shows invitation links) or the import path
``package.module:ClassName`` of any class implementing :class:`MailSender` (built with the
settings). Whatever the sender, each message gets a ``notifications`` row with its body
encrypted by the key ring, and a failed delivery is recorded as ``failed`` with the reason.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Protocol

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


class LogMailSender:
    """Writes each message to the log (``brik.mail``), for development and small installs."""

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


def load_sender(settings: Settings) -> MailSender:
    if settings.mail_sender == "log":
        return LogMailSender(settings)
    module_name, _, class_name = settings.mail_sender.partition(":")
    try:
        sender_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(
            f"BRIK_MAIL_SENDER={settings.mail_sender!r} is not 'log' nor an importable "
            f"'module:Class' ({exc})"
        ) from None
    sender: MailSender = sender_class(settings)
    return sender


async def send(email: Email, sender: MailSender, keyring: KeyRing) -> Notification:
    """Deliver ``email`` and record the attempt; never raises for a delivery failure."""
    status, error = "sent", ""
    try:
        await sender.deliver(email)
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
