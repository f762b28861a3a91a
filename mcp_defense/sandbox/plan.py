"""An archetype of the compiled DecisionTable → a Landlock ruleset for the server process.

No second policy: the archetype's `paths` become read rights, `writes` write rights,
`network` the TCP ports the server may connect to, `spawn` the execute right; what the
server's runtime needs to start (system directories, the interpreter's own installation
prefix, a launcher's package cache — resolved from the command) and the archetype's
`runtime` entries are added read-only (plus execute when the archetype may spawn, or for
the server's own executable chain). Landlock cannot subtract, so a grant that would cover a
home directory or a system secret is split around it: nothing in any home outside the
paths the archetype names is ever readable, whatever `paths any` says.
"""

from __future__ import annotations

import glob as globmod
import json
import os
import platform
import pwd
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp_defense.sandbox import landlock

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/nix/store")
# Runtime configuration read from /etc by libc, Python, Node and TLS stacks (not all of /etc:
# it also holds host keys and shadow files).
ETC_FILES = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "ssl",
    "ca-certificates", "ca-certificates.conf", "pki", "crypto-policies", "resolv.conf",
    "hosts", "host.conf", "nsswitch.conf", "gai.conf", "services", "protocols", "passwd",
    "group", "mime.types", "os-release", "alternatives", "locale.alias", "locale.conf",
    "hostname", "npmrc", "pip.conf", "gitconfig",
)  # fmt: skip
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
PROC_FILES = (
    "/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/proc/filesystems",
    "/proc/sys/vm/overcommit_memory",
)  # fmt: skip
SYS_DIRS = ("/sys/devices/system/cpu", "/sys/fs/cgroup")
# Never inside a wide grant (`paths any`, `/tmp/**`…): secrets of the system and of other
# processes. /proc is replaced by the server's own entry, /dev by the devices above.
SECRET_PATHS = (
    "/proc", "/sys", "/dev", "/etc/ssh", "/etc/shadow", "/etc/shadow-", "/etc/gshadow",
    "/etc/gshadow-", "/etc/sudoers", "/etc/sudoers.d", "/etc/ssl/private", "/run/secrets",
    "/var/run/secrets", "/var/lib/docker", "/var/lib/containerd",
)  # fmt: skip
INTERPRETERS = ("python", "node", "nodejs", "deno", "bun", "ruby", "perl", "php", "java")

MODES = ("on", "require")
MAX_PLAN_BYTES = 120_000


@dataclass(frozen=True, slots=True)
class FsRule:
    path: str
    access: tuple[str, ...]  # words of landlock.ACCESS_WORDS
    why: str
    excluded: tuple[str, ...] = ()  # paths beneath `path` the grant is split around

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path, "access": list(self.access)}
        if self.excluded:
            d["except"] = list(self.excluded)
        return d


@dataclass(slots=True)
class Plan:
    """The ruleset for one server of one archetype (what the trampoline applies)."""

    archetype: str
    fs: list[FsRule] = field(default_factory=list)
    connect: tuple[int, ...] | None = ()  # None: TCP not restricted (`network any`)
    spawn: str = "none"  # none | list | any
    chain: tuple[str, ...] = ()  # executables the server may run when spawn is none
    notes: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # set for the server by the trampoline

    def to_json(self) -> dict[str, Any]:
        return {
            "env": dict(self.env),
            "fs": [r.to_json() for r in self.fs],
            "connect": None if self.connect is None else list(self.connect),
            "scope": True,
            "self_proc": True,
        }


