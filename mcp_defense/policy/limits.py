"""Size limits of policy text (documented in docs/language.md, "Size limits").

A policy is trusted, but a mistake (a generated file gone wrong, a log pasted into a string)
must give a diagnostic, not gigabytes of memory: a policy file is read at most up to its
limit, a string literal past its limit is refused where it starts, and `${…}` expansion can
neither make one string longer than a literal may be nor add more text in all than a file may
hold (`let b = "${a}${a}…"` chains would otherwise grow exponentially). A directory of policy
files is searched up to a number of entries, so `policy lint ~` cannot walk a whole home.
"""

from __future__ import annotations

MAX_POLICY_BYTES = 4 * 1024 * 1024  # one policy file (UTF-8 bytes)
MAX_STRING_CHARS = 1024 * 1024  # one "string" literal, and one string after `${…}` expansion
MAX_EXPANSION_CHARS = MAX_POLICY_BYTES  # characters `${…}` expansion may add, all strings
MAX_DIRECTORY_ENTRIES = 10_000  # entries looked at to find the .mcpd files of one directory


def size(n: int) -> str:
    """4194304 → "4 MiB"; 1000 → "1,000 bytes"."""
    if n >= 1024 * 1024 and n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MiB"
    return f"{n:,} bytes"
