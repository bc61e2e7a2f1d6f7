"""The SSRF guard: URL shape on save, literal addresses and host names, and every resolved address."""

from __future__ import annotations

import ipaddress

import pytest

from anygate.netguard import UnsafeURL, check_address, check_url, validate_url_shape
from anygate.transport.aiohttp_transport import GuardedResolver


@pytest.mark.parametrize(
    "url",
    [
        "https://api.openai.com/v1",
        "http://localhost:11434/v1",
        "http://127.0.0.1:8000/v1",
        "https://llm.example.edu/v1",
        "http://[::1]:8080/v1",
        "https://gateway.ai.cloudflare.com/v1/acct/gw/openai",
        "https://bücher.example/v1",  # an international name: looked up as xn--bcher-kva.example
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
        # A host no resolver can look up (it failed with a 500 once, from inside the resolver).
        ("https://a\x8a.example/v1", "not a valid host name"),
        ("https://" + "a" * 64 + ".example/v1", "not a valid host name"),
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
    # IPv6 forms that carry the metadata address 169.254.169.254 inside them
    "http://[64:ff9b::a9fe:a9fe]/v1",  # NAT64
    "http://[2002:a9fe:a9fe::1]/v1",  # 6to4
    "http://[::a9fe:a9fe]/v1",  # IPv4-compatible
    "http://[2001:0:4136:e378:8000:63bf:5601:5601]/v1",  # Teredo, client 169.254.169.254 (obfuscated)
    "http://[::ffff:0:a9fe:a9fe]/v1",  # IPv4-translated
    "http://[64:ff9b:1::a9fe:a9fe]/v1",  # local-use NAT64, read as a /96 prefix
    "http://[64:ff9b:1:a9fe:a9:fe00::]/v1",  # local-use NAT64, read as a /48 prefix
    # special-purpose ranges that are not globally reachable
    "http://192.0.0.8/v1",  # IETF protocol assignments
    "http://192.0.2.1/v1",  # documentation
    "http://192.88.99.1/v1",  # the deprecated 6to4 relay anycast
    "http://0.1.2.3/v1",  # "this network"
    "http://240.0.0.1/v1",  # reserved
    "http://255.255.255.255/v1",  # broadcast
    "http://[fec0::1]/v1",  # IPv6 site-local
    "http://[ff02::1]/v1",  # IPv6 multicast
    "http://[2001:db8::1]/v1",  # documentation
    "http://[100::1]/v1",  # discard-only
    "http://[::]/v1",
    "http://[2002:c000:8::1]/v1",  # 6to4 of 192.0.0.8
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
    "http://[64:ff9b::7f00:1]/v1",  # NAT64 of 127.0.0.1
    "http://[64:ff9b::a00:1]/v1",  # NAT64 of 10.0.0.1
    "http://[2002:c0a8:101::1]/v1",  # 6to4 of 192.168.1.1
    "http://[::a00:1]/v1",  # IPv4-compatible 10.0.0.1
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/v1",  # Teredo, client 127.0.0.1
    "http://198.18.0.1/v1",  # benchmarking networks
    "http://[64:ff9b:1::a00:1]/v1",  # local-use NAT64 of 10.0.0.1
    "http://[64:ff9b:1::808:808]/v1",  # local-use NAT64 (a local translator) of 8.8.8.8
]
PUBLIC = [
    "https://api.openai.com/v1",
    "http://8.8.8.8/v1",
    "http://[2001:4860:4860::8888]/v1",
    "http://[64:ff9b::808:808]/v1",  # NAT64 of 8.8.8.8
    "http://[2002:808:808::1]/v1",  # 6to4 of 8.8.8.8
    "http://[::ffff:0:808:808]/v1",  # IPv4-translated 8.8.8.8
    "http://192.0.0.9/v1",  # the one globally reachable address of 192.0.0.0/24 (with 192.0.0.10)
]


@pytest.mark.parametrize("url", NEVER)
@pytest.mark.parametrize("allow_private_network", [False, True])
def test_metadata_link_local_and_special_ranges_are_never_allowed(url: str, allow_private_network: bool) -> None:
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


def test_the_teredo_examples_carry_the_addresses_they_claim() -> None:
    metadata = ipaddress.IPv6Address("2001:0:4136:e378:8000:63bf:5601:5601").teredo
    loopback = ipaddress.IPv6Address("2001:0:4136:e378:8000:63bf:80ff:fffe").teredo
    assert metadata is not None and str(metadata[1]) == "169.254.169.254"
    assert loopback is not None and str(loopback[1]) == "127.0.0.1"


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


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("192.0.0.8", "special-purpose"),
        ("240.0.0.1", "reserved"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("100.100.100.200", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
    ],
)
def test_refusals_say_what_the_address_is(address: str, reason: str) -> None:
    with pytest.raises(UnsafeURL, match=f"{reason}.*never allowed"):
        check_address(ipaddress.ip_address(address), allow_private_network=True)


@pytest.mark.parametrize("host", ["192.0.0.8", "240.0.0.1"])
async def test_resolver_refuses_special_ranges_at_connect_time_like_at_save_time(host: str) -> None:
    resolver = GuardedResolver(allow_private_network=True)
    try:
        with pytest.raises(OSError, match="never allowed"):
            await resolver.resolve(host, 80)
    finally:
        await resolver.close()
