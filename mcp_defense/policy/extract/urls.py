"""URLs and hosts: URL parsing (WHATWG rules), host canonicalisation and address predicates.

Why this exists: a rule that says `!is_metadata(h)` or `h == "127.0.0.1"` is only as good as the
spelling of `h`. HTTP clients accept the same address in many spellings — `2130706433`,
`0x7f.1`, `0177.0.0.1`, `[::ffff:7f00:1]`, `１２７.０.０.１`, `LOCALHOST.` — so every host that
reaches a rule goes through `canonical_host` first and every predicate canonicalises again (it is
cached, so that costs a dict lookup).

The IPv4 number syntax follows the WHATWG URL Standard's IPv4 parser (the same forms glibc's
`inet_aton` accepts: 1–4 parts, each decimal, `0x` hex or leading-`0` octal, the last part filling
the remaining bytes). Host names are mapped with UTS #46 (fullwidth forms, ideographic dots, case)
and written as ASCII (punycode) because that is the name DNS will be asked for.
`idna` is a declared dependency so a host is spelled the same on every install.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from functools import lru_cache
from urllib.parse import unquote

import idna as _idna

from mcp_defense.policy.extract.env import _Ctx
from mcp_defense.policy.extract.limits import _CACHE_LIMIT, _CACHEABLE_LEN, MAX_URLS
from mcp_defense.policy.facts import ExtractionError

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
    try:
        name = _idna.uts46_remap(name, std3_rules=False, transitional=False)
    except (_idna.IDNAError, UnicodeError, ValueError):
        pass
    name = name.translate(_DOTS).lower()
    if name.isascii():
        return name
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


# Wildcard-DNS services answer any name that embeds an address with that address
# (`169.254.169.254.nip.io`, `app-10-0-0-1.sslip.io`, `a9fea9fe.nip.io`, `--1.sslip.io`): the
# name is the address, for every predicate.
_WILDCARD_DNS = (
    "nip.io",
    "sslip.io",
    "xip.io",
    "nip.direct",
    "traefik.me",
    "backname.io",
    "ip.addr.tools",
    "localtest.direct",
)
_EMBEDDED_QUAD = re.compile(r"(?:^|[.-])(\d{1,3})[.-](\d{1,3})[.-](\d{1,3})[.-](\d{1,3})\Z")
_EMBEDDED_HEX = re.compile(r"(?:^|[.-])([0-9a-f]{8})\Z")


@lru_cache(maxsize=16384)
def _wildcard_address(host: str) -> _IPAddress | None:
    """The address a wildcard-DNS name resolves to, None for any other name."""
    name = canonical_host(host)
    for zone in _WILDCARD_DNS:
        if name.endswith("." + zone):
            label = name[: -len(zone) - 1]
            break
    else:
        return None
    quad = _EMBEDDED_QUAD.search(label)
    if quad is not None:
        try:
            return ipaddress.IPv4Address(".".join(quad.groups()))
        except ValueError:
            return None
    hexa = _EMBEDDED_HEX.search(label)
    if hexa is not None:
        return ipaddress.IPv4Address(int(hexa.group(1), 16))
    last = label.rsplit(".", 1)[-1]
    if "--" in last or last.count("-") >= 2:
        return _parse_ipv6(last.replace("-", ":"))
    return None


def _addresses(host: str) -> tuple[_IPAddress, ...]:
    address = _address(host)
    if address is None:
        wildcard = _wildcard_address(host)
        if wildcard is None:
            return ()
        address = wildcard
        host = str(wildcard)
    inner = embedded_ipv4(host)
    if inner:
        return (address, ipaddress.IPv4Address(inner))
    return (address,)


@lru_cache(maxsize=16384)
def is_ip(host: str) -> bool:
    """Whether the host is an IP literal in any spelling (`0x7f.1` is; `localhost` is not)."""
    return _address(host) is not None


_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
# Public names whose every subdomain resolves to 127.0.0.1 (DNS-rebinding and dev favourites).
_LOOPBACK_ZONES = ("localtest.me", "lvh.me", "vcap.me", "lacolhost.com", "localho.st", "fuf.me")


@lru_cache(maxsize=16384)
def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1, `localhost` and `*.localhost` — and the unspecified addresses.

    `0.0.0.0` and `::` are included on purpose: connecting to them reaches the local machine on
    Linux and macOS, so `http://0/` is a loopback request.
    """
    name = canonical_host(host)
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    if any(name == zone or name.endswith("." + zone) for zone in _LOOPBACK_ZONES):
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


