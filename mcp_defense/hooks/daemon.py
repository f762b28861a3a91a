"""The resident decision process behind the Claude Code hook, and the hook's client side.

A hook runs once per tool use; importing the engine and compiling the pack costs ~0.25 s,
while the client side below (json, socket) costs a few milliseconds. So the first hook starts
one process per user and package build, which keeps compiled tables (recompiled when a policy
file's content changes) and answers over a unix socket until it has been idle for a while.

Trust: the socket lives in a directory owned by the user with mode 0700 (checked, never just
created: a directory another user made or could write is refused, and the hook then decides
in-process); both ends check the peer's uid (SO_PEERCRED). Whatever goes wrong on the
client side — no process, a dead one, a garbled answer — ends in a block (exit 2), never in
a pass.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import time

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs every hook ~7 ms
if TYPE_CHECKING:
    from typing import Any

PROTOCOL = 1
DEFAULT_IDLE_S = 900.0
CONNECT_WAIT_S = 15.0  # a cold start imports the engine and compiles the pack
ANSWER_WAIT_S = 30.0
MAX_REQUEST = 64 << 20  # Write/Edit inputs carry whole files
_PEERCRED = struct.Struct("3i")
DECISIONS = frozenset({"allow", "deny", "ask"})


class Unsafe(Exception):
    """The runtime directory is not private to this user: do not use a resident process."""


def runtime_dir() -> str:
    """$MCPD_RUNTIME_DIR, else $XDG_RUNTIME_DIR/mcp-defense, else /tmp/mcp-defense-UID;
    created 0700, and refused unless it is a real directory owned by us and closed to others."""
    base = os.environ.get("MCPD_RUNTIME_DIR")
    if not base:
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        base = (
            os.path.join(xdg, "mcp-defense")
            if xdg and os.path.isabs(xdg)
            else f"/tmp/mcp-defense-{os.getuid()}"
        )
    try:
        os.mkdir(base, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise Unsafe(f"cannot create {base}: {e.strerror}") from e
    st = os.lstat(base)
    import stat

    if not stat.S_ISDIR(st.st_mode):
        raise Unsafe(f"{base} is not a directory")
    if st.st_uid != os.getuid():
        raise Unsafe(f"{base} is owned by uid {st.st_uid}, not by this user")
    if st.st_mode & 0o077:
        raise Unsafe(f"{base} is open to other users (mode {st.st_mode & 0o777:o})")
    return base


def build_key() -> str:
    """Which build of the engine: a resident process only serves hooks of the same package
    version, interpreter and source files (an upgrade or an edit starts a fresh one). A
    checksum, not a secure hash: the key only tells our own processes apart (and zlib is
    already loaded, hashlib's OpenSSL is 3 ms)."""
    import zlib

    import mcp_defense

    parts = [f"{mcp_defense.__version__}\0{sys.executable}\0"]
    pkg = os.path.dirname(mcp_defense.__file__)
    for dirpath, dirs, names in os.walk(pkg):
        dirs.sort()
        for n in sorted(names):
            if n.endswith(".py"):
                st = os.stat(os.path.join(dirpath, n))
                parts.append(f"{dirpath}/{n}:{st.st_mtime_ns}:{st.st_size}\0")
    data = "".join(parts).encode("utf-8", "surrogateescape")
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


def socket_path(directory: str) -> str:
    return os.path.join(directory, f"hook-{build_key()}.sock")


def _peer_uid(sock: socket.socket) -> int | None:
    opt = getattr(socket, "SO_PEERCRED", None)
    if opt is None:  # not Linux: the 0700 directory is the only guard
        return os.getuid()
    try:
        _pid, uid, _gid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, opt, _PEERCRED.size))
    except OSError:
        return None
    return uid


def _recv_all(sock: socket.socket, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        b = sock.recv(1 << 16)
        if not b:
            return b"".join(chunks)
        chunks.append(b)
        size += len(b)
        if size > limit:
            raise ValueError(f"message larger than {limit} bytes")


# ---------------------------------------------------------------- client (the hook process)


def ask(path: str, config: dict[str, Any], raw: bytes, idle_s: float = DEFAULT_IDLE_S) -> Any:
    """Send one hook input, return the decoded answer; start the process when there is none.
    Raises OSError/ValueError on any failure (the caller blocks the tool use)."""
    sock = _connect(path)
    if sock is None:
        _spawn(path, idle_s)
        deadline = time.monotonic() + CONNECT_WAIT_S
        while sock is None:
            if time.monotonic() > deadline:
                raise OSError(f"the decision process did not start (see {path}.log)")
            time.sleep(0.01)
            sock = _connect(path)
    with sock:
        if _peer_uid(sock) != os.getuid():
            raise OSError("the decision process runs as another user")
        request = {"v": PROTOCOL, "config": config, "input": raw.decode("latin-1")}
        sock.settimeout(ANSWER_WAIT_S)
        sock.sendall(json.dumps(request).encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)
        data = _recv_all(sock, MAX_REQUEST)
    return check_answer(data)


def check_answer(data: bytes) -> dict[str, Any]:
    """An answer is used only if it is exactly what `HookResult.to_json` produces."""
    ans = json.loads(data)
    if not isinstance(ans, dict) or ans.get("v") != PROTOCOL:
        raise ValueError("not an answer of this protocol")
    code, out, err, decision = (
        ans.get("exit"),
        ans.get("stdout"),
        ans.get("stderr"),
        ans.get("decision"),
    )
    if not (isinstance(out, str) and isinstance(err, str)):
        raise ValueError("answer without stdout/stderr text")
    if code == 2 and decision == "block" and out == "" and err:
        return ans
    if code == 0 and decision == "pass" and out == "":
        return ans
    if code == 0 and decision in DECISIONS:
        hso = json.loads(out).get("hookSpecificOutput", {})
        if (
            hso.get("hookEventName") == "PreToolUse"
            and hso.get("permissionDecision") == decision
            and isinstance(hso.get("permissionDecisionReason"), str)
        ):
            return ans
    raise ValueError("answer does not hold a decision")


def _connect(path: str) -> socket.socket | None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2.0)
    try:
        s.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        s.close()
        return None
    except BaseException:
        s.close()
        raise
    return s


