"""Shell lexing (bash subset, exact where it matters for hiding words), simple commands and brace expansion."""

from __future__ import annotations

import re

from mcp_defense.policy.extract.limits import MAX_BRACE_WORDS
from mcp_defense.policy.facts import ExtractionError

# ---------------------------------------------------------------------------------------------
# Shell lexing (bash subset, exact where it matters for hiding words)
# ---------------------------------------------------------------------------------------------


class _Word:
    """One shell word: quotes removed, escapes applied, `$…` expansions left as written.
    `subs` are bodies of `$(…)`, backticks and `<(…)`/`>(…)`, analysed as commands."""

    __slots__ = ("quoted", "subs", "text")

    def __init__(self, text: str, subs: list[str], quoted: bool) -> None:
        self.text = text
        self.subs = subs
        self.quoted = quoted


class _Heredoc:
    __slots__ = ("body", "delim", "strip")

    def __init__(self, delim: str, strip: bool) -> None:
        self.delim = delim
        self.strip = strip
        self.body = ""


_PLAIN = re.compile(r"[^ \t\n\\'\"$`;&|<>()]+")
_DQ_PLAIN = re.compile(r'[^"\\$`]+')
_PAREN_PLAIN = re.compile(r"[^\\'\"`()]+")
_OP3 = frozenset({"<<<", "<<-", ";;&", "&>>"})
_OP2 = frozenset({"&&", "||", ";;", ";&", "|&", "<<", ">>", "&>", "<&", ">&", "<>", ">|"})
_OP_CHARS = frozenset(";&|<>()\n")
_FD_VAR = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}\Z")
_ANSI_ESC = re.compile(
    r"\\(x[0-9A-Fa-f]{1,2}|u[0-9A-Fa-f]{1,4}|U[0-9A-Fa-f]{1,8}|[0-7]{1,3}|c.|.)", re.S
)
_ANSI_SIMPLE = {
    "a": "\a",
    "b": "\b",
    "e": "\x1b",
    "E": "\x1b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "?": "?",
}


def _ansi_c(body: str) -> str:
    """Decode bash `$'…'` escapes; bash truncates the word at a NUL."""

    def repl(match: re.Match[str]) -> str:
        esc = match.group(1)
        head = esc[0]
        try:
            if head == "x":
                return chr(int(esc[1:], 16))
            if head in "uU":
                return _safe_chr(int(esc[1:], 16))
            if head in "01234567":
                return chr(int(esc, 8) & 0xFF)
            if head == "c" and len(esc) == 2:
                return chr(ord(esc[1]) & 0x1F)
        except ValueError:
            return esc
        return _ANSI_SIMPLE.get(head, "\\" + esc)

    text = _ANSI_ESC.sub(repl, body)
    nul = text.find("\x00")
    return text if nul < 0 else text[:nul]


def _safe_chr(value: int) -> str:
    if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
        return "\ufffd"
    return chr(value)


def _match_paren(s: str, i: int) -> int:
    """Index of the `)` closing a `(` whose body starts at i, or -1 (quotes/escapes honoured)."""
    depth = 1
    n = len(s)
    while i < n:
        m = _PAREN_PLAIN.match(s, i)
        if m:
            i = m.end()
            if i >= n:
                break
        c = s[i]
        if c == "\\":
            i += 2
        elif c == "'":
            j = s.find("'", i + 1)
            i = n if j < 0 else j + 1
        elif c == '"':
            i = _skip_dq(s, i + 1)
        elif c == "`":
            j = _find_backtick(s, i + 1)
            i = n if j < 0 else j + 1
        elif c == "(":
            depth += 1
            i += 1
        else:  # ")"
            depth -= 1
            if depth == 0:
                return i
            i += 1
    return -1


def _skip_dq(s: str, i: int) -> int:
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
        elif c == '"':
            return i + 1
        elif c == "$" and s.startswith("$(", i):
            end = _match_paren(s, i + 2)
            i = n if end < 0 else end + 1
        else:
            i += 1
    return n


def _find_backtick(s: str, i: int) -> int:
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
        elif c == "`":
            return i
        else:
            i += 1
    return -1


def _match_brace(s: str, i: int) -> int:
    depth = 1
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