# Names that only resolve inside a cluster, a container host or a private network: Kubernetes
# services (kubernetes.io/docs/concepts/services-networking/dns-pod-service), Docker Desktop and
# Podman host names, ICANN's private-use `.internal`, mDNS `.local`, RFC 8375 `.home.arpa`.
_INTERNAL_NAMES = frozenset(
    {
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "host.docker.internal",
        "gateway.docker.internal",
        "host.containers.internal",
        "host.lima.internal",
        "docker",
    }
)
_INTERNAL_ZONES = (
    ".svc",
    ".cluster.local",
    ".svc.cluster.local",
    ".internal",
    ".local",
    ".localdomain",
    ".home.arpa",
    ".lan",
    ".intranet",
    ".corp",
)


@lru_cache(maxsize=16384)
def is_private(host: str) -> bool:
    """RFC 1918, RFC 4193 (fc00::/7) and CGNAT 100.64.0.0/10, including tunnelled IPv4, and
    names that resolve only inside a cluster or private network (`kubernetes.default.svc`)."""
    name = canonical_host(host)
    if name in _INTERNAL_NAMES or name.endswith(_INTERNAL_ZONES):
        return True
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


# ---------------------------------------------------------------------------------------------
# URLs and hosts
# ---------------------------------------------------------------------------------------------

_SPECIAL_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}
_DEFAULT_PORTS = {
    **_SPECIAL_PORTS,
    "ssh": 22,
    "sftp": 22,
    "scp": 22,
    "git+ssh": 22,
    "ssh+git": 22,
    "git": 9418,
    "git+https": 443,
    "git+http": 80,
    "rsync": 873,
    "telnet": 23,
    "gopher": 70,
    "ldap": 389,
    "ldaps": 636,
    "smtp": 25,
    "smtps": 465,
    "imap": 143,
    "imaps": 993,
    "pop3": 110,
    "pop3s": 995,
    "redis": 6379,
    "rediss": 6379,
    "postgres": 5432,
    "postgresql": 5432,
    "mysql": 3306,
    "mariadb": 3306,
    "mongodb": 27017,
    "amqp": 5672,
    "amqps": 5671,
    "mqtt": 1883,
    "mqtts": 8883,
    "irc": 6667,
    "ircs": 6697,
    "rtsp": 554,
    "dns": 53,
    "nntp": 119,
    "svn": 3690,
    "svn+ssh": 22,
    "ftps": 990,
    "tftp": 69,
    "smb": 445,
    "nfs": 2049,
    "socks": 1080,
    "socks4": 1080,
    "socks4a": 1080,
    "socks5": 1080,
    "socks5h": 1080,
    "grpc": 443,
    "h2": 443,
    "http2": 443,
    "s3": 443,
    "memcached": 11211,
    "vnc": 5900,
    "rdp": 3389,
    "sip": 5060,
    "xmpp": 5222,
    "ipfs": 443,
}
_OPAQUE_SCHEMES = frozenset(
    {
        "mailto",
        "data",
        "javascript",
        "tel",
        "urn",
        "about",
        "blob",
        "sms",
        "geo",
        "magnet",
        "news",
        "cid",
        "mid",
        "xmpp",
    }
)
_KNOWN_SCHEMES = frozenset(_DEFAULT_PORTS) | _OPAQUE_SCHEMES | {"file", "unix"}
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_C0_SPACE = "".join(chr(i) for i in range(0x21))
_AUTH_END_SPECIAL = re.compile(r"[/?#\\]")
_AUTH_END_PLAIN = re.compile(r"[/?#]")
_HOST_OK = re.compile(r"[a-z0-9_~\-]+(?:\.[a-z0-9_~\-]+)*\.?|[0-9a-f:.]+")
_HOST_SPLIT = re.compile(r"[^a-z0-9_~\-.:]+")


