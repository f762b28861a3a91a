"""Shell analysis: simple commands to facts, recursing into nested shells, wrappers and interpreters."""

from __future__ import annotations

import glob as _glob
import re
from itertools import islice
from typing import TYPE_CHECKING

from mcp_defense.policy.extract.limits import (
    _M_SOFT,
    _N,
    _R,
    _S,
    _SOURCE,
    _W,
    MAX_CWDS,
    MAX_GLOB_MATCHES,
    MAX_SHELL_NESTING,
    MAX_SHELL_TOKENS,
)
from mcp_defense.policy.extract.paths import (
    _IFS_RE,
    _drop_special_params,
    _forms,
    _lexical,
    _normalise,
    _sub_known_vars,
)
from mcp_defense.policy.extract.scan import (
    _PIECE_SPLIT,
    _STRONG_PREFIXES,
    _TOKEN_HINT,
    _WS,
    _looks_pathy,
)
from mcp_defense.policy.extract.shell.lexer import (
    _QUOTE_CHARS,
    _brace_expand,
    _Lexer,
    _Simple,
    _simple_commands,
    _Word,
)
from mcp_defense.policy.extract.shell.programs import (
    _ASSIGN_RE,
    _CODE_LETTERS,
    _CODE_LONG,
    _CONDITIONAL_EFFECTS,
    _CURL_LONG_ARG,
    _CURL_SHORT_ARG,
    _DATA_KEYWORDS,
    _DB_HOST_OPTS,
    _DNS_TYPES,
    _GENERIC_OPT_ARG,
    _HANDLERS,
    _HOST_PORT_PROGS,
    _HOST_PROGS,
    _INTERP_RE,
    _NET_PROGS,
    _NET_SUBCOMMANDS,
    _NULL_TARGETS,
    _OPERANDS,
    _READ_PROGS,
    _READS_OPERANDS,
    _RESERVED,
    _SHELL_ARG_OPTS,
    _SHELLS,
    _URL_PROGS,
    _URL_READ_OPTIONS,
    _WGET_LONG_ARG,
    _WGET_SHORT_ARG,
    _WHICH_RE,
    _WRAPPERS,
    _WRITE_PROGS,
    _WRITE_REDIRS,
    _WRITE_SUBCOMMANDS,
    _basename,
    _docker_host,
    _short_value,
    _source_operands,
    _sources_of,
)
from mcp_defense.policy.extract.urls import _clean_hosts, embedded_ipv4
from mcp_defense.policy.facts import ExtractionError

if TYPE_CHECKING:
    from mcp_defense.policy.extract.walk import _Acc


# Programs that walk directory trees: always, or with a recursive flag.
_RECURSIVE_ALWAYS = frozenset({"find", "rg", "ag", "ack", "tree", "du", "fd", "fdfind", "locate"})
_RECURSIVE_WITH_FLAG = frozenset(
    {"grep", "egrep", "fgrep", "ls", "cp", "zip", "rsync", "scp", "chmod", "chown", "cat"}
)


def _recursive_flag(program: str, args: list[_Word]) -> bool:
    for word in args:
        text = word.text
        if text in ("--recursive", "--dereference-recursive", "--archive"):
            return True
        if text.startswith("-") and not text.startswith("--"):
            letters = text[1:]
            if "r" in letters or "R" in letters or (program in ("cp", "rsync") and "a" in letters):
                return True
    return False


# sed's `w`/`W` command (after an optional address and `!`) and the `w` flag of `s`: each writes
# the file named after it (GNU sed(1), "Commands for sed gurus" / "The s Command").
_SED_ADDR = r"(?:\d+|\$|/(?:[^/\\\n]|\\.)*/[IM]*|\\(.)(?:(?!\1).)*\1[IM]*)"
_SED_W = re.compile(
    rf"(?:^|[;\n{{}}])\s*(?:{_SED_ADDR}(?:\s*,\s*(?:{_SED_ADDR}|[+~]\d+))?)?\s*!?\s*[wW]\s*\S"
    r"|\bs(?P<d>[^\w\s\\])(?:(?!(?P=d))[^\\]|\\.)*(?P=d)(?:(?!(?P=d))[^\\]|\\.)*(?P=d)"
    r"[gpiImMe0-9]*w\s*\S"
)


