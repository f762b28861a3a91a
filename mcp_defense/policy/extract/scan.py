"""Generic (unknown-key) value scanning: what looks like a path, URL or address in a string."""

from __future__ import annotations

import re

# ---------------------------------------------------------------------------------------------
# Generic (unknown-key) value scanning
# ---------------------------------------------------------------------------------------------

_STRONG_PREFIXES = (
    "/",
    "~",
    "./",
    "../",
    "$HOME",
    "${HOME",
    "file:",
    "FILE:",
    "File:",
    ".\\",
    "..\\",
)
_TOKEN_HINT = re.compile(r"[/\\]|%(?:2[fF]|5[cC]|25)")
_TOKEN_SEPS = " \t\n\r\f\v\"'`<>|;&(){}"
_TOKEN_STOP = re.compile(r"[\s\"'`<>|;&(){}]")
_TOKEN_BODY_REV = re.compile(r"[^\s\"'`<>|;&(){}]*")
_PIECE_SPLIT = re.compile(r"[=,@:]")
_OPTION_NAME = re.compile(r"-+[A-Za-z0-9_]*")
_BRACED_VAR_TAIL = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?:[:\-=+?][^{}]*)?\}\Z")
_BARE_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?\Z")
_BARE_IPV6 = re.compile(
    r"\[[0-9A-Fa-f:.]+(?:%[^\]]*)?\](?::\d{1,5})?\Z|[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\Z"
)
_BARE_HOSTPORT = re.compile(r"([A-Za-z0-9-]*[A-Za-z][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)*):(\d{1,5})\Z")
_WS = re.compile(r"\s")


def _looks_pathy(value: str) -> bool:
    return value.startswith(_STRONG_PREFIXES) or "/" in value or "\\" in value
