"""Per-program knowledge: which programs read, write, spawn or reach the network, their option tables and handlers."""

from __future__ import annotations

import base64
import binascii
import posixpath
import re
from typing import TYPE_CHECKING

from mcp_defense.policy.extract.env import _Ctx
from mcp_defense.policy.extract.limits import _M_SOFT, _N, _R, _SOURCE, _W, MAX_CWDS
from mcp_defense.policy.extract.paths import _resolve_path
from mcp_defense.policy.extract.shell.lexer import _Word

if TYPE_CHECKING:
    from mcp_defense.policy.extract.shell.analyse import _Shell


_ASSIGN_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(\[[^\]]*\])?\+?=(.*)\Z", re.S)
_RESERVED = frozenset(
    {
        "!",
        "{",
        "}",
        "if",
        "then",
        "else",
        "elif",
        "fi",
        "do",
        "done",
        "while",
        "until",
        "time",
        "coproc",
        "function",
        "[[",
        "]]",
        "in",
        "esac",
    }
)
_DATA_KEYWORDS = frozenset({"for", "select", "case"})
_NULL_TARGETS = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty", "-"})
_WRITE_REDIRS = frozenset({">", ">>", "&>", "&>>", ">|", "<>", ">&"})
_WHICH_RE = re.compile(
    r"(?:\$\(|`)\s*(?:which|command\s+-[vV]|type\s+-[pP]|whence\s+-p)\s+([^\s)`]+)\s*[)`]\Z"
)
_SHELLS = frozenset(
    {
        "sh",
        "bash",
        "zsh",
        "dash",
        "ksh",
        "mksh",
        "ash",
        "fish",
        "csh",
        "tcsh",
        "rbash",
        "yash",
        "posh",
        "busybox",
        "elvish",
        "nu",
        "xonsh",
        "pwsh",
        "powershell",
        "cmd",
        "oksh",
        "loksh",
    }
)
_SHELL_ARG_OPTS = frozenset({"-o", "-O", "+o", "+O", "--rcfile", "--init-file"})
_INTERP_RE = re.compile(
    r"(?:(?P<python>python|pypy|ipython|jython)[0-9.]*(?:-dbg)?|(?P<node>node|nodejs|bun|deno|tsx|ts-node|qjs)"
    r"|(?P<perl>perl)[0-9.]*|(?P<ruby>ruby|jruby|irb)[0-9.]*|(?P<php>php)[0-9.]*"
    r"|(?P<lua>lua|luajit)[0-9.]*|(?P<osa>osascript)|(?P<r>rscript)|(?P<julia>julia)"
    r"|(?P<awk>awk|gawk|mawk|nawk)|(?P<tcl>tclsh|wish|expect)[0-9.]*)\Z"
)
# Short flags after which the next word (or the rest of the cluster) is program text.
_CODE_LETTERS = {
    "python": "c",
    "node": "ep",
    "perl": "eE",
    "ruby": "e",
    "php": "rR",
    "lua": "e",
    "osa": "e",
    "r": "e",
    "julia": "e",
    "tcl": "c",
}
_CODE_LONG = frozenset({"--eval", "--print", "--command", "--exec", "--expression"})

