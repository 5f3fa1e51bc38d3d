"""The webhook transport over real sockets: the address policy refuses before connecting (a
local receiver that the same request reaches once private networks are allowed proves it is
the policy, not the network), every address a name resolves to is checked and the one checked
is the one connected to, redirects are not followed, and little of an answer is read."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from controlplane.settings import Settings
from tests.support.servers import serving
from tests.support.webhook_receiver import Reply, WebhookReceiver
from workers.webhook_transport import EXCERPT_CHARACTERS, WebhookSender


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[WebhookReceiver, int]]:
    hooks = WebhookReceiver()
    async with serving(hooks.app) as url:
        yield hooks, int(url.rsplit(":", 1)[1])


def sender(*, allow_private: bool = False, answers: dict[str, list[str]] | None = None) -> (
    WebhookSender
):  # fmt: skip
    settings = Settings(webhook_allow_private_networks=allow_private, webhook_timeout_seconds=5)
    if answers is None:
        return WebhookSender(settings)
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return answers[host]

    built = WebhookSender(settings, resolve=resolve)
    built.asked = asked  # type: ignore[attr-defined]
    return built


REFUSED = [
    ("http://127.0.0.1:{port}/hooks", "a loopback address"),
    ("http://10.0.0.1:{port}/", "a private address"),
    ("http://192.168.1.10/", "a private address"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[::1]:{port}/", "a loopback address"),
    ("http://[::ffff:127.0.0.1]:{port}/", "a loopback address"),
    ("http://[fd00:ec2::254]/", "a private address"),
    ("http://0.0.0.0:{port}/", "an unspecified address"),
    ("http://100.64.0.1/", "carrier-grade NAT"),
    ("http://224.0.0.1/", "a multicast address"),
    ("http://localhost:{port}/", "localhost resolves to"),  # a name, resolved by the system
]


async def test_refused_addresses_are_never_connected_to(
    receiver: tuple[WebhookReceiver, int],
) -> None:
    hooks, port = receiver
    guarded = sender()
    try:
        for template, why in REFUSED:
            answer = await guarded.post(template.format(port=port), b"{}", {})
            assert answer.refused, template
            assert answer.status is None
            assert answer.error is not None
            assert why in answer.error, answer.error
            assert "BRIK_WEBHOOK_ALLOW_PRIVATE_NETWORKS" in answer.error
    finally:
        await guarded.close()
    assert hooks.received == []
    # The very same requests reach the receiver once the operator allows private networks.
    allowed = sender(allow_private=True)
    try:
        for url in (f"http://127.0.0.1:{port}/hooks", f"http://localhost:{port}/"):
            answer = await allowed.post(url, b"{}", {"Brik-Event-Id": "wev_x"})
            assert (answer.status, answer.refused) == (200, False)
    finally:
        await allowed.close()
    assert len(hooks.received) == 2


async def test_every_resolved_address_is_checked_and_the_checked_one_is_used(
    receiver: tuple[WebhookReceiver, int],
) -> None:
    hooks, port = receiver
    mixed = sender(answers={"hooks.example.com": ["93.184.216.34", "10.0.0.5"]})
    try:
        answer = await mixed.post("http://hooks.example.com/", b"{}", {})
    finally:
        await mixed.close()
    assert answer.refused
    assert answer.error is not None
    assert "hooks.example.com resolves to 10.0.0.5, a private address" in answer.error
    # A name is resolved once per connection and the address it gave is the one connected to;
    # the request still names the host it was sent to.
    rebinding = sender(allow_private=True, answers={"receiver.test": ["127.0.0.1"]})
    try:
        answer = await rebinding.post(f"http://receiver.test:{port}/in", b"{}", {})
    finally:
        await rebinding.close()
    assert answer.status == 200
    assert rebinding.asked == ["receiver.test"]  # type: ignore[attr-defined]
    (request,) = hooks.received
    assert request.headers["host"] == f"receiver.test:{port}"


async def test_redirects_are_not_followed_and_little_of_an_answer_is_read(
    receiver: tuple[WebhookReceiver, int],
) -> None:
    hooks, port = receiver
    hooks.answer(
        Reply(302, headers={"Location": f"http://127.0.0.1:{port}/elsewhere"}),
        Reply(200, body=b"x" * 2_000_000),
    )
    allowed = sender(allow_private=True)
    try:
        redirected = await allowed.post(f"http://127.0.0.1:{port}/hooks", b"{}", {})
        large = await allowed.post(f"http://127.0.0.1:{port}/hooks", b"{}", {})
    finally:
        await allowed.close()
    assert redirected.status == 302
    assert not redirected.succeeded
    assert redirected.describe() == "HTTP 302 (redirects are not followed)"
    assert [request.path for request in hooks.received] == ["/hooks", "/hooks"]
    assert large.status == 200
    assert large.excerpt is not None
    assert len(large.excerpt) == EXCERPT_CHARACTERS
    (_, sent) = hooks.received
    assert sent.headers["accept-encoding"] == "identity"
    assert sent.headers["user-agent"].startswith("Brik-Webhooks/")
