"""`python -m mcp_defense` = the `mcp-defense` command (used where the script is not on PATH)."""

from mcp_defense.cli.entry import main

main()
