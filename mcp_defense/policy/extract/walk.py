"""The argument walker and the entry point `extract`."""

from __future__ import annotations

import json
import math
import posixpath
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mcp_defense.policy.extract import env as _env
from mcp_defense.policy.extract.classify import KEY_ARGVISH, KEY_PATHISH, Classifier
from mcp_defense.policy.extract.code import (
    _CHR_CALL,
    _HOME_MARKER,
    _HOST_PORT_TUPLE,
    _JOIN_GAP,
    _SHELL_HINT,
    _chr_literal,
    _code_literals,
)
from mcp_defense.policy.extract.env import Environment, _Ctx, _ctx_for
from mcp_defense.policy.extract.limits import (
    _ANY,
    _CACHE_LIMIT,
    _CACHEABLE_LEN,
    _COMMAND,
    _GENERIC,
    _M_GENERIC,
    _M_SOFT,
    _M_STRICT,
    _N,
    _PATH,
    _R,
    _RESCAN,
    _S,
    _SOFT_PATH,
    _SOURCE,
    _TEXT,
    _URL,
    _W,
    MAX_ANCHORS,
    MAX_CODE_LITERALS,
    MAX_DEPTH,
    MAX_GLOB_PATTERNS,
    MAX_ITEMS,
    MAX_PATH_CHARS,
    MAX_PATHS,
    MAX_RELATIVES,
    MAX_SHELL_NESTING,
    MAX_URLS,
)
from mcp_defense.policy.extract.paths import (
    _IFS_RE,
    _VAR_START,
    Resolver,
    _monotonic,
    _PathOut,
    _real_cache,
    _realpath,
    _resolve_path,
    _too_long,
)
from mcp_defense.policy.extract.scan import (
    _BARE_HOSTPORT,
    _BARE_IPV4,
    _BARE_IPV6,
    _BRACED_VAR_TAIL,
    _OPTION_NAME,
    _PIECE_SPLIT,
    _STRONG_PREFIXES,
    _TOKEN_BODY_REV,
    _TOKEN_HINT,
    _TOKEN_SEPS,
    _TOKEN_STOP,
    _WS,
)
from mcp_defense.policy.extract.shell.analyse import _Shell, _ShellState
from mcp_defense.policy.extract.shell.lexer import _ansi_c, _Word
from mcp_defense.policy.extract.shell.programs import _B64_WORD, _b64_text, _shell_vars
from mcp_defense.policy.extract.urls import (
    _BIG_TEXT,
    _MANY_URLS,
    _SIMPLE_SCHEMES,
    _SIMPLE_URL,
    _SPECIAL_NOSLASH,
    _authority_facts,
    _clean_hosts,
    _embedded_urls,
    _embedded_urls_big,
    _host_text,
    _url_facts,
    embedded_ipv4,
)
from mcp_defense.policy.facts import CallFacts, ExtractionError

# ---------------------------------------------------------------------------------------------
# The walker
# ---------------------------------------------------------------------------------------------

_LATIN1_HEADER = sys.getsizeof("\u00e9") - 2  # object header of a compact non-ASCII str
_FLOAT = float
_STR = str
_DICT = dict
_LIST = list
_INT = int
_BOOL = bool


