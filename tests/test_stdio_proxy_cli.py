"""`mcp-defense stdio` command line: the published tool's flags, and loud refusal of sink
options that cannot work (they would otherwise lose events silently)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from support.stdio_helpers import RAW_SERVER, Proc, call
from typer.testing import CliRunner

from mcp_defense.cli.main import app
from mcp_defense.protocol.jsonrpc import POLICY_DENIED

runner = CliRunner()


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--siem-splunk", "https://hec:8088", "no token"),  # the SIEM flags work now (issue 14)
        ("--siem-splunk", "https://hec:8088:env:MCPD_NO_SUCH_VAR", "MCPD_NO_SUCH_VAR"),
        ("--siem-webhook", "ftp://h", "not an http(s) URL"),
        ("--otlp", "localhost", "not an http(s) URL"),
        ("--spool-max-size", "12", "below 4 KiB"),
    ],
)
def test_unusable_sink_flags_fail_loudly(flag, value, message, monkeypatch, tmp_path):
    monkeypatch.delenv("MCPD_SPLUNK_TOKEN", raising=False)
    monkeypatch.setenv("MCPD_STATE_DIR", str(tmp_path))
    result = runner.invoke(app, ["stdio", "--archetype", "filesystem", flag, value, "--", "true"])
    assert result.exit_code == 2
    assert message in result.output and (flag in result.output or "size" in result.output)


@pytest.mark.parametrize(
    "args, message",
    [
        (["stdio", "--archetype", "filesystem"], "no server command"),
        (["stdio", "--", "true"], "--archetype is required"),
        (["stdio", "--archetype", "nonesuch", "--", "true"], "unknown archetype"),
        (["stdio", "--archetype", "filesystem", "--set", "novalue", "--", "true"], "NAME=VALUE"),
        (
            ["stdio", "--archetype", "filesystem", "--policy", "/nonexistent.mcpd", "--", "true"],
            "no such file",
        ),
        (
            [
                "stdio",
                "--archetype",
                "filesystem",
                "--record",
                "/nonexistent-dir/r.jsonl",
                "--",
                "true",
            ],
            "--record",
        ),
    ],
)
def test_usage_errors_exit_2(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_archetypes_flag_adds_to_the_builtin_pack(tmp_path: Path):
    extra = tmp_path / "sandbox.mcpd"
    extra.write_text(
        'archetype sandbox {\n  description "test archetype"\n  paths "/sandbox/**"\n'
        "  network none\n  spawn none\n}\n"
    )
    argv = [
        sys.executable,
        "-m",
        "mcp_defense.cli.main",
        "stdio",
        "--archetypes",
        str(extra),
        "--archetype",
        "sandbox",
        "--",
        *RAW_SERVER,
    ]
    p = Proc(argv, tmp_path)
    try:
        p.initialize()
        assert "result" in p.request(call(1, "read_file", {"path": "/sandbox/notes.txt"}))
        outside = p.request(call(2, "read_file", {"path": "/workspace/main.py"}))["error"]
        assert outside["code"] == POLICY_DENIED and outside["data"]["rule"] == "archetype_path"
        # The built-in rules came along: crown jewels are still denied.
        jewel = p.request(
            call(3, "read_file", {"path": "/sandbox/../home/alice/.aws/credentials"})
        )["error"]
        assert jewel["data"]["rule"] == "crown_jewel"
    finally:
        p.kill()
