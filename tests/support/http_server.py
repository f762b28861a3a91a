"""An MCP server of the `mcp` SDK over HTTP, for the HTTP proxy tests (a real process).

Run: python tests/support/http_server.py PORT streamable-http|sse [--json] [--stateless]

Tools: `read_file` (returns the path it was given: a stand-in that never reads), `big` (a
result of N MiB), `notify` (logs to the client, then answers), `slow` (sleeps S seconds).
"""

from __future__ import annotations

import sys

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings

server = MCPServer("http-test")


@server.tool()
def read_file(path: str) -> str:
    """Read a text file (here: echo the path)."""
    return f"contents of {path}"


@server.tool()
def write_file(path: str, content: str) -> str:
    """Write a text file (here: report what would be written)."""
    return f"wrote {len(content)} bytes to {path}"


@server.tool()
def big(mib: int) -> str:
    """A result of `mib` MiB."""
    return "x" * (mib << 20)


@server.tool()
async def notify(message: str, ctx: Context) -> str:
    """Log a message to the client, then answer."""
    await ctx.info(f"note: {message}")
    return f"notified {message}"


@server.tool()
async def slow(seconds: float) -> str:
    """Answer after `seconds`."""
    await anyio.sleep(seconds)
    return f"slept {seconds}"


def main() -> None:
    port = int(sys.argv[1])
    transport = sys.argv[2]
    flags = set(sys.argv[3:])
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    if transport == "sse":
        server.run("sse", host="127.0.0.1", port=port, transport_security=security)
    else:
        server.run(
            "streamable-http",
            host="127.0.0.1",
            port=port,
            json_response="--json" in flags,
            stateless_http="--stateless" in flags,
            transport_security=security,
        )


if __name__ == "__main__":
    main()
