"""Agent hooks: policy decisions for an agent's own tools (Claude Code's PreToolUse)."""
