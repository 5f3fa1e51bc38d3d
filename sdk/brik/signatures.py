"""Verifying that a webhook request comes from Brik: ``brik.webhooks.verify_signature``.

Brik signs each request as Stripe does: ``Brik-Signature: t=<unix time>,v1=<hex>`` where the hex
is the HMAC-SHA256 of ``"<t>.<body>"`` keyed with the endpoint's secret (``whsec_…``). While a
rotated secret overlaps the new one the header carries one ``v1`` per secret; any match is
enough. The timestamp must be within ``tolerance`` seconds of now, so a captured request cannot
be replayed later. Check the body exactly as received, before parsing it::

    event = brik.webhooks.verify_signature(request_body, request.headers["Brik-Signature"],
                                           "whsec_…")
    if event.type == "push.completed": ...

Needs no API key and no network: it is plain standard-library HMAC.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from brik.errors import SignatureVerificationError
from brik.types import WebhookEvent

__all__ = ["DEFAULT_TOLERANCE_SECONDS", "HEADER", "verify_signature"]

HEADER = "Brik-Signature"
DEFAULT_TOLERANCE_SECONDS = 300.0


def verify_signature(
    payload: bytes | str,
    header: str | None,
    secret: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> WebhookEvent:
    """The event in ``payload`` (the raw request body) if ``header`` (the ``Brik-Signature``
    value) signs it with ``secret`` within ``tolerance`` seconds of ``now``; otherwise
    :class:`~brik.errors.SignatureVerificationError` saying why."""
    body = payload.encode() if isinstance(payload, str) else bytes(payload)
    if not header:
        raise SignatureVerificationError(f"No {HEADER} header: not a request from Brik.")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise SignatureVerificationError(
            f"The {HEADER} header has no timestamp (t=) or no v1 signature."
        )
    age = (time.time() if now is None else now) - timestamp
    if abs(age) > tolerance:
        raise SignatureVerificationError(
            f"The signature is {abs(age):.0f} s {'old' if age > 0 else 'in the future'}, past "
            f"the tolerance of {tolerance:g} s: a replayed request, or a clock far off."
        )
    expected = hmac.new(
        secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise SignatureVerificationError(
            "No signature matches: a wrong secret (each endpoint has its own), or a body "
            "changed on the way (verify the raw body, before parsing it)."
        )
    try:
        return WebhookEvent.from_json(json.loads(body))
    except (ValueError, KeyError, TypeError) as exc:
        raise SignatureVerificationError(
            f"The signature verifies but the body is not a Brik event ({exc})."
        ) from None