_READ_PROGS = frozenset(
    "cat tac nl head tail less more most bat batcat view vi vim nvim nano emacs ed ex pico micro "
    "od xxd hexdump hd strings base64 base32 basenc uuencode grep egrep fgrep zgrep rg ag ack "
    "awk gawk mawk nawk sed sort uniq wc cut paste join diff diff3 sdiff cmp comm file stat "
    "md5sum sha1sum sha224sum sha256sum sha384sum sha512sum b2sum cksum sum md5 shasum source . "
    "jq yq column fold fmt pr iconv gpg zcat zless zmore bzcat bzless xzcat lzcat zstdcat tar "
    "unzip zip 7z cp mv rsync scp ls find tree du locate look split csplit readlink realpath dd "
    "openssl sqlite3 install tee xargs lsattr getfacl exiftool pdftotext identify ffprobe "
    "hexyl glow mdcat csvlook xmllint tidy".split()
)
_WRITE_PROGS = frozenset(
    "tee cp mv rm rmdir mkdir touch ln chmod chown chgrp truncate shred install unlink mkfifo "
    "mknod patch rsync scp sftp wget wget2 split csplit mktemp chattr setfacl zip unzip gzip "
    "gunzip bzip2 bunzip2 xz unxz zstd unzstd 7z cpio ar ed ex vi vim nvim nano emacs pico micro "
    "srm wipe sponge rename mmv dos2unix unix2dos crontab visudo aria2c axel yt-dlp youtube-dl "
    "lftp ftp tftp git-lfs".split()
)
_NET_PROGS = frozenset(
    "curl wget wget2 aria2c axel lynx w3m links elinks http https xh xhs httpie curlie nc ncat "
    "netcat socat telnet ssh scp sftp mosh ftp tftp lftp ping ping6 traceroute traceroute6 "
    "tracepath mtr dig nslookup host whois nmap masscan arping fping hping3 drill kdig yt-dlp "
    "youtube-dl gh aws gcloud gsutil az kubectl helm doctl flyctl heroku vercel netlify npx bunx "
    "twine ngrok cloudflared tailscale ssh-keyscan ssh-copy-id smbclient redis-cli psql mysql "
    "mongosh mongo sqlcmd ldapsearch websocat wscat grpcurl rclone s3cmd gsutil".split()
)
_NET_SUBCOMMANDS: dict[str, frozenset[str]] = {
    "git": frozenset(
        {
            "clone",
            "fetch",
            "pull",
            "push",
            "ls-remote",
            "submodule",
            "remote",
            "archive",
            "send-email",
            "request-pull",
            "svn",
        }
    ),
    "npm": frozenset(
        {
            "install",
            "i",
            "ci",
            "add",
            "update",
            "upgrade",
            "publish",
            "exec",
            "x",
            "create",
            "init",
            "view",
            "info",
            "audit",
            "login",
            "dlx",
        }
    ),
    "pnpm": frozenset(
        {"install", "i", "add", "update", "up", "publish", "dlx", "exec", "create", "fetch"}
    ),
    "yarn": frozenset({"install", "add", "upgrade", "up", "publish", "dlx", "create", "npm"}),
    "bun": frozenset({"install", "i", "add", "update", "publish", "x", "create"}),
    "pip": frozenset({"install", "download", "search", "index", "wheel"}),
    "pip3": frozenset({"install", "download", "search", "index", "wheel"}),
    "uv": frozenset({"pip", "add", "sync", "lock", "run", "tool", "publish", "venv", "python"}),
    "uvx": frozenset(),
    "pipx": frozenset({"install", "run", "inject", "upgrade"}),
    "poetry": frozenset({"install", "add", "update", "lock", "publish"}),
    "pdm": frozenset({"install", "add", "update", "lock", "publish", "sync"}),
    "pipenv": frozenset({"install", "update", "lock", "sync"}),
    "conda": frozenset({"install", "create", "update", "search"}),
    "mamba": frozenset({"install", "create", "update", "search"}),
    "cargo": frozenset({"install", "fetch", "publish", "update", "add", "search", "login"}),
    "go": frozenset({"get", "install", "mod"}),
    "gem": frozenset({"install", "push", "update", "fetch", "search"}),
    "bundle": frozenset({"install", "update"}),
    "composer": frozenset({"install", "require", "update", "create-project"}),
    "apt": frozenset({"install", "update", "upgrade", "download", "full-upgrade"}),
    "apt-get": frozenset({"install", "update", "upgrade", "download", "dist-upgrade", "source"}),
    "yum": frozenset({"install", "update", "upgrade", "download"}),
    "dnf": frozenset({"install", "update", "upgrade", "download"}),
    "apk": frozenset({"add", "update", "upgrade", "fetch"}),
    "brew": frozenset({"install", "update", "upgrade", "fetch", "tap"}),
    "docker": frozenset({"pull", "push", "login", "run", "build", "search", "buildx", "compose"}),
    "podman": frozenset({"pull", "push", "login", "run", "build", "search"}),
    "dotnet": frozenset({"add", "restore", "tool", "nuget", "new"}),
    "terraform": frozenset({"init", "apply", "plan", "destroy", "import", "refresh"}),
}
_WRITE_SUBCOMMANDS: dict[str, frozenset[str]] = {
    "git": frozenset(
        {
            "clone",
            "checkout",
            "reset",
            "clean",
            "apply",
            "am",
            "commit",
            "merge",
            "pull",
            "rebase",
            "stash",
            "init",
            "mv",
            "rm",
            "restore",
            "switch",
            "add",
            "cherry-pick",
            "revert",
            "worktree",
            "config",
            "tag",
            "branch",
            "fetch",
            "submodule",
            "gc",
        }
    ),
    "npm": frozenset({"install", "i", "ci", "add", "update", "uninstall", "rm", "init", "link"}),
    "pip": frozenset({"install", "uninstall", "download", "wheel"}),
    "pip3": frozenset({"install", "uninstall", "download", "wheel"}),
    "cargo": frozenset({"install", "build", "new", "init", "add", "update"}),
    "go": frozenset({"get", "install", "build", "mod"}),
}
_CONDITIONAL_EFFECTS = frozenset(
    {
        *_NET_SUBCOMMANDS,
        *_WRITE_SUBCOMMANDS,
        "sed",
        "gsed",
        "perl",
        "ruby",
        "dd",
        "tar",
        "bsdtar",
        "gtar",
        "curl",
        "sort",
        "find",
        "ssh",
        "scp",
        "sftp",
        "rsync",
    }
)
_HOST_PROGS = frozenset(
    {
        "ping",
        "ping6",
        "traceroute",
        "traceroute6",
        "tracepath",
        "mtr",
        "whois",
        "arping",
        "hping3",
        "mosh",
        "ssh-keyscan",
        "ssh-copy-id",
        "nslookup",
        "host",
        "drill",
        "kdig",
        "dig",
        "nmap",
        "fping",
        "masscan",
    }
)
_HOST_PORT_PROGS = {"telnet": 23, "ftp": 21, "tftp": 69, "lftp": 21}
_URL_PROGS = {
    "curl": "http",
    "wget": "http",
    "wget2": "http",
    "aria2c": "http",
    "axel": "http",
    "lynx": "http",
    "w3m": "http",
    "links": "http",
    "elinks": "http",
    "http": "http",
    "https": "https",
    "xh": "http",
    "xhs": "https",
    "curlie": "http",
    "yt-dlp": "https",
    "youtube-dl": "https",
    "websocat": "ws",
    "wscat": "ws",
    "httpie": "http",
}
_DNS_TYPES = frozenset(
    "a aaaa mx txt ns cname soa ptr srv any caa ds dnskey naptr spf https svcb axfr ixfr in ch hs".split()
)
_DB_HOST_OPTS = {
    "psql": (("-h", "--host"), ("-p", "--port"), 5432),
    "pg_dump": (("-h", "--host"), ("-p", "--port"), 5432),
    "mysql": (("-h", "--host"), ("-P", "--port"), 3306),
    "mysqldump": (("-h", "--host"), ("-P", "--port"), 3306),
    "redis-cli": (("-h",), ("-p",), 6379),
    "mongosh": (("--host",), ("--port",), 27017),
    "mongo": (("--host",), ("--port",), 27017),
    "ldapsearch": (("-h",), ("-p",), 389),
    "smbclient": (("-I",), ("-p",), 445),
}
# Option letters that take a value, per program (so that value is not read as a host/URL).
_CURL_SHORT_ARG = frozenset("AbcCdDeEFHKmoPQrtTuUwxXyYz")
_CURL_LONG_ARG = frozenset(
    "url data data-ascii data-binary data-raw data-urlencode json form form-string header "
    "output upload-file proxy preproxy resolve connect-to cookie cookie-jar config cacert capath "
    "cert key user user-agent referer request max-time connect-timeout retry retry-delay "
    "retry-max-time write-out dump-header trace trace-ascii stderr unix-socket "
    "abstract-unix-socket interface dns-servers doh-url output-dir netrc-file proto "
    "proto-default proto-redir limit-rate range oauth2-bearer variable url-query hsts alt-svc "
    "etag-save etag-compare local-port mail-from mail-rcpt mail-auth proxy-user proxy-header "
    "proxy-cacert proxy-cert proxy-key socks4 socks4a socks5 socks5-hostname "
    "socks5-gssapi-service cert-type key-type pass ciphers expect100-timeout "
    "happy-eyeballs-timeout-ms keepalive-time max-filesize max-redirs speed-limit speed-time "
    "time-cond tls-max tlsuser tlspassword login-options sasl-authzid service-name "
    "telnet-option ftp-port quote krb delegation engine egd-file random-file create-file-mode "
    "aws-sigv4 ssl-sessions".split()
)
_WGET_SHORT_ARG = frozenset("OoaPieTtwQlARDXIUB")
_WGET_LONG_ARG = frozenset(
    "output-document output-file append-output directory-prefix input-file execute tries "
    "timeout wait quota level accept reject domains exclude-directories include-directories "
    "user-agent base post-data post-file body-data body-file header user password http-user "
    "http-password proxy-user proxy-password load-cookies save-cookies ca-certificate "
    "certificate private-key method referer config bind-address limit-rate".split()
)
_SSH_SHORT_ARG = frozenset("bcDEeFIiJLlmOopQRSWwB")
_SCP_SHORT_ARG = frozenset("cFiJloPSDX")
_NC_SHORT_ARG = frozenset("pswxXeciqWIOTVMmPbg")
_GENERIC_OPT_ARG: dict[str, frozenset[str]] = {
    "ping": frozenset("cisItWwlpQSMOLmT"),
    "ping6": frozenset("cisItWwlpQSMOLmT"),
    "traceroute": frozenset("fgimpqsztwN"),
    "mtr": frozenset("cipsBfmQaTu"),
    "dig": frozenset("bcfkpqtxy"),
    "nmap": frozenset("opeDSiM"),
}


