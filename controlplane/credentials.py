"""Validating provider credentials on upload, and fingerprinting them.

An APNs auth key must be a PKCS#8 PEM holding a P-256 (ES256) private key; an FCM service
account must be Google's JSON with an RSA private key. Anything else is a 400 naming the field
— caught at upload, not at 3 a.m. on the first send. The frame of the PEM and the fields of the
service account are also in the OpenAPI document (``PEM_PRIVATE_KEY_PATTERN``); the key inside
is what only this module can check. The project id must be Google's (it is part of the URL
every send goes to) and the client email an address of bounded length.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from controlplane.errors import InvalidRequest


def _public_fingerprint(public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "SHA256:" + hashlib.sha256(der).hexdigest()[:32]


# A PKCS#8 PEM private key as .p8 files and Google's JSON carry one, spaces around allowed.
PEM_PRIVATE_KEY_PATTERN = (
    r"^[ \t\r\n]*-----BEGIN PRIVATE KEY-----\r?\n[A-Za-z0-9+/=\r\n]+"
    r"-----END PRIVATE KEY-----[ \t\r\n]*$"
)
_PEM_PRIVATE_KEY = re.compile(PEM_PRIVATE_KEY_PATTERN.strip("^$"))
_SPACES = " \t\r\n"


def _load_pem_private_key(pem: str) -> object:
    if not _PEM_PRIVATE_KEY.fullmatch(pem):
        raise ValueError("not a PKCS#8 PEM private key")
    return serialization.load_pem_private_key(pem.strip(_SPACES).encode(), password=None)


def apns_key_fingerprint(pem: str) -> str:
    """The fingerprint of an APNs .p8 key, or 400 ``param: key`` when it is not one."""
    try:
        key = _load_pem_private_key(pem)
    except (ValueError, TypeError):
        raise InvalidRequest(
            "key: not a PEM private key; paste the whole .p8 file, "
            "-----BEGIN PRIVATE KEY----- lines included.",
            code="parameter_invalid",
            param="key",
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise InvalidRequest(
            "key: APNs auth keys are P-256 (ES256) keys; this is another kind of key.",
            code="parameter_invalid",
            param="key",
        )
    return _public_fingerprint(key.public_key())


SERVICE_ACCOUNT_FIELDS = ("type", "project_id", "private_key_id", "private_key", "client_email")

# Google's rule for project ids: 6 to 30 lowercase letters, digits and hyphens, starting with a
# letter and not ending with a hyphen. The id goes into the FCM endpoint's path
# (/v1/projects/{project_id}/messages:send), so nothing else may pass: "a/b?c#d" or "../x"
# would send the project's pushes somewhere else on Google's API.
FCM_PROJECT_ID_PATTERN = r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$"
# The service account's address (firebase-adminsdk-…@<project>.iam.gserviceaccount.com): an
# address, at most 254 characters (RFC 5321's limit), ASCII without spaces or controls.
CLIENT_EMAIL_MAX_LENGTH = 254
CLIENT_EMAIL_PATTERN = r"^[!-?A-~]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\.[A-Za-z]{2,63}$"
_SHAPES = {  # field: (pattern, most characters, what it must be)
    "project_id": (
        re.compile(FCM_PROJECT_ID_PATTERN.strip("^$")), 30,
        "a Google project id: 6 to 30 lowercase letters, digits and hyphens, starting with a "
        "letter and not ending with a hyphen",
    ),
    "client_email": (
        re.compile(CLIENT_EMAIL_PATTERN.strip("^$")), CLIENT_EMAIL_MAX_LENGTH,
        f"the service account's email address (at most {CLIENT_EMAIL_MAX_LENGTH} characters)",
    ),
}  # fmt: skip


def service_account_fingerprint(info: dict[str, Any]) -> str:
    """The fingerprint of a service account's key, or 400 naming the field that is wrong."""
    for name in SERVICE_ACCOUNT_FIELDS:
        if not isinstance(info.get(name), str) or not info[name].strip(_SPACES):
            raise InvalidRequest(
                f"service_account.{name}: required; upload the JSON key file Firebase gives "
                "(Project settings → Service accounts → Generate new private key).",
                code="parameter_missing",
                param=f"service_account.{name}",
            )
    if info["type"] != "service_account":
        raise InvalidRequest(
            "service_account.type: must be 'service_account'.",
            code="parameter_invalid",
            param="service_account.type",
        )
    for name, (shape, most, rule) in _SHAPES.items():
        value = info[name]
        if len(value) > most or not shape.fullmatch(value):
            raise InvalidRequest(
                f"service_account.{name}: must be {rule}; upload the JSON key file unchanged.",
                code="parameter_invalid",
                param=f"service_account.{name}",
            )
    try:
        key = _load_pem_private_key(info["private_key"])
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InvalidRequest(
            "service_account.private_key: not an RSA private key in PEM form.",
            code="parameter_invalid",
            param="service_account.private_key",
        )
    return _public_fingerprint(key.public_key())
