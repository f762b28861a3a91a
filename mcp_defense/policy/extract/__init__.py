"""Facts from raw tool arguments — the security boundary of mcp-defense.

A prompt-injected agent writes the arguments of every `tools/call`. Rules never look at those
arguments directly; they see the normalised facts produced here (`CallFacts`). So the contract
of this module is one-sided: **a path, URL or host that a server could act on must appear in the
facts in canonical form, whatever its spelling**. Extra facts (a harmless relative path that was
really a word of prose) cost at most a needless approval; a missing fact is a bypass. Every
choice below leans that way, and anything that cannot be interpreted raises `ExtractionError`,
which the table turns into a deny (fail closed).

How a value is read depends on the *role* of the key it sits under (from the policy's
`classify` blocks, see `Classifier`):

* ``path``    — the whole string is a filesystem path (relative → workspace).
* ``url``     — the whole string is a URL; a bare ``host[:port][/path]`` gets ``https://``.
* ``command`` — a shell command line: lexed like bash, split into simple commands, recursed
  into ``bash -c``/``eval``/``$(...)``/heredocs, interpreter ``-c``/``-e`` code scanned.
* ``code``    — program text: string literals (and joins of adjacent literals) are values.
* ``text``    — prose/content: scanned for URLs only (it may be 16 MiB; no per-char Python).
* unknown     — anything that *looks* like a path, URL or IP literal is taken, anywhere in the
  string, and JSON inside strings is decoded and walked (servers may decode it).

Path spellings handled: ``~``, ``~user``, ``$HOME``/``${HOME}``/``$USER``/``$PWD``/``$TMPDIR``
(and XDG defaults), ``..``/``.``, repeated and trailing slashes, percent-encoding (repeatedly,
plus overlong UTF-8), backslashes (as a second reading), ``file:`` URLs in every form, the
``/proc/<pid>/{root,cwd}`` magic links (resolved *during* traversal, as the kernel does, so
``/proc/self/cwd/../../home/...`` lands in ``/home``), and optionally ``realpath``.

Known limits (the policy must compensate):
* Shell and program text is Turing-complete. Runtime-computed paths (``$(printf ...)``,
  base64-decoded scripts, unknown variables) cannot be seen statically; every command/code
  value sets ``spawns`` so a policy can gate execution itself.
* Glob patterns (``~/.s*/id_*``) stay literal unless ``resolve_symlinks`` allows filesystem
  access, in which case command words are also glob-expanded (bounded).

Layout: `limits` (per-call bounds, effect/role codes), `classify` (tool and key roles), `paths`,
`env` (environment and memo caches), `urls` (URLs, hosts and address predicates), `scan`
(unknown-key values), `code` (literals in program text), `shell/` (`lexer`, `programs` — per-program
knowledge —, `analyse`) and `walk` (the argument walker and `extract`).
"""

from __future__ import annotations

from mcp_defense.policy.extract.classify import (
    DEFAULT_KEYS,
    DEFAULT_TOOLS,
    Classifier,
    default_classifier,
)
from mcp_defense.policy.extract.env import Environment
from mcp_defense.policy.extract.limits import EFFECTS, ROLES
from mcp_defense.policy.extract.walk import extract

__all__ = [
    "DEFAULT_KEYS",
    "DEFAULT_TOOLS",
    "EFFECTS",
    "ROLES",
    "Classifier",
    "Environment",
    "default_classifier",
    "extract",
]