# -- argument roles ---------------------------------------------------------------------------
# Effects belong to arguments: `cp /usr/share/x ws/y` reads its source and writes only its
# target. Words a program only reads are SOURCE paths (see `_Acc.role`); everything else may be
# written. Unknown programs, options or words whose expansion is unknown keep every path
# writable (fail closed).

# Programs that never write a file named on their command line: no output-file option, no
# in-place mode, no log file (so not less/more: `less -o FILE` copies its input there; not sort,
# uniq, xxd, tree, base64, file, ffprobe or zstdcat, which can).
_READS_OPERANDS = frozenset(
    "cat tac nl head tail bat batcat od hexdump hd hexyl strings wc cut paste join diff diff3 cmp "
    "comm stat md5sum sha1sum sha224sum sha256sum sha384sum sha512sum b2sum cksum sum shasum "
    "grep egrep fgrep zgrep rg ag ack jq column fold fmt pr zcat bzcat xzcat lzcat ls du locate "
    "look readlink realpath lsattr getfacl identify glow mdcat csvlook".split()
)


class _Operands:
    """How a copy-like program's argv splits into options and operands (getopt_long): option
    letters and long names with and without a value, the options whose value is the target
    (`-t DIR`), and options after which every operand is written too (`install -d`,
    `rsync --remove-source-files`). An option not listed makes the roles unknown."""

    __slots__ = ("all_written", "flags", "long_flags", "long_values", "target", "values")

    def __init__(
        self,
        flags: str,
        values: str,
        long_flags: str,
        long_values: str,
        target: tuple[str, ...] = (),
        all_written: tuple[str, ...] = (),
    ) -> None:
        self.flags = frozenset(flags)
        self.values = frozenset(values)
        self.long_flags = frozenset(long_flags.split())
        self.long_values = frozenset(long_values.split())
        self.target = frozenset(target)
        self.all_written = frozenset(all_written)


# (Options with an optional value take it only attached, `--backup=numbered`: they are flags.)
_CP_LONG = (
    "archive attributes-only backup copy-contents debug dereference force interactive link "
    "no-dereference no-clobber no-target-directory one-file-system parents preserve recursive "
    "reflink remove-destination strip-trailing-slashes symbolic-link update verbose context "
    "keep-directory-symlink"
)
# Source, target and flag lists: GNU coreutils cp(1), install(1), ln(1); rsync(1); OpenSSH scp(1).
_OPERANDS: dict[str, _Operands] = {
    "cp": _Operands(
        "abdfHiLlnPpRrsTuvxZ",
        "St",
        _CP_LONG,
        "suffix target-directory no-preserve sparse",
        ("-t", "--target-directory"),
    ),
    "install": _Operands(
        "bcCDdpsTvZ",
        "gmoSt",
        "backup compare debug directory no-target-directory preserve-timestamps "
        "preserve-context strip verbose context",
        "group mode owner suffix target-directory strip-program",
        ("-t", "--target-directory"),
        ("-d", "--directory"),
    ),
    "ln": _Operands(
        "bdFfiLnPrsTv",
        "St",
        "backup directory force interactive logical no-dereference no-target-directory physical "
        "relative symbolic verbose",
        "suffix target-directory",
        ("-t", "--target-directory"),
    ),
    "rsync": _Operands(
        "vqcaRrbuldLkKHpEAXogDtOJSnWxCyzhPi0468UNIm",
        "efTBM",
        "verbose quiet checksum archive recursive relative backup update links copy-links "
        "copy-dirlinks keep-dirlinks hard-links perms executability acls xattrs owner group "
        "devices specials times omit-dir-times omit-link-times super fake-super sparse dry-run "
        "whole-file one-file-system existing ignore-existing delete delete-before delete-during "
        "delete-delay delete-after delete-excluded ignore-errors force partial progress "
        "human-readable itemize-changes stats compress cvs-exclude prune-empty-dirs numeric-ids "
        "mkpath no-implied-dirs safe-links munge-links inplace append append-verify "
        "size-only ignore-times list-only from0 protect-args secluded-args ipv4 ipv6 "
        "copy-unsafe-links preallocate no-motd blocking-io 8-bit-output",
        "rsh rsync-path filter exclude include exclude-from include-from files-from temp-dir "
        "partial-dir backup-dir compare-dest copy-dest link-dest chmod chown port bwlimit "
        "max-size min-size max-delete timeout contimeout out-format log-file log-file-format "
        "info debug usermap groupmap suffix modify-window block-size checksum-choice "
        "compress-choice compress-level skip-compress remote-option address iconv "
        "password-file read-batch",
        (),
        ("--remove-source-files", "--write-batch", "--only-write-batch"),
    ),
    "scp": _Operands("346ABCOpqRrTv", "cDFiJlPSoX", "", ""),
}


def _word_is_plain(word: _Word, text: str) -> bool:
    """A word that bash passes as exactly one argument we know: no unknown expansion, no word
    splitting, no brace expansion, no glob that could expand to an option."""
    if "$" in text or "`" in text or ("{" in text and "}" in text):
        return False
    if not word.quoted and any(c in text for c in " \t\n"):
        return False
    return not (text[:1] in ("*", "?", "[") and any(c in text for c in "*?["))


