"""Mail senders for tests, loaded by import path like a deployment's own sender would be."""

from __future__ import annotations

from controlplane.mail import Email
from controlplane.settings import Settings


class RecordingSender:
    name = "recording"
    sent: list[Email] = []  # noqa: RUF012  (shared on purpose: the app builds its own instance)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def deliver(self, email: Email) -> None:
        RecordingSender.sent.append(email)


class BrokenSender:
    name = "broken"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def deliver(self, email: Email) -> None:
        raise ConnectionRefusedError("smtp.example.com:587 refused the connection")
