"""An Apple developer account for tests: an APNs signing key, and TLS for the fake APNs host."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

TEAM_ID = "TEAM123456"
KEY_ID = "KEY1234567"
TOPIC = "com.example.app"


@dataclass(frozen=True)
class SigningKey:
    """An APNs auth key as Apple hands it out: a PKCS#8 PEM (.p8) with its key id."""

    pem: str
    key_id: str
    team_id: str
    public_key: ec.EllipticCurvePublicKey


def apns_credential(key: SigningKey, environment: str = "sandbox") -> dict[str, str]:
    """The body of ``PUT /v1/credentials/apns`` uploading ``key`` for :data:`TOPIC`."""
    return {
        "key": key.pem, "key_id": key.key_id, "team_id": key.team_id, "topic": TOPIC,
        "environment": environment,
    }  # fmt: skip


def new_signing_key(key_id: str = KEY_ID, team_id: str = TEAM_ID) -> SigningKey:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return SigningKey(pem=pem, key_id=key_id, team_id=team_id, public_key=private.public_key())


@dataclass(frozen=True)
class TestTLS:
    server: ssl.SSLContext
    ca_file: Path


def fake_host_tls(directory: Path, host: str = "127.0.0.1") -> TestTLS:
    """A CA made now, a certificate for ``host`` signed by it, and the CA as a PEM file."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(host).configure_cert(server)
    server.set_alpn_protocols(["h2"])
    ca_file = directory / "fake-apns-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return TestTLS(server=server, ca_file=ca_file)