def _sed_writes(texts: list[str]) -> bool:
    """Does a sed command line write files of its own (`w`), besides in place (`-i`)?"""
    scripts: list[str] = []
    i = 0
    while i < len(texts):
        text = texts[i]
        if text in ("-e", "--expression") and i + 1 < len(texts):
            scripts.append(texts[i + 1])
            i += 2
            continue
        if text.startswith("--expression="):
            scripts.append(text.split("=", 1)[1])
        elif text in ("-f", "--file") or text.startswith("--file="):
            return True  # a script file: what it writes is unknown
        elif text.startswith("-e") and len(text) > 2:
            scripts.append(text[2:])
        elif not text.startswith("-") and not scripts:
            scripts.append(text)
            break
        i += 1
    return any(_SED_W.search(script) is not None for script in scripts)


def _sed_sources(texts: list[str]) -> set[int]:
    """The input files of a sed that writes nothing of its own (no -i, no `w`): read only."""
    if _sed_writes(texts) or any(
        t == "--in-place"
        or t.startswith("--in-place=")
        or (t.startswith("-") and not t.startswith("--") and "i" in t[1:])
        for t in texts
    ):
        return set()
    out: set[int] = set()
    script_given = any(
        t in ("-e", "--expression") or t.startswith(("-e", "--expression=")) for t in texts
    )
    i = 0
    while i < len(texts):
        text = texts[i]
        if text in ("-e", "--expression", "-l", "--line-length"):
            i += 2
            continue
        if not text.startswith("-") or text == "-":
            if script_given:
                out.add(i)
            else:
                script_given = True  # the first operand is the script
        i += 1
    return out


class _ShellState:
    """Directories and variables one command string runs with. `pvars` is None while no
    assignment changed the variables, so path resolution can use the per-environment memo."""

    __slots__ = ("cwd_changed", "cwds", "pvars", "vars")

    def __init__(
        self, cwds: list[str], variables: dict[str, str | None], pristine: bool = True
    ) -> None:
        self.cwds = cwds
        self.vars = variables
        self.pvars: dict[str, str | None] | None = None if pristine else variables
        self.cwd_changed = False


