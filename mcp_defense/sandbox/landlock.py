"""Linux Landlock through its three syscalls (ctypes, no privileges, no dependencies).

Landlock is an allow-list the kernel enforces on a process and every child it ever has: a
handled access right is refused (EACCES) unless a rule grants it beneath a path (or on a
TCP port), and the restriction can never be lifted. Newer kernels handle more rights (the
ABI version): rights the running kernel does not know are dropped here, and `parts()` says
which guarantees that leaves, so callers can report them instead of pretending.

This module imports only the standard library: the exec trampoline loads it by path in a
bare interpreter (`python -I -S`) to keep the server's start-up cost small.
"""

from __future__ import annotations

import ctypes
import os
import platform
import stat
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# Syscall numbers: one table for every architecture since Linux 5.13 (except alpha and mips).
_SYSCALLS = {"create_ruleset": 444, "add_rule": 445, "restrict_self": 446}
_ARCHES = ("x86_64", "amd64", "aarch64", "arm64", "riscv64", "ppc64le", "ppc64", "s390x")
_ARCH_PREFIXES = ("i386", "i486", "i586", "i686", "armv")

CREATE_RULESET_VERSION = 1 << 0
RULE_PATH_BENEATH = 1
RULE_NET_PORT = 2
PR_SET_NO_NEW_PRIVS = 38

# Filesystem rights (ABI in which each appeared).
FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13  # ABI 2: link/rename into another directory
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1  # ABI 6
# ABI 7: audit-log denials after the exec too (by default only the trampoline's are logged).
RESTRICT_SELF_LOG_NEW_EXEC_ON = 1 << 1

_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
# Rights that make sense on a file (a rule on a non-directory may only carry these).
_FS_FILE = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV

# The access words a plan uses, as rights.
READ = FS_READ_FILE | FS_READ_DIR
WRITE = (
    FS_WRITE_FILE
    | FS_REMOVE_DIR
    | FS_REMOVE_FILE
    | FS_MAKE_DIR
    | FS_MAKE_REG
    | FS_MAKE_SOCK
    | FS_MAKE_FIFO
    | FS_MAKE_SYM
    | FS_REFER
    | FS_TRUNCATE
)
EXECUTE = FS_EXECUTE
IOCTL = FS_IOCTL_DEV
MKDIR = FS_MAKE_DIR | FS_REMOVE_DIR  # lock directories, without touching any file
ACCESS_WORDS = {
    "read": READ,
    "write": WRITE,
    "execute": EXECUTE,
    "ioctl": IOCTL,
    "mkdir": MKDIR,
}

# What each ABI adds, in the words the proxy reports.
PART_ABI = {
    "filesystem": 1,  # read, write, execute beneath paths
    "refer": 2,  # renames and links across directories
    "truncate": 3,
    "network": 4,  # TCP bind/connect by port
    "ioctl": 5,  # ioctl on devices
    "scope": 6,  # signals and abstract unix sockets stay inside the sandbox
}


ABI_CAP_ENV = "MCPD_LANDLOCK_ABI_MAX"


class LandlockError(OSError):
    """Landlock refused a ruleset the kernel said it supports: the caller must fail closed."""


def _syscall_numbers() -> dict[str, int] | None:
    if sys.platform != "linux":
        return None
    machine = platform.machine().lower()
    if machine in _ARCHES or machine.startswith(_ARCH_PREFIXES):
        return _SYSCALLS
    return None


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def abi_version() -> tuple[int, str]:
    """(ABI version, why not) — version 0 with a reason when Landlock is unusable here."""
    nrs = _syscall_numbers()
    if nrs is None:
        return 0, f"Landlock is Linux-only ({sys.platform} {platform.machine()})"
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    v = libc.syscall(
        ctypes.c_long(nrs["create_ruleset"]),
        None,
        ctypes.c_size_t(0),
        ctypes.c_uint32(CREATE_RULESET_VERSION),
    )
    if v >= 1:
        cap = os.environ.get(ABI_CAP_ENV, "")
        if cap.isdigit() and int(cap) < v:  # lower only: shows what an older kernel gives
            return int(cap), f"{ABI_CAP_ENV}={cap} (the kernel has ABI {v})" if cap == "0" else ""
        return int(v), ""
    err = ctypes.get_errno()
    reason = {
        38: "this kernel was built without Landlock (ENOSYS)",
        95: "Landlock is disabled at boot (EOPNOTSUPP; add landlock to lsm=)",
    }.get(err, f"landlock_create_ruleset failed: {os.strerror(err)}")
    return 0, f"{reason}; kernel {platform.release()}"


def parts(abi: int) -> dict[str, bool]:
    """Which guarantees the kernel can give at this ABI."""
    return {name: abi >= need for name, need in PART_ABI.items()}