class _Lexer:
    """A bash-like lexer that never drops text: unbalanced quotes close at end of input."""

    __slots__ = ("bad", "n", "s")

    def __init__(self, s: str) -> None:
        self.s = s
        self.n = len(s)
        self.bad = False

    def tokens(self) -> list[object]:
        s, n = self.s, self.n
        toks: list[object] = []
        pending: list[_Heredoc] = []
        i = 0
        while i < n:
            c = s[i]
            if c in " \t":
                i += 1
                continue
            if c == "\\" and s.startswith("\\\n", i):
                i += 2
                continue
            if c == "\n":
                toks.append("\n")
                i += 1
                if pending:
                    i = self._heredoc_bodies(i, pending)
                    pending = []
                continue
            if c == "#":
                j = s.find("\n", i)
                i = n if j < 0 else j
                continue
            if c in "<>" and i + 1 < n and s[i + 1] == "(":
                end = _match_paren(s, i + 2)
                if end < 0:
                    self.bad = True
                    end = n
                toks.append(_Word("/dev/fd/63", [s[i + 2 : end]], False))
                i = end + 1
                continue
            if c in _OP_CHARS:
                op = s[i : i + 3]
                if op not in _OP3:
                    op = s[i : i + 2]
                    if op not in _OP2:
                        op = c
                i += len(op)
                toks.append(op)
                if op == "<<" or op == "<<-":
                    while i < n and s[i] in " \t":
                        i += 1
                    word, i = self._word(i)
                    doc = _Heredoc(word.text, op == "<<-")
                    toks.append(doc)
                    pending.append(doc)
                continue
            word, i = self._word(i)
            if (
                i < n
                and s[i] in "<>"
                and not word.quoted
                and (word.text.isdigit() or _FD_VAR.match(word.text))
            ):
                continue  # `2>file`, `{fd}>file`: an fd number, not an argument
            toks.append(word)
        if pending:  # heredoc never terminated by a newline: no body
            self.bad = True
        return toks

    def _heredoc_bodies(self, i: int, pending: list[_Heredoc]) -> int:
        s = self.s
        for doc in pending:
            pattern = re.compile(
                r"^" + (r"\t*" if doc.strip else "") + re.escape(doc.delim) + r"$", re.M
            )
            match = pattern.search(s, i)
            if match is None:
                self.bad = True
                doc.body = s[i:]
                return self.n
            doc.body = s[i : match.start()]
            i = match.end() + 1
        return min(i, self.n)

    def _word(self, i: int) -> tuple[_Word, int]:
        s, n = self.s, self.n
        buf: list[str] = []
        subs: list[str] = []
        quoted = False
        while i < n:
            m = _PLAIN.match(s, i)
            if m:
                buf.append(m.group())
                i = m.end()
                if i >= n:
                    break
            c = s[i]
            if c in " \t\n;&|<>()":
                break
            if c == "\\":
                if i + 1 < n:
                    if s[i + 1] != "\n":
                        buf.append(s[i + 1])
                        quoted = True
                i += 2
            elif c == "'":
                j = s.find("'", i + 1)
                if j < 0:
                    self.bad = True
                    j = n
                buf.append(s[i + 1 : j])
                i = j + 1
                quoted = True
            elif c == '"':
                i = self._dq(i + 1, buf, subs)
                quoted = True
            elif c == "$":
                i = self._dollar(i, buf, subs)
                if buf and buf[-1] is _QUOTED_MARK:
                    buf.pop()
                    quoted = True
            elif c == "`":
                j = _find_backtick(s, i + 1)
                if j < 0:
                    self.bad = True
                    j = n
                body = s[i + 1 : j].replace("\\`", "`").replace("\\$", "$").replace("\\\\", "\\")
                subs.append(body)
                buf.append("`" + body + "`")
                i = j + 1
            else:  # pragma: no cover - _PLAIN consumed everything else
                buf.append(c)
                i += 1
        return _Word("".join(buf), subs, quoted), i

    def _dq(self, i: int, buf: list[str], subs: list[str]) -> int:
        s, n = self.s, self.n
        while i < n:
            m = _DQ_PLAIN.match(s, i)
            if m:
                buf.append(m.group())
                i = m.end()
                if i >= n:
                    break
            c = s[i]
            if c == '"':
                return i + 1
            if c == "\\":
                nxt = s[i + 1] if i + 1 < n else ""
                if nxt in ("$", "`", '"', "\\"):
                    buf.append(nxt)
                    i += 2
                elif nxt == "\n":
                    i += 2
                else:
                    buf.append("\\")
                    i += 1
            elif c == "$":
                if s.startswith("$'", i) or s.startswith('$"', i):
                    buf.append("$")
                    i += 1
                else:
                    i = self._dollar(i, buf, subs)
                    if buf and buf[-1] is _QUOTED_MARK:
                        buf.pop()
            else:  # backtick
                j = _find_backtick(s, i + 1)
                if j < 0:
                    self.bad = True
                    j = n
                body = s[i + 1 : j].replace("\\`", "`").replace("\\$", "$").replace("\\\\", "\\")
                subs.append(body)
                buf.append("`" + body + "`")
                i = j + 1
        self.bad = True
        return n

    def _dollar(self, i: int, buf: list[str], subs: list[str]) -> int:
        s, n = self.s, self.n
        nxt = s[i + 1] if i + 1 < n else ""
        if nxt == "'":
            j = i + 2
            while j < n:
                if s[j] == "\\":
                    j += 2
                    continue
                if s[j] == "'":
                    break
                j += 1
            if j >= n:
                self.bad = True
            buf.append(_ansi_c(s[i + 2 : min(j, n)]))
            buf.append(_QUOTED_MARK)
            return j + 1
        if nxt == '"':
            end = self._dq(i + 2, buf, subs)
            buf.append(_QUOTED_MARK)
            return end
        if nxt == "(":
            if s.startswith("$((", i):
                end = _match_paren(s, i + 3)
                if end < 0:
                    self.bad = True
                    buf.append(s[i:])
                    return n
                close = end + 1 if end + 1 < n and s[end + 1] == ")" else end
                body = s[i + 3 : end]
                if "$(" in body or "`" in body:
                    subs.append(body)
                buf.append(s[i : close + 1])
                return close + 1
            end = _match_paren(s, i + 2)
            if end < 0:
                self.bad = True
                end = n
            body = s[i + 2 : end]
            subs.append(body)
            buf.append("$(" + body + ")")
            return end + 1
        if nxt == "{":
            end = _match_brace(s, i + 2)
            if end < 0:
                self.bad = True
                end = n
            inner = s[i + 2 : end]
            if "$(" in inner or "`" in inner:
                subs.append(inner)
            buf.append("${" + inner + "}")
            return end + 1
        buf.append("$")
        return i + 1


