"""Signing webhooks as Stripe does: ``Brik-Signature: t=<unix time>,v1=<hex HMAC-SHA256>``.

The signed message is ``"<t>.<body>"`` — the timestamp, a dot, and the request body exactly as
sent — keyed with the endpoint's secret (``whsec_…``, the whole string). The timestamp inside
the signature lets a receiver refuse an old request replayed (five minutes is the usual
tolerance). While a rotated secret overlaps the new one, each request carries one ``v1=`` per
secret, newest first; a receiver accepts the request when any of them matches the secret it
knows, so it can switch to the new secret at any moment of the overlap.

docs/webhooks.md shows the check in plain Python (the tests run that very snippet against real
deliveries), and the SDK has it as ``brik.webhooks.verify_signature``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence

HEADER = "Brik-Signature"
SCHEME = "v1"
SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_SECONDS = 300


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` and 32 random bytes, url-safe base64."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``secret``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(body: bytes, signing_secrets: Sequence[str], timestamp: int) -> str:
    """The ``Brik-Signature`` value for ``body``: one ``v1`` per secret, in the order given."""
    if not signing_secrets:
        raise ValueError("a webhook is signed with at least one secret")
    parts = [f"t={timestamp}"]
    parts += [f"{SCHEME}={signature(secret, timestamp, body)}" for secret in signing_secrets]
    return ",".join(parts)


def verify(
    body: bytes, header: str, secret: str, *, now: float,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
) -> bool:  # fmt: skip
    """True when ``header`` holds a ``v1`` signature of ``body`` under ``secret`` whose
    timestamp is within ``tolerance`` seconds of ``now`` (what a receiver checks)."""
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == SCHEME:
            candidates.append(value)
    if timestamp is None or abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)
