"""Limits of per-call extraction work and the effect/role flag codes."""

from __future__ import annotations

from collections.abc import Iterable

EFFECTS = frozenset({"reads", "writes", "spawns", "network"})
ROLES = frozenset({"path", "url", "command", "code", "text"})

# Per-call work is bounded so one call cannot stall the proxy's reader (every call behind it
# waits); past a bound the call is refused (`malformed_arguments`, fail closed), never cut short.
# Together they hold the heaviest call, extraction and decision, to about 50 ms
# (benchmarks/bench_extract.py, "(d)" and "(e)").
# The bounds are documented in docs/language.md ("Extraction limits").
MAX_DEPTH = 64  # nesting of objects/arrays, counting JSON decoded out of strings
MAX_ITEMS = 25_000  # strings + keys visited per call (~40 ms for as many distinct keys)
MAX_PATH_BYTES = 4096  # PATH_MAX on Linux
MAX_PATHS = 2_048  # distinct paths per call (with their resolution, ~25 ms at the limit)
MAX_RESOLVE_STEPS = 32_768  # path components walked to resolve symlinks, per call
MAX_PATH_CHARS = 512 * 1024  # characters of the distinct paths of one call, together
MAX_SHELL_TOKENS = 4_096  # words and operators per call, nested shells included
MAX_CODE_LITERALS = 2_048  # string literals in program text per call
MAX_SHELL_NESTING = 16  # bash -c "bash -c ..." / $( $( ... ) )
MAX_BRACE_WORDS = 1024
MAX_CWDS = 8
MAX_ANCHORS = 8
MAX_RELATIVES = 4096
MAX_GLOB_MATCHES = 256
MAX_URLS = 8_192  # distinct URL words found in free text per call
MAX_GLOB_PATTERNS = 64  # paths with glob characters per call (each is intersected with jewels)
_CACHE_LIMIT = 8192  # entries per bounded memo dict
_CACHEABLE_LEN = 512

# Effect bits (ints are cheaper than frozensets on the hot path).
_R, _W, _S, _N = 1, 2, 4, 8  # (_R | _W) == 3 is used inline on the hot path
_FLAG_OF = {"reads": _R, "writes": _W, "spawns": _S, "network": _N}

# How the paths being added now are used (`_Acc.role`): SOURCE paths come from arguments a
# program only reads (a `cp` source, a `<` redirection), so they are not written even when the
# call writes; ANY is the fail-closed default (may be written); RESCAN adds new paths as ANY but
# does not turn a known source into ANY (the raw-text rescan after the lexer's analysis).
_ANY, _SOURCE, _RESCAN = 0, 1, 2

# How a raw value is read as a path. STRICT (path-role keys): an unresolvable `$VAR`/`~-` at the
# start or a decoded NUL is an error. SOFT (key name suggests a path, `file:` URLs, shell words):
# same readings, kept literally instead. GENERIC (a path-looking word in an unknown key): as SOFT,
# but a leading backslash is not read as `/` — in unknown keys that is a regex (`\.py$`), and
# reading it as the root would put `/.py$` outside every workspace.
_M_GENERIC, _M_STRICT, _M_SOFT = 0, 1, 2

# Role codes. _SOFT_PATH is a path role guessed from the key's name (`ssh_key_file`): read as a
# path, but without path-role strictness (an unknown $VAR there is kept literally).
_GENERIC, _PATH, _URL, _COMMAND, _CODE, _TEXT, _SOFT_PATH = range(7)
_ROLE_CODE = {"path": _PATH, "url": _URL, "command": _COMMAND, "code": _CODE, "text": _TEXT}
# When the policy gives one key two roles, the one that inspects most wins.
_ROLE_PRIORITY = {"command": 5, "code": 4, "path": 3, "url": 2, "text": 1}


def _flags(effects: Iterable[str]) -> int:
    bits = 0
    for effect in effects:
        try:
            bits |= _FLAG_OF[effect]
        except KeyError:
            raise ValueError(
                f"unknown effect {effect!r} (expected one of {sorted(EFFECTS)})"
            ) from None
    return bits
