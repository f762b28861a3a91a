"""An MCP SDK server (stdio) with one tool, `get_env`, that returns its whole environment as
JSON — what the reference `server-everything`'s `get-env` hands the agent."""

from __future__ import annotations

import json
import os

from mcp.server.mcpserver import MCPServer

server = MCPServer("env")


@server.tool()
def get_env() -> str:
    """The server's environment variables, names and values."""
    return json.dumps(dict(os.environ))


if __name__ == "__main__":
    server.run()
