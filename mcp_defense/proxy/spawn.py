"""Starting the MCP server: the one place a transport spawns it.

The server gets its own session and process group (so signals and kills reach its whole
tree), pipes for stdin/stdout, our stderr, and on Linux `PR_SET_PDEATHSIG(SIGKILL)`: if the
proxy is killed outright (`kill -9`, OOM) the server dies with it instead of running on,
unsupervised, ignoring the EOF on its stdin. The death signal survives `execve`, so a
launcher that execs the server in place (the `--sandbox` Landlock launcher) keeps it; it is
cleared only for set-user-ID or file-capability binaries. It fires when the thread that
spawned the server exits, so call `spawn_server` from a thread that lives as long as the
proxy (the main thread). Only the server itself gets it: its children are reached through
the process group by the normal stop and kill paths.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence

_PR_SET_PDEATHSIG = 1


def _death_signal_setter() -> Callable[[], None] | None:
    """A preexec function that arms the death signal, or None where there is none.

    Everything it needs is resolved here, before the fork: the child runs only a libc call
    and a getppid()."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    sig = int(signal.SIGKILL)

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the proxy died before the signal was armed
            os.kill(os.getpid(), signal.SIGKILL)

    return arm


def spawn_server(
    argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: str | None = None
) -> subprocess.Popen[bytes]:
    """Start the server (raises OSError when it cannot be started)."""
    return subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=None,  # the server's stderr is ours: passes through untouched
        bufsize=0,
        start_new_session=True,  # its own process group: signals and kills reach the tree
        env=env,
        cwd=cwd,
        preexec_fn=_death_signal_setter(),  # noqa: PLW1509 - only a libc call runs in the child
    )