@dataclass(frozen=True, slots=True)
class Enforcement:
    """What the running kernel enforces of a plan, said out loud."""

    abi: int
    kernel: str
    why_not: str  # empty when Landlock is available
    enforced: tuple[str, ...]
    not_enforced: tuple[str, ...]
    never: tuple[str, ...]  # limits of Landlock itself, covered elsewhere or not at all

    @property
    def full(self) -> bool:
        return self.abi > 0 and not self.not_enforced

    def to_json(self, mode: str) -> dict[str, Any]:
        return {
            "mode": mode,
            "landlock_abi": self.abi,
            "kernel": self.kernel,
            "enforced": list(self.enforced),
            "not_enforced": list(self.not_enforced),
            "outside_landlock": list(self.never),
        }

    def lines(self) -> list[str]:
        head = (
            f"sandbox: Landlock ABI {self.abi} on {self.kernel}"
            if self.abi
            else f"sandbox: NOT enforced — {self.why_not}"
        )
        out = [head]
        if self.enforced:
            out.append("  enforced:     " + "; ".join(self.enforced))
        if self.not_enforced:
            out.append("  NOT enforced: " + "; ".join(self.not_enforced))
        out.append("  not by Landlock: " + "; ".join(self.never))
        return out


# ---------------------------------------------------------------------------------------------
# Paths


def homes(env: Mapping[str, str]) -> list[str]:
    """Every home directory a user's secrets live in: /root, /home/*, /Users/*, $HOME, and
    the passwd homes of login users."""
    found = {"/root"}
    for pattern in ("/home/*", "/Users/*"):
        found.update(globmod.glob(pattern))
    for h in (env.get("HOME", ""), os.path.expanduser("~")):
        if h and h != "/":
            found.add(h)
    try:
        for pw in pwd.getpwall():
            if (pw.pw_uid >= 1000 or pw.pw_uid == os.getuid()) and not pw.pw_shell.endswith(
                ("nologin", "false")
            ):
                if pw.pw_dir not in ("", "/", "/nonexistent"):
                    found.add(pw.pw_dir)
    except OSError:  # pragma: no cover - no passwd database
        pass
    return sorted({os.path.realpath(h) for h in found})


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def glob_root(g: str, home: str) -> str:
    """The directory a glob cannot leave: its literal prefix (a `~` is the server's $HOME)."""
    if g == "~" or g.startswith("~/"):
        g = home + g[1:]
    if not g.startswith("/"):
        return "/"  # a relative or `**` pattern matches anywhere
    literal: list[str] = []
    for part in g.split("/")[1:]:
        if any(ch in part for ch in "*?[{"):
            break
        literal.append(part)
    return os.path.normpath("/" + "/".join(literal))


class _Builder:
    def __init__(self, archetype: str, env: Mapping[str, str], jewel: Any) -> None:
        self.plan = Plan(archetype)
        self.env = env
        self.home = env.get("HOME") or os.path.expanduser("~")
        self.homes = homes(env)
        self.jewel = jewel
        self._secrets: list[str] | None = None

    def secrets(self) -> list[str]:
        """SECRET_PATHS plus every /etc entry the policy's jewels call crown or auth."""
        if self._secrets is None:
            found = set(SECRET_PATHS)
            try:
                for name in os.listdir("/etc"):
                    p = "/etc/" + name
                    if self.jewel(p) in ("crown", "auth"):
                        found.add(p)
            except OSError:
                pass
            self._secrets = sorted(found)
        return self._secrets

    def grant(self, path: str, access: Sequence[str], why: str, *, split: bool = True) -> bool:
        """A grant the policy makes (or a system directory) is split around the homes and
        secrets it would cover; one inferred from the command (`split=False`) that would
        cover them is refused instead. A grant inside a home (an interpreter under
        ~/.pyenv, a workspace, a package cache) is explicit and stays."""
        path = os.path.normpath(path)
        if path in self.homes:
            self.plan.notes.append(f"{why}: {path} is a home directory, not granted")
            return False
        for s in self.secrets():
            if _within(path, s):
                self.plan.notes.append(f"{why}: {path} holds system secrets, not granted")
                return False
        excluded = [e for e in [*self.homes, *self.secrets()] if e != path and _within(e, path)]
        if excluded and not split:
            self.plan.notes.append(f"{why}: {path} holds a home or secrets, not granted")
            return False
        self.plan.fs.append(FsRule(path, tuple(access), why, tuple(sorted(excluded))))
        return True

    def grant_globs(self, globs: Sequence[str] | None, access: Sequence[str], why: str) -> None:
        if globs is None:  # any
            self.grant("/", access, why + " (any)")
            return
        roots = sorted({glob_root(g, self.home) for g in globs})
        for g in globs:
            r = glob_root(g, self.home)
            if g not in (r, r + "/**", r.rstrip("/") + "/**"):
                self.plan.notes.append(f"{why}: {g!r} is granted as all of {r}")
        for r in roots:
            self.grant(r, access, why)