@lru_cache(maxsize=16384)
def _clean_hosts(raw: str) -> tuple[str, ...]:
    """Canonical host(s) from an authority's host part; junk around a name is cut away."""
    if not raw:
        return ()
    host = canonical_host(raw)
    if not host:
        return ()
    if _HOST_OK.fullmatch(host):
        return (host,)
    out: list[str] = []
    for piece in _HOST_SPLIT.split(host):
        if piece and piece.strip(".:"):
            canon = canonical_host(piece.strip(":"))
            if canon and _HOST_OK.fullmatch(canon) and canon not in out:
                out.append(canon)
    return tuple(out)


def _split_hostport(hostport: str) -> tuple[str, str]:
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            return hostport, ""
        after = hostport[end + 1 :]
        return hostport[: end + 1], after[1:] if after.startswith(":") else ""
    host, _, port = hostport.partition(":")
    return host, port


def _port(text: str, scheme: str) -> int | None:
    if not text:
        return _DEFAULT_PORTS.get(scheme)
    if text.isascii() and text.isdigit() and len(text) <= 8:
        value = int(text)
        if value <= 65535:
            return value
    return None


def _host_text(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _UrlOut:
    __slots__ = ("endpoints", "file", "hosts", "urls")

    def __init__(self) -> None:
        self.urls: Sequence[str] = ()
        self.hosts: Sequence[str] = ()
        self.endpoints: Sequence[str] = ()
        self.file: str | None = None


_EMPTY_URL = _UrlOut()


def _parse_url(text: str, default_scheme: str | None) -> _UrlOut:
    """Parse leniently (WHATWG special-scheme rules plus RFC 3986 readings).

    Several parsers disagree on `http://a\\@b/` (WHATWG: host a; RFC 3986/urllib: host b), so
    hosts from both readings are reported; the URL string uses the WHATWG one.
    """
    t = text.strip(_C0_SPACE)
    if "\t" in t or "\n" in t or "\r" in t:
        t = t.replace("\t", "").replace("\n", "").replace("\r", "")
    match = _SCHEME_RE.match(t)
    scheme = match.group(1).lower() if match else ""
    if match and (default_scheme is None or "://" in t or scheme in _KNOWN_SCHEMES):
        rest = t[match.end() :]
    elif default_scheme is not None:
        scheme = default_scheme
        rest = t[2:] if t[:2] in ("//", "\\\\") else t
        rest = "//" + rest
    else:
        return _EMPTY_URL
    out = _UrlOut()
    if scheme == "file" or scheme == "unix":
        out.file = t
        return out
    special = scheme in _SPECIAL_PORTS
    if special:
        rest = rest.lstrip("/\\")
    elif rest[:2] in ("//", "\\\\", "/\\", "\\/"):
        rest = rest[2:]
    else:
        return out  # opaque: mailto:, data:, urn:
    cut = _AUTH_END_SPECIAL.search(rest)
    authority = rest if cut is None else rest[: cut.start()]
    authority_plain = authority
    if "\\" in rest:
        cut_plain = _AUTH_END_PLAIN.search(rest)
        authority_plain = rest if cut_plain is None else rest[: cut_plain.start()]
    host_port, out.hosts, out.endpoints = _authority_facts(scheme, authority, authority_plain)
    if host_port is not None:
        path = rest[len(authority) :]
        hash_at = path.find("#")
        if hash_at >= 0:
            path = path[:hash_at]
        if special:
            path = path.replace("\\", "/")
            if not path.startswith("/"):
                path = "/" + path
        out.urls = [f"{scheme}://{host_port}{path}"]
    return out


@lru_cache(maxsize=16384)
def _authority_facts(
    scheme: str, authority: str, authority_plain: str
) -> tuple[str | None, tuple[str, ...], tuple[str, ...]]:
    """(`host:port` for the URL string, hosts, endpoints) of one authority — memoised, because
    text with thousands of URLs usually names a handful of hosts."""
    host_port: str | None = None
    hosts: list[str] = []
    endpoints: list[str] = []
    for index, auth in enumerate(
        (authority, authority_plain) if authority_plain != authority else (authority,)
    ):
        host_raw, port_raw = _split_hostport(auth.rpartition("@")[2])
        port = _port(port_raw, scheme)
        for host in _clean_hosts(host_raw):
            if index == 0 and host_port is None:
                host_port = _host_text(host) + (f":{port}" if port is not None else "")
            inner = embedded_ipv4(host) if ":" in host else ""
            for h in (host, inner) if inner else (host,):
                if h not in hosts:
                    hosts.append(h)
                if port is not None:
                    endpoint = f"{_host_text(h)}:{port}"
                    if endpoint not in endpoints:
                        endpoints.append(endpoint)
    return host_port, tuple(hosts), tuple(endpoints)


def _url_facts(text: str, default_scheme: str | None, ctx: _Ctx, memo: bool = True) -> _UrlOut:
    if not memo or len(text) > _CACHEABLE_LEN:
        return _parse_url(text, default_scheme)
    key = (text, default_scheme)
    cache = ctx.url_cache
    hit = cache.get(key)
    if hit is None:
        hit = _parse_url(text, default_scheme)
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = hit
    return hit


_COLON_SLASH = re.compile(r":[/\\]")
_URL_STOP = re.compile(r"[\s\"'<>`]")
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
_TRAIL_PUNCT = ".,;:!?'\")]}>*"
_SPECIAL_NOSLASH = re.compile(r"[ \t\r\n]*(?:https?|wss?|ftp):(?![/\\])[^\s]", re.I)


def _embedded_urls(text: str, pattern: re.Pattern[str] = _COLON_SLASH) -> list[str]:
    """`scheme:/…` or `scheme:\\…` words anywhere in `text` (C-speed search, no per-char loop)."""
    out: list[str] = []
    pos = 0
    search = pattern.search
    while True:
        match = search(text, pos)
        if match is None:
            return out
        colon = match.start()
        start = colon
        low = max(0, colon - 40)
        while start > low and text[start - 1] in _SCHEME_CHARS:
            start -= 1
        while start < colon and not text[start].isalpha():
            start += 1
        stop = _URL_STOP.search(text, colon)
        end = len(text) if stop is None else stop.start()
        pos = max(end, colon + 2)
        if start == colon:
            continue
        word = text[start:end]
        if word.endswith(tuple(_TRAIL_PUNCT)):
            word = _trim_trailing(word)
        out.append(word)


_SIMPLE_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#\\@\s%\t]+)([/?#][^\\\t\n\r]*)?\Z")
_SIMPLE_SCHEMES = frozenset(_SPECIAL_PORTS)  # their path rules are the simple ones
_FAST_BODY = re.compile(r"://([^\s\"'<>`:]*(?::(?!//)[^\s\"'<>`:]*)*)")
_FAST_SCHEME_REV = re.compile(r"//:([A-Za-z0-9+.\-]*)")
_RARE_SLASH = re.compile(r":(?:\\|/(?!/))")
_BIG_TEXT = 1 << 20
_MANY_URLS = 50_000  # above this many `://`, pair schemes and bodies with C scans instead


def _embedded_urls_big(text: str) -> list[str]:
    """`_embedded_urls` for megabytes of text: the per-occurrence work is done by C regex
    scans (bodies forwards, schemes on the reversed text, paired by position) and only the
    *distinct* URLs reach Python. Falls back to the simple scanner if the pairing is unsure."""
    bodies = _FAST_BODY.findall(text)
    if not bodies:
        return _embedded_urls(text, _RARE_SLASH) if _RARE_SLASH.search(text) else []
    schemes = _FAST_SCHEME_REV.findall(text[::-1])
    if len(schemes) != len(bodies):
        return _embedded_urls(text)
    pairs = set(zip(reversed(schemes), bodies, strict=True))
    if len(pairs) > MAX_URLS:
        raise ExtractionError(f"more than {MAX_URLS} distinct URLs in one call")
    out: list[str] = []
    for scheme_rev, body in pairs:
        scheme = scheme_rev[::-1][-40:]
        start = 0
        while start < len(scheme) and not scheme[start].isalpha():
            start += 1
        if start == len(scheme):
            continue
        word = scheme[start:] + "://" + body
        if word.endswith(tuple(_TRAIL_PUNCT)):
            word = _trim_trailing(word)
        out.append(word)
    out.sort()  # deterministic order for set-derived results
    if _RARE_SLASH.search(text):
        out.extend(_embedded_urls(text, _RARE_SLASH))
    return out


def _trim_trailing(word: str) -> str:
    while word and word[-1] in _TRAIL_PUNCT:
        last = word[-1]
        if last == ")" and word.count("(") >= word.count(")"):
            break
        if last == "]" and word.count("[") >= word.count("]"):
            break
        word = word[:-1]
    return word
