"""The fake FCM, exercised by pyfcm + google-auth (driven by our FcmSender) over sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from controlplane.settings import Settings
from tests.support.google import new_service_account
from workers.fakes.fcm import (
    INTERNAL,
    INVALID_TOKEN,
    QUOTA_EXCEEDED,
    THIRD_PARTY_AUTH_ERROR,
    UNAVAILABLE,
    UNREGISTERED,
    FakeFCM,
    FcmOutcome,
)
from workers.providers.fcm_connection import CREDENTIALS_REFUSED, FcmSender

TOKEN = "fcm-token-" + "x" * 140


@pytest.fixture
async def sender_for() -> AsyncIterator[Callable[..., FcmSender]]:
    """Senders for a fake (with a service account it knows unless ``register=False``), closed
    after the test."""
    made: list[FcmSender] = []

    def make(fake: FakeFCM, *, register: bool = True, **kwargs: Any) -> FcmSender:
        info, public_key = new_service_account("https://oauth2.googleapis.com/token")
        if register:
            fake.add_account(info["client_email"], info["project_id"], info["private_key_id"],
                             public_key)  # fmt: skip
        settings = Settings(fcm_base_url=fake.base_url, fcm_token_url=fake.token_url)
        made.append(FcmSender(info, settings, **kwargs))
        return made[-1]

    yield make
    for sender in made:
        await sender.close()


def alert(token: str = TOKEN, **extra: Any) -> dict[str, Any]:
    return {"token": token, "notification": {"title": "Order shipped"}, **extra}


async def test_a_message_is_sent_with_a_token_from_the_oauth_endpoint(
    fcm_fake: FakeFCM, sender_for: Callable[..., FcmSender]
) -> None:
    sender = sender_for(fcm_fake)
    first = await sender.send(alert(android={"priority": "HIGH", "ttl": "3600s"}))
    second = await sender.send(alert())
    assert first.delivered
    assert second.delivered
    assert first.message_name is not None
    assert first.message_name.startswith("projects/brik-test-app/messages/")
    assert fcm_fake.token_requests == 1  # the access token is reused
    assert [m.token for m in fcm_fake.accepted()] == [TOKEN, TOKEN]
    assert fcm_fake.accepted()[0].message["android"] == {"priority": "HIGH", "ttl": "3600s"}


async def test_scripted_errors_arrive_with_their_fcm_codes(
    fcm_fake: FakeFCM, sender_for: Callable[..., FcmSender]
) -> None:
    fcm_fake.script(
        TOKEN, UNREGISTERED, INVALID_TOKEN, INTERNAL, UNAVAILABLE, THIRD_PARTY_AUTH_ERROR
    )
    sender = sender_for(fcm_fake)
    results = [await sender.send(alert()) for _ in range(6)]
    assert [(r.status, r.error_code) for r in results] == [
        (404, "UNREGISTERED"),
        (400, "INVALID_ARGUMENT"),
        (500, "INTERNAL"),
        (503, "UNAVAILABLE"),
        (401, "THIRD_PARTY_AUTH_ERROR"),
        (200, None),
    ]
    assert "registration token" in results[1].error_message
    # No hidden retries: one request per send, even for the 503.
    assert len(fcm_fake.received) == 6


async def test_retry_after_is_returned_capped_never_slept_on(
    fcm_fake: FakeFCM, sender_for: Callable[..., FcmSender]
) -> None:
    fcm_fake.script(
        TOKEN,
        FcmOutcome(
            429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "Quota", retry_after=3600, delay=0.3
        ),
    )
    sender = sender_for(fcm_fake, max_retry_after=120)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticking = asyncio.create_task(ticker())
    result = await sender.send(alert())
    ticking.cancel()
    assert (result.status, result.error_code, result.retry_after) == (429, "QUOTA_EXCEEDED", 120)
    assert len(fcm_fake.received) == 1  # pyfcm would have slept an hour and sent again
    assert ticks > 1  # the event loop kept running while the request was in flight


async def test_an_expired_access_token_is_refreshed_once(
    fcm_fake: FakeFCM, sender_for: Callable[..., FcmSender]
) -> None:
    sender = sender_for(fcm_fake)
    assert (await sender.send(alert())).delivered
    fcm_fake.expire_access_tokens()
    assert (await sender.send(alert())).delivered
    assert fcm_fake.token_requests == 2


async def test_a_service_account_google_does_not_know_is_a_credential_error(
    fcm_fake: FakeFCM, sender_for: Callable[..., FcmSender]
) -> None:
    result = await sender_for(fcm_fake, register=False).send(alert())
    assert (result.status, result.error_code) == (401, CREDENTIALS_REFUSED)
    assert fcm_fake.received == []


async def test_invalid_messages_are_refused_like_fcm_does(
    fcm_fake: FakeFCM, sender_for: Callable[..., FcmSender]
) -> None:
    sender = sender_for(fcm_fake)
    too_big = await sender.send(alert(data={"blob": "x" * 5000}))
    bad_ttl = await sender.send(alert(android={"ttl": "an hour"}))
    not_strings = await sender.send(alert(data={"count": 3}))
    for result in (too_big, bad_ttl, not_strings):
        assert (result.status, result.error_code) == (400, "INVALID_ARGUMENT")
    assert "too big" in too_big.error_message
    assert QUOTA_EXCEEDED.retry_after == 30


async def test_concurrent_sends_share_one_access_token(
    fcm_fake: FakeFCM, sender_for: Callable[..., FcmSender]
) -> None:
    sender = sender_for(fcm_fake)
    results = await asyncio.gather(*(sender.send(alert(f"token-{n:02d}" * 3)) for n in range(20)))
    assert all(result.delivered for result in results)
    assert fcm_fake.token_requests == 1
    assert len(fcm_fake.accepted()) == 20
