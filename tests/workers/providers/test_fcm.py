"""The FCM provider against the fake FCM: every answer Google can give, as the worker sees it."""

from __future__ import annotations

from controlplane.settings import Settings
from tests.support.google import new_service_account
from workers.fakes.fcm import (
    INTERNAL,
    INVALID_TOKEN,
    QUOTA_EXCEEDED,
    SENDER_ID_MISMATCH,
    THIRD_PARTY_AUTH_ERROR,
    UNAVAILABLE,
    UNREGISTERED,
    FakeFCM,
    FcmOutcome,
)
from workers.providers.base import FcmPush, OutcomeKind
from workers.providers.fcm import FcmProvider


def provider(fake: FakeFCM) -> FcmProvider:
    info, public_key = new_service_account("https://oauth2.googleapis.com/token")
    fake.add_account(info["client_email"], info["project_id"], info["private_key_id"], public_key)
    settings = Settings(fcm_base_url=fake.base_url, fcm_token_url=fake.token_url)
    return FcmProvider(service_account=info, settings=settings)


async def test_each_google_answer_becomes_the_right_outcome(fcm_fake: FakeFCM) -> None:
    scripted: dict[str, tuple[FcmOutcome | None, OutcomeKind]] = {
        "t-ok": (None, OutcomeKind.DELIVERED),
        "t-gone": (UNREGISTERED, OutcomeKind.INVALID_TOKEN),
        "t-bad": (INVALID_TOKEN, OutcomeKind.INVALID_TOKEN),
        "t-quota": (QUOTA_EXCEEDED, OutcomeKind.RETRY),
        "t-500": (INTERNAL, OutcomeKind.RETRY),
        "t-503": (UNAVAILABLE, OutcomeKind.RETRY),
        "t-auth": (THIRD_PARTY_AUTH_ERROR, OutcomeKind.FAILED),
        # A token of another Firebase project: the token is wrong for us, not our credential.
        "t-other-project": (SENDER_ID_MISMATCH, OutcomeKind.INVALID_TOKEN),
        # A 404 that is not UNREGISTERED (a wrong endpoint) says nothing about the token.
        "t-404": (FcmOutcome(404, "NOT_FOUND", None, "Not found."), OutcomeKind.FAILED),
    }
    for token, (outcome, _) in scripted.items():
        if outcome is not None:
            fcm_fake.script(token, outcome)
    fcm = provider(fcm_fake)
    outcomes = await fcm.send([FcmPush({"token": token, "data": {"k": "v"}}) for token in scripted])
    for (token, (_, kind)), outcome in zip(scripted.items(), outcomes, strict=True):
        assert outcome.kind is kind, (token, outcome)
    assert outcomes[0].provider_message_id is not None
    assert outcomes[3].retry_after == 30  # Retry-After is honoured by the caller, not slept on
    assert "service-account" in outcomes[6].reason


async def test_a_malformed_message_is_a_permanent_failure_not_a_dead_token(
    fcm_fake: FakeFCM,
) -> None:
    fcm = provider(fcm_fake)
    [outcome] = await fcm.send([FcmPush({"token": "t", "android": {"ttl": "soon"}})])
    assert outcome.kind is OutcomeKind.FAILED
    assert "ttl" in outcome.reason
