"""Host canonicalisation and address predicates for `call.hosts` and `flow.*`.

Why this exists: a rule that says `!is_metadata(h)` or `h == "127.0.0.1"` is only as good as the
spelling of `h`. HTTP clients accept the same address in many spellings — `2130706433`,
`0x7f.1`, `0177.0.0.1`, `[::ffff:7f00:1]`, `１２７.０.０.１`, `LOCALHOST.` — so every host that
reaches a rule goes through `canonical_host` first and every predicate canonicalises again (it is
cached, so that costs a dict lookup).

The IPv4 number syntax follows the WHATWG URL Standard's IPv4 parser (the same forms glibc's
`inet_aton` accepts: 1–4 parts, each decimal, `0x` hex or leading-`0` octal, the last part filling
the remaining bytes). Host names are mapped with UTS #46 (fullwidth forms, ideographic dots, case)
and written as ASCII (punycode) because that is the name DNS will be asked for.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from urllib.parse import unquote

try:  # `idna` arrives with httpx (mcp's HTTP stack); fall back to the stdlib codec without it.
    import idna as _idna
except ImportError:  # pragma: no cover - exercised only on installs without idna
    _idna = None

__all__ = [
    "canonical_host",
    "embedded_ipv4",
    "is_ip",
    "is_link_local",
    "is_loopback",
    "is_metadata",
    "is_private",
]

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Dots that UTS #46 maps to U+002E (applied before IPv4 parsing so `127。0。0。1` is caught even
# when the idna package is unavailable).
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


def _parse_ipv4_part(part: str) -> int | None:
    """One dotted part in WHATWG/inet_aton syntax, or None when it is not a number."""
    if not part or len(part) > 40:  # 40 digits is far past any valid value; keeps int() cheap
        return None
    radix = 10
    if part[:2] in ("0x", "0X"):
        part = part[2:]
        radix = 16
        if not part:
            return 0
    elif len(part) > 1 and part[0] == "0":
        part = part[1:]
        radix = 8
    try:
        value = int(part, radix)
    except ValueError:
        return None
    if value < 0 or not part.isalnum():  # int() tolerates '_' and whitespace; inet_aton does not
        return None
    return value


def _parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """WHATWG IPv4 parser: `127.1`, `0x7f.1`, `2130706433`, `0177.0.0.1`, trailing dot."""
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if not parts or len(parts) > 4:
        return None
    numbers: list[int] = []
    for part in parts:
        value = _parse_ipv4_part(part)
        if value is None:
            return None
        numbers.append(value)
    last = numbers.pop()
    if any(n > 255 for n in numbers) or last >= 256 ** (4 - len(numbers)):
        return None
    address = last
    for index, n in enumerate(numbers):
        address += n << (8 * (3 - index))
    return ipaddress.IPv4Address(address)


def _parse_ipv6(text: str) -> ipaddress.IPv6Address | None:
    """IPv6 literal without brackets; a zone id (`%eth0`, `%25eth0`) is dropped, not decoded."""
    zone = text.find("%")
    if zone != -1:
        text = text[:zone]
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        return None


def _address_text(address: _IPAddress) -> str:
    """Standard text; an IPv4-mapped IPv6 address is the IPv4 address it reaches."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _idna_label(label: str) -> str:
    """ASCII form of one label; labels IDNA 2008 refuses still get a deterministic punycode."""
    if label.isascii():
        return label
    try:
        return "xn--" + label.encode("punycode").decode("ascii")
    except UnicodeError:  # pragma: no cover - punycode encodes any str without surrogates
        return label


def _to_ascii_name(name: str) -> str:
    """UTS #46 map + punycode. Never raises: a name no resolver accepts is still a fact."""
    if _idna is not None:
        try:
            name = _idna.uts46_remap(name, std3_rules=False, transitional=False)
        except (_idna.IDNAError, UnicodeError, ValueError):
            pass
    name = name.translate(_DOTS).lower()
    if name.isascii():
        return name
    if _idna is not None:
        try:
            return _idna.encode(name, uts46=False).decode("ascii")
        except (_idna.IDNAError, UnicodeError, ValueError):
            pass
    return ".".join(_idna_label(label) for label in name.split("."))


@lru_cache(maxsize=16384)
def canonical_host(host: str) -> str:
    """The one spelling of a host that rules compare against.

    IP literals in any accepted spelling become standard text (`127.0.0.1`, `::1`, IPv4-mapped
    IPv6 becomes the IPv4 address); names are percent-decoded, UTS #46-mapped, lower-cased,
    stripped of trailing dots and written as punycode. Brackets around IPv6 are removed.
    """
    text = host.strip()
    if text.startswith("["):
        end = text.find("]")
        inner = text[1:end] if end != -1 else text[1:]
        v6 = _parse_ipv6(inner)
        if v6 is not None:
            return _address_text(v6)
        text = inner
    if "%" in text:
        for _ in range(8):  # decode until stable (double encoding); bounded
            decoded = unquote(text, errors="surrogateescape")
            if decoded == text:
                break
            text = decoded
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if ":" in text:
        v6 = _parse_ipv6(text.strip("[]"))
        if v6 is not None:
            return _address_text(v6)
    if not text.isascii():
        text = _to_ascii_name(text)
    else:
        text = text.lower()
    text = text.rstrip(".")
    v4 = _parse_ipv4(text)
    if v4 is not None:
        return str(v4)
    return text