_QUOTED_MARK = "\x00quoted\x00"  # sentinel appended by _dollar; identity-compared, never joined


_QUOTE_CHARS = re.compile(r"[\"'`]")


class _Simple:
    __slots__ = ("heredocs", "redirs", "words")

    def __init__(self) -> None:
        self.words: list[_Word] = []
        self.redirs: list[tuple[str, _Word | None]] = []
        self.heredocs: list[_Heredoc] = []


_REDIR_OPS = frozenset({"<", ">", ">>", "<>", ">|", "&>", "&>>", "<&", ">&", "<<<", "<<", "<<-"})


def _simple_commands(toks: list[object]) -> list[_Simple]:
    current = _Simple()
    out = [current]
    i = 0
    count = len(toks)
    while i < count:
        tok = toks[i]
        if type(tok) is _Word:
            current.words.append(tok)
        elif type(tok) is _Heredoc:
            current.heredocs.append(tok)
        elif tok in _REDIR_OPS:
            if tok not in ("<<", "<<-"):
                nxt = toks[i + 1] if i + 1 < count else None
                if type(nxt) is _Word:
                    current.redirs.append((tok, nxt))
                    i += 1
                else:
                    current.redirs.append((tok, None))
        else:
            current = _Simple()
            out.append(current)
        i += 1
    return [sc for sc in out if sc.words or sc.redirs or sc.heredocs]


_BRACE_RE = re.compile(r"\{([^{}]*)\}")
_SEQ_RE = re.compile(r"(-?\d+|[A-Za-z])\.\.(-?\d+|[A-Za-z])(?:\.\.(-?\d+))?\Z")


def _brace_expand(word: str) -> list[str]:
    """bash brace expansion (`a{b,c}d`, `{1..3}`, nested). Comma alternatives are expanded in
    full and refused past MAX_BRACE_WORDS (fail closed: truncating could drop the one word that
    names a secret); sequences longer than 256 stay literal (they cannot spell letters)."""
    if "{" not in word or "}" not in word:
        return [word]
    results = [word]
    done: list[str] = []
    rounds = 0
    while results:
        rounds += 1
        if rounds > 64:
            raise ExtractionError("brace expansion too deep")
        nxt: list[str] = []
        for item in results:
            expanded = _brace_once(item)
            if expanded is None:
                done.append(item)
            else:
                nxt.extend(expanded)
            if len(nxt) + len(done) > MAX_BRACE_WORDS:
                raise ExtractionError(f"brace expansion yields more than {MAX_BRACE_WORDS} words")
        results = nxt
    return done


def _brace_once(word: str) -> list[str] | None:
    """Expand the first innermost expandable brace group, or None when there is none."""
    for match in _BRACE_RE.finditer(word):
        inner = match.group(1)
        if "," in inner:
            parts = _split_top_commas(inner)
            if len(parts) > 1:
                return [word[: match.start()] + part + word[match.end() :] for part in parts]
        seq = _SEQ_RE.match(inner)
        if seq:
            values = _sequence(seq.group(1), seq.group(2), seq.group(3))
            if values is not None:
                return [word[: match.start()] + v + word[match.end() :] for v in values]
    return None


def _split_top_commas(inner: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    start = 0
    for index, ch in enumerate(inner):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(inner[start:index])
            start = index + 1
    parts.append(inner[start:])
    return parts


def _sequence(a: str, b: str, step_text: str | None) -> list[str] | None:
    step = abs(int(step_text)) if step_text else 1
    step = step or 1
    if a.lstrip("-").isdigit() and b.lstrip("-").isdigit():
        x, y = int(a), int(b)
        if abs(y - x) // step > 256:
            return None
        rng = range(x, y + (1 if y >= x else -1), step if y >= x else -step)
        return [str(v) for v in rng]
    if len(a) == 1 and len(b) == 1 and a.isalpha() and b.isalpha():
        x, y = ord(a), ord(b)
        rng = range(x, y + (1 if y >= x else -1), step if y >= x else -step)
        return [chr(v) for v in rng]
    return None
