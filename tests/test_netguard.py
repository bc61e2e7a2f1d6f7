"""The SSRF guard: URL shape on save, literal addresses and host names, and every resolved address."""

from __future__ import annotations

import ipaddress

import pytest

from anygate.netguard import GuardedResolver, UnsafeURL, check_address, check_url, validate_url_shape


@pytest.mark.parametrize(
    "url",
    [
        "https://api.openai.com/v1",
        "http://localhost:11434/v1",
        "http://127.0.0.1:8000/v1",
        "https://llm.example.edu/v1",
        "http://[::1]:8080/v1",
        "https://gateway.ai.cloudflare.com/v1/acct/gw/openai",
    ],
)
def test_well_formed_urls_pass_the_shape_check(url: str) -> None:
    validate_url_shape(url)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/v1", "http:// or https://"),
        ("example.com/v1", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("http://", "no host"),
        ("https:///v1", "no host"),
        ("https://user:pass@example.com/v1", "user name or password"),
        ("https://user@example.com/v1", "user name or password"),
        ("http://example.com:0/v1", "invalid port"),
        ("http://example.com:99999/v1", "malformed"),
        ("http://[::1/v1", "malformed"),
    ],
)
def test_malformed_urls_are_refused_with_a_reason(url: str, reason: str) -> None:
    with pytest.raises(UnsafeURL, match=reason):
        validate_url_shape(url)


NEVER = [
    "http://169.254.169.254/latest/meta-data",
    "http://[fe80::1]/v1",
    "http://[::ffff:169.254.169.254]/v1",
    "http://metadata.google.internal/computeMetadata/v1",
    "http://metadata/v1",
    "http://0.0.0.0:8000/v1",
    "http://100.100.100.200/v1",
    "http://224.0.0.1/v1",
]
PRIVATE = [
    "http://127.0.0.1:11434/v1",
    "http://localhost:8000/v1",
    "http://api.localhost/v1",
    "http://localhost./v1",
    "http://10.1.2.3/v1",
    "http://172.16.0.1/v1",
    "http://192.168.1.10/v1",
    "http://100.64.0.1/v1",
    "http://[::1]:8000/v1",
    "http://[fd12::1]/v1",
    "http://[::ffff:127.0.0.1]/v1",
]
PUBLIC = ["https://api.openai.com/v1", "http://8.8.8.8/v1", "http://[2001:4860:4860::8888]/v1"]


@pytest.mark.parametrize("url", NEVER)
@pytest.mark.parametrize("allow_private_network", [False, True])
def test_metadata_and_link_local_are_never_allowed(url: str, allow_private_network: bool) -> None:
    with pytest.raises(UnsafeURL, match="never allowed"):
        check_url(url, allow_private_network)


@pytest.mark.parametrize("url", PRIVATE)
def test_private_addresses_need_allow_private_network(url: str) -> None:
    with pytest.raises(UnsafeURL, match="allow_private_network"):
        check_url(url, allow_private_network=False)
    check_url(url, allow_private_network=True)


@pytest.mark.parametrize("url", PUBLIC)
def test_public_addresses_pass(url: str) -> None:
    check_url(url, allow_private_network=False)


def test_ipv4_mapped_ipv6_is_checked_as_ipv4() -> None:
    with pytest.raises(UnsafeURL):
        check_address(ipaddress.ip_address("::ffff:10.0.0.1"), allow_private_network=False)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "2130706433", "0x7f.0.0.1"])
async def test_resolver_refuses_names_that_resolve_to_loopback(host: str) -> None:
    resolver = GuardedResolver(allow_private_network=False)
    try:
        with pytest.raises(OSError, match="refused to connect"):
            await resolver.resolve(host, 80)
    finally:
        await resolver.close()


async def test_resolver_allows_loopback_when_private_network_is_allowed() -> None:
    resolver = GuardedResolver(allow_private_network=True)
    try:
        results = await resolver.resolve("127.0.0.1", 80)
    finally:
        await resolver.close()
    assert [r["host"] for r in results] == ["127.0.0.1"]
