"""The two ways the stdio tests start a proxy.

`cli_cmd`: the real `mcp-defense stdio` over the built-in policy pack (plus, on request,
tests/data/stdio_test.mcpd for the kill and alert actions the pack never takes on a call).
`harness_cmd`: the same StdioProxy over tests/support/tiny_table_proxy.py's hand-written table; it
starts in a fraction of the time (no policy compile), so tests of process behaviour that
does not depend on policy (exit codes, signals, EOF, stderr) use it.
"""

from __future__ import annotations

from support.stdio_helpers import TESTS, proxy_argv, tiny_proxy_argv

TEST_POLICY = TESTS / "data" / "stdio_test.mcpd"


def cli_cmd(
    server: list[str],
    *flags: str,
    policy: bool = False,
    approval_timeout: float | None = None,
    workspace: str = "/workspace",
) -> list[str]:
    extra = ["--policy", str(TEST_POLICY)] if policy else []
    if approval_timeout is not None:
        extra += ["--approval", "--approval-timeout", str(approval_timeout)]
    return proxy_argv(server, *extra, *flags, workspace=workspace)


def harness_cmd(server: list[str], *flags: str, approval_timeout: float | None = None) -> list[str]:
    extra = (
        []
        if approval_timeout is None
        else ["--approval-tty", "/dev/tty", "--approval-timeout", str(approval_timeout)]
    )
    return tiny_proxy_argv(server, *extra, *flags)
