"""A small but real MCP server (Python `mcp` SDK, stdio) for tests and the demo.

Filesystem-ish tools under a root directory plus the kinds of tools a prompt-injected agent
reaches for (run a command, fetch a URL). It deliberately does no checking of its own: the
point is to show what mcp-defense stops in front of an unprotected server. `fetch_url` never
touches the real network: only loopback URLs are fetched, anything else gets a canned page.

Run: python examples/servers/workspace_server.py [ROOT]
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else os.getcwd()).resolve()

server = MCPServer("workspace", instructions="Files under a workspace, commands, and fetches.")


def _path(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else ROOT / p


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def read_file(path: str) -> str:
    """Read a text file."""
    return _path(path).read_text(encoding="utf-8")


@server.tool(annotations=ToolAnnotations(destructiveHint=True))
def write_file(path: str, content: str) -> str:
    """Write a text file, creating parent directories."""
    p = _path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(content, encoding="utf-8")
    return f"wrote {len(content.encode('utf-8'))} bytes to {p}"


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def list_directory(path: str = ".") -> list[str]:
    """List a directory."""
    return sorted(e.name for e in _path(path).iterdir())


@server.tool(annotations=ToolAnnotations(destructiveHint=True, openWorldHint=True))
def exec_command(command: str) -> str:
    """Run a command (no shell) in the workspace and return its output."""
    done = subprocess.run(
        shlex.split(command), cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
    )
    return done.stdout + done.stderr


@server.tool(annotations=ToolAnnotations(readOnlyHint=True, openWorldHint=True))
def fetch_url(url: str) -> str:
    """Fetch a URL. Loopback only; any other host gets an offline stub page."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if host in ("127.0.0.1", "localhost", "::1"):
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback only
            return resp.read().decode("utf-8", "replace")
    return f"<html><body>offline stub for {url}</body></html>"


@server.tool(annotations=ToolAnnotations(readOnlyHint=True), structured_output=False)
def big_result(size: int) -> str:
    """Return a text of exactly `size` bytes (to exercise large results; unstructured, so the
    text is not sent twice)."""
    block = "0123456789abcdef" * 4096
    return (block * (size // len(block) + 1))[:size]


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def sha256(text: str) -> str:
    """sha256 of the argument as received (proves large arguments arrive intact)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@server.tool()
def echo(text: str) -> str:
    """Return the argument."""
    return text


if __name__ == "__main__":
    server.run("stdio")
