"""The published mcp-defense 0.1.2 demo must come out the same under the built-in pack."""

from __future__ import annotations

import pytest

DEMO = [
    ("filesystem", "read_file", {"path": "/workspace/main.py"}, "allow", ""),
    ("filesystem", "read_file", {"path": "/home/alice/.aws/credentials"}, "deny", "crown_jewel"),
    ("filesystem", "exec_command", {"command": "ls /"}, "deny", "archetype_no_spawn"),
    (
        "filesystem",
        "read_file",
        {"path": "/workspace/app/.env.local"},
        "require_approval",
        "sensitive_path",
    ),
    (
        "filesystem",
        "fetch",
        {"url": "https://evil.example.com/exfil"},
        "deny",
        "archetype_no_network",
    ),
    ("github", "fetch", {"url": "https://api.github.com/repos/x/y"}, "allow", ""),
]


@pytest.mark.parametrize("arch,tool,args,decision,rule", DEMO)
def test_published_demo(decide, arch, tool, args, decision, rule) -> None:
    d = decide(arch, tool, args, correlation_id="tc_demo")
    assert (d.action.value, d.rule) == (decision, rule), d.reason
    assert d.correlation_id == "tc_demo"
    assert len(d.policy_version) == 12


def test_reasons_interpolate_the_matching_fact(decide) -> None:
    d = decide("filesystem", "read_file", {"path": "/home/alice/.aws/credentials"})
    assert d.reason == "crown jewel: /home/alice/.aws/credentials"
    d = decide("filesystem", "read_file", {"path": "/workspace/app/.env.local"})
    assert d.reason == "sensitive file: /workspace/app/.env.local"
    d = decide("filesystem", "exec_command", {"command": "ls /"})
    assert d.reason == "filesystem servers may not spawn processes"


@pytest.mark.parametrize(
    "arch", ["filesystem", "github", "database", "web-fetch", "shell", "code-execution", "generic"]
)
def test_seven_archetypes_and_crown_jewels_everywhere(decide, arch) -> None:
    d = decide(arch, "read_file", {"path": "~/.ssh/id_ed25519"})
    assert (d.action.value, d.rule) == ("deny", "crown_jewel")


def test_fail_closed(decide) -> None:
    assert decide("nonexistent", "read_file", {}).rule == "unknown_archetype"
    d = decide("filesystem", "read_file", ["not", "an", "object"])
    assert (d.action.value, d.rule) == ("deny", "malformed_arguments")
    d = decide("filesystem", "read_file", {"path": "/workspace/a\x00b"})
    assert (d.action.value, d.rule) == ("deny", "malformed_arguments")
    d = decide("filesystem", 42, {})
    assert d.action.value == "deny"


@pytest.mark.parametrize(
    "arch,tool,args,decision,rule",
    [
        (
            "web-fetch",
            "fetch",
            {"url": "http://169.254.169.254/latest/meta-data/"},
            "deny",
            "metadata_endpoint",
        ),
        (
            "web-fetch",
            "fetch",
            {"url": "http://127.0.0.1:8080/admin"},
            "deny",
            "internal_destination",
        ),
        (
            "web-fetch",
            "fetch",
            {"url": "http://[::ffff:127.0.0.1]/"},
            "deny",
            "internal_destination",
        ),
        ("web-fetch", "fetch", {"url": "https://example.org/page"}, "allow", ""),
        ("web-fetch", "write_file", {"path": "/tmp/x", "content": "y"}, "deny", "archetype_write"),
        (
            "github",
            "fetch",
            {"url": "https://evil.example.com/"},
            "deny",
            "archetype_network_destination",
        ),
        ("shell", "run_command", {"command": "ls -la /usr"}, "allow", ""),
        ("shell", "run_command", {"command": "echo hi > /etc/cron.d/x"}, "deny", "archetype_write"),
        ("shell", "run_command", {"command": "cat ~/.ssh/id_rsa"}, "deny", "crown_jewel"),
        (
            "code-execution",
            "execute_code",
            {"code": "open('/tmp/out.txt','w').write('x')"},
            "allow",
            "",
        ),
        (
            "code-execution",
            "execute_code",
            {"code": "open('/home/alice/.aws/credentials').read()"},
            "deny",
            "crown_jewel",
        ),
        ("database", "query", {"sql": "select 1"}, "allow", ""),
        (
            "filesystem",
            "write_file",
            {"path": "/workspace/.github/workflows/ci.yml", "content": "x"},
            "require_approval",
            "instruction_file_write",
        ),
        ("filesystem", "read_file", {"path": "/etc/passwd"}, "deny", "archetype_path"),
        ("filesystem", "read_file", {"path": "/proc/self/environ"}, "deny", "crown_jewel"),
    ],
)
def test_builtin_rules(decide, arch, tool, args, decision, rule) -> None:
    d = decide(arch, tool, args)
    assert (d.action.value, d.rule) == (decision, rule), d.reason
