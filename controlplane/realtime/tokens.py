"""Subscribe tokens: what lets an app read a private channel, minted by the tenant's server.

``POST /v1/realtime/tokens`` (a secret key) names the channels — exact names, or a prefix
ending in ``*`` (``user:u_42:*``) — and a lifetime of at most :data:`MAX_TTL_SECONDS`. The
token is ``bk_rt_<payload>.<signature>``: the payload (base64url JSON: project, mode,
channels, expiry) signed with HMAC-SHA256 under a key derived from ``BRIK_SECRET_KEY``, so the
API checks it without storing anything. Tokens signed under a previous secret key
(``BRIK_PREVIOUS_SECRET_KEYS``) still verify until they expire; none outlives a day, so a
rotation is complete a day later. A token is bound to its project and mode: presented with
another project's key, or a live key where a test key minted it, it opens nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass

from controlplane.models import KeyMode
from controlplane.realtime.channels import NAME_PATTERN

TOKEN_PREFIX = "bk_rt_"
MAX_TTL_SECONDS = 24 * 3600
MAX_CHANNELS = 20
# A channel, or a prefix of names followed by "*".
SPEC_PATTERN = NAME_PATTERN.removesuffix("$") + r"\*?$"
_CONTEXT = b"brik realtime subscribe token"


class InvalidToken(Exception):
    """The token is malformed, forged, expired, or for another project or mode (the message
    says which, for the client's developer)."""


@dataclass(frozen=True, slots=True)
class Grant:
    project_id: str
    mode: KeyMode
    channels: tuple[str, ...]
    expires_at: int  # unix seconds

    def allows(self, channel: str) -> bool:
        return any(
            channel.startswith(spec[:-1]) if spec.endswith("*") else channel == spec
            for spec in self.channels
        )


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(payload: str, secret_key: str) -> str:
    key = hmac.new(secret_key.encode(), _CONTEXT, hashlib.sha256).digest()
    return _b64(hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest())


def mint(grant: Grant, secret_key: str) -> str:
    payload = _b64(
        json.dumps(
            {"p": grant.project_id, "m": grant.mode.value, "c": list(grant.channels),
             "e": grant.expires_at},
            separators=(",", ":"),
        ).encode()
    )  # fmt: skip
    return f"{TOKEN_PREFIX}{payload}.{_signature(payload, secret_key)}"


def verify(
    token: str, secret_keys: Sequence[str], *, project_id: str, mode: KeyMode, now: float
) -> Grant:
    """The grant ``token`` carries for this project and mode, or :class:`InvalidToken`."""
    payload, dot, signature = token.removeprefix(TOKEN_PREFIX).partition(".")
    if not token.startswith(TOKEN_PREFIX) or not dot or not payload.isascii():
        raise InvalidToken("it is not a subscribe token (bk_rt_…)")
    if not signature.isascii() or not any(
        hmac.compare_digest(signature, _signature(payload, key)) for key in secret_keys
    ):
        raise InvalidToken("its signature does not verify (altered, or not minted here)")
    try:
        fields = json.loads(_unb64(payload))
        grant = Grant(
            project_id=str(fields["p"]), mode=KeyMode(fields["m"]),
            channels=tuple(str(spec) for spec in fields["c"]), expires_at=int(fields["e"]),
        )  # fmt: skip
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise InvalidToken("its payload is malformed") from None
    if grant.project_id != project_id or grant.mode is not mode:
        raise InvalidToken("it was minted for another project or mode than this key's")
    if grant.expires_at <= now:
        raise InvalidToken("it has expired; have your server mint a new one")
    return grant