@lru_cache(maxsize=16384)
def _address(host: str) -> _IPAddress | None:
    text = canonical_host(host)
    if not text or (":" not in text and not text[-1].isdigit()):
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")


@lru_cache(maxsize=16384)
def embedded_ipv4(host: str) -> str:
    """The IPv4 address an IPv6 literal tunnels to ('' when none).

    IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`, `64:ff9b:1::/48`), 6to4 (`2002::/16`)
    and Teredo client addresses all deliver to an IPv4 host on some networks; a metadata or
    loopback check that ignored them could be walked around with `[64:ff9b::a9fe:a9fe]`.
    """
    address = _address(host)
    if not isinstance(address, ipaddress.IPv6Address):
        return ""
    value = int(address)
    if value >> 32 == 0 and value >> 24 != 0:  # IPv4-compatible ::a.b.c.d (not ::, ::1, ::x)
        return str(ipaddress.IPv4Address(value))
    if any(address in net for net in _NAT64):
        return str(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    if address.sixtofour is not None:
        return str(address.sixtofour)
    if address.teredo is not None:
        return str(address.teredo[1])
    return ""


def _addresses(host: str) -> tuple[_IPAddress, ...]:
    address = _address(host)
    if address is None:
        return ()
    inner = embedded_ipv4(host)
    if inner:
        return (address, ipaddress.IPv4Address(inner))
    return (address,)


@lru_cache(maxsize=16384)
def is_ip(host: str) -> bool:
    """Whether the host is an IP literal in any spelling (`0x7f.1` is; `localhost` is not)."""
    return _address(host) is not None


_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


@lru_cache(maxsize=16384)
def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1, `localhost` and `*.localhost` — and the unspecified addresses.

    `0.0.0.0` and `::` are included on purpose: connecting to them reaches the local machine on
    Linux and macOS, so `http://0/` is a loopback request.
    """
    name = canonical_host(host)
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    return any(address.is_loopback or address.is_unspecified for address in _addresses(host))


_LINK_LOCAL = (ipaddress.IPv4Network("169.254.0.0/16"), ipaddress.IPv6Network("fe80::/10"))


@lru_cache(maxsize=16384)
def is_link_local(host: str) -> bool:
    """169.254.0.0/16 and fe80::/10 (where most metadata services live)."""
    return any(
        address in net
        for address in _addresses(host)
        for net in _LINK_LOCAL
        if address.version == net.version
    )


_PRIVATE = (
    ipaddress.IPv4Network("10.0.0.0/8"),
    ipaddress.IPv4Network("172.16.0.0/12"),
    ipaddress.IPv4Network("192.168.0.0/16"),
    ipaddress.IPv4Network("100.64.0.0/10"),  # CGNAT (RFC 6598); Alibaba's metadata lives here
    ipaddress.IPv6Network("fc00::/7"),
)


@lru_cache(maxsize=16384)
def is_private(host: str) -> bool:
    """RFC 1918, RFC 4193 (fc00::/7) and CGNAT 100.64.0.0/10, including tunnelled IPv4."""
    return any(
        address in net
        for address in _addresses(host)
        for net in _PRIVATE
        if address.version == net.version
    )


# Documented endpoints, and a few that SSRF deny-lists carry by habit (marked): blocking a name
# nobody legitimately calls costs nothing.
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure IMDS, OCI, DigitalOcean, OpenStack, Hetzner
        "fd00:ec2::254",  # AWS IMDS over IPv6 (Nitro)
        "169.254.170.2",  # AWS ECS task metadata / credentials
        "169.254.170.23",  # AWS EKS Pod Identity agent
        "fd00:ec2::23",  # AWS EKS Pod Identity agent over IPv6
        "fd20:ce::254",  # GCP metadata server over IPv6
        "168.63.129.16",  # Azure WireServer / host agent
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud legacy metadata
        "169.254.0.23",  # Tencent Cloud
    )
)
_METADATA_NAMES = frozenset(
    {
        "metadata.google.internal",  # GCP
        "metadata.goog",  # GCP
        "metadata",  # GCP short name (search domain google.internal)
        "instance-data",  # AWS legacy name
        "instance-data.ec2.internal",  # AWS
        "metadata.tencentyun.com",  # Tencent Cloud
        "metadata.platformequinix.com",  # Equinix Metal
        "metadata.packet.net",  # Equinix Metal (legacy)
        "metadata.azure.com",  # not documented by Azure (which uses the IP); deny-list habit
    }
)


@lru_cache(maxsize=16384)
def is_metadata(host: str) -> bool:
    """Cloud instance-metadata endpoints (credentials for the machine's cloud role)."""
    name = canonical_host(host)
    if name in _METADATA_NAMES:
        return True
    return any(address in _METADATA_ADDRESSES for address in _addresses(host))