# ---------------------------------------------------------------------------------------------
# The server's executable chain and runtime


def _which(name: str, env: Mapping[str, str], cwd: str) -> str | None:
    if "/" in name:
        p = os.path.join(cwd, name)
        return os.path.abspath(p) if os.path.exists(p) else None
    return shutil.which(name, path=env.get("PATH", os.defpath))


def elf_interpreter(path: str) -> str | None:
    """PT_INTERP of an ELF executable: the loader the kernel opens with the execute right."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF":
                return None
            bits64, little = head[4] == 2, head[5] == 1

            def num(b: bytes) -> int:
                return int.from_bytes(b, "little" if little else "big")

            phoff = num(head[32:40]) if bits64 else num(head[28:32])
            phentsize = num(head[54:56]) if bits64 else num(head[42:44])
            phnum = num(head[56:58]) if bits64 else num(head[44:46])
            for i in range(min(phnum, 64)):
                f.seek(phoff + i * phentsize)
                ph = f.read(phentsize)
                if num(ph[0:4]) != 3:  # PT_INTERP
                    continue
                off = num(ph[8:16]) if bits64 else num(ph[4:8])
                size = num(ph[32:40]) if bits64 else num(ph[16:20])
                f.seek(off)
                return f.read(min(size, 4096)).rstrip(b"\0").decode()
    except (OSError, UnicodeDecodeError):
        return None
    return None


def _shebang(path: str) -> list[str]:
    try:
        with open(path, "rb") as f:
            line = f.readline(512)
    except OSError:
        return []
    if not line.startswith(b"#!"):
        return []
    return line[2:].decode(errors="replace").split()


def executable_chain(
    command: Sequence[str], env: Mapping[str, str], cwd: str
) -> tuple[list[str], list[str]]:
    """(files execve() must be allowed on, interpreter names met on the way): the command,
    its `#!` interpreters (through `env`), and each one's ELF loader."""
    files: list[str] = []
    names: list[str] = []
    todo: list[tuple[str, int]] = []
    first = _which(command[0], env, cwd) if command else None
    if first:
        todo.append((first, 0))
    while todo:
        path, depth = todo.pop()
        if depth > 4:
            continue
        for p in (os.path.abspath(path), os.path.realpath(path)):
            if p not in files:
                files.append(p)
        real = os.path.realpath(path)
        names.append(os.path.basename(real))
        loader = elf_interpreter(real)
        if loader:
            files.append(os.path.realpath(loader))
            continue
        sb = _shebang(real)
        if not sb:
            continue
        interp = _which(sb[0], env, cwd) if sb[0].startswith("/") else None
        if interp:
            todo.append((interp, depth + 1))
        if os.path.basename(sb[0]) == "env":
            rest = [a for a in sb[1:] if not a.startswith("-")]
            target = _which(rest[0], env, cwd) if rest else None
            if target:
                todo.append((target, depth + 1))
    return list(dict.fromkeys(files)), names


def _prefix(exe: str) -> str | None:
    """`/opt/x/bin/tool` → `/opt/x`: an installation prefix, if the file sits in a bin dir."""
    parent = os.path.dirname(exe)
    if os.path.basename(parent) not in ("bin", "sbin", "Scripts"):
        return None
    prefix = os.path.dirname(parent)
    return None if prefix in ("/", "") else prefix


def _script_root(path: str, stop: Sequence[str]) -> str:
    """A script's directory, or for Node the package root above it (its node_modules)."""
    d = os.path.dirname(os.path.abspath(path))
    probe = d
    for _ in range(4):
        if os.path.exists(os.path.join(probe, "package.json")):
            return probe
        up = os.path.dirname(probe)
        if up == probe or any(_within(h, up) for h in stop):
            break
        probe = up
    return d


