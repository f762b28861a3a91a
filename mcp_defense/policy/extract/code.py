"""Code (python -c, node -e, `code` role): string literals and their joins."""

from __future__ import annotations

import re
import unicodedata

from mcp_defense.policy.extract.shell.lexer import _ANSI_SIMPLE, _safe_chr

# ---------------------------------------------------------------------------------------------
# Code (python -c, node -e, `code` role): string literals and their joins
# ---------------------------------------------------------------------------------------------

_HOME_MARKER = re.compile(
    r"Path\.home\(\)|os\.path\.expanduser\(\s*(['\"])~\1\s*\)|os\.homedir\(\)"
    r"|process\.env\.HOME\b|process\.env\[\s*(['\"])HOME\2\s*\]"
    r"|os\.environ\[\s*(['\"])HOME\3\s*\]|os\.environ\.get\(\s*(['\"])HOME\4\s*\)"
    r"|os\.getenv\(\s*(['\"])HOME\5\s*\)|ENV\[\s*(['\"])HOME\6\s*\]|\$ENV\{\s*HOME\s*\}"
    r"|Dir\.home\b|Deno\.env\.get\(\s*(['\"])HOME\7\s*\)|getenv\(\s*(['\"])HOME\8\s*\)"
    r"|expanduser\(\s*(['\"])~\9\s*\)|homedir\(\)"
)
_CHR_CALL = re.compile(
    r"\b(?:chr|String\.fromCharCode|String\.fromCodePoint)\(\s*((?:(?:0x[0-9A-Fa-f]+|\d+)\s*,?\s*)+)\)"
)
_LIT_START = re.compile(r"(?<![A-Za-z0-9_])([rRbBuUfF]{0,2})('''|\"\"\"|'|\"|`)")
_LIT_END = {
    "'": re.compile(r"(?:[^'\\\n]|\\.)*", re.S),
    '"': re.compile(r'(?:[^"\\\n]|\\.)*', re.S),
    "`": re.compile(r"(?:[^`\\]|\\.)*", re.S),
}
_CODE_ESC = re.compile(
    r"\\(x[0-9A-Fa-f]{2}|u\{[0-9A-Fa-f]{1,6}\}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|[0-7]{1,3}|N\{[^}]{1,80}\}|.)",
    re.S,
)
_JOIN_GAP = re.compile(r"\s*(?:\+|,|/|\.|\.\.|<<|\|\|)?\s*\Z")
_COMMENT_START = re.compile(r"#|//")
_SHELL_HINT = re.compile(
    r"system|popen|subprocess|exec|spawn|shell|`|%x|run\(|Popen|check_output|call\("
)
_HOST_PORT_TUPLE = re.compile(r"""(['"])(\[?[A-Za-z0-9.\-:%]+\]?)\1\s*,\s*(\d{1,5})\b""")


def _code_unescape(body: str) -> str:
    def repl(match: re.Match[str]) -> str:
        esc = match.group(1)
        head = esc[0]
        try:
            if head == "x":
                return chr(int(esc[1:], 16))
            if head == "u":
                return _safe_chr(int(esc[2:-1] if esc[1] == "{" else esc[1:], 16))
            if head == "U":
                return _safe_chr(int(esc[1:], 16))
            if head in "01234567":
                return chr(int(esc, 8))
            if head == "N":
                return unicodedata.lookup(esc[2:-1])
        except (ValueError, KeyError):
            return esc
        return _ANSI_SIMPLE.get(head, esc)

    return _CODE_ESC.sub(repl, body) if "\\" in body else body


def _code_literals(code: str, skip_comments: bool) -> list[tuple[int, int, str]]:
    atoms: list[tuple[int, int, str]] = []
    n = len(code)
    i = 0
    while i < n:
        match = _LIT_START.search(code, i)
        if match is None:
            break
        if skip_comments:
            comment = _COMMENT_START.search(code, i, match.start())
            if comment is not None:
                j = code.find("\n", comment.start())
                i = n if j < 0 else j + 1
                continue
        prefix, quote = match.group(1), match.group(2)
        start = match.end()
        raw = "r" in prefix.lower()
        if len(quote) == 3:
            end = code.find(quote, start)
            if end < 0:
                end = n
            body = code[start:end]
            stop = end + 3
        else:
            m = _LIT_END[quote].match(code, start)
            end = m.end() if m else start
            body = code[start:end]
            stop = end + 1
        atoms.append((match.start(), min(stop, n), body if raw else _code_unescape(body)))
        i = stop
    return atoms


def _chr_literal(match: re.Match[str]) -> str:
    chars = []
    for number in re.split(r"[\s,]+", match.group(1).strip()):
        if not number:
            continue
        try:
            chars.append(
                _safe_chr(int(number, 0) if number.lower().startswith("0x") else int(number))
            )
        except ValueError:
            return match.group()
    text = "".join(chars)
    if "'" in text:
        return match.group()
    return "'" + text + "'"
