"""A Google service account for tests, as the Firebase console would download it."""

from __future__ import annotations

import secrets
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

PROJECT_ID = "brik-test-app"


def new_service_account(
    token_uri: str, project_id: str = PROJECT_ID
) -> tuple[dict[str, Any], rsa.RSAPublicKey]:
    """The service-account JSON (as a dict) and its public key, for the fake to verify with."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    email = f"firebase-adminsdk@{project_id}.iam.gserviceaccount.com"
    info = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": email,
        "client_id": str(secrets.randbelow(10**20)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }
    return info, private.public_key()
