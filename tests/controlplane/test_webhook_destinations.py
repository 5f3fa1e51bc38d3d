"""Which addresses a webhook may reach, and which URLs an endpoint may be given."""

from __future__ import annotations

import ipaddress

import pytest

from controlplane.errors import InvalidRequest
from controlplane.webhook_destinations import check_url, refusal

REFUSED = {
    "127.0.0.1": "loopback",
    "127.255.0.9": "loopback",
    "10.1.2.3": "private",
    "172.16.0.1": "private",
    "192.168.0.1": "private",
    "169.254.169.254": "link-local",
    "100.64.0.1": "carrier-grade NAT",
    "0.0.0.0": "unspecified",
    "224.0.0.251": "multicast",
    "240.0.0.1": "private",  # reserved, which Python files under private
    "192.0.2.1": "private",  # documentation
    "::1": "loopback",
    "::": "unspecified",
    "fe80::1": "link-local",
    "fd00:ec2::254": "private",  # unique local: AWS's IPv6 metadata service
    "ff02::1": "multicast",
    "2001:db8::1": "private",  # documentation
    "::ffff:127.0.0.1": "loopback",  # IPv4-mapped
    "::ffff:169.254.169.254": "link-local",
    "64:ff9b::a00:1": "private",  # NAT64 of 10.0.0.1
    "2002:a00:1::": "private",  # 6to4 of 10.0.0.1
    "::127.0.0.1": "reserved",  # IPv4-compatible (deprecated)
}
ALLOWED = ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]


@pytest.mark.parametrize(("address", "why"), REFUSED.items())
def test_non_public_addresses_are_refused_with_the_reason(address: str, why: str) -> None:
    reason = refusal(ipaddress.ip_address(address))
    assert reason is not None
    assert why in reason


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://127.0.0.1:8080/hooks", "url_not_allowed"),
        ("https://10.0.0.7/", "url_not_allowed"),
        ("http://169.254.169.254/latest/meta-data/iam/", "url_not_allowed"),
        ("http://[::1]/", "url_not_allowed"),
        ("http://[::ffff:10.0.0.1]/", "url_not_allowed"),
        ("http://localhost:9000/", "url_not_allowed"),
        ("http://api.localhost/", "url_not_allowed"),
        ("ftp://example.com/", "url_invalid"),
        ("https://user:password@example.com/", "url_invalid"),
        ("https://example.com:99999/", "url_invalid"),
        ("https:///path-only", "url_invalid"),
        ("https://exa mple.com/", "url_invalid"),
    ],
)
def test_urls_refused_when_an_endpoint_is_given_them(url: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_url(url, allow_private=False)
    assert (refused.value.code, refused.value.param) == (code, "url")


def test_the_operator_may_allow_private_networks_but_never_malformed_urls() -> None:
    assert check_url("http://127.0.0.1:8080/hooks", allow_private=True).port == 8080
    assert check_url("http://localhost/", allow_private=True).hostname == "localhost"
    assert check_url("https://hooks.example.com/brik?x=1", allow_private=False).query == "x=1"
    with pytest.raises(InvalidRequest):
        check_url("https://user:pw@10.0.0.1/", allow_private=True)