def handled_fs(abi: int) -> int:
    best = 0
    for need, mask in _FS_BY_ABI.items():
        if abi >= need:
            best = mask
    return best


def access_bits(words: Iterable[str]) -> int:
    bits = 0
    for w in words:
        bits |= ACCESS_WORDS[w]
    return bits


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # the kernel's struct is __attribute__((packed))
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _NetPortAttr(ctypes.Structure):
    _fields_ = [("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64)]


class Ruleset:
    """One ruleset under construction; `restrict_self` applies it to this process for good."""

    def __init__(self, abi: int, *, restrict_net: bool, scope: bool) -> None:
        nrs = _syscall_numbers()
        if nrs is None or abi < 1:
            raise LandlockError(95, "Landlock is not available")
        self._nrs = nrs
        self._libc = _libc()
        self._libc.syscall.restype = ctypes.c_long
        self.fs = handled_fs(abi)
        self.net = NET_BIND_TCP | NET_CONNECT_TCP if restrict_net and abi >= 4 else 0
        self.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if scope and abi >= 6 else 0
        self.restrict_flags = RESTRICT_SELF_LOG_NEW_EXEC_ON if abi >= 7 else 0
        attr = _RulesetAttr(self.fs, self.net, self.scoped)
        size = 24 if abi >= 6 else 16 if abi >= 4 else 8  # the struct as this ABI knows it
        fd = self._call("create_ruleset", ctypes.byref(attr), ctypes.c_size_t(size), 0)
        self.fd = fd

    def _call(self, name: str, *args: Any) -> int:
        r = int(self._libc.syscall(ctypes.c_long(self._nrs[name]), *args))
        if r < 0:
            err = ctypes.get_errno()
            raise LandlockError(err, f"landlock_{name}: {os.strerror(err)}")
        return r

    def allow_path(self, path: str, access: int) -> bool:
        """Grant `access` beneath `path`; False when the path does not exist (nothing to grant)."""
        try:
            pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            allowed = access & self.fs
            if not stat.S_ISDIR(os.fstat(pfd).st_mode):
                allowed &= _FS_FILE
            if not allowed:
                return True
            attr = _PathBeneathAttr(allowed, pfd)
            self._call("add_rule", ctypes.c_int(self.fd), RULE_PATH_BENEATH, ctypes.byref(attr), 0)
        finally:
            os.close(pfd)
        return True

    def allow_port(self, port: int, access: int) -> None:
        allowed = access & self.net
        if allowed:
            attr = _NetPortAttr(allowed, port)
            self._call("add_rule", ctypes.c_int(self.fd), RULE_NET_PORT, ctypes.byref(attr), 0)

    def restrict_self(self) -> None:
        """no_new_privs (required unprivileged, and right anyway), then the ruleset."""
        if self._libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise LandlockError(err, f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(err)}")
        try:
            self._call("restrict_self", ctypes.c_int(self.fd), self.restrict_flags)
        finally:
            os.close(self.fd)


def grant_except(
    rs: Ruleset, path: str, access: int, excluded: Sequence[str], depth: int = 0
) -> list[str]:
    """Grant `access` beneath `path` but not beneath any excluded path: Landlock cannot
    subtract, so a directory holding an excluded path is replaced by its other entries."""
    inner = [e for e in excluded if e.startswith(path.rstrip("/") + "/")]
    if not inner:
        return [path] if rs.allow_path(path, access) else []
    if depth > 32:
        return []
    try:
        names = sorted(os.listdir(path))
    except OSError:
        return []
    granted: list[str] = []
    for name in names:
        child = os.path.join(path, name)
        if child in excluded or os.path.islink(child):
            continue  # a link's target is granted (or not) where it lives
        if os.path.isdir(child):
            granted += grant_except(rs, child, access, inner, depth + 1)
        elif rs.allow_path(child, access):
            granted.append(child)
    return granted


def apply(plan: Mapping[str, Any], abi: int) -> None:
    """Build and apply a plan's ruleset to this process (the exec trampoline's job).

    `plan["fs"]` is a list of {path, access: [words], except: [paths]}; `plan["connect"]`
    the allowed TCP connect ports or None (connect not restricted); `plan["scope"]` whether
    signals and abstract unix sockets stay inside. Raises LandlockError (fail closed).
    """
    connect = plan.get("connect")
    rs = Ruleset(abi, restrict_net=connect is not None, scope=bool(plan.get("scope")))
    for rule in plan.get("fs", ()):
        access = access_bits(rule["access"])
        grant_except(rs, rule["path"], access, list(rule.get("except", ())))
    if plan.get("self_proc"):  # this pid survives the exec: the server's own /proc entry
        rs.allow_path(f"/proc/{os.getpid()}", READ)
    for port in connect or ():
        rs.allow_port(int(port), NET_CONNECT_TCP)
    rs.restrict_self()