class _Shell:
    """Analyses command strings: words, programs, paths, hosts and effects."""

    __slots__ = ("acc", "paths_only", "state")

    def __init__(self, acc: _Acc, state: _ShellState, paths_only: bool) -> None:
        self.acc = acc
        self.state = state
        self.paths_only = paths_only

    # -- entry points -------------------------------------------------------------------------

    def analyse(self, s: str, depth: int) -> None:
        if depth > MAX_SHELL_NESTING:
            raise ExtractionError(f"shell commands nested deeper than {MAX_SHELL_NESTING}")
        lexer = _Lexer(s)
        toks = lexer.tokens()
        acc = self.acc
        acc.tokens += len(toks)
        if acc.tokens > MAX_SHELL_TOKENS:
            raise ExtractionError(f"command longer than {MAX_SHELL_TOKENS} shell tokens")
        for simple in _simple_commands(toks):
            self.simple(simple, depth)
        if lexer.bad:
            acc.sources = None  # how bash would split the words is uncertain: no roles
        if lexer.bad and _QUOTE_CHARS.search(s):
            # Unbalanced quoting: bash would refuse the line, but another consumer may split it
            # differently. Re-read it with every quote character as a blank so no word that a
            # lenient splitter would see is lost (best effort, never fewer facts).
            self.analyse(_QUOTE_CHARS.sub(" ", s), depth + 1)

    def simple(self, sc: _Simple, depth: int) -> None:
        acc = self.acc
        words = sc.words
        if any("IFS" in w.text and not w.quoted for w in words):
            words = self.split_ifs(words)
        if not self.paths_only:
            acc.commands.extend(w.text for w in words)
        for word in words:
            for body in word.subs:
                self.analyse(body, depth + 1)
        for _, target in sc.redirs:
            if target is not None:
                for body in target.subs:
                    self.analyse(body, depth + 1)
        i = 0
        n = len(words)
        while i < n and not words[i].quoted and words[i].text in _RESERVED:
            i += 1
        if i < n and not words[i].quoted and words[i].text in _DATA_KEYWORDS:
            for word in words[i + 1 :]:
                self.arg_word(word, False)
            self.redirections(sc, "", depth)
            return
        assigns: list[tuple[str, _Word]] = []
        while i < n:
            match = _ASSIGN_RE.match(words[i].text)
            if match is None:
                break
            assigns.append((match.group(1), words[i]))
            i += 1
        for name, word in assigns:
            self.assignment(name, word, depth)
        program = self.run(words[i:], depth) if i < n else ""
        self.redirections(sc, program, depth)

    # -- words --------------------------------------------------------------------------------

    def split_ifs(self, words: list[_Word]) -> list[_Word]:
        """`cat${IFS}/etc/passwd`: an unquoted `$IFS` expands to a blank and splits the word."""
        out: list[_Word] = []
        for word in words:
            if "IFS" in word.text and not word.quoted and _IFS_RE.search(word.text):
                parts = _IFS_RE.sub(" ", word.text).split()
                for index, part in enumerate(parts):
                    out.append(_Word(part, word.subs if index == 0 else [], False))
            else:
                out.append(word)
        return out

    def variants(self, word: _Word) -> list[str]:
        """Readings of a word: brace-expanded, and each with and without known-variable/tilde
        expansion (quoted `'$HOME'` stays literal in bash; both readings are kept)."""
        text = word.text
        if not text:
            return [text]
        items = _brace_expand(text) if ("{" in text and "}" in text) else [text]
        out: list[str] = []
        variables = self.state.vars
        ctx = self.acc.ctx
        for item in items:
            out.append(item)
            expanded = item
            if "$" in expanded:
                expanded = _drop_special_params(_sub_known_vars(expanded, variables))
            if expanded.startswith("~"):
                slash = expanded.find("/")
                name = expanded[1:] if slash < 0 else expanded[1:slash]
                home = ctx.user_home(name)
                if home is not None:
                    rest = "" if slash < 0 else expanded[slash:]
                    reassigned = variables.get("HOME") if name == "" else None
                    if reassigned and reassigned != home:
                        out.append(reassigned + rest)
                    expanded = home + rest
            if expanded != item:
                out.append(expanded)
        return out

    def expanded(self, word: _Word) -> str:
        text = word.text
        if "$" in text:
            text = _drop_special_params(_sub_known_vars(text, self.state.vars))
        if text.startswith("~"):
            slash = text.find("/")
            home = self.acc.ctx.user_home(text[1:] if slash < 0 else text[1:slash])
            if home is not None:
                text = home + ("" if slash < 0 else text[slash:])
        return text

    def glob_root(self, value: str) -> None:
        """A glob pattern can name any file under its literal prefix: `cat ~/.ss?/id*` reaches
        `~/**` (jewels are decided against that root; files absent here still count)."""
        cut = min(value.find(c) for c in "*?[" if c in value)
        prefix = value[:cut].rsplit("/", 1)[0] if "/" in value[:cut] else "."
        self.acc.path_value((prefix or "/") + "/**", _M_SOFT, self.state.cwds, self.state.pvars)
        if self.acc.dotglob:
            # `shopt -s dotglob` (or GLOBIGNORE, zsh's globdots): wildcards match a leading
            # dot too. Jewels are decided with the shells' default (they do not), so say it.
            dotted = "/".join(
                "{.,}" + part if part[:1] in ("*", "?", "[") else part for part in value.split("/")
            )
            if dotted != value:
                self.acc.path_value(dotted, _M_SOFT, self.state.cwds, self.state.pvars)

    def path_candidate(self, value: str, file_arg: bool) -> None:
        if not value or value == "-":
            return
        acc = self.acc
        if "://" in value and value[:5].lower() != "file:":
            return
        if _WS.search(value) and not value.startswith(_STRONG_PREFIXES):
            return  # prose-like word (a `-c` script, a message): its tokens are scanned instead
        if _looks_pathy(value) or value.startswith("$"):
            acc.path_value(value, _M_SOFT, self.state.cwds, self.state.pvars)
        elif file_arg and not _WS.search(value) and not value.isdigit():
            acc.path_value(value, _M_SOFT, self.state.cwds, self.state.pvars)
        if any(ch in value for ch in "*?[") and (file_arg or _looks_pathy(value)):
            self.glob_root(value)
            if acc.ctx.resolve:
                self.glob(value)

    def glob(self, pattern: str) -> None:
        """bash would expand it against the filesystem; do the same (bounded) when allowed."""
        acc = self.acc
        for base in self.state.cwds:
            for raw in _forms(pattern, _M_SOFT, acc.ctx, self.state.vars):
                full = raw if raw.startswith("/") else base + "/" + raw
                try:
                    matches = list(islice(_glob.iglob(full), MAX_GLOB_MATCHES))
                except (OSError, ValueError, re.error):
                    continue
                for match in matches:
                    for path in _normalise(_lexical(match), acc.ctx):
                        acc.add_path(path)

    def arg_word(self, word: _Word, file_arg: bool) -> None:
        acc = self.acc
        for value in self.variants(word):
            if not value:
                continue
            if ":" in value:
                acc.scan_urls(value)
            first = value[0]
            if first == "-" and len(value) > 1:
                eq = value.find("=")
                if eq > 0:
                    self.path_candidate(value[eq + 1 :], False)
                elif value[1] != "-" and len(value) > 2 and value[2] in "/~.$":
                    self.path_candidate(value[2:], False)
                continue
            if first == "@" and len(value) > 1:
                self.path_candidate(value[1:], True)
            self.path_candidate(value, file_arg)
            eq = value.find("=")
            if eq > 0 and value[:eq].replace("_", "").replace("-", "").isalnum():
                self.path_candidate(value[eq + 1 :], file_arg)
            if _TOKEN_HINT.search(value) is not None and (
                _WS.search(value) or _PIECE_SPLIT.search(value)
            ):
                acc._scan_tokens(value, self.state.cwds, self.state.pvars)

    def assignment(self, name: str, word: _Word, depth: int) -> None:
        value = word.text.split("=", 1)[1] if "=" in word.text else ""
        if value:
            self.arg_word(_Word(value, [], word.quoted), False)
            if name.endswith("COMMAND") or name in (
                "PAGER",
                "EDITOR",
                "VISUAL",
                "GIT_SSH_COMMAND",
                "PROMPT_COMMAND",
                "GIT_EDITOR",
                "LESSOPEN",
                "GIT_PAGER",
                "MANPAGER",
                "SSH_ASKPASS",
            ):
                self.analyse(value, depth + 1)
            if name in ("BASH_ENV", "ENV", "LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONSTARTUP"):
                self.acc.flags |= _R
            if name in ("DOCKER_HOST", "CONTAINER_HOST"):
                _docker_host(self, self.expanded(_Word(value, [], word.quoted)))
        # Prefix assignments (`X=1 cmd`) do not persist in bash, but recording them anyway only
        # adds readings; a value computed at run time is unknown (None → kept literal).
        if word.subs or "`" in value or "$(" in value:
            self.state.vars[name] = None
        else:
            self.state.vars[name] = self.expanded(_Word(value, [], word.quoted))
        self.state.pvars = self.state.vars

    def redirections(self, sc: _Simple, program: str, depth: int) -> None:
        acc = self.acc
        shell = program in _SHELLS
        interp = _INTERP_RE.match(program) if program else None
        for op, target in sc.redirs:
            if target is None:
                continue
            if op == "<<<":
                text = target.text
                acc.scan_generic(text, 0, self.state.cwds, self.state.pvars)
                if shell:
                    self.analyse(text, depth + 1)
                elif interp:
                    acc.code(text, 0, self.state.cwds, self.state.vars, depth + 1)
                continue
            text = self.expanded(target)
            if op in ("<&", ">&") and (text.isdigit() or text == "-"):
                continue
            role = acc.role
            if op == "<":
                acc.role = _SOURCE  # only read; `<>` opens for writing too
            for value in self.variants(target):
                if value and value not in _NULL_TARGETS:
                    acc.path_value(value, _M_SOFT, self.state.cwds, self.state.pvars)
            acc.role = role
            if text in _NULL_TARGETS or text.startswith(("/dev/fd/", "/dev/tcp/", "/dev/udp/")):
                continue
            if op in _WRITE_REDIRS:
                acc.flags |= _W
            if op in ("<", "<>"):
                acc.flags |= _R
        for doc in sc.heredocs:
            body = doc.body
            if not body:
                continue
            acc.scan_generic_raw(body, self.state.cwds)
            if ":" in body:
                acc.scan_urls(body)
            if shell:
                self.analyse(body, depth + 1)
            elif interp:
                acc.code(body, 0, self.state.cwds, self.state.vars, depth + 1)

    # -- programs -----------------------------------------------------------------------------

    def run(self, argv: list[_Word], depth: int) -> str:
        """Analyse one argv (after assignments). Returns the innermost program name."""
        acc = self.acc
        program = ""
        guard = 0
        while argv:
            guard += 1
            if guard > 32:
                raise ExtractionError("too many nested command wrappers")
            head = argv[0]
            head_text = self.expanded(head)
            which = _WHICH_RE.match(head.text)
            if which:
                head_text = which.group(1)
            if "/" in head_text or head_text.startswith(("~", ".")):
                self.path_candidate(head_text, True)
                acc.flags |= _R
            name = _basename(head_text)
            program = name.lower()
            if not self.paths_only and name:
                acc.programs.setdefault(name, None)
                if program != name:
                    acc.programs.setdefault(program, None)
            acc.flags |= _S
            rest = self.unwrap(program, argv[1:], depth)
            if rest is None:
                break
            argv = rest
        else:
            return program
        args = argv[1:]
        sources = self.source_words(program, args)
        self.effects(program, args, sources)
        handler = _HANDLERS.get(program)
        interp = _INTERP_RE.match(program)
        if handler is not None:
            handler(self, program, args, depth)
        elif interp is not None:
            self.interpreter(interp.lastgroup or "", args, depth)
        elif program in _SHELLS:
            self.shell(args, depth)
        elif program in _HOST_PROGS or program in _GENERIC_OPT_ARG:
            self.host_program(program, args)
        elif program in _HOST_PORT_PROGS:
            self.host_port_program(program, args)
        elif program in _URL_PROGS:
            self.url_program(program, args)
        elif program in _DB_HOST_OPTS:
            self.db_program(program, args)
        file_arg = (
            program in _READ_PROGS
            or program in _WRITE_PROGS
            or program in _SHELLS
            or interp is not None
            or self.state.cwd_changed
        )
        if sources:
            role = acc.role
            for index, word in enumerate(args):
                acc.role = _SOURCE if index in sources else role
                self.arg_word(word, file_arg)
            acc.role = role
        else:
            for word in args:
                self.arg_word(word, file_arg)
        return program

    def source_words(self, program: str, args: list[_Word]) -> set[int]:
        """Indices of the words `program` only reads (argument roles, see programs.py)."""
        if not args or self.acc.sources is None:
            return set()
        if program in _READS_OPERANDS:
            return {i for i, w in enumerate(args) if not w.text.startswith("-")}
        spec = _OPERANDS.get(program)
        if spec is not None:
            return _source_operands(spec, args, [self.expanded(w) for w in args])
        if program in ("sed", "gsed"):
            return _sed_sources([self.expanded(w) for w in args])
        return _sources_of(self, program, args)

    def effects(self, program: str, args: list[_Word], sources: set[int]) -> None:
        acc = self.acc
        if program in _READ_PROGS:
            acc.flags |= _R
        if program in _WRITE_PROGS:
            acc.flags |= _W
        if program in _NET_PROGS:
            acc.flags |= _N
        if program in _RECURSIVE_ALWAYS or (
            program in _RECURSIVE_WITH_FLAG and _recursive_flag(program, args)
        ):
            self.recursive_roots(program, args, sources)
        if program not in _CONDITIONAL_EFFECTS:
            return
        texts = [w.text for w in args]
        sub = next((t for t in texts[:8] if t and not t.startswith("-")), "")
        net_subs = _NET_SUBCOMMANDS.get(program)
        if net_subs is not None and (sub in net_subs or program == "uvx"):
            acc.flags |= _N
        write_subs = _WRITE_SUBCOMMANDS.get(program)
        if write_subs is not None and sub in write_subs:
            acc.flags |= _W
        if program in ("sed", "gsed", "perl", "ruby") and any(
            t == "--in-place"
            or t.startswith("--in-place=")
            or (t.startswith("-") and not t.startswith("--") and "i" in t[1:])
            for t in texts
        ):
            acc.flags |= _W
        elif program in ("sed", "gsed") and _sed_writes(texts):
            acc.flags |= _W  # `w FILE` commands and `s///w FILE` flags write FILE
        elif program == "dd" and any(t.startswith("of=") for t in texts):
            acc.flags |= _W
        elif program in ("tar", "bsdtar", "gtar") and texts:
            first = texts[0].lstrip("-")
            if any(c in first for c in "cxurA") or any(
                t in ("--create", "--extract", "--get", "--append", "--update") for t in texts
            ):
                acc.flags |= _W
        elif program == "curl" and any(
            t in ("--remote-name", "--remote-name-all", "--output", "--output-dir")
            or (t.startswith("-") and not t.startswith("--") and ("O" in t or "o" in t))
            for t in texts
        ):
            acc.flags |= _W
        elif program == "sort" and any(t.startswith(("-o", "--output")) for t in texts):
            acc.flags |= _W
        elif program == "find" and any(
            t in ("-delete", "-fprint", "-fprint0", "-fprintf", "-fls") for t in texts
        ):
            acc.flags |= _W
        if program in ("git", "ssh", "scp", "sftp", "rsync") and any(":" in t for t in texts):
            if program != "git" or sub in _NET_SUBCOMMANDS["git"]:
                acc.flags |= _N

    def recursive_roots(self, program: str, args: list[_Word], sources: set[int]) -> None:
        """A recursive read reaches everything under its roots: each root is also reported as
        `root/**` (a literal `**` segment), which the pack's jewel list matches for roots that
        hold jewels (`~`, `/`, `/home`, `/etc`, …). `grep -r KEY ~`, `find / -name id_rsa`."""
        roots: list[tuple[str, bool]] = []
        for index, word in enumerate(args):
            text = self.expanded(word)
            if program == "find" and text[:1] in ("-", "(", "!"):
                break
            if text.startswith(("/", "~", "$", ".")) and not text.startswith("-"):
                roots.append((text, index in sources))
        if program in _RECURSIVE_ALWAYS and not roots:
            roots.append((".", program in _READS_OPERANDS))
        acc = self.acc
        role = acc.role
        for root, read in roots[:MAX_CWDS]:
            acc.role = _SOURCE if read else role
            acc.path_value(root.rstrip("/") + "/**", _M_SOFT, self.state.cwds, self.state.pvars)
        acc.role = role

    def unwrap(self, program: str, args: list[_Word], depth: int) -> list[_Word] | None:
        """Strip a command wrapper (`sudo`, `env`, `timeout 5`, `xargs -I{}`, …); None if
        `program` is not a wrapper."""
        spec = _WRAPPERS.get(program)
        if spec is None:
            return None
        arg_opts, positional = spec
        i = 0
        n = len(args)
        while i < n:
            text = args[i].text
            if text == "--":
                i += 1
                break
            if program == "env":
                if text in ("-S", "--split-string") and i + 1 < n:
                    self.analyse(args[i + 1].text, depth + 1)
                    return []
                if text.startswith("-S") and len(text) > 2:
                    self.analyse(text[2:], depth + 1)
                    return []
                if text.startswith("--split-string="):
                    self.analyse(text.split("=", 1)[1], depth + 1)
                    return []
                if _ASSIGN_RE.match(text) and not text.startswith("-"):
                    match = _ASSIGN_RE.match(text)
                    assert match is not None
                    self.assignment(match.group(1), args[i], depth)
                    i += 1
                    continue
            if (
                program in ("su", "runuser", "script", "flock", "sg")
                and text in ("-c", "--command")
                and i + 1 < n
            ):
                self.analyse(args[i + 1].text, depth + 1)
                return []
            if program in ("su", "runuser", "script") and text.startswith("--command="):
                self.analyse(text.split("=", 1)[1], depth + 1)
                return []
            if text.startswith("-") and len(text) > 1:
                if text in arg_opts:
                    i += 2
                else:
                    i += 1
                continue
            break
        skip = positional
        while skip > 0 and i < n:
            if program == "chroot":
                self.path_candidate(self.expanded(args[i]), True)
            if program == "flock":
                self.path_candidate(self.expanded(args[i]), True)
            i += 1
            skip -= 1
        rest = args[i:]
        if program == "watch" and rest:
            self.analyse(" ".join(w.text for w in rest), depth + 1)
            return []
        if program in ("su", "sg", "runuser"):
            return []
        return rest

    def shell(self, args: list[_Word], depth: int) -> None:
        i = 0
        n = len(args)
        wants_code = False
        while i < n:
            text = args[i].text
            if text == "--":
                i += 1
                break
            if text in _SHELL_ARG_OPTS:
                i += 2
                continue
            if text in ("-c", "-Command", "-command", "/c", "/C") or (
                text.startswith("-")
                and not text.startswith("--")
                and "c" in text[1:]
                and text[1:].isalpha()
            ):
                wants_code = True
                i += 1
                continue
            if text.startswith("-") or text.startswith("+"):
                i += 1
                continue
            break
        if wants_code and i < n:
            self.analyse(args[i].text, depth + 1)
        elif i < n:
            self.path_candidate(self.expanded(args[i]), True)
            self.acc.flags |= _R

    def interpreter(self, kind: str, args: list[_Word], depth: int) -> None:
        acc = self.acc
        letters = _CODE_LETTERS.get(kind, "")
        i = 0
        n = len(args)
        found = False
        if kind == "awk":
            has_f = False
            while i < n:
                text = args[i].text
                if text in ("-f", "--file") and i + 1 < n:
                    has_f = True
                    self.path_candidate(self.expanded(args[i + 1]), True)
                    i += 2
                    continue
                if text in ("-F", "-v", "--assign", "--field-separator") and i + 1 < n:
                    i += 2
                    continue
                if text.startswith("-") and len(text) > 1:
                    i += 1
                    continue
                break
            if not has_f and i < n:
                acc.code(args[i].text, 0, self.state.cwds, self.state.vars, depth + 1)
            return
        if kind == "node" and args and args[0].text == "eval" and n > 1:
            acc.code(args[1].text, 0, self.state.cwds, self.state.vars, depth + 1)
            return
        while i < n:
            text = args[i].text
            if text == "--":
                break
            if text.startswith("--"):
                name, eq, value = text.partition("=")
                if name in _CODE_LONG:
                    if eq:
                        acc.code(value, 0, self.state.cwds, self.state.vars, depth + 1)
                    elif i + 1 < n:
                        acc.code(args[i + 1].text, 0, self.state.cwds, self.state.vars, depth + 1)
                        i += 1
                    found = True
                i += 1
                continue
            if text.startswith("-") and len(text) > 1 and letters:
                body = text[1:]
                for index, letter in enumerate(body):
                    if letter in letters:
                        attached = body[index + 1 :]
                        if attached:
                            acc.code(attached, 0, self.state.cwds, self.state.vars, depth + 1)
                        elif i + 1 < n:
                            acc.code(
                                args[i + 1].text, 0, self.state.cwds, self.state.vars, depth + 1
                            )
                            i += 1
                        found = True
                        break
                    if not letter.isalpha():
                        break
                i += 1
                continue
            if text.startswith("-"):
                i += 1
                continue
            break
        if not found and i < n and kind not in ("osa",):
            self.path_candidate(self.expanded(args[i]), True)  # script file
            acc.flags |= _R

    def host_program(self, program: str, args: list[_Word]) -> None:
        letters = _GENERIC_OPT_ARG.get(program, frozenset())
        positionals = self.positionals(args, letters, frozenset())
        acc = self.acc
        if program in ("dig", "nslookup", "host", "drill", "kdig", "whois"):
            for text in positionals:
                if text.startswith("@"):
                    acc.url_value(text[1:], "dns")
                elif text.lower() not in _DNS_TYPES and not text.startswith("+"):
                    acc.url_value(text, "dns")
            return
        if program in ("nmap", "fping", "masscan"):
            for text in positionals:
                acc.url_value(text.split("/", 1)[0], "tcp")
            return
        if positionals:
            target = positionals[0]
            if "@" in target and "://" not in target:
                target = target.rsplit("@", 1)[1]
            acc.url_value(
                target, "ssh" if program in ("mosh", "ssh-copy-id", "ssh-keyscan") else "tcp"
            )

    def host_port_program(self, program: str, args: list[_Word]) -> None:
        positionals = self.positionals(args, frozenset("bceElnpPsSX"), frozenset())
        if positionals:
            host = positionals[0]
            port = positionals[1] if len(positionals) > 1 else str(_HOST_PORT_PROGS[program])
            self.host_endpoint(host, port if port.isdigit() else str(_HOST_PORT_PROGS[program]))

    def host_endpoint(self, host: str, port: str) -> None:
        acc = self.acc
        if "://" in host:
            acc.url_value(host, None)
            return
        if "@" in host:
            host = host.rsplit("@", 1)[1]
        hosts = _clean_hosts(host.strip("[]") if host.startswith("[") else host)
        for h in hosts:
            acc.add_host(h)
            if port.isdigit() and int(port) <= 65535:
                acc.add_endpoint(h, int(port))
                inner = embedded_ipv4(h) if ":" in h else ""
                if inner:
                    acc.add_endpoint(inner, int(port))

    def positionals(
        self,
        args: list[_Word],
        short_arg: frozenset[str],
        long_arg: frozenset[str],
        values: list[tuple[str, str]] | None = None,
    ) -> list[str]:
        """Positional words of an argv, skipping options and their values (collected)."""
        out: list[str] = []
        i = 0
        n = len(args)
        while i < n:
            text = self.expanded(args[i])
            if text == "--":
                out.extend(self.expanded(w) for w in args[i + 1 :])
                break
            if text.startswith("--") and len(text) > 2:
                name, eq, value = text[2:].partition("=")
                if name in long_arg:
                    if not eq and i + 1 < n:
                        value = self.expanded(args[i + 1])
                        i += 1
                    if values is not None:
                        values.append(("--" + name, value))
                i += 1
                continue
            if text.startswith("-") and len(text) > 1:
                letter, attached, takes_next = _short_value(text, short_arg)
                if takes_next and i + 1 < n:
                    value = self.expanded(args[i + 1])
                    if values is not None:
                        values.append(("-" + letter, value))
                    i += 2
                    continue
                if attached is not None and values is not None:
                    values.append(("-" + letter, attached))
                i += 1
                continue
            out.append(text)
            i += 1
        return out

    def url_program(self, program: str, args: list[_Word]) -> None:
        acc = self.acc
        scheme = _URL_PROGS[program]
        values: list[tuple[str, str]] = []
        if program == "curl":
            positionals = self.positionals(args, _CURL_SHORT_ARG, _CURL_LONG_ARG, values)
        elif program in ("wget", "wget2"):
            positionals = self.positionals(args, _WGET_SHORT_ARG, _WGET_LONG_ARG, values)
        else:
            positionals = self.positionals(args, frozenset("oOdHuUXAeT"), frozenset(), values)
        if program in ("http", "https", "xh", "xhs", "httpie") and positionals:
            if positionals[0].isupper() and positionals[0].isalpha() and len(positionals) > 1:
                positionals = positionals[1:]
            target = positionals[0]
            if target.startswith(":"):
                target = "localhost" + target
            self.add_url_arg(target, scheme)
            for item in positionals[1:]:
                for sep in ("=@", ":=@", "@"):
                    if sep in item:
                        self.path_candidate(item.split(sep, 1)[1], True)
                        acc.flags |= _R
                        break
            return
        for text in positionals:
            self.add_url_arg(text, scheme)
        acc = self.acc
        role = acc.role
        for option, value in values:
            acc.role = _SOURCE if option in _URL_READ_OPTIONS else role
            self.url_option(program, option, value)
        acc.role = role

    def add_url_arg(self, text: str, scheme: str) -> None:
        acc = self.acc
        if not text:
            return
        if "{" in text and "}" in text:
            for item in _brace_expand(text):
                acc.url_value(item, scheme)
        if acc.url_value(text, scheme):
            acc.flags |= _N

    def url_option(self, program: str, option: str, value: str) -> None:
        acc = self.acc
        short = option if not option.startswith("--") else ""
        long = option[2:] if option.startswith("--") else ""
        if long == "url":
            self.add_url_arg(value, "http")
        elif short == "-x" or long in (
            "proxy",
            "preproxy",
            "doh-url",
            "socks4",
            "socks4a",
            "socks5",
            "socks5-hostname",
        ):
            self.add_url_arg(value, "http")
        elif long == "resolve" or long == "connect-to":
            parts = value.split(":")
            if long == "resolve" and len(parts) >= 3:
                self.host_endpoint(parts[0], parts[1])
                for addr in ":".join(parts[2:]).split(","):
                    self.host_endpoint(addr.strip("[]"), parts[1])
            elif long == "connect-to" and len(parts) >= 4:
                self.host_endpoint(parts[2], parts[3])
        elif short in ("-d", "-F") or long.startswith(("data", "json", "form")):
            if value.startswith("@") and value != "@-":
                self.path_candidate(value[1:], True)
                acc.flags |= _R
            for sep in ("=@", "=<", "@"):
                if sep in value and not value.startswith("@"):
                    target = value.split(sep, 1)[1].split(";", 1)[0]
                    if target and target != "-":
                        self.path_candidate(target, True)
                        acc.flags |= _R
                    break
        elif short in ("-T", "-K", "-E", "-i") or long in (
            "upload-file",
            "config",
            "cacert",
            "cert",
            "key",
            "netrc-file",
            "unix-socket",
            "abstract-unix-socket",
            "input-file",
            "post-file",
            "body-file",
            "load-cookies",
            "certificate",
            "private-key",
            "ca-certificate",
            "proxy-cacert",
            "proxy-cert",
            "proxy-key",
        ):
            self.path_candidate(value, True)
            acc.flags |= _R
        elif short in ("-o", "-D", "-c", "-O", "-a", "-P") or long in (
            "output",
            "dump-header",
            "cookie-jar",
            "trace",
            "trace-ascii",
            "stderr",
            "output-dir",
            "output-document",
            "output-file",
            "append-output",
            "directory-prefix",
            "save-cookies",
            "etag-save",
            "hsts",
            "alt-svc",
        ):
            if value != "-":
                self.path_candidate(value, True)
                acc.flags |= _W
        elif short in ("-H", "-w") and value.startswith("@"):
            self.path_candidate(value[1:], True)
            acc.flags |= _R
        elif short == "-e" or long == "execute":
            acc.scan_generic(value, 0, self.state.cwds, self.state.pvars)
            if "=" in value:
                key, _, setting = value.partition("=")
                if "proxy" in key.lower():
                    self.add_url_arg(setting, "http")

    def db_program(self, program: str, args: list[_Word]) -> None:
        host_opts, port_opts, default = _DB_HOST_OPTS[program]
        host = ""
        port = str(default)
        texts = [self.expanded(w) for w in args]
        for index, text in enumerate(texts):
            for opt in host_opts:
                if text == opt and index + 1 < len(texts):
                    host = texts[index + 1]
                elif text.startswith(opt + "=") or (
                    len(opt) == 2 and text.startswith(opt) and len(text) > 2 and opt != text
                ):
                    host = text[len(opt) + (1 if text.startswith(opt + "=") else 0) :]
            for opt in port_opts:
                if text == opt and index + 1 < len(texts):
                    port = texts[index + 1]
                elif text.startswith(opt + "="):
                    port = text.split("=", 1)[1]
        if host:
            self.host_endpoint(host, port)
        self.acc.flags |= _N
