"""The sandbox delivers everything but its documented magic tokens, which behave as promised, and
records each push as the live provider for its platform would have sent it."""

from __future__ import annotations

import uuid

import pytest

from controlplane.payloads import PushContent
from workers.providers.apns import ApnsPush
from workers.providers.base import OutcomeKind, Recipient, Unsendable
from workers.providers.fcm import FcmPush
from workers.providers.registry import LIVE
from workers.providers.sandbox import MAGIC_TOKENS, RECENT_SENDS, SandboxProvider


def apns(token: str, attempt: int = 1) -> ApnsPush:
    return ApnsPush(token=token, apns_id=str(uuid.uuid4()), payload={}, attempt=attempt)


async def test_ordinary_tokens_are_delivered_and_recorded() -> None:
    sandbox = SandboxProvider()
    outcomes = await sandbox.send([apns("ab" * 32), FcmPush({"token": "x" * 40})])
    assert [o.kind for o in outcomes] == [OutcomeKind.DELIVERED, OutcomeKind.DELIVERED]
    assert len(sandbox.sent) == 2


@pytest.mark.parametrize("token", sorted(MAGIC_TOKENS))
async def test_each_magic_token_does_what_its_table_says(token: str) -> None:
    script = MAGIC_TOKENS[token]
    sandbox = SandboxProvider()
    push_for = (
        (lambda n: apns(token, n))
        if not token.startswith("brik-sandbox:")
        else (lambda n: FcmPush({"token": token}, attempt=n))
    )
    kinds = [(await sandbox.send([push_for(n)]))[0].kind for n in range(1, 5)]
    if script.failures is None:
        assert kinds == [script.outcome.kind] * 4
        assert list(sandbox.sent) == []
    else:
        expected = [script.outcome.kind] * script.failures
        expected += [OutcomeKind.DELIVERED] * (4 - script.failures)
        assert kinds == expected


async def test_a_long_running_worker_keeps_only_the_recent_sends() -> None:
    sandbox = SandboxProvider()
    pushes = [apns(f"ab{n:062x}") for n in range(RECENT_SENDS + 500)]
    for start in range(0, len(pushes), 100):  # a worker sends batch after batch
        await sandbox.send(pushes[start : start + 100])
    assert len(sandbox.sent) == RECENT_SENDS  # memory stays flat, however long it runs
    assert list(sandbox.sent) == pushes[-RECENT_SENDS:]  # the newest are the ones kept


def test_each_push_is_spelled_as_the_live_provider_for_its_platform_would() -> None:
    sandbox = SandboxProvider(LIVE)
    alert = PushContent.model_validate({"kind": "alert", "alert": {"title": "Hi"}})
    ios = sandbox.request(alert, Recipient(token="ab" * 32, platform="ios", message_id="m1"))
    android = sandbox.request(alert, Recipient(token="t" * 40, platform="android", message_id="m2"))
    shown = {"aps": {"alert": {"title": "Hi"}}}
    assert ios == ApnsPush(token="ab" * 32, apns_id="m1", payload=shown, push_type="alert",
                           topic="sandbox", priority=10)  # fmt: skip
    assert isinstance(android, FcmPush)
    assert android.message["notification"] == {"title": "Hi"}
    with pytest.raises(Unsendable, match="the sandbox does not send to web devices"):
        sandbox.request(alert, Recipient(token="w", platform="web", message_id="m3"))