def _launcher_caches(names: Sequence[str], env: Mapping[str, str], home: str) -> list[str]:
    """Package caches a launcher runs the server from (npx → the npm cache, uvx → uv's)."""
    out: list[str] = []
    base = {os.path.basename(n).removesuffix(".js") for n in names}
    if base & {"npx", "npm", "npx-cli", "npm-cli"}:
        out.append(env.get("npm_config_cache") or env.get("NPM_CONFIG_CACHE") or home + "/.npm")
    if base & {"uvx", "uv"}:
        xdg_cache = env.get("XDG_CACHE_HOME") or home + "/.cache"
        xdg_data = env.get("XDG_DATA_HOME") or home + "/.local/share"
        out.append(env.get("UV_CACHE_DIR") or xdg_cache + "/uv")
        out.append(env.get("UV_PYTHON_INSTALL_DIR") or xdg_data + "/uv")
    return out


def _is_interpreter(name: str) -> bool:
    return name.startswith(INTERPRETERS)


# ---------------------------------------------------------------------------------------------
# The compiler


def compile_plan(
    table: Any,
    archetype: str,
    command: Sequence[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> Plan:
    """The Landlock plan for `archetype` of `table` (a DecisionTable) running `command`."""
    const = table.archetype(archetype)
    if const is None:
        raise KeyError(f"unknown archetype {archetype!r}")
    env = dict(os.environ if env is None else env)
    cwd = cwd or os.getcwd()
    b = _Builder(archetype, env, table.jewel)
    plan = b.plan

    # What the archetype says.
    if not const.spawn:
        plan.spawn = "none"
    elif const.spawn_programs is None:
        plan.spawn = "any"
    else:
        plan.spawn = "list"
    rx = ("read", "execute") if plan.spawn == "any" else ("read",)
    paths = None if const.paths is None else list(const.paths.globs)
    writes = None if const.writes is None else list(const.writes.globs)
    b.grant_globs(paths, rx, "archetype paths")
    b.grant_globs(writes, ("write",), "archetype writes")
    if const.network == "any":
        plan.connect = None
    elif const.network == "none":
        plan.connect = ()
    else:
        ports = [e.port for e in const.net_entries]
        if any(p is None for p in ports):
            plan.connect = None
            loose = [e.text for e in const.net_entries if e.port is None]
            plan.notes.append(f"network: {', '.join(loose)} names no port; connect not limited")
        else:
            plan.connect = tuple(sorted({int(p) for p in ports if p is not None}))

    # What the server's runtime needs.
    chain, names = executable_chain(command, env, cwd) if command else ([], [])
    launcher = _launcher_caches(names, env, b.home)
    if launcher and any(n in ("npx-cli.js", "npm-cli.js") for n in names):
        sh = _which("sh", env, cwd)  # npm exec runs the package's bin through `sh -c`
        if sh:
            more, _ = executable_chain([sh], env, cwd)
            chain += [c for c in more if c not in chain]
            plan.notes.append(f"npx runs the server through {sh}: it is in the chain")
    for d in SYSTEM_DIRS:
        if os.path.exists(d):
            b.grant(d, rx, "system")
    for name in ETC_FILES:
        if os.path.exists("/etc/" + name):
            b.grant("/etc/" + name, ("read",), "runtime config")
    for d in DEVICES:
        if os.path.exists(d):
            b.plan.fs.append(FsRule(d, ("read", "write", "ioctl"), "devices"))
    if os.path.isdir("/dev/shm"):
        b.plan.fs.append(FsRule("/dev/shm", ("read", "write"), "shared memory"))
    for p in (*PROC_FILES, *SYS_DIRS):
        if os.path.exists(p):
            b.plan.fs.append(FsRule(p, ("read",), "runtime info"))
    prefixes: list[str] = []
    for exe in chain:
        prefix = _prefix(exe)
        if prefix and not any(_within(prefix, s) for s in SYSTEM_DIRS) and prefix not in prefixes:
            prefixes.append(prefix)
    for prefix in prefixes:
        b.grant(prefix, rx, "interpreter prefix", split=False)
    for extra in const.runtime:
        b.grant(glob_root(extra, b.home), rx, "archetype runtime")
    for cache in launcher:
        b.grant(cache, ("read", "execute"), "launcher cache", split=False)
    if launcher and "npx-cli.js" in names:
        # npm's content cache is written even on a cache hit; the installed package (_npx)
        # stays read-only, so the server cannot rewrite the code it runs.
        npm_cache = launcher[0]
        for sub in ("_cacache", "_logs"):
            b.grant(f"{npm_cache}/{sub}", ("read", "write"), "npm cache (written by npx)")
        b.grant(f"{npm_cache}/_npx", ("read", "execute", "mkdir"), "npx lock directories")
        npx_locks = ("*/package.json", "*/package-lock.json", "*/node_modules/.package-lock.json")
        for lock in sorted(p for g in npx_locks for p in globmod.glob(f"{npm_cache}/_npx/{g}")):
            b.grant(lock, ("read", "write"), "npx rewrites its lock files")
        plan.notes.append(f"npx writes {npm_cache}/_cacache: a server could poison later installs")
        if plan.connect is not None and 443 not in plan.connect:
            plan.env["npm_config_prefer_offline"] = "true"  # no registry: run from the cache
            plan.notes.append(
                "npx runs with npm_config_prefer_offline=true (the registry is out of reach): "
                "install the package once outside the sandbox"
            )
    if launcher and os.path.exists(b.home + "/.npmrc"):
        b.grant(b.home + "/.npmrc", ("read",), "npm configuration (may hold registry tokens)")
    # A script given to an interpreter, and the module search paths the environment sets.
    if command and names and _is_interpreter(names[-1]):
        for a in command[1:]:
            if a == "-m":
                b.grant(cwd, ("read",), "python -m searches the working directory", split=False)
                break
            if a in ("-c", "-e", "--eval"):
                break
            if a.startswith("-") and len(a) > 1:
                continue
            script = os.path.join(cwd, a)
            if os.path.isfile(script):
                root = _script_root(script, b.homes)
                if not b.grant(root, ("read",), "server script", split=False):
                    b.grant(script, ("read",), "server script", split=False)
            break
    for var in ("PYTHONPATH", "NODE_PATH"):
        for entry in filter(None, env.get(var, "").split(os.pathsep)):
            b.grant(os.path.join(cwd, entry), ("read",), var, split=False)
    if plan.spawn != "any":
        plan.chain = tuple(chain)
        for exe in chain:
            plan.fs.append(FsRule(exe, ("read", "execute"), "executable chain"))
        if plan.spawn == "list":
            for prog in const.spawn_programs.globs:
                found = _which(prog, env, cwd) if not any(c in prog for c in "*?[{") else None
                if found is None:
                    plan.notes.append(f"spawn {prog!r}: not found on PATH, not executable")
                    continue
                more, _ = executable_chain([found], env, cwd)
                for exe in more:
                    plan.fs.append(FsRule(exe, ("read", "execute"), f"spawn {prog}"))
    return _dedupe(plan)


def _dedupe(plan: Plan) -> Plan:
    merged: dict[str, FsRule] = {}
    for r in plan.fs:
        old = merged.get(r.path)
        if old is None:
            merged[r.path] = r
            continue
        access = tuple(dict.fromkeys((*old.access, *r.access)))
        excluded = tuple(sorted(set(old.excluded) | set(r.excluded)))
        merged[r.path] = FsRule(r.path, access, old.why, excluded)
    plan.fs = list(merged.values())
    return plan


def enforcement(plan: Plan, abi: int | None = None, why_not: str = "") -> Enforcement:
    """Which parts of `plan` this kernel enforces (abi None: ask the kernel)."""
    if abi is None:
        abi, why_not = landlock.abi_version()
    has = landlock.parts(abi)
    kernel = f"{platform.system()} {platform.release()}"
    enforced: list[str] = []
    missing: list[str] = []

    def part(ok: bool, text: str) -> None:
        (enforced if ok else missing).append(text)

    part(has["filesystem"], "filesystem (read, write, execute beneath the granted paths)")
    if plan.spawn != "any":
        who = ", ".join(os.path.basename(c) for c in plan.chain) or "nothing"
        part(has["filesystem"], f"spawn {plan.spawn} (execute only: {who})")
    part(has["truncate"], "truncate")
    part(has["refer"], "renames and links across directories")
    if plan.connect is not None:
        ports = ", ".join(str(p) for p in plan.connect) or "none"
        part(has["network"], f"network (TCP connect to ports: {ports}; no TCP bind)")
    part(has["ioctl"], "device ioctl")
    part(has["scope"], "signals and abstract unix sockets stay inside the sandbox")
    never = [
        "hosts (Landlock filters ports: hosts stay with the flow correlator)",
        "UDP and unix sockets by path",
        "the ELF loader can map a readable program without execve",
    ]
    return Enforcement(abi, kernel, why_not, tuple(enforced), tuple(missing), tuple(never))


def render(plan: Plan, enf: Enforcement | None = None) -> str:
    """The ruleset as `policy compile --sandbox` prints it."""
    out = [f"Landlock ruleset for archetype {plan.archetype}:"]
    width = max((len(r.path) for r in plan.fs), default=10)
    for r in plan.fs:
        access = "+".join(r.access)
        line = f"  {access:<22} {r.path:<{width}}  {r.why}"
        if r.excluded:
            line += f"  (except {', '.join(r.excluded)})"
        out.append(line)
    if plan.connect is None:
        out.append("  network: TCP not restricted")
    else:
        ports = ", ".join(str(p) for p in plan.connect) or "none"
        out.append(f"  network: TCP connect to ports {ports}; TCP bind refused")
    out.append(f"  spawn {plan.spawn}" + ("" if plan.spawn == "any" else ": executable chain only"))
    out.append("  signals and abstract unix sockets: confined to the server")
    out.extend(f"  note: {n}" for n in plan.notes)
    if enf is not None:
        out.extend(enf.lines())
    return "\n".join(out)


@dataclass(frozen=True, slots=True)
class Launch:
    """What `stdio --sandbox` hands the proxy: the argv prefix and the session_start record."""

    launcher: tuple[str, ...]
    summary: dict[str, Any]
    lines: tuple[str, ...]
    full: bool


def prepare(
    table: Any,
    archetype: str,
    command: Sequence[str],
    mode: str,
    env: Mapping[str, str] | None = None,
) -> Launch:
    """Compile the archetype's ruleset for `command` (run with `env`, default this
    process's) and say what this kernel enforces."""
    plan = compile_plan(table, archetype, command, env=env)
    enf = enforcement(plan)
    data = plan.to_json()
    if mode == "require":
        data["require"] = True
    summary = enf.to_json(mode)
    summary["rules"] = len(plan.fs)
    summary["connect_ports"] = None if plan.connect is None else list(plan.connect)
    summary["spawn"] = plan.spawn
    exe = Path(__file__).with_name("exec.py")
    text = json.dumps(data, separators=(",", ":"))
    if len(text) > MAX_PLAN_BYTES:  # one argv string may not exceed 128 KiB on Linux
        raise ValueError(f"the Landlock ruleset is too large to pass ({len(text)} bytes)")
    launcher = (sys.executable, "-I", "-S", str(exe), text, "--")
    return Launch(launcher, summary, tuple(enf.lines()), enf.full)


def describe(table: Any, archetype: str, fmt: str = "text") -> str:
    """`policy compile --sandbox ARCHETYPE`: the ruleset (with this Python as the example
    server command) and what this kernel enforces of it."""
    python = sys.executable
    plan = compile_plan(table, archetype, [python])
    enf = enforcement(plan)
    if fmt == "json":
        data = plan.to_json()
        data["archetype"] = archetype
        data["spawn"] = plan.spawn
        data["notes"] = plan.notes
        data["enforcement"] = enf.to_json("on")
        return json.dumps(data, indent=2)
    head = f"(server command for this example: {python}; `stdio --sandbox` resolves the real one)"
    return render(plan, enf) + "\n" + head