class _Acc:
    """Accumulates the facts of one call. Ordered sets are dicts (insertion order)."""

    __slots__ = (
        "anchors",
        "cls",
        "cmd_strings",
        "commands",
        "ctx",
        "dotglob",
        "endpoints",
        "flags",
        "hosts",
        "items",
        "literals",
        "prose",
        "overflow",
        "path_chars",
        "paths",
        "phys",
        "programs",
        "relatives",
        "role",
        "sources",
        "tokens",
        "url_words",
        "urls",
    )

    def __init__(self, ctx: _Ctx, cls: Classifier) -> None:
        self.ctx = ctx
        self.cls = cls
        self.paths: dict[str, None] = {}
        self.literals = 0
        self.prose = False
        self.phys: list[str] = []
        self.urls: dict[str, None] = {}
        self.hosts: dict[str, None] = {}
        self.endpoints: dict[str, None] = {}
        self.commands: list[str] = []
        self.programs: dict[str, None] = {}
        self.flags = 0
        self.items = 0
        self.path_chars = 0
        self.tokens = 0
        self.anchors: list[str] = []
        self.relatives: list[str] = []
        self.overflow = False
        self.url_words = 0
        self.cmd_strings: list[str] = []
        # Paths seen only in SOURCE role (read, never written); None once the roles of a
        # command's words are uncertain (then every path may be written).
        self.role = _ANY
        self.sources: dict[str, None] | None = {}
        self.dotglob = False  # a command turned on matching dot-files with wildcards

    # -- facts --------------------------------------------------------------------------------

    def add_path(self, path: str) -> None:
        if path in self.paths:
            if self.sources and self.role == _ANY:
                self.sources.pop(path, None)  # also used in a role that may write it
            return
        if len(self.paths) >= MAX_PATHS:
            raise ExtractionError(f"more than {MAX_PATHS:,} distinct paths in one call")
        self.path_chars += len(path)
        if self.path_chars > MAX_PATH_CHARS:
            raise ExtractionError(
                f"more than {MAX_PATH_CHARS:,} characters of distinct paths in one call"
            )
        self.paths[path] = None
        if self.role == _SOURCE and self.sources is not None:
            self.sources[path] = None
        if path.startswith("/dev/"):
            self._dev_net(path)

    def _dev_net(self, path: str) -> None:
        """bash turns `/dev/tcp/host/port` redirections into connections."""
        parts = path.split("/")
        if len(parts) >= 5 and parts[2] in ("tcp", "udp") and parts[3]:
            for host in _clean_hosts(parts[3]):
                self.add_host(host)
                if parts[4].isdigit() and int(parts[4]) <= 65535:
                    self.endpoints.setdefault(f"{_host_text(host)}:{int(parts[4])}", None)
            self.flags |= _N

    def add_host(self, host: str) -> None:
        self.hosts.setdefault(host, None)
        if ":" in host:
            inner = embedded_ipv4(host)
            if inner:
                self.hosts.setdefault(inner, None)

    def add_endpoint(self, host: str, port: int | None) -> None:
        if port is not None:
            self.endpoints.setdefault(f"{_host_text(host)}:{port}", None)

    def merge_path_out(self, out: _PathOut, record_relative: bool) -> None:
        for path in out.paths:
            if path not in self.paths:
                self.add_path(path)
            elif self.sources and self.role == _ANY:
                self.sources.pop(path, None)
        if out.phys:
            self.phys.extend(out.phys)
        if record_relative and out.relative:
            if len(self.relatives) < MAX_RELATIVES:
                self.relatives.extend(out.relative)
            else:
                self.overflow = True

    def path_value(
        self,
        raw: str,
        mode: int,
        bases: Sequence[str] | None = None,
        variables: Mapping[str, str | None] | None = None,
    ) -> None:
        """Add every canonical reading of a raw path value (relative → each base)."""
        if bases is None:
            self.merge_path_out(_resolve_path(raw, mode, self.ctx.workspace, self.ctx), True)
            return
        if variables is self.ctx.vars:
            variables = None
        for base in bases:
            self.merge_path_out(_resolve_path(raw, mode, base, self.ctx, variables), True)

    def url_value(self, text: str, default_scheme: str | None, memo: bool = True) -> bool:
        """Add one URL (or `file:` path). True when it named a host."""
        out = _url_facts(text, default_scheme, self.ctx, memo)
        if out.file is not None:
            if not self.prose:  # a `file:` URL in prose being written is content, not access
                self.path_value(out.file, _M_SOFT)
            return False
        if out.hosts and not self.prose:
            self.flags |= _N  # every endpoint outside prose is a destination
        for url in out.urls:
            self.urls.setdefault(url, None)
        for host in out.hosts:
            self.hosts.setdefault(host, None)
        for endpoint in out.endpoints:
            self.endpoints.setdefault(endpoint, None)
        return bool(out.hosts)

    def scan_urls(self, text: str) -> bool:
        found = False
        if ":" not in text:
            return False
        if len(text) > _BIG_TEXT and (occurrences := text.count("://")) > _MANY_URLS:
            if occurrences > 10 * MAX_URLS:
                raise ExtractionError(f"more than {10 * MAX_URLS} URLs in one value")
            words = _embedded_urls_big(text)
        else:
            words = _embedded_urls(text)
        if len(words) > 64:
            words = list(dict.fromkeys(words))
            self.url_words += len(words)
            if self.url_words > MAX_URLS:
                # Reporting them all would make the decision (and every rule over call.urls)
                # arbitrarily slow; no legitimate call names this many destinations.
                raise ExtractionError(f"more than {MAX_URLS} distinct URLs in one call")
        if len(words) <= 64:
            for word in words:
                found = self.url_value(word, None) or found
            return found
        return self.url_words_bulk(words)

    def url_words_bulk(self, words: list[str]) -> bool:
        """Many URLs (a big document): the common `scheme://authority/path` shape is split with
        one regex and its authority parsed once per distinct (scheme, authority); anything
        unusual goes through the full parser. Same facts, a fraction of the per-URL cost."""
        urls = self.urls
        hosts = self.hosts
        endpoints = self.endpoints
        seen: dict[tuple[str, str], str | None] = {}
        match = _SIMPLE_URL.match
        for word in words:
            m = match(word)
            if m is None:
                self.url_value(word, None, False)
                continue
            scheme = m.group(1).lower()
            if scheme == "file" or scheme not in _SIMPLE_SCHEMES:
                self.url_value(word, None, False)
                continue
            authority = m.group(2)
            key = (scheme, authority)
            host_port = seen.get(key, "")
            if host_port == "":
                host_port, new_hosts, new_endpoints = _authority_facts(scheme, authority, authority)
                seen[key] = host_port
                for host in new_hosts:
                    hosts.setdefault(host, None)
                for endpoint in new_endpoints:
                    endpoints.setdefault(endpoint, None)
            if host_port is not None:
                path = m.group(3) or "/"
                hash_at = path.find("#")
                if hash_at >= 0:
                    path = path[:hash_at] or "/"
                if path[0] != "/":
                    path = "/" + path
                urls.setdefault(f"{scheme}://{host_port}{path}", None)
        if seen and not self.prose:
            self.flags |= _N
        return bool(seen)

    # -- values -------------------------------------------------------------------------------

    def scan_generic(
        self,
        s: str,
        depth: int,
        bases: Sequence[str] | None = None,
        variables: Mapping[str, str | None] | None = None,
    ) -> None:
        """Unknown-role string: JSON inside, URLs anywhere, path-looking words anywhere."""
        if not s:
            return
        first = s[0]
        if first in '{["' or (first in " \t\r\n" and s.lstrip()[:1] in ("{", "[")):
            if self._json_in_string(s, depth):
                return
        if ":" in s:
            self.scan_urls(s)
            if _SPECIAL_NOSLASH.match(s):
                self.url_value(s.strip(), None)
        if s.startswith(_STRONG_PREFIXES) and not _too_long(s):
            self.path_value(s, _M_GENERIC, bases, variables)
        elif first == "$" and _VAR_START.match(s):
            self.path_value(s, _M_GENERIC, bases, variables)
        if first.isdigit() or first == "[" or first == ":":
            if _BARE_IPV4.match(s) or _BARE_IPV6.match(s):
                self.url_value(s, "tcp")
        elif ":" in s and first.isalpha() and len(s) < 300:
            hp = _BARE_HOSTPORT.match(s)
            if hp:
                self.url_value(s, "tcp")
        if _TOKEN_HINT.search(s) is not None:
            self._scan_tokens(s, bases, variables)

    def _scan_tokens(
        self, s: str, bases: Sequence[str] | None, variables: Mapping[str, str | None] | None
    ) -> None:
        """Each separator-delimited word that contains a (possibly encoded) slash is a path."""
        if not any(ch in s for ch in _TOKEN_SEPS):
            tokens: Iterable[str] = (s,)
        else:
            tokens = self._tokens(s)
        for token in tokens:
            if "://" in token and token[:5].lower() != "file:":
                continue  # URLs were taken by scan_urls
            if token.startswith("-") and "=" not in token:
                # An option with an attached value (`-i/home/a/.ssh/id_rsa`, `-Iinclude/x`).
                for value in dict.fromkeys((token[2:], _OPTION_NAME.sub("", token, count=1))):
                    if value and _TOKEN_HINT.search(value):
                        self._token_path(value, bases, variables)
                continue
            self._token_path(token, bases, variables)
            if len(token) < 4096 and _PIECE_SPLIT.search(token) and "://" not in token:
                for piece in _PIECE_SPLIT.split(token):
                    if piece and piece != token and _TOKEN_HINT.search(piece):
                        self._token_path(piece, bases, variables)

    def _token_path(
        self, token: str, bases: Sequence[str] | None, variables: Mapping[str, str | None] | None
    ) -> None:
        if _too_long(token):
            # A path the kernel would refuse unless a consumer normalises it first: keep it only
            # if lexical normalisation shrinks it (e.g. "/home/a/.ssh/id_rsa" + "/." * 3000).
            if "/." not in token and "//" not in token and "%" not in token:
                return
        self.path_value(token, _M_GENERIC, bases, variables)

    def _tokens(self, s: str) -> Iterable[str]:
        pos = 0
        search = _TOKEN_HINT.search
        stop = _TOKEN_STOP.search
        while True:
            hint = search(s, pos)
            if hint is None:
                return
            k = hint.start()
            low = max(pos, k - 1024)
            window = s[low:k][::-1]
            start = k - _TOKEN_BODY_REV.match(window).end()  # type: ignore[union-attr]
            if start > 0 and s[start - 1] == "}":
                # `${HOME}/.ssh`: the braces of a parameter expansion are not a word boundary.
                braced = _BRACED_VAR_TAIL.search(s, max(0, start - 128), start)
                if braced is not None:
                    start = braced.start()
            end_match = stop(s, k)
            end = len(s) if end_match is None else end_match.start()
            if end > start:
                yield s[start:end]
            pos = max(end, k + 1)

    def _json_in_string(self, s: str, depth: int) -> bool:
        try:
            value = json.loads(s, parse_constant=lambda _: None)
        except RecursionError:
            raise ExtractionError("JSON inside a string is nested too deeply") from None
        except ValueError:
            return False
        if isinstance(value, (dict, list)):
            self.walk(value, _GENERIC, depth + 1)
            return True
        if isinstance(value, str) and s.startswith('"'):
            self.check_str(value)
            self.scan_generic(value, depth + 1)
            return True
        return False

    def check_str(self, s: str) -> None:
        """NUL and lone surrogates are refused (C consumers truncate; encoders disagree)."""
        if "\x00" in s:
            raise ExtractionError("NUL byte in a string")
        if not s.isascii():
            # CPython compact strings: a 1-byte (Latin-1) string cannot hold surrogates, and its
            # size says so in O(1); only wider strings pay for the O(n) encode.
            if len(s) > 64 and sys.getsizeof(s) - _LATIN1_HEADER <= len(s) + 1:
                return
            try:
                s.encode("utf-8")
            except UnicodeEncodeError:
                raise ExtractionError("lone surrogate (undecodable) in a string") from None

    def visit_str(self, s: str, role: int, depth: int) -> None:
        if role == _PATH or role == _SOFT_PATH:
            mode = _M_STRICT if role == _PATH else _M_SOFT
            if len(s) <= _CACHEABLE_LEN and "://" not in s:
                self.path_value(s, mode)
                if s[:1] in ("{", "["):
                    self._json_in_string(s, depth)
                elif (" " in s or not s.isprintable()) and _WS.search(s) is not None:
                    # (every \s character is a blank or unprintable: the cheap test first)
                    # Not a plain path after all (prose under a path-ish key): its words too.
                    self.scan_generic(s, depth)
                return
            if "://" in s and s[:5].lower() != "file:":
                self.scan_urls(s)
            self.path_value(s, mode)
            if s[:1] in ("{", "["):
                self._json_in_string(s, depth)
            elif _WS.search(s) is not None:
                self.scan_generic(s, depth)
        elif role == _GENERIC:
            self.scan_generic(s, depth)
        elif role == _TEXT:
            if ":" in s:
                # (an exception discards the whole accumulator, so no try/finally is needed)
                self.prose = True
                self.scan_urls(s)
                self.prose = False
        elif role == _URL:
            self.visit_url(s, depth)
        elif role == _COMMAND:
            self.flags |= _S
            self.command(s)
        else:  # _CODE
            self.flags |= _S
            self.code(s, depth, [self.ctx.workspace], self.ctx.vars)

    def visit_url(self, s: str, depth: int) -> None:
        stripped = s.strip()
        if not stripped:
            return
        if "\t" in stripped or "\n" in stripped or "\r" in stripped:
            # URL parsers (WHATWG, urllib) delete tab/CR/LF anywhere in a URL.
            self.scan_generic(s, depth)
            stripped = stripped.replace("\t", "").replace("\n", "").replace("\r", "")
        if stripped[0] in "{[":
            if self._json_in_string(stripped, depth):
                return
        if stripped.startswith(("/", "~", "./", "../")) and not stripped.startswith("//"):
            self.path_value(stripped, _M_SOFT)
            return
        if "=" in stripped and self.connection_string(stripped):
            self.flags |= _N
        if _WS.search(stripped):
            self.scan_generic(s, depth)
            return
        if self.url_value(stripped, "https"):
            self.flags |= _N
        self.scan_urls(stripped)

    def connection_string(self, s: str) -> bool:
        """Endpoints of libpq `host=… port=…`, ODBC/ADO `Server=tcp:h,1433;` strings."""
        found = False
        port_match = _CONN_PORT.search(s)
        port = int(port_match.group(1)) if port_match is not None else None
        for match in _CONN_HOST.finditer(s):
            for raw in match.group(1).split(","):
                host_text, _, own_port = (
                    raw.partition(":") if raw.count(":") == 1 else (raw, "", "")
                )
                for host in _clean_hosts(host_text):
                    found = True
                    self.add_host(host)
                    p = int(own_port) if own_port.isdigit() else port
                    if match.group(2) and match.group(2).isdigit():
                        p = int(match.group(2))
                    if p is not None and p <= 65535:
                        self.add_endpoint(host, p)
        return found

    # -- shell --------------------------------------------------------------------------------

    def command(self, s: str, cwds: list[str] | None = None, paths_only: bool = False) -> None:
        if not paths_only:
            self.cmd_strings.append(s)
        if _DOTGLOB.search(s) is not None:
            self.dotglob = True
        state = _ShellState(list(cwds) if cwds else [self.ctx.workspace], _shell_vars(self.ctx))
        _Shell(self, state, paths_only).analyse(s, 0)
        # Belt and braces: every path-looking token of the raw text, whatever the lexer thought.
        # (A token the lexer read as a source stays one: this pass knows no roles.)
        raw = _IFS_RE.sub(" ", s) if "IFS" in s else s
        role = self.role
        self.role = _RESCAN
        self.scan_generic_raw(raw, state.cwds)
        self.role = role
        if not paths_only:
            self.decoded_payloads(s, state)

    def decoded_payloads(self, s: str, state: _ShellState) -> None:
        """`echo <base64> | base64 -d | sh`, `printf '\\x63\\x61\\x74 …' | sh`: decode the payload
        words and analyse them as commands too (cheap insurance for a common idiom)."""
        if "base64" in s or "b64" in s:
            for word in _B64_WORD.findall(s):
                decoded = _b64_text(word)
                if decoded:
                    self.scan_generic(decoded, 0, state.cwds)
                    _Shell(
                        self,
                        _ShellState(list(state.cwds), dict(state.vars), state.pvars is None),
                        False,
                    ).analyse(decoded, 1)
        if "\\x" in s or "\\0" in s or "\\u" in s:
            decoded = _ansi_c(s)
            if decoded != s:
                self.scan_generic_raw(decoded, state.cwds)
                _Shell(
                    self,
                    _ShellState(list(state.cwds), dict(state.vars), state.pvars is None),
                    False,
                ).analyse(decoded, 1)

    def scan_generic_raw(self, s: str, bases: Sequence[str]) -> None:
        if ":" in s:
            self.scan_urls(s)
        if _TOKEN_HINT.search(s) is not None:
            self._scan_tokens(s, bases, None)

    def code(
        self,
        code: str,
        depth: int,
        bases: list[str],
        variables: Mapping[str, str | None],
        shell_depth: int = 0,
    ) -> None:
        """Program text: literals (decoded), joins of adjacent literals, home markers. Any
        endpoint found in code is network: the code can connect to it."""
        hosts_before = len(self.hosts)
        self.code_values(code, depth, bases, variables, shell_depth)
        if len(self.hosts) > hosts_before:
            self.flags |= _N
        if _CODE_WRITE.search(code) is not None:
            self.flags |= _W  # the paths in code that writes files may be the ones written

    def code_values(
        self,
        code: str,
        depth: int,
        bases: list[str],
        variables: Mapping[str, str | None],
        shell_depth: int,
    ) -> None:
        text = code
        if _HOME_MARKER.search(text):
            text = _HOME_MARKER.sub("'~'", text)
        if "chr" in text or "fromC" in text:
            text = _CHR_CALL.sub(_chr_literal, text)
        values: dict[str, None] = {}
        atom_sets = [_code_literals(text, False), _code_literals(text, True)]
        self.literals += len(atom_sets[0])
        if self.literals > MAX_CODE_LITERALS:
            raise ExtractionError(f"more than {MAX_CODE_LITERALS} string literals in code")
        for atoms in atom_sets:
            for _, _, value in atoms:
                values.setdefault(value, None)
            group: list[str] = []
            previous_end = -1
            for start, end, value in atoms:
                if (
                    group
                    and _JOIN_GAP.match(text, previous_end, start) is not None
                    and len(group) < 32
                ):
                    group.append(value)
                else:
                    if len(group) > 1:
                        values.setdefault("".join(group), None)
                        values.setdefault("/".join(group), None)
                    group = [value]
                previous_end = end
            if len(group) > 1:
                values.setdefault("".join(group), None)
                values.setdefault("/".join(group), None)
        # Paths built through variables (`h = "/home/alice"; open(h + "/.ssh/id_rsa")`): join every
        # directory-looking literal with every path-tail literal. Bounded: 32 × 32.
        heads = [v for v in values if v.startswith(("/", "~")) and not _WS.search(v)][:32]
        tails = [v for v in values if v and not _WS.search(v) and ("/" in v or v.startswith("."))][
            :32
        ]
        for head in heads:
            for tail in tails:
                if head != tail:
                    values.setdefault(head.rstrip("/") + "/" + tail.lstrip("/"), None)
        for value in list(values):
            if len(value) >= 12 and "=" not in value[:-2] and _B64_WORD.fullmatch(value):
                decoded = _b64_text(value)
                if decoded:
                    values.setdefault(decoded, None)
        shellish = _SHELL_HINT.search(code) is not None
        netty = _NET_API.search(code) is not None
        for value in values:
            if not value:
                continue
            if value == "~":
                self.path_value(value, _M_SOFT, bases, variables)
                continue
            self.scan_generic(value, depth + 1, bases, variables)
            if (value[0].isdigit() or value[0] in "[:") and (
                _BARE_IPV4.match(value) or _BARE_IPV6.match(value)
            ):
                self.url_value(value, "tcp")
            elif netty and len(value) <= 253 and _CODE_HOST.match(value) is not None:
                # `connect(4444, 'evil.example.com')`, `IO::Socket::INET->new("h:4444")`
                self.url_value(value, "tcp")
            elif "=" in value and netty:
                self.connection_string(value)
            if shellish and (" " in value or "\t" in value) and shell_depth < MAX_SHELL_NESTING:
                state = _ShellState(
                    list(bases), {**variables, "IFS": " "}, variables is self.ctx.vars
                )
                _Shell(self, state, False).analyse(value, shell_depth + 1)
        for match in _HOST_PORT_TUPLE.finditer(text):
            for host in _clean_hosts(match.group(2)):
                self.add_host(host)
                port = int(match.group(3))
                if port <= 65535:
                    self.add_endpoint(host, port)
        self.scan_generic_raw(code, bases)

    # -- structure ----------------------------------------------------------------------------

    def walk(self, value: Any, role: int, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise ExtractionError(f"arguments nested deeper than {MAX_DEPTH}")
        kind = type(value)
        if kind is _STR:
            self.items += 1
            if self.items > MAX_ITEMS:
                raise ExtractionError(f"more than {MAX_ITEMS:,} strings and keys in arguments")
            self.check_str(value)
            self.visit_str(value, role, depth)
        elif kind is _DICT:
            self.walk_dict(value, role, depth)
        elif kind is _LIST:
            self.walk_list(value, role, depth)
        elif value is None or kind is _BOOL or kind is _INT:
            return
        elif kind is _FLOAT:
            if not math.isfinite(value):
                raise ExtractionError("non-finite number (NaN/Infinity) in arguments")
        else:
            self.walk_other(value, role, depth)

    def walk_other(self, value: Any, role: int, depth: int) -> None:
        if isinstance(value, bool) or value is None:
            return
        if isinstance(value, str):
            self.walk(str.__str__(value), role, depth)
        elif isinstance(value, Mapping) and not isinstance(value, type):
            self.walk_dict(dict(value), role, depth)
        elif isinstance(value, list):
            self.walk_list(list(value), role, depth)
        elif isinstance(value, int):
            return
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise ExtractionError("non-finite number (NaN/Infinity) in arguments")
        else:
            raise ExtractionError(f"non-JSON value of type {type(value).__name__} in arguments")

    def walk_list(self, value: list[Any], role: int, depth: int) -> None:
        if role == _COMMAND and value and all(type(v) is _STR for v in value):
            for item in value:
                self.check_str(item)
            self.flags |= _S
            self.argv(value)
        walk = self.walk
        walk_dict = self.walk_dict
        for item in value:
            if type(item) is _DICT and depth < MAX_DEPTH:
                walk_dict(item, role, depth + 1)
            else:
                walk(item, role, depth + 1)

    def walk_dict(self, value: dict[Any, Any], role: int, depth: int) -> None:
        key_info = self.cls.key_info
        key_memo = self.cls._key_memo
        path_cache = self.ctx.cache
        workspace = self.ctx.workspace
        command_value: str | None = None
        argv_value: list[str] | None = None
        for key, item in value.items():
            if type(key) is not _STR:
                if isinstance(key, str):
                    key = str.__str__(key)
                else:
                    raise ExtractionError(f"non-string object key of type {type(key).__name__}")
            self.items += 1
            if self.items > MAX_ITEMS:
                raise ExtractionError(f"more than {MAX_ITEMS:,} strings and keys in arguments")
            if "\x00" in key or not key.isascii():
                self.check_str(key)
            info = key_memo.get(key)
            key_role, bits, dirish, shape = info if info is not None else key_info(key)
            if key_role == _GENERIC:
                key_role = role
            kind = type(item)
            if (
                bits
                and item is not None
                and item is not False
                and (item or (kind is not _STR and kind is not _LIST and kind is not _DICT))
            ):
                if bits & _N and kind is _STR and _local_file_uri(item):
                    # A local `file:` URI under a network key (`uri`, `url`) names a file on
                    # this host (its path is a fact), not a destination; `file://host/…` (a
                    # share on another host) stays network.
                    self.flags |= bits & ~_N
                else:
                    self.flags |= bits  # an empty value ("", [], {}) carries no effect
            if shape & KEY_PATHISH:
                self.scan_generic(key, depth + 1)
            if kind is _STR and depth < MAX_DEPTH:
                # walk() inlined for the common case (a string value)
                self.items += 1
                if self.items > MAX_ITEMS:
                    raise ExtractionError(f"more than {MAX_ITEMS} strings and keys in arguments")
                if "\x00" in item or not item.isascii():
                    self.check_str(item)
                if key_role == _PATH and not dirish:
                    # visit_str → path_value inlined for a plain path already resolved once
                    # (one canonical path, no `..`, not relative): the everyday argument.
                    out = path_cache.get((item, _M_STRICT, workspace))
                    if (
                        out is not None
                        and len(out.paths) == 1
                        and not out.phys
                        and not out.relative
                        and item[:1] not in ("{", "[")
                        and " " not in item
                        and "://" not in item
                        and item.isprintable()
                    ):
                        path = out.paths[0]
                        if path not in self.paths:
                            self.add_path(path)
                        elif self.sources and self.role == _ANY:
                            self.sources.pop(path, None)
                        continue
                if key_role != _TEXT or ":" in item:  # text without a colon has no facts
                    self.visit_str(item, key_role, depth + 1)
                if dirish:
                    self.anchor(item, key_role == _PATH)
                if key_role == _COMMAND:
                    command_value = item
                continue
            if kind is _LIST and depth < MAX_DEPTH:
                self.walk_list(item, key_role, depth + 1)
            else:
                self.walk(item, key_role, depth + 1)
            if kind is _STR:
                if dirish:
                    self.anchor(item, key_role == _PATH)
                if key_role == _COMMAND:
                    command_value = item
            elif kind is _LIST and shape & KEY_ARGVISH:
                argv_value = [v for v in item if type(v) is _STR]
        if command_value is not None and argv_value:
            # `{"command": "cat", "args": ["id_rsa"]}` is exec(argv) in most shell-ish servers.
            self.argv([command_value, *argv_value], record_from=1)

    def anchor(self, raw: str, strict: bool) -> None:
        out = _resolve_path(raw, _M_STRICT if strict else _M_SOFT, self.ctx.workspace, self.ctx)
        for path in out.paths[:1]:
            if path not in self.anchors:
                if len(self.anchors) >= MAX_ANCHORS:
                    raise ExtractionError(f"more than {MAX_ANCHORS} directory-like arguments")
                self.anchors.append(path)

    def argv(self, argv: list[str], record_from: int = 0) -> None:
        """An exec-style argv (no shell): each element is one literal word."""
        state = _ShellState([self.ctx.workspace], _shell_vars(self.ctx))
        words = [_Word(a, [], True) for a in argv]
        for word in words[record_from:]:
            self.commands.append(word.text)
        _Shell(self, state, False).run(words, 0)

    def join_anchors(self) -> None:
        """Relative values next to a directory argument (`cwd`, `dir`, …) are resolved against it
        as well: `{"cwd": "~/.ssh", "command": "cat id_rsa"}` reads `~/.ssh/id_rsa`."""
        anchors = [a for a in self.anchors if a != self.ctx.workspace]
        if not anchors:
            return
        if self.overflow:
            # Joining only some of them could miss the one that names a secret.
            raise ExtractionError(
                f"more than {MAX_RELATIVES} relative paths next to a directory argument"
            )
        relatives = list(dict.fromkeys(self.relatives))
        for anchor in anchors:
            for rel in relatives:
                self.merge_path_out(_resolve_path(rel, _M_SOFT, anchor, self.ctx), False)
        for command in self.cmd_strings:
            self.command(command, anchors, paths_only=True)


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------

_EMPTY_ARGS: Mapping[str, Any] = {}
_PAIR_TYPES = frozenset({str, int, bool, type(None)})
_MAX_FAST_PAIRS = 16


class _Pair:
    """Facts of one top-level `key: scalar` pair, memoised per (environment, classifier).

    Most calls are a handful of short scalar arguments that repeat (`{"path": "src/x.py"}`), and
    their facts depend only on the key's role, the value and the environment — so they are
    computed once by the full walker and reused. Whatever depends on the whole call (joining
    relative values with a directory argument, realpath, the tool's own effects) is still done
    per call.
    """

    __slots__ = (
        "anchor",
        "commands",
        "endpoints",
        "flags",
        "hosts",
        "joinable",
        "paths",
        "phys",
        "programs",
        "sources",
        "urls",
    )

    def __init__(self, acc: _Acc) -> None:
        self.paths = tuple(acc.paths)
        _check_patterns(self.paths)
        self.sources = _sources(acc)
        self.phys = tuple(acc.phys)
        self.urls = tuple(acc.urls)
        self.hosts = tuple(acc.hosts)
        self.endpoints = tuple(acc.endpoints)
        self.commands = tuple(acc.commands)
        self.programs = tuple(acc.programs)
        self.flags = acc.flags
        self.anchor = acc.anchors[0] if acc.anchors else None
        self.joinable = bool(acc.relatives or acc.cmd_strings)


def _check_patterns(paths: tuple[str, ...]) -> None:
    """Each glob pattern costs the jewel check an intersection (policy/glob_intersect.py): a
    call may carry a bounded number of them."""
    if len(paths) > MAX_GLOB_PATTERNS and (
        sum(1 for p in paths if "*" in p or "?" in p or "[" in p) > MAX_GLOB_PATTERNS
    ):
        raise ExtractionError(f"more than {MAX_GLOB_PATTERNS} glob patterns in one call")


def _sources(acc: _Acc) -> frozenset[str]:
    return frozenset(acc.sources) if acc.sources else _NO_SOURCES


_NO_SOURCES: frozenset[str] = frozenset()


def _written(
    paths: tuple[str, ...], phys: Sequence[str], sources: frozenset[str], ctx: _Ctx
) -> tuple[str, ...]:
    """The paths a writing call may write: all but those only read (`sources`), with their
    realpaths (a target may be a link to anything) and those of every `..` spelling."""
    base = tuple(p for p in paths if p not in sources)
    if ctx.resolve and (base or phys):
        return _with_realpaths(base, phys)
    return base


def _local_file_uri(s: str) -> bool:
    """`file:/p`, `file:///p`, `file://localhost/p` (any case; `\\` read as `/`)."""
    if s[:5].lower() != "file:":
        return False
    rest = s[5:].replace("\\", "/")
    if not rest.startswith("//"):
        return True
    if rest.startswith("////"):  # `file:////host/share`: a UNC path on Windows
        return False
    authority = rest[2:].split("/", 1)[0]
    return authority == "" or authority.lower() == "localhost"


def _pair_facts(ctx: _Ctx, classifier: Classifier, key: str, value: Any) -> _Pair:
    acc = _Acc(ctx, classifier)
    acc.walk_dict({key: value}, _GENERIC, 0)
    return _Pair(acc)


def _fast_facts(ctx: _Ctx, classifier: Classifier, arguments: dict[Any, Any]) -> list[_Pair] | None:
    """Memoised facts for a small object of scalar values; None when the full walk is needed."""
    for value in arguments.values():
        if type(value) not in _PAIR_TYPES:
            return None
    memo = classifier._pair_memo
    pairs: list[_Pair] = []
    for key, value in arguments.items():
        kind = type(value)
        if (
            type(key) is not _STR
            or kind not in _PAIR_TYPES
            or (kind is _STR and len(value) > _CACHEABLE_LEN)
        ):
            return None
        memo_key = (ctx, key, value, kind)
        pair = memo.get(memo_key)
        if pair is None:
            pair = _pair_facts(ctx, classifier, key, value)
            if len(memo) >= _CACHE_LIMIT:
                memo.clear()
            memo[memo_key] = pair
        pairs.append(pair)
    if (
        len(pairs) > 1
        and any(p.anchor is not None for p in pairs)
        and any(p.joinable for p in pairs)
    ):
        return None
    return pairs


def _finish(
    tool: str,
    arguments: Any,
    classifier: Classifier,
    ctx: _Ctx,
    flags: int,
    paths: tuple[str, ...],
    phys: Sequence[str],
    urls: tuple[str, ...],
    hosts: tuple[str, ...],
    endpoints: tuple[str, ...],
    commands: tuple[str, ...],
    programs: tuple[str, ...],
    annotations: Mapping[str, Any] | None,
    sources: frozenset[str] = _NO_SOURCES,
) -> CallFacts:
    tool_bits = classifier._tool_memo.get(tool)
    flags |= tool_bits if tool_bits is not None else classifier.tool_flags(tool)
    if len(paths) > MAX_GLOB_PATTERNS:
        _check_patterns(paths)
    if annotations is not None and not isinstance(annotations, Mapping):
        annotations = None
    if annotations and annotations.get("destructiveHint") is True:
        flags |= _W  # an untrusted hint may add an effect, never remove one
    written: tuple[str, ...] = ()
    if flags & _W and sources:
        written = _written(paths, phys, sources, ctx)
    if ctx.resolve and paths:
        paths = _with_realpaths(paths, phys)
    if paths and not flags & (_R | _W):
        flags |= _R  # a tool nobody classified that receives a path is assumed to read it
    if flags & _W and not sources:
        written = paths
    return CallFacts(
        tool,
        arguments,
        paths,
        urls,
        hosts,
        endpoints,
        commands,
        programs,
        bool(flags & _R),
        bool(flags & _W),
        bool(flags & _S),
        bool(flags & _N),
        annotations if annotations is not None else {},
        written,
    )


def _with_realpaths(paths: tuple[str, ...], phys: Sequence[str]) -> tuple[str, ...]:
    """Add realpath() of every path and of every raw spelling with `..` (physical resolution:
    `/ws/link/../x` follows `link` first). /proc/self is the proxy, not the server: skipped."""
    if len(paths) == 1 and not phys:  # the common case, without building a dict
        path = paths[0]
        if path.startswith("/proc/"):
            return paths
        real = _realpath(path)
        return paths if real is None or real == path else (path, real)
    out: dict[str, None] = dict.fromkeys(paths)
    resolver: Resolver | None = None  # one per call: shared lstats, one bound on the work
    now = _monotonic()
    for path in (*paths, *phys):
        if path.startswith("/proc/"):
            continue
        hit = _real_cache.get(path)
        if hit is not None and hit[0] > now:
            real = hit[1]
        else:
            if resolver is None:
                resolver = Resolver()
            real = resolver.realpath(path)
        if real is not None:
            out.setdefault(real, None)
    return tuple(out)


def extract(
    tool: Any,
    arguments: Any,
    classifier: Classifier,
    env: Environment,
    annotations: Mapping[str, Any] | None = None,
) -> CallFacts:
    """Derive the facts rules see from one tools/call. Raises ExtractionError to fail closed.

    `arguments` must be a JSON object (None/missing is `{}`); anything else — a list, a string,
    a number, non-JSON values, NUL bytes, lone surrogates, NaN, nesting deeper than 64, more than
    25,000 strings and keys — is refused rather than guessed at.
    """
    if type(tool) is not str:
        if isinstance(tool, str):
            tool = str.__str__(tool)
        else:
            raise ExtractionError(f"tool name must be a string, got {type(tool).__name__}")
    if "\x00" in tool:
        raise ExtractionError("NUL byte in tool name")
    if arguments is None:
        arguments = _EMPTY_ARGS
    elif type(arguments) is not dict:
        if not isinstance(arguments, Mapping):
            raise ExtractionError(
                f"arguments must be a JSON object, got {type(arguments).__name__}"
            )
    if "repo" in arguments and "owner" in arguments:
        remote = _without_repository_paths(arguments, classifier, env)
        if remote is not None:
            facts = extract(tool, remote, classifier, env, annotations)
            facts.args = arguments
            return facts
    if ("pattern" in arguments or "glob" in arguments) and _SEARCH_TOOL.search(tool) is not None:
        patterns = _search_patterns(tool, arguments)
        if patterns:
            return _search_facts(tool, arguments, patterns, classifier, env, annotations)
    if "command" in arguments and _EDITOR_TOOL.search(tool) is not None:
        verb = arguments["command"]
        if type(verb) is str and verb in _EDITOR_VERBS:
            return _editor_facts(tool, arguments, verb, classifier, env, annotations)
    last = _env._LAST_CTX
    ctx = last[1] if last is not None and last[0] is env else _ctx_for(env)
    if (
        type(arguments) is dict
        and len(arguments) == 1
        and (annotations is None or type(annotations) is dict)
    ):
        # Hot path, inlined: one memoised scalar argument (`{"path": "src/app.py"}`).
        for key, value in arguments.items():
            kind = type(value)
            pair = (
                classifier._pair_memo.get((ctx, key, value, kind)) if kind in _PAIR_TYPES else None
            )
            if pair is not None:
                flags = classifier._tool_memo.get(tool)
                if flags is None:
                    flags = classifier.tool_flags(tool)
                flags |= pair.flags
                if annotations and annotations.get("destructiveHint") is True:
                    flags |= _W  # an untrusted hint may add an effect, never remove one
                paths = pair.paths
                if paths:
                    if not flags & 3:
                        flags |= _R
                    if ctx.resolve:
                        paths = _with_realpaths(paths, pair.phys)
                written: tuple[str, ...] = ()
                if flags & _W:
                    written = (
                        _written(pair.paths, pair.phys, pair.sources, ctx)
                        if pair.sources
                        else paths
                    )
                return CallFacts(
                    tool,
                    arguments,
                    paths,
                    pair.urls,
                    pair.hosts,
                    pair.endpoints,
                    pair.commands,
                    pair.programs,
                    bool(flags & _R),
                    bool(flags & _W),
                    bool(flags & _S),
                    bool(flags & _N),
                    annotations if annotations is not None else {},
                    written,
                )
    if type(arguments) is dict and len(arguments) <= _MAX_FAST_PAIRS:
        pairs = _fast_facts(ctx, classifier, arguments)
        if pairs is not None:
            if len(pairs) == 1:
                p = pairs[0]
                return _finish(
                    tool,
                    arguments,
                    classifier,
                    ctx,
                    p.flags,
                    p.paths,
                    p.phys,
                    p.urls,
                    p.hosts,
                    p.endpoints,
                    p.commands,
                    p.programs,
                    annotations,
                    p.sources,
                )
            return _merge_pairs(tool, arguments, classifier, ctx, pairs, annotations)
    acc = _Acc(ctx, classifier)
    if arguments:
        acc.walk_dict(arguments if type(arguments) is dict else dict(arguments), _GENERIC, 0)
        if acc.anchors:
            acc.join_anchors()
    return _finish(
        tool,
        arguments,
        classifier,
        ctx,
        acc.flags,
        tuple(acc.paths),
        acc.phys,
        tuple(acc.urls),
        tuple(acc.hosts),
        tuple(acc.endpoints),
        tuple(acc.commands),
        tuple(acc.programs),
        annotations,
        _sources(acc),
    )


# Shell settings that make `*` match dot-files: bash's dotglob (GLOBIGNORE turns it on too),
# zsh's globdots / GLOB_DOTS; PowerShell (which may not hide dot-files).
_DOTGLOB = re.compile(r"(?i)dotglob|globignore|glob_?dots|pwsh|powershell")

# Network APIs of the usual interpreters: with one present, a bare `host` or `host:port` literal
# is a destination (a literal name alone could be a file name such as `setup.py`).
_NET_API = re.compile(
    r"(?i)socket|connect|urlopen|urllib|requests|httpx|aiohttp|http[.:]|https?\b|fetch|axios"
    r"|xmlhttprequest|websocket|net::|\bnet\b|smtp|ftp|telnet|paramiko|dns|resolve|lookup"
    r"|psycopg|pymysql|redis|mongo|sqlalchemy|create_engine|\bpg\b|mysql|curl|wget"
)
# File-writing APIs of the usual interpreters (open modes w/a/x/+, pathlib, fs, shutil, PHP,
# Ruby, Go, Java, Perl): code that writes files makes the call a write.
_CODE_WRITE = re.compile(
    r"""(?i)\bopen\s*\([^()]*?,\s*(?:mode\s*=\s*)?[rbtU]*['"][rbtU]*[wax+]"""
    r"|\.write_(?:text|bytes)\b|\.touch\(|\.symlink_to\(|\.hardlink_to\(|\.rename\(|\.replace\("
    r"|\bwriteFile|\bappendFile|createWriteStream|\bcopyFile|\bfs\.(?:write|rename|symlink|cp)"
    r"|\bshutil\.(?:copy|move)"
    r"|\bos\.(?:rename|replace|symlink|link|makedirs|mkdir|remove|unlink|truncate)"
    r"|\bFile\.(?:write|open|new)|\bIO\.write|\bfile_put_contents|\bfwrite"
    r"""|\bfopen\s*\([^()]*?,\s*['"][wax]|WriteFile|Files\.write|FileWriter|FileOutputStream"""
    r"""|\bopen\s*\(\s*\w+\s*,\s*['"]?[>+]|>>|\bprint\s*\([^()]*\bfile\s*="""
)
_CODE_HOST = re.compile(
    r"(?i)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]*[a-z0-9]\.?(?::\d{1,5})?\Z"
)
_CONN_HOST = re.compile(
    r"(?i)(?:^|[\s;])(?:host|hostaddr|server|data source|address|addr)\s*=\s*(?:tcp:)?"
    r"([^\s;,'\"]+(?:,[^\s;,'\"=]+)*?)(?:,(\d{1,5}))?(?=[\s;'\"]|\Z)"
)
_CONN_PORT = re.compile(r"(?i)(?:^|[\s;])port\s*=\s*(\d{1,5})\b")

# Repository-hosting APIs (GitHub, GitLab, Gitea: `owner` + `repo`) name files inside the remote
# repository: a plain relative path there is not a local file. Anything that could leave a
# checkout (`..`, `~`, `$`, absolute, drive, backslash, percent-encoding) stays a local fact.
_REMOTE_PATH = re.compile(r"(?!\.\.?(?:/|\Z))(?!.*/\.\.(?:/|\Z))[^/~$\\%:\x00-][^\\%:$\x00]*\Z")
_REMOTE_PATH_KEYS = ("path", "file_path", "filepath")


def _without_repository_paths(
    arguments: Mapping[str, Any], classifier: Classifier, env: Environment
) -> dict[str, Any] | None:
    """The arguments minus repository-relative paths (None when there are none). Not when
    another argument anchors paths somewhere (`cwd`, `dir`, …) or a local file of that name is a
    symlink: then the path may well be local, and it stays a fact."""
    for key in arguments:
        if key not in _REMOTE_PATH_KEYS and key != "files" and type(key) is str:
            role, _, dirish, _ = classifier.key_info(key)
            if dirish or role == _PATH:
                return None
    rest = dict(arguments)
    changed = False
    for key in _REMOTE_PATH_KEYS:
        value = rest.get(key)
        if type(value) is str and _REMOTE_PATH.match(value) and not _local_link(env, value):
            del rest[key]
            changed = True
    files = rest.get("files")
    if type(files) is list:
        kept: list[Any] = []
        for item in files:
            if (
                type(item) is dict
                and type(item.get("path")) is str
                and _REMOTE_PATH.match(item["path"])
                and not _local_link(env, item["path"])
            ):
                item = {k: v for k, v in item.items() if k != "path"}
                changed = True
            kept.append(item)
        rest["files"] = kept
    return rest if changed else None


def _local_link(env: Environment, relative: str) -> bool:
    """With symlink resolution on: does `relative`, joined to the workspace, resolve elsewhere?"""
    if not env.resolve_symlinks:
        return False
    joined = posixpath.normpath(posixpath.join(env.workspace, relative))
    return _realpath(joined) not in (None, joined)


# File-search tools: Claude Code's `Glob` (`pattern`, optional `path`), the filesystem server's
# `search_files`, and `Grep`-like tools whose `glob` filters the files under `path`. Their
# pattern is expanded by the server, over paths: it is a path (a pattern; see
# policy/glob_intersect.py for how a pattern meets the jewels).
_SEARCH_TOOL = re.compile(r"(?i)glob|grep|search|find_files|list_files")
_PATTERN_TOOL = re.compile(r"(?i)glob|search_files|find_files|list_files")
_BASE_KEYS = ("path", "cwd", "directory", "dir", "root", "base_path")


def _search_patterns(tool: str, arguments: Mapping[str, Any]) -> list[str]:
    """The path patterns of a file-search call, joined to its directory argument."""
    base = next((arguments[k] for k in _BASE_KEYS if type(arguments.get(k)) is str), "")
    out: list[str] = []
    pattern = arguments.get("pattern")
    if type(pattern) is str and pattern and _PATTERN_TOOL.search(tool) is not None:
        out.append(_joined(base, pattern))
    glob = arguments.get("glob")
    if type(glob) is str and glob:
        # ripgrep's --glob: a pattern without `/` matches at any depth below the root
        out.append(_joined(base, glob if "/" in glob.strip("/") else "**/" + glob))
    if out and base:
        out.append(base.rstrip("/") + "/**")  # the search reads everything under its root
    return out


def _joined(base: str, pattern: str) -> str:
    if not base or pattern.startswith(("/", "~", "\\")) or pattern[1:3] in (":/", ":\\"):
        return pattern
    return base.rstrip("/") + "/" + pattern


def _search_facts(
    tool: str,
    arguments: Mapping[str, Any],
    patterns: list[str],
    classifier: Classifier,
    env: Environment,
    annotations: Mapping[str, Any] | None,
) -> CallFacts:
    """Facts of the arguments, plus each pattern as a path."""
    rest = {k: v for k, v in arguments.items() if k not in ("pattern", "glob")}
    if "pattern" in arguments and _PATTERN_TOOL.search(tool) is None:
        rest["pattern"] = arguments["pattern"]  # Grep's pattern is a regex over content
    facts = extract(tool, rest, classifier, env, annotations)
    found = extract("", {"paths": patterns}, classifier, env)
    facts.paths = tuple(dict.fromkeys((*facts.paths, *found.paths)))
    if facts.writes:
        facts.written = facts.paths
    facts.args = arguments
    return facts


# Text-editor tools (Anthropic's `str_replace_editor` / `str_replace_based_edit_tool` and their
# clones) take a verb under `command`: it names the effect, it is not a shell command.
_EDITOR_TOOL = re.compile(r"(?i)str_replace|text_editor")
_EDITOR_VERBS = {
    "view": _R,
    "create": _W,
    "str_replace": _W,
    "insert": _W,
    "undo_edit": _W,
    "delete": _W,
}


def _editor_facts(
    tool: str,
    arguments: Mapping[str, Any],
    verb: str,
    classifier: Classifier,
    env: Environment,
    annotations: Mapping[str, Any] | None,
) -> CallFacts:
    """Facts of the other arguments; the verb decides read or write (the name says `edit`)."""
    rest = {k: v for k, v in arguments.items() if k != "command"}
    facts = extract("", rest, classifier, env, annotations)
    facts.tool = tool
    facts.args = arguments
    if _EDITOR_VERBS[verb] == _R:
        facts.reads = True
    else:
        facts.writes = True
        facts.written = facts.paths
    return facts


def _merge_pairs(
    tool: str,
    arguments: Any,
    classifier: Classifier,
    ctx: _Ctx,
    pairs: list[_Pair],
    annotations: Mapping[str, Any] | None,
) -> CallFacts:
    paths: dict[str, None] = {}
    urls: dict[str, None] = {}
    hosts: dict[str, None] = {}
    endpoints: dict[str, None] = {}
    programs: dict[str, None] = {}
    commands: list[str] = []
    phys: list[str] = []
    sources: set[str] = set()
    flags = 0
    for p in pairs:
        flags |= p.flags
        if p.sources:
            sources.update(p.sources)
        if p.paths:
            paths.update(dict.fromkeys(p.paths))
        if p.urls:
            urls.update(dict.fromkeys(p.urls))
            hosts.update(dict.fromkeys(p.hosts))
            endpoints.update(dict.fromkeys(p.endpoints))
        elif p.hosts:
            hosts.update(dict.fromkeys(p.hosts))
            endpoints.update(dict.fromkeys(p.endpoints))
        if p.commands:
            commands.extend(p.commands)
            programs.update(dict.fromkeys(p.programs))
        elif p.programs:
            programs.update(dict.fromkeys(p.programs))
        if p.phys:
            phys.extend(p.phys)
    return _finish(
        tool,
        arguments,
        classifier,
        ctx,
        flags,
        tuple(paths),
        phys,
        tuple(urls),
        tuple(hosts),
        tuple(endpoints),
        tuple(commands),
        tuple(programs),
        annotations,
        _merged_sources(pairs, sources) if sources else _NO_SOURCES,
    )


def _merged_sources(pairs: list[_Pair], sources: set[str]) -> frozenset[str]:
    """A path is only read when no argument uses it in a role that may write it."""
    for p in pairs:
        for path in p.paths:
            if path in sources and path not in p.sources:
                sources.discard(path)
    return frozenset(sources)
