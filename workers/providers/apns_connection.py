"""aioapns pointed at the right APNs host: the one place where aioapns is adapted.

aioapns reads the host and port it dials from class attributes of its protocol classes
(``APNsProductionClientProtocol.APNS_SERVER`` / ``APNS_PORT``, and the ``Development``
variant for the sandbox); it has no parameter for them. When ``BRIK_APNS_HOST`` is set (tests,
benchmarks, an egress proxy), each connection pool gets its *own subclass* of its protocol class
with the configured host and port — aioapns' module-level classes are never modified, so pools
for Apple and for a fake can live in one process. ``BRIK_APNS_CA_FILE`` adds the CA that signs
that host's certificate.

Apple's hosts are chosen per credential: ``production`` → api.push.apple.com,
``sandbox`` → aioapns' development host (api.development.push.apple.com, the same service as
api.sandbox.push.apple.com).
"""

from __future__ import annotations

import functools
import ssl

from aioapns.connection import APNsKeyConnectionPool, APNsTLSClientProtocol

from controlplane.settings import Settings


def tls_context(settings: Settings) -> ssl.SSLContext:
    """System trust store, plus ``BRIK_APNS_CA_FILE`` when set — one context shared by every
    credential's pool (token authentication puts nothing of a credential in it)."""
    return _shared_tls_context(
        None if settings.apns_ca_file is None else str(settings.apns_ca_file)
    )


@functools.cache
def _shared_tls_context(ca_file: str | None) -> ssl.SSLContext:
    # Each context holds its own copy of the system trust store, about a megabyte: one per
    # credential made a worker serving 1,000 tenants 1.1 GB (loadtests/flat_cost.py).
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    context.set_alpn_protocols(["h2"])
    return context


def apns_pool(
    *,
    key: str,
    key_id: str,
    team_id: str,
    topic: str,
    sandbox: bool,
    settings: Settings,
    max_connections: int = 4,
) -> APNsKeyConnectionPool:
    """A token-authenticated connection pool for one credential. Build it inside the loop."""
    pool = APNsKeyConnectionPool(
        key=key,
        key_id=key_id,
        team_id=team_id,
        topic=topic,
        max_connections=max_connections,
        use_sandbox=sandbox,
        ssl_context=tls_context(settings),
    )
    if settings.apns_host:
        pool.protocol_class = type(
            "ConfiguredAPNsProtocol",
            (pool.protocol_class,),
            {"APNS_SERVER": settings.apns_host, "APNS_PORT": settings.apns_port},
        )
    assert issubclass(pool.protocol_class, APNsTLSClientProtocol)
    return pool
