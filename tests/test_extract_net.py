"""Host canonicalisation and address predicates (mcp_defense.policy.extract.urls)."""

from __future__ import annotations

import pytest

from mcp_defense.policy.extract.urls import (
    canonical_host,
    embedded_ipv4,
    is_ip,
    is_link_local,
    is_loopback,
    is_metadata,
    is_private,
)

LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "127.1",
    "127.0.1",
    "2130706433",
    "0x7f000001",
    "0x7F000001",
    "0177.0.0.1",
    "017700000001",
    "0x7f.1",
    "0x7f.0.0.1",
    "0x7f.0.0.0x1",
    "127.0.0.1.",
    "[::ffff:127.0.0.1]",
    "::ffff:127.0.0.1",
    "[::ffff:7f00:1]",
    "１２７.０.０.１",
    "127。0。0。1",
    "%31%32%37.0.0.1",
    "127.000.000.001",
]


@pytest.mark.parametrize("spelling", LOOPBACK_SPELLINGS)
def test_loopback_spellings_canonicalise(spelling: str) -> None:
    assert canonical_host(spelling) == "127.0.0.1"
    assert is_loopback(spelling) and is_ip(spelling)


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("[::1]", "::1"),
        ("[0:0:0:0:0:0:0:1]", "::1"),
        ("::1", "::1"),
        ("[::]", "::"),
        ("0", "0.0.0.0"),
        ("0.0.0.0", "0.0.0.0"),
        ("[fe80::1%25eth0]", "fe80::1"),
        ("[FE80::1%eth0]", "fe80::1"),
        ("[fe80::1%2541]", "fe80::1"),
        ("EVIL.COM.", "evil.com"),
        ("evil.com..", "evil.com"),
        ("%65vil.com", "evil.com"),
        ("аpple.com", "xn--pple-43d.com"),
        ("ＥＶＩＬ.ｃｏｍ", "evil.com"),
        ("bücher.de", "xn--bcher-kva.de"),
        ("2852039166", "169.254.169.254"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("169.254.43518", "169.254.169.254"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("[::ffff:a9fe:a9fe]", "169.254.169.254"),
        ("256.0.0.1", "256.0.0.1"),
        ("1.2.3.4.5", "1.2.3.4.5"),
        ("09.0.0.1", "09.0.0.1"),
        ("", ""),
    ],
)
def test_canonical_host(spelling: str, canonical: str) -> None:
    assert canonical_host(spelling) == canonical


@pytest.mark.parametrize(
    "host", ["256.0.0.1", "1.2.3.4.5", "09.0.0.1", "evil.com", "", "localhost"]
)
def test_not_ip(host: str) -> None:
    assert not is_ip(host)


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST.", "foo.localhost", "::1", "127.9.9.9", "0.0.0.0", "0", "[::]"]
)
def test_loopback(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host", ["10.0.0.1", "8.8.8.8", "evil.com", "localhost.evil.com", "::2", "0.1.2.3"]
)
def test_not_loopback(host: str) -> None:
    assert not is_loopback(host)


@pytest.mark.parametrize(
    "host", ["169.254.0.1", "169.254.169.254", "fe80::1", "[fe80::abcd%25en0]", "2852039166"]
)
def test_link_local(host: str) -> None:
    assert is_link_local(host)


@pytest.mark.parametrize(
    "host",
    [
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "100.64.0.1",
        "100.100.100.200",
        "fd00::1",
        "fc00::1",
        "012.0.0.1",
        "0xc0a80101",
        "[::ffff:10.0.0.1]",
    ],
)
def test_private(host: str) -> None:
    assert is_private(host)


@pytest.mark.parametrize(
    "host", ["172.32.0.1", "8.8.8.8", "100.128.0.1", "evil.com", "2001:4860::8888"]
)
def test_not_private(host: str) -> None:
    assert not is_private(host)


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",
        "2852039166",
        "0xa9.0xfe.0xa9.0xfe",
        "[::ffff:169.254.169.254]",
        "fd00:ec2::254",
        "[FD00:EC2::254]",
        "169.254.170.2",
        "100.100.100.200",
        "168.63.129.16",
        "metadata.google.internal",
        "METADATA.GOOGLE.INTERNAL.",
        "metadata.goog",
        "metadata",
        "instance-data",
        "[64:ff9b::a9fe:a9fe]",
        "fd20:ce::254",
        "192.0.0.192",
        "metadata.tencentyun.com",
    ],
)
def test_metadata(host: str) -> None:
    assert is_metadata(host)


@pytest.mark.parametrize(
    "host", ["169.254.169.253", "8.8.8.8", "google.com", "metadata.evil.com", "example.internal"]
)
def test_not_metadata(host: str) -> None:
    assert not is_metadata(host)


@pytest.mark.parametrize(
    ("host", "inner"),
    [
        ("::7f00:1", "127.0.0.1"),
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),
        ("2002:7f00:1::", "127.0.0.1"),
        ("::1", ""),
        ("2001:db8::1", ""),
        ("evil.com", ""),
        ("127.0.0.1", ""),
    ],
)
def test_embedded_ipv4(host: str, inner: str) -> None:
    assert embedded_ipv4(host) == inner


def test_tunnelled_loopback_detected() -> None:
    assert is_loopback("[64:ff9b::7f00:1]")
    assert is_loopback("::127.0.0.1")