def _parse_operands(
    spec: _Operands, texts: list[str], posix: bool
) -> tuple[list[int], bool] | None:
    """(operand indices, whether a target option was given), or None when an option is
    unknown or makes every operand written. `posix`: options end at the first operand
    (POSIXLY_CORRECT, BSD), else GNU permutation."""
    operands: list[int] = []
    target_given = False
    i = 0
    n = len(texts)
    while i < n:
        text = texts[i]
        if (posix and operands) or text == "--" or text == "-" or not text.startswith("-"):
            if text == "--" and not (posix and operands):
                operands.extend(range(i + 1, n))
                break
            operands.append(i)
            i += 1
            continue
        if text.startswith("--"):
            name, eq, _ = text[2:].partition("=")
            full = _long_name(spec, name)
            if full is None or "--" + full in spec.all_written:
                return None
            if "--" + full in spec.target:
                target_given = True
            i += 2 if (full in spec.long_values and not eq) else 1
            continue
        body = text[1:]
        for index, letter in enumerate(body):
            if "-" + letter in spec.all_written:
                return None
            if letter in spec.values:
                if "-" + letter in spec.target:
                    target_given = True
                i += 1 if body[index + 1 :] else 2
                break
            if letter not in spec.flags:
                return None
        else:
            i += 1
    return operands, target_given


def _long_name(spec: _Operands, name: str) -> str | None:
    """A long option's full name; getopt_long accepts any unambiguous prefix."""
    if name in spec.long_flags or name in spec.long_values:
        return name
    matches = [n for n in (*spec.long_flags, *spec.long_values) if n.startswith(name)]
    return matches[0] if name and len(matches) == 1 else None


def _source_operands(spec: _Operands, words: list[_Word], texts: list[str]) -> set[int]:
    """Indices of the words a copy-like program only reads: every operand but the last (the
    target), or every operand when `-t DIR` names the target. Both getopt readings (GNU
    permutation and POSIX) must agree that a word is a source."""
    if not all(_word_is_plain(w, t) for w, t in zip(words, texts, strict=True)):
        return set()
    out: set[int] | None = None
    for posix in (False, True):
        parsed = _parse_operands(spec, texts, posix)
        if parsed is None:
            return set()
        operands, target_given = parsed
        sources = set(operands if target_given else operands[:-1])
        if not target_given and len(operands) < 2:
            sources = set()
        out = sources if out is None else out & sources
    return out or set()


# Options of URL programs (curl, wget) whose value is a file they only read.
_URL_READ_OPTIONS = frozenset(
    "-d -F -T -K -E -H -w -b -i --data --data-ascii --data-binary --data-raw --data-urlencode "
    "--json --form --form-string --upload-file --config --cacert --capath --cert --key "
    "--netrc-file --header --write-out --cookie --proxy-cacert --proxy-cert --proxy-key "
    "--input-file --post-file --body-file --load-cookies --certificate --private-key "
    "--ca-certificate --unix-socket --abstract-unix-socket".split()
)
_TAR_VALUE_LETTERS = frozenset("bfCFgHIKLNTVX")
_TAR_PROGS = frozenset({"tar", "bsdtar", "gtar"})


def _sources_of(shell: _Shell, program: str, args: list[_Word]) -> set[int]:
    """Source words of programs whose options carry the roles (dd, tar, curl, wget)."""
    texts = [shell.expanded(w) for w in args]
    if program == "dd":
        return {
            i
            for i, (w, t) in enumerate(zip(args, texts, strict=True))
            if t.startswith("if=") and _word_is_plain(w, t)
        }
    if program in _TAR_PROGS:
        if not all(_word_is_plain(w, t) for w, t in zip(args, texts, strict=True)):
            return set()
        mode = _tar_mode(texts)
        archive = _tar_archive(texts)
        return {archive} if mode in ("x", "t", "d") and archive is not None else set()
    if program in ("curl", "wget", "wget2"):
        short, long = (
            (_CURL_SHORT_ARG, _CURL_LONG_ARG)
            if program == "curl"
            else (_WGET_SHORT_ARG, _WGET_LONG_ARG)
        )
        out: set[int] = set()
        i = 0
        while i < len(texts):
            text = texts[i]
            if text == "--":
                break
            if text.startswith("--"):
                name, eq, _ = text[2:].partition("=")
                takes_next = name in long and not eq
                if "--" + name in _URL_READ_OPTIONS:
                    out.add(i + 1 if takes_next else i)
                i += 2 if takes_next else 1
                continue
            if text.startswith("-") and len(text) > 1:
                letter, attached, takes_next = _short_value(text, short)
                if "-" + letter in _URL_READ_OPTIONS:
                    out.add(i + 1 if takes_next else i)
                i += 2 if takes_next else 1
                continue
            i += 1
        return out
    return set()


def _tar_mode(texts: list[str]) -> str:
    """tar's operation letter: c, r, u, A (write an archive), x (extract), t, d (read one)."""
    for index, text in enumerate(texts):
        if text in ("--create", "--append", "--update", "--concatenate", "--catenate"):
            return "c"
        if text in ("--extract", "--get"):
            return "x"
        if text in ("--list", "--diff", "--compare"):
            return "t"
        if (index == 0 or text.startswith("-")) and not text.startswith("--"):
            for letter in text.lstrip("-"):
                if letter in "cruA":
                    return "c"
                if letter in "xtd":
                    return letter
                if letter in _TAR_VALUE_LETTERS:
                    break
    return ""


def _tar_archive(texts: list[str]) -> int | None:
    """Index of the word that names tar's archive (`-f FILE`, `--file=FILE`, `xzf FILE`)."""
    for index, text in enumerate(texts):
        if text.startswith("--file="):
            return index
        if text == "--file":
            return index + 1 if index + 1 < len(texts) else None
        if text.startswith("--"):
            continue
        if text.startswith("-"):
            letter, attached, takes_next = _short_value(text, _TAR_VALUE_LETTERS)
            if letter == "f":
                return index if attached else (index + 1 if index + 1 < len(texts) else None)
            continue
        if index == 0:
            # Old style: `tar xzbf 20 a.tar`: each value letter takes the next word in turn.
            letters = [c for c in text if c in _TAR_VALUE_LETTERS]
            if "f" in letters:
                at = 1 + letters.index("f")
                return at if at < len(texts) else None
    return None


def _basename(program: str) -> str:
    return program.rstrip("/").rsplit("/", 1)[-1]


def _short_value(word: str, letters: frozenset[str]) -> tuple[str, str | None, bool]:
    """For a short-option cluster like `-sSLo` / `-ofile`: (letter, attached value, takes next
    word). The first letter that takes a value ends the cluster, as getopt does."""
    body = word[1:]
    for index, letter in enumerate(body):
        if letter in letters:
            rest = body[index + 1 :]
            return (letter, rest, False) if rest else (letter, None, True)
    return "", None, False


