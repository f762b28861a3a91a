"""Where the grammar and the built-in policy pack live, installed or in a source checkout.

The wheel carries them under `mcp_defense/_data/` (hatch force-include); a source checkout or
an editable install has them at the repository root. One function per resource so nothing
else guesses paths.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    for candidate in (_PKG / "_data" / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"mcp-defense installation is missing its {name}/ directory")


def grammar_path() -> Path:
    return _find("grammar") / "mcpd.lark"


def builtin_policy_dir() -> Path:
    return _find("policies")


def examples_dir() -> Path:
    return _find("examples")


def state_dir() -> Path:
    """Where runtimes keep state across restarts (learning periods): $MCPD_STATE_DIR, else
    $XDG_STATE_HOME/mcp-defense, else ~/.local/state/mcp-defense."""
    import os

    if os.environ.get("MCPD_STATE_DIR"):
        return Path(os.environ["MCPD_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(base) / "mcp-defense"


BUILTIN_PREFIX = "builtin:"
