"""Shared fixtures: the built-in table compiled once per session with workspace=/workspace."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs the same examples on every machine (a fresh clone must not discover a new
# pathological input in cel-python's reference evaluator at random); set
# HYPOTHESIS_PROFILE=explore for randomised bug hunts.
settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Learning-period state of proxies started by tests goes to a throwaway directory.
os.environ.setdefault("MCPD_STATE_DIR", tempfile.mkdtemp(prefix="mcpd-test-state-"))

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def builtin_table():
    import mcp_defense

    return mcp_defense.compile(None, {"workspace": "/workspace", "home": "/home/alice"})


@pytest.fixture
def decide(builtin_table):
    from mcp_defense.policy.facts import ToolCall

    def _decide(archetype: str, tool: str, arguments, **kw):
        return builtin_table.decide(
            ToolCall(archetype=archetype, tool=tool, arguments=arguments, **kw)
        )

    return _decide