def _shell_vars(ctx: _Ctx) -> dict[str, str | None]:
    variables = dict(ctx.vars)
    variables["IFS"] = " "
    return variables


_B64_WORD = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/]{12,}={0,2}(?![A-Za-z0-9+/=_-])")


def _b64_text(word: str) -> str | None:
    """Printable text a base64 word decodes to, or None (most words are not base64)."""
    if len(word) % 4 == 1 or len(word) > 65536:
        return None
    try:
        raw = base64.b64decode(word + "=" * (-len(word) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if (
        not text
        or "\x00" in text
        or sum(ch.isprintable() or ch in "\n\t" for ch in text) < len(text)
    ):
        return None
    return text


def _add_cwd(shell: _Shell, word: _Word) -> None:
    """A directory later relative words resolve against (`cd`, `tar -C`, `git -C`, `make -C`).
    Directories accumulate rather than replace: subshells and pipes make the real cwd
    uncertain, and resolving against one more directory only adds facts."""
    state = shell.state
    ctx = shell.acc.ctx
    new: list[str] = []
    for value in shell.variants(word):
        for base in list(state.cwds):
            out = _resolve_path(value, _M_SOFT, base, ctx, state.pvars)
            new.extend(out.paths[:1])
    for path in new:
        shell.acc.add_path(path)
        if path not in state.cwds:
            if len(state.cwds) >= MAX_CWDS:
                state.cwds.pop(0)
            state.cwds.append(path)
            state.cwd_changed = True


def _h_make(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    for index, word in enumerate(args):
        if word.text in ("-C", "--directory") and index + 1 < len(args):
            _add_cwd(shell, args[index + 1])


def _h_cd(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    targets = [w for w in args if not (w.text.startswith("-") and len(w.text) > 1)]
    if not targets:
        _add_cwd(shell, _Word("~", [], False))
    elif targets[0].text != "-":
        _add_cwd(shell, targets[0])


def _h_eval(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    if args:
        shell.analyse(" ".join(w.text for w in args), depth + 1)


def _h_export(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    for word in args:
        match = _ASSIGN_RE.match(word.text)
        if match:
            shell.assignment(match.group(1), word, depth)


def _h_alias(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    for word in args:
        if "=" in word.text:
            shell.analyse(word.text.split("=", 1)[1], depth + 1)


def _h_find(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    i = 0
    n = len(args)
    while i < n:
        text = args[i].text
        if text in ("-exec", "-execdir", "-ok", "-okdir"):
            j = i + 1
            while j < n and args[j].text not in (";", "+"):
                j += 1
            inner = args[i + 1 : j]
            if inner:
                shell.run(list(inner), depth + 1)
            i = j + 1
            continue
        if text in ("-fprint", "-fprint0", "-fls", "-fprintf") and i + 1 < n:
            shell.path_candidate(shell.expanded(args[i + 1]), True)
        i += 1


def _h_nc(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    values: list[tuple[str, str]] = []
    positionals = shell.positionals(
        args,
        _NC_SHORT_ARG,
        frozenset({"exec", "sh-exec", "lua-exec", "proxy", "source", "output"}),
        values,
    )
    listen = any(
        w.text.startswith("-") and "l" in w.text[1:] and not w.text.startswith("--") for w in args
    ) or any(w.text == "--listen" for w in args)
    for option, value in values:
        if option in ("-e", "--exec", "--lua-exec"):
            shell.path_candidate(value, True)
            shell.acc.programs.setdefault(_basename(value), None)
        elif option in ("-c", "--sh-exec"):
            shell.analyse(value, depth + 1)
        elif option in ("-x", "--proxy"):
            host, _, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "1080")
            shell.host_endpoint(host or value, port or "1080")
    if not positionals:
        return
    if listen and positionals[0].isdigit():
        return
    host = positionals[0]
    ports = positionals[1:]
    for port in ports[:16]:
        first = port.split("-", 1)[0]
        shell.host_endpoint(host, first if first.isdigit() else "")
    if not ports:
        shell.host_endpoint(host, "")


def _h_ssh(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    values: list[tuple[str, str]] = []
    positionals = shell.positionals(args, _SSH_SHORT_ARG, frozenset(), values)
    port = "22"
    hostname_override = ""
    for option, value in values:
        if option == "-p":
            port = value
        elif option in ("-i", "-F", "-E", "-S"):
            shell.path_candidate(value, True)
            shell.acc.flags |= _R
        elif option == "-J":
            for jump in value.split(","):
                _ssh_destination(shell, jump, "22")
        elif option in ("-L", "-R", "-W"):
            parts = value.strip("[]").split(":")
            if option == "-W" and len(parts) == 2:
                shell.host_endpoint(parts[0], parts[1])
            elif len(parts) >= 3:
                shell.host_endpoint(parts[-2], parts[-1])
        elif option == "-o":
            split = re.match(r"\s*([A-Za-z]+)\s*[= ]\s*(.*)\Z", value, re.S)
            key, setting = (split.group(1), split.group(2)) if split else (value, "")
            low = key.lower()
            if low in ("proxycommand", "localcommand", "remotecommand", "knownhostscommand"):
                shell.analyse(setting, depth + 1)
            elif low == "proxyjump":
                for jump in setting.split(","):
                    _ssh_destination(shell, jump, "22")
            elif low == "hostname":
                hostname_override = setting.strip()
            elif low == "port":
                port = setting.strip()
            elif low in ("identityfile", "userknownhostsfile", "certificatefile", "controlpath"):
                shell.path_candidate(setting.strip(), True)
    if positionals:
        _ssh_destination(shell, positionals[0], port)
    if hostname_override:
        shell.host_endpoint(hostname_override, port)


def _ssh_destination(shell: _Shell, dest: str, port: str) -> None:
    if "://" in dest:
        shell.acc.url_value(dest, None)
        return
    host = dest.rsplit("@", 1)[-1]
    if host.startswith("["):
        end = host.find("]")
        inner = host[1:end]
        after = host[end + 1 :]
        shell.host_endpoint(inner, after[1:] if after.startswith(":") else port)
        return
    if host.count(":") == 1:
        host, _, maybe_port = host.partition(":")
        if maybe_port.isdigit():
            port = maybe_port
    shell.host_endpoint(host, port)


_SCP_REMOTE = re.compile(r"(?:[^@/:\s]+@)?(\[[^\]]+\]|[^@/:\s\[\]]+):(:?)")


def _h_scp(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    values: list[tuple[str, str]] = []
    letters = _SCP_SHORT_ARG if program != "rsync" else frozenset("efBTM")
    longs = frozenset(
        {
            "rsh",
            "rsync-path",
            "port",
            "files-from",
            "exclude-from",
            "include-from",
            "password-file",
            "log-file",
            "temp-dir",
            "backup-dir",
            "partial-dir",
            "compare-dest",
            "copy-dest",
            "link-dest",
            "filter",
            "exclude",
            "include",
        }
    )
    positionals = shell.positionals(
        args, letters, longs if program == "rsync" else frozenset(), values
    )
    port = "873" if program == "rsync" else "22"
    for option, value in values:
        if option in ("-P", "--port") and program != "rsync":
            port = value
        elif option == "--port":
            port = value
        elif option in ("-e", "--rsh", "--rsync-path", "-S"):
            shell.analyse(value, depth + 1)
        elif option in (
            "-i",
            "-F",
            "--files-from",
            "--exclude-from",
            "--include-from",
            "--password-file",
        ):
            shell.path_candidate(value, True)
        elif option == "-J":
            for jump in value.split(","):
                _ssh_destination(shell, jump, "22")
    for text in positionals:
        if "://" in text:
            shell.acc.url_value(text, None)
            continue
        if text.startswith(("/", "./", "../", "~")):
            continue
        match = _SCP_REMOTE.match(text)
        if match:
            host = match.group(1).strip("[]")
            daemon = match.group(2) == ":"
            shell.host_endpoint(host, "873" if daemon else ("22" if program == "rsync" else port))


def _h_git(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    i = 0
    n = len(args)
    while i < n:
        text = args[i].text
        if text == "-c" and i + 1 < n:
            setting = args[i + 1].text
            key, _, value = setting.partition("=")
            low = key.lower()
            if low in (
                "core.sshcommand",
                "core.pager",
                "core.editor",
                "core.fsmonitor",
                "credential.helper",
                "core.askpass",
                "gpg.program",
                "sequence.editor",
                "diff.external",
                "core.hookspath",
            ) or low.startswith(("alias.", "filter.", "diff.")):
                shell.analyse(value.lstrip("!"), depth + 1)
            i += 2
            continue
        if text == "-C" and i + 1 < n:
            _add_cwd(shell, args[i + 1])
            i += 2
            continue
        if text.startswith("-"):
            i += 1
            continue
        break
    sub = args[i].text if i < n else ""
    rest = args[i + 1 :]
    for word in rest:
        text = shell.expanded(word)
        if text.startswith("ext::"):
            # git's ext transport runs a command: words split on spaces, "% " is a literal space.
            parts = re.split(r"(?<!%) ", text[5:])
            argv = [_Word(p.replace("% ", " ").replace("%%", "%"), [], True) for p in parts if p]
            if argv:
                shell.run(argv, depth + 1)
            continue
        if "://" in text:
            if shell.acc.url_value(text, None):
                shell.acc.flags |= _N
            continue
        if sub in _NET_SUBCOMMANDS["git"] and not text.startswith(("-", "/", "./", "../", "~")):
            match = _SCP_REMOTE.match(text)
            if match and "/" not in text[: match.end()]:
                shell.host_endpoint(match.group(1).strip("[]"), "22")
                shell.acc.flags |= _N
    if sub == "config":
        _git_config_write(shell, rest)
    if sub == "config" and len(rest) >= 2:
        key = rest[0].text.lower()
        if key in (
            "core.sshcommand",
            "core.pager",
            "core.editor",
            "core.fsmonitor",
        ) or key.startswith("alias."):
            shell.analyse(rest[1].text.lstrip("!"), depth + 1)


_GIT_CONFIG_READS = frozenset(
    {
        "--get",
        "--get-all",
        "--get-regexp",
        "--get-urlmatch",
        "--list",
        "-l",
        "--get-color",
        "--get-colorbool",
        "get",
        "list",
    }
)
_GIT_CONFIG_WRITES = frozenset(
    {
        "--add",
        "--unset",
        "--unset-all",
        "--replace-all",
        "--rename-section",
        "--remove-section",
        "--edit",
        "-e",
        "set",
        "unset",
        "rename-section",
        "remove-section",
        "edit",
    }
)


def _git_config_write(shell: _Shell, rest: list[_Word]) -> None:
    """`git config [scope] name value` writes a config file: core.hooksPath, core.fsmonitor,
    core.sshCommand and `!` aliases in it run programs later (persistence), so the file is a
    written path (the pack names every git config file)."""
    target = ".git/config"
    positionals: list[str] = []
    writes = False
    i = 0
    while i < len(rest):
        text = shell.expanded(rest[i])
        if text == "--global":
            target = "~/.gitconfig"
        elif text == "--system":
            target = "/etc/gitconfig"
        elif text == "--worktree":
            target = ".git/config.worktree"
        elif text in ("-f", "--file") and i + 1 < len(rest):
            target = shell.expanded(rest[i + 1])
            i += 1
        elif text.startswith("--file="):
            target = text[7:]
        elif text in _GIT_CONFIG_READS:
            return
        elif text in _GIT_CONFIG_WRITES:
            writes = True
        elif not text.startswith("-"):
            positionals.append(text)
        i += 1
    if positionals and positionals[0] in ("set", "unset", "edit"):
        writes = True
    if writes or len(positionals) >= 2:
        shell.acc.path_value(target, _M_SOFT, shell.state.cwds, shell.state.pvars)
        shell.acc.flags |= _W


def _h_crontab(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    """Installing a crontab (from a file or stdin), editing or removing it writes the spool."""
    texts = [shell.expanded(w) for w in args]
    if "-l" in texts:
        return
    user = shell.acc.ctx.user or "root"
    for j, text in enumerate(texts):
        if text == "-u" and j + 1 < len(texts):
            user = texts[j + 1]
    shell.acc.path_value(
        f"/var/spool/cron/crontabs/{user}", _M_SOFT, shell.state.cwds, shell.state.pvars
    )
    shell.acc.flags |= _W


_SYSTEMCTL_WRITES = frozenset(
    {
        "enable",
        "link",
        "edit",
        "set-property",
        "preset",
        "add-wants",
        "add-requires",
        "revert",
        "set-environment",
        "import-environment",
        "mask",
        "unmask",
        "reenable",
    }
)


def _h_systemctl(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    """`systemctl [--user] enable|link|edit …` writes unit files: a unit runs at every start."""
    texts = [shell.expanded(w) for w in args]
    verbs = [t for t in texts if not t.startswith("-")]
    if not verbs or verbs[0] not in _SYSTEMCTL_WRITES:
        return
    base = "~/.config/systemd/user" if "--user" in texts else "/etc/systemd/system"
    for unit in verbs[1:] or ["unit"]:
        name = posixpath.basename(unit) or "unit"
        shell.acc.path_value(f"{base}/{name}", _M_SOFT, shell.state.cwds, shell.state.pvars)
    shell.acc.flags |= _W


def _h_launchctl(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    """`launchctl load|bootstrap|submit|enable` installs a job that launchd starts again."""
    texts = [shell.expanded(w) for w in args]
    verbs = [t for t in texts if not t.startswith("-")]
    if not verbs or verbs[0] not in ("load", "bootstrap", "submit", "enable"):
        return
    label = "job"
    for j, text in enumerate(texts):
        if text == "-l" and j + 1 < len(texts):
            label = texts[j + 1]
    shell.acc.path_value(
        f"~/Library/LaunchAgents/{label}.plist", _M_SOFT, shell.state.cwds, shell.state.pvars
    )
    shell.acc.flags |= _W


_SOCAT_NET = re.compile(
    r"(?i)(?:tcp[46]?|tcp[46]?-connect|udp[46]?|udp[46]?-connect|udp[46]?-sendto|ssl|openssl|openssl-connect|"
    r"socks4a?|socks5|sctp[46]?|sctp[46]?-connect|dccp-connect)\Z"
)
_SOCAT_EXEC = re.compile(r"(?i)(?:exec|system)\Z")
_SOCAT_FILE = re.compile(
    r"(?i)(?:open|file|gopen|create|pipe|unix-connect|unix-client|unix|unix-sendto|readline)\Z"
)


def _h_socat(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    for word in args:
        text = shell.expanded(word)
        if text.startswith("-") and text not in ("-", "-,"):
            continue
        kind, sep, params = text.partition(":")
        if not sep:
            continue
        body = params.split(",", 1)[0]
        if _SOCAT_NET.match(kind):
            host, _, port = body.rpartition(":")
            if not host:
                host, port = body, ""
            shell.host_endpoint(host.strip("[]"), port)
            shell.acc.flags |= _N
        elif kind.lower() in ("proxy", "proxy-connect"):
            pieces = body.split(":")
            if len(pieces) >= 3:
                shell.host_endpoint(pieces[0], "8080")
                shell.host_endpoint(pieces[1], pieces[2])
            shell.acc.flags |= _N
        elif _SOCAT_EXEC.match(kind):
            shell.analyse(params, depth + 1)
        elif _SOCAT_FILE.match(kind):
            shell.path_candidate(body, True)


def _h_openssl(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    texts = [shell.expanded(w) for w in args]
    if texts and texts[0] in ("s_client", "s_time"):
        shell.acc.flags |= _N
        host = ""
        port = "443"
        for index, text in enumerate(texts):
            if text == "-connect" and index + 1 < len(texts):
                value = texts[index + 1]
                if value.startswith("["):
                    end = value.find("]")
                    host, port = value[1:end], value[end + 2 :] or "443"
                else:
                    host, _, port = value.rpartition(":")
                    if not host:
                        host, port = value, "443"
            elif text == "-host" and index + 1 < len(texts):
                host = texts[index + 1]
            elif text == "-port" and index + 1 < len(texts):
                port = texts[index + 1]
        shell.host_endpoint(host or "localhost", port)
    for index, text in enumerate(texts):
        if text in ("-in", "-out", "-inkey", "-key", "-cert", "-passin") and index + 1 < len(texts):
            value = texts[index + 1]
            if value.startswith("file:"):
                value = value[5:]
            shell.path_candidate(value, True)
            if text == "-out":
                shell.acc.flags |= _W
            else:
                shell.acc.flags |= _R


def _h_dd(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    acc = shell.acc
    role = acc.role
    for word in args:
        text = shell.expanded(word)
        if text.startswith(("if=", "of=")):
            read = text.startswith("if=") and _word_is_plain(word, text)
            acc.role = _SOURCE if read else role
            shell.path_candidate(text[3:], True)
            acc.role = role
            acc.flags |= _R if text.startswith("if=") else _W


def _h_tar(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    texts = [shell.expanded(w) for w in args]
    if _tar_mode(texts) == "x":
        # Extraction writes anywhere under its directory (or anywhere, with absolute names).
        dirs = [texts[i + 1] for i, t in enumerate(texts[:-1]) if t in ("-C", "--directory")] + [
            t.split("=", 1)[1] for t in texts if t.startswith("--directory=")
        ]
        dirs += [t[2:] for t in texts if t.startswith("-C") and len(t) > 2]
        if "--absolute-names" in texts or any(
            "P" in t.split("=", 1)[0] and (t[:1] == "-" or i == 0) and t[:2] != "--"
            for i, t in enumerate(texts)
        ):
            dirs.append("/")
        for directory in dirs or ["."]:
            shell.acc.path_value(
                directory.rstrip("/") + "/**", _M_SOFT, shell.state.cwds, shell.state.pvars
            )
    for index, word in enumerate(args):
        text = word.text
        for prefix in (
            "--to-command=",
            "--use-compress-program=",
            "--checkpoint-action=exec=",
            "--info-script=",
            "--new-volume-script=",
            "--rsh-command=",
        ):
            if text.startswith(prefix):
                shell.analyse(text[len(prefix) :], depth + 1)
        if text in ("-I", "--use-compress-program", "--to-command", "-F") and index + 1 < len(args):
            shell.analyse(args[index + 1].text, depth + 1)
        if text in ("-C", "--directory") and index + 1 < len(args):
            _add_cwd(shell, args[index + 1])
        elif text.startswith("--directory="):
            _add_cwd(shell, _Word(text.split("=", 1)[1], [], word.quoted))


# The Docker daemon API over TCP (docs.docker.com/engine/daemon/remote-access): `-H`/`--host`,
# `DOCKER_HOST` and podman's `--url` take `tcp://host[:port]` or a bare `host:port`; with no
# port the client dials 2375 (2376 with TLS).
_DOCKER_HOST_OPTS = frozenset({"-H", "--host", "--url"})
_DOCKER_API_PORT = "2375"


def _docker_host(shell: _Shell, value: str) -> None:
    """One Docker daemon address: a unix socket is a path, anything else an endpoint."""
    low = value.lower()
    if low.startswith(("unix://", "npipe://", "fd://")):
        if low.startswith("unix://"):
            shell.path_candidate(value[7:], True)
        return
    if low.startswith("ssh://"):
        shell.acc.url_value(value, None)
        return
    rest = value.split("://", 1)[1] if "://" in value else value
    authority = rest.split("/", 1)[0]
    if authority.startswith("["):
        end = authority.find("]")
        host, port = authority[1:end], authority[end + 2 :]
    else:
        host, _, port = authority.rpartition(":") if ":" in authority else (authority, "", "")
    if host or authority:
        shell.host_endpoint(host or authority, port if port.isdigit() else _DOCKER_API_PORT)
        shell.acc.flags |= _N


def _h_docker(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    texts = [shell.expanded(w) for w in args]
    for index, text in enumerate(texts):
        if text in _DOCKER_HOST_OPTS and index + 1 < len(texts):
            _docker_host(shell, texts[index + 1])
        elif text.startswith(("--host=", "--url=")):
            _docker_host(shell, text.split("=", 1)[1])
        elif text.startswith("-H") and len(text) > 2 and not text.startswith("--"):
            _docker_host(shell, text[2:].lstrip("="))
        elif text.startswith("host=") and index > 0 and texts[index - 1] == "--docker":
            _docker_host(shell, text[5:].split(",", 1)[0])  # `docker context create --docker`


_HANDLERS = {
    "docker": _h_docker,
    "podman": _h_docker,
    "cd": _h_cd,
    "pushd": _h_cd,
    "eval": _h_eval,
    "export": _h_export,
    "declare": _h_export,
    "typeset": _h_export,
    "local": _h_export,
    "readonly": _h_export,
    "alias": _h_alias,
    "find": _h_find,
    "nc": _h_nc,
    "ncat": _h_nc,
    "netcat": _h_nc,
    "ssh": _h_ssh,
    "scp": _h_scp,
    "sftp": _h_scp,
    "rsync": _h_scp,
    "git": _h_git,
    "socat": _h_socat,
    "openssl": _h_openssl,
    "dd": _h_dd,
    "tar": _h_tar,
    "bsdtar": _h_tar,
    "gtar": _h_tar,
    "make": _h_make,
    "gmake": _h_make,
    "crontab": _h_crontab,
    "systemctl": _h_systemctl,
    "launchctl": _h_launchctl,
}

# wrapper -> (options that take a value, positional words to skip before the command)
_WRAPPERS: dict[str, tuple[frozenset[str], int]] = {
    "sudo": (
        frozenset(
            {
                "-u",
                "-g",
                "-h",
                "-p",
                "-C",
                "-D",
                "-r",
                "-t",
                "-U",
                "-T",
                "--user",
                "--group",
                "--host",
                "--prompt",
                "--chdir",
                "--role",
                "--type",
                "--other-user",
                "--command-timeout",
                "--close-from",
            }
        ),
        0,
    ),
    "doas": (frozenset({"-u", "-C"}), 0),
    "env": (frozenset({"-u", "--unset", "-C", "--chdir", "-P"}), 0),
    "nohup": (frozenset(), 0),
    "exec": (frozenset({"-a"}), 0),
    "command": (frozenset(), 0),
    "builtin": (frozenset(), 0),
    "nice": (frozenset({"-n", "--adjustment"}), 0),
    "ionice": (frozenset({"-c", "-n", "-p", "-P", "-u", "--class", "--classdata"}), 0),
    "time": (frozenset({"-f", "-o", "--format", "--output"}), 0),
    "timeout": (frozenset({"-s", "-k", "--signal", "--kill-after"}), 1),
    "gtimeout": (frozenset({"-s", "-k", "--signal", "--kill-after"}), 1),
    "xargs": (
        frozenset(
            {
                "-I",
                "-n",
                "-P",
                "-L",
                "-s",
                "-d",
                "-E",
                "-a",
                "--max-args",
                "--max-procs",
                "--replace",
                "--delimiter",
                "--arg-file",
                "--max-lines",
                "--max-chars",
                "--eof",
            }
        ),
        0,
    ),
    "stdbuf": (frozenset({"-i", "-o", "-e"}), 0),
    "setsid": (frozenset(), 0),
    "chronic": (frozenset(), 0),
    "unbuffer": (frozenset(), 0),
    "caffeinate": (frozenset({"-t", "-w"}), 0),
    "taskset": (frozenset({"-c", "-p"}), 1),
    "numactl": (
        frozenset(
            {
                "-C",
                "-N",
                "-m",
                "-p",
                "-i",
                "--physcpubind",
                "--cpunodebind",
                "--membind",
                "--preferred",
                "--interleave",
            }
        ),
        0,
    ),
    "chroot": (frozenset({"--userspec", "--groups"}), 1),
    "flock": (frozenset({"-w", "-E", "--timeout", "--conflict-exit-code"}), 1),
    "strace": (
        frozenset({"-o", "-e", "-p", "-s", "-u", "-E", "-P", "-a", "-b", "-I", "-S", "-X"}),
        0,
    ),
    "ltrace": (frozenset({"-o", "-e", "-p", "-s", "-u", "-a", "-n", "-l"}), 0),
    "watch": (frozenset({"-n", "-d", "--interval", "--differences"}), 0),
    "proxychains": (frozenset({"-f"}), 0),
    "proxychains4": (frozenset({"-f"}), 0),
    "torsocks": (frozenset({"-u", "-p", "-a", "-P"}), 0),
    "tsocks": (frozenset(), 0),
    "firejail": (frozenset(), 0),
    "busybox": (frozenset(), 0),
    "su": (frozenset({"-s", "-g", "-G", "--shell", "--group"}), 0),
    "runuser": (frozenset({"-u", "-g", "-G", "-s", "--user", "--group"}), 0),
    "sg": (frozenset(), 1),
    "script": (
        frozenset(
            {"-t", "-T", "-I", "-O", "-B", "-E", "--log-in", "--log-out", "--log-io", "--timing"}
        ),
        0,
    ),
    "fakeroot": (frozenset({"-l", "-s", "-i", "--lib", "--faked"}), 0),
    "unshare": (frozenset(), 0),
    "nsenter": (frozenset({"-t", "--target"}), 0),
    "catchsegv": (frozenset(), 0),
    "systemd-run": (
        frozenset({"-p", "-E", "--unit", "--property", "--setenv", "--uid", "--gid"}),
        0,
    ),
    "cgexec": (frozenset({"-g"}), 0),
    "valgrind": (frozenset(), 0),
    "nocache": (frozenset(), 0),
    "trickle": (frozenset({"-d", "-u", "-w", "-t", "-l", "-n"}), 0),
    "parallel": (frozenset({"-j", "-S", "--jobs", "--sshlogin"}), 0),
    "doppler": (frozenset(), 0),
    "op": (frozenset(), 0),
}
