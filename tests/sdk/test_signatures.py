"""``brik.webhooks.verify_signature``: what Brik sends is accepted and anything else refused —
with no client at all, as a receiver of webhooks has no API key. (Signatures of real deliveries
are verified in tests/sdk/test_resources.py and tests/workers/test_webhooks.py.)"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import brik
import pytest

from controlplane.webhook_signatures import signature_header

SECRET = "whsec_" + "s" * 43
EVENT = {
    "id": "wev_" + "a" * 24, "object": "event", "type": "push.completed", "created": 1735689600,
    "livemode": False, "project_id": "prj_" + "b" * 24,
    "data": {"object": {"object": "push", "id": "psh_" + "c" * 24, "recipients": 2}},
}  # fmt: skip
BODY = json.dumps(EVENT).encode()


@pytest.fixture(autouse=True)
def _fresh_default_client() -> Iterator[None]:
    yield
    if brik._default is not None:
        brik._default.close()
        brik._default = None


def test_verify_signature_needs_no_client_and_returns_the_event() -> None:
    assert brik._default is None
    now = int(time.time())
    event = brik.webhooks.verify_signature(BODY, signature_header(BODY, [SECRET], now), SECRET)
    assert isinstance(event, brik.WebhookEvent)
    assert (event.id, event.type, event.livemode) == (EVENT["id"], "push.completed", False)
    assert event.data["id"] == "psh_" + "c" * 24
    # During a rotation's overlap either secret verifies the same request.
    overlapping = signature_header(BODY, ["whsec_new", SECRET], now)
    assert brik.webhooks.verify_signature(BODY.decode(), overlapping, SECRET).id == EVENT["id"]
    assert brik.webhooks.verify_signature(BODY, overlapping, "whsec_new").id == EVENT["id"]


def _now() -> int:
    return int(time.time())


# Headers are made when the test runs, not at collection: pytest-xdist's workers must collect
# the same test ids, and a timestamp in an id differs from one worker to the next.
@pytest.mark.parametrize(
    ("body", "header", "why"),
    [
        (BODY, lambda: signature_header(BODY, ["whsec_other"], _now()), "No signature matches"),
        (BODY + b" ", lambda: signature_header(BODY, [SECRET], _now()), "No signature matches"),
        (BODY, lambda: signature_header(BODY, [SECRET], _now() - 3600), "past the tolerance"),
        (BODY, lambda: None, "No Brik-Signature header"),
        (BODY, lambda: "v1=abc", "no timestamp"),
        (b"[]", lambda: signature_header(b"[]", [SECRET], _now()), "not a Brik event"),
    ],
    ids=["other-secret", "changed-body", "too-old", "no-header", "no-timestamp", "not-an-event"],
)
def test_verify_signature_refuses_what_brik_did_not_send(
    body: bytes, header: Callable[[], str | None], why: str
) -> None:
    with pytest.raises(brik.SignatureVerificationError, match=why):
        brik.webhooks.verify_signature(body, header(), SECRET)