def _spawn(path: str, idle_s: float) -> None:
    import subprocess

    log = os.open(path + ".log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mcp_defense.hooks.daemon",
                "--socket",
                path,
                "--idle",
                str(idle_s),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,  # outlives the hook; not in Claude Code's process group
            close_fds=True,
        )
    finally:
        os.close(log)


# ---------------------------------------------------------------- server (resident process)


def serve(path: str, idle_s: float) -> int:
    """Serve until idle for `idle_s`. One process per socket: a second one started by a
    concurrent hook finds the lock taken and leaves."""
    import fcntl
    import threading

    from mcp_defense.hooks.claude_code import HookConfig, SessionLog, TableSource, decide_input

    os.umask(0o077)
    runtime_dir_check = os.path.dirname(path)
    st = os.lstat(runtime_dir_check)
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        print(f"mcp-defense: {runtime_dir_check} is not private; not serving", file=sys.stderr)
        return 2
    lock_fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another process serves (or is about to)
    os.ftruncate(lock_fd, 0)
    os.write(lock_fd, f"{os.getpid()}\n".encode())  # who serves: for `kill` and the tests
    tables, log = TableSource(), SessionLog()
    # Warm the engine before the first connection: imports are most of a cold start.
    import mcp_defense.events.record  # noqa: F401
    import mcp_defense.policy.loader  # noqa: F401
    import mcp_defense.protocol.calls  # noqa: F401

    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    ino = os.stat(path).st_ino
    server.listen(64)
    server.settimeout(1.0)
    last = [time.monotonic()]
    busy = [0]
    guard = threading.Lock()

    def handle(conn: socket.socket) -> None:
        with guard:
            busy[0] += 1
        try:
            with conn:
                if _peer_uid(conn) != os.getuid():
                    return
                conn.settimeout(ANSWER_WAIT_S)
                try:
                    req = json.loads(_recv_all(conn, MAX_REQUEST))
                    if not isinstance(req, dict) or req.get("v") != PROTOCOL:
                        raise ValueError("unknown protocol")
                    config = HookConfig.from_json(req.get("config"))
                    raw = req.get("input")
                    if not isinstance(raw, str):
                        raise ValueError("no input")
                    result = decide_input(raw.encode("latin-1"), config, tables, log).to_json()
                except (ValueError, UnicodeError) as e:
                    result = {
                        "exit": 2,
                        "stdout": "",
                        "stderr": f"mcp-defense: bad request to the decision process: {e}\n",
                        "decision": "block",
                    }
                result["v"] = PROTOCOL
                conn.sendall(json.dumps(result).encode())
        except OSError:
            pass
        finally:
            with guard:
                busy[0] -= 1
                last[0] = time.monotonic()

    try:
        while True:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                with guard:
                    idle = busy[0] == 0 and time.monotonic() - last[0] > idle_s
                if idle:
                    return 0
                try:
                    if os.stat(path).st_ino != ino:
                        return 0  # our socket was replaced or removed: stop serving
                except FileNotFoundError:
                    return 0
                continue
            with guard:
                last[0] = time.monotonic()
            threading.Thread(target=handle, args=(conn,), daemon=True).start()
    finally:
        server.close()
        try:
            if os.stat(path).st_ino == ino:
                os.unlink(path)
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    path, idle = "", DEFAULT_IDLE_S
    while args:
        flag = args.pop(0)
        if flag == "--socket" and args:
            path = args.pop(0)
        elif flag == "--idle" and args:
            idle = float(args.pop(0))
        else:
            print(
                f"usage: python -m mcp_defense.hooks.daemon --socket PATH [--idle S]; got {flag!r}",
                file=sys.stderr,
            )
            return 2
    if not path:
        print("--socket is required", file=sys.stderr)
        return 2
    return serve(path, idle)


if __name__ == "__main__":
    sys.exit(main())
