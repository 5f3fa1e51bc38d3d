"""Where a webhook may be sent: the URL rules, and the addresses a self-hosted install refuses.

A webhook URL is chosen by a tenant, and the worker that sends to it sits inside the operator's
network. Left unchecked, ``http://169.254.169.254/`` would read the cloud's instance metadata
(credentials included), ``http://10.0.0.7:6379/`` would poke the install's own Redis, and the
delivery log would hand the answers back to the tenant. So, unless the operator allows it
(``BRIK_WEBHOOK_ALLOW_PRIVATE_NETWORKS``), a webhook goes only to public unicast addresses:
:func:`refusal` says why any other is refused — loopback, private (RFC 1918, unique local
``fc00::/7``), carrier-grade NAT, link-local (the metadata services), multicast, reserved,
unspecified and documentation ranges — for IPv4 and IPv6 alike, and for the IPv4 address an
IPv6 one carries (IPv4-mapped ``::ffff:a.b.c.d``, 6to4, NAT64 ``64:ff9b::/96``), which reaches
that IPv4 host all the same.

The check happens twice. When an endpoint is created or changed (:func:`check_url`), a URL
whose host *is* a refused address, or ``localhost``, is a 400 at once. The host name of any
other URL can point anywhere and change its mind (DNS rebinding), so the worker resolves it
once per connection, refuses the connection if any answer is refused, and connects to the very
address it checked (``workers/webhook_transport.py``).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, urlsplit

from controlplane.errors import InvalidRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ALLOW_SETTING = "BRIK_WEBHOOK_ALLOW_PRIVATE_NETWORKS"
MAX_URL_LENGTH = 2048
_PORT = r"(?::(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
# What a webhook URL may look like, also the OpenAPI document's pattern: http(s), a host name in
# ASCII (an international name in its xn-- form) or an IP address (IPv6 in brackets), a port,
# then printable ASCII only (anything else percent-encoded). No user name or password: the
# authority has no "@". Written with explicit ranges, so Python and JSON Schema agree.
URL_PATTERN = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])" + _PORT + r"(?:[/?#][!-~]*)?$"
)
_URL = re.compile(URL_PATTERN)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one leads to, when it carries one."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: IPAddress) -> str | None:
    """Why a webhook may not go to ``address`` (words for the delivery log); None if it may."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return "a scoped (link-local) IPv6 address"
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = refusal(embedded)
            return None if inner is None else f"{inner} (inside {address})"
    if address.is_loopback:
        return "a loopback address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_link_local:
        return "a link-local address (where cloud metadata services answer)"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "a carrier-grade NAT (shared) address"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "not a public address"
    return None


def parse_address(host: str) -> IPAddress | None:
    """``host`` as an IP address, when it is one (``[::1]`` brackets and all)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _refuse(message: str) -> InvalidRequest:
    return InvalidRequest(message, code="url_not_allowed", param="url")


def check_url(url: str, *, allow_private: bool) -> SplitResult:
    """``url`` split, if a webhook may be sent there; else 400 (``url_invalid`` for a URL that
    is not an http(s) one, ``url_not_allowed`` for one that names a refused address)."""
    if "@" in url.partition("://")[2].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]:
        raise InvalidRequest(
            "url: user names and passwords in the URL are not sent; the signature in "
            "Brik-Signature tells your endpoint the request is Brik's.",
            code="url_invalid",
            param="url",
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (reading it checks it)
    except ValueError:
        parts = None
    if parts is None or not parts.hostname or not _URL.fullmatch(url):
        raise InvalidRequest(
            "url: not an http:// or https:// URL with a host (an international name in its "
            "xn-- form, an IPv6 address in brackets) and printable ASCII after it (anything "
            "else percent-encoded).",
            code="url_invalid",
            param="url",
        )
    if allow_private:
        return parts
    host = parts.hostname
    address = parse_address(host)
    if address is not None and (why := refusal(address)) is not None:
        raise _refuse(
            f"url: {host} is {why}; webhooks go to public addresses unless the operator sets "
            f"{ALLOW_SETTING}."
        )
    if host == "localhost" or host.endswith(".localhost"):
        raise _refuse(
            f"url: {host} is this machine; webhooks go to public addresses unless the operator "
            f"sets {ALLOW_SETTING}."
        )
    return parts
