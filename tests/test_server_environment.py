"""What a stdio server inherits (issue 15): the archetype's `env` clause, the default that
withholds credentials, `--pass-env`, and the names recorded in `session_start` — through the
real `mcp-defense stdio` in front of a real MCP SDK server that hands out its environment."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from support.stdio_helpers import ROOT, TESTS, Proc, call, read_events

from mcp_defense.policy.diagnostics import PolicyError
from mcp_defense.policy.loader import load_table
from mcp_defense.policy.table import EnvSpec
from mcp_defense.proxy.environment import is_secret_name, server_environment

ENV_SERVER = [sys.executable, str(TESTS / "support" / "env_server.py")]
# Values no response rule would redact: what is checked here is what the server inherits.
SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "value-of-aws-secret",
    "GITHUB_TOKEN": "value-of-github-token",
    "MY_API_KEY": "value-of-my-api-key",
}
POLICY = """
archetype only-two {
  env "GITHUB_TOKEN", "PATH"
}
archetype everything {
  env any
}
archetype default-plus {
  env default, "MY_*"
}
"""


# ---------------------------------------------------------------- which names are credentials


@pytest.mark.parametrize(
    "name",
    [
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AZURE_CLIENT_SECRET",
        "GOOGLE_APPLICATION_CREDENTIALS", "GCP_SERVICE_ACCOUNT_KEY", "GITHUB_TOKEN", "GH_TOKEN",
        "GITLAB_TOKEN", "GLAB_TOKEN", "NPM_TOKEN", "PYPI_TOKEN", "TWINE_PASSWORD",
        "DOCKER_AUTH_CONFIG", "DOCKER_PASSWORD", "ANTHROPIC_API_KEY", "OPENAI_API_KEY",
        "MY_API_KEY", "DB_PASSWORD", "smtp_passwd", "Vault_Secret", "SERVICE_CREDENTIALS",
        "PGPASSWORD", "DATABASE_URL", "npm_config__auth",
    ],
)  # fmt: skip
def test_credential_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name",
    ["PATH", "HOME", "LANG", "LC_ALL", "TERM", "USER", "SHELL", "TMPDIR", "KEYMAP", "MONKEY",
     "TOKENIZERS_PARALLELISM", "XDG_CONFIG_HOME", "npm_config_cache", "VIRTUAL_ENV"],
)  # fmt: skip
def test_ordinary_names(name: str) -> None:
    assert not is_secret_name(name)


def test_what_each_env_clause_passes() -> None:
    env = {"PATH": "/bin", "LANG": "C", "LC_ALL": "C", **SECRETS}
    assert server_environment(env) == (
        {"PATH": "/bin", "LANG": "C", "LC_ALL": "C"},
        sorted(SECRETS),
    )
    only = EnvSpec(default=False, names=("PATH", "LC_*", "GITHUB_TOKEN"))
    passed, withheld = server_environment(env, only)
    assert set(passed) == {"PATH", "LC_ALL", "GITHUB_TOKEN"}
    assert withheld == ["AWS_SECRET_ACCESS_KEY", "LANG", "MY_API_KEY"]
    assert server_environment(env, EnvSpec(any=True, default=False)) == (env, [])
    assert server_environment(env, EnvSpec(default=False)) == ({}, sorted(env))
    plus = EnvSpec(names=("MY_*",))
    assert server_environment(env, plus)[1] == ["AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN"]
    # --pass-env adds to what the archetype says
    passed, withheld = server_environment(env, plus, ["GITHUB_TOKEN"])
    assert withheld == ["AWS_SECRET_ACCESS_KEY"]


# ---------------------------------------------------------------- the clause in the language


def _compile(tmp_path: Path, text: str) -> Any:
    f = tmp_path / "p.mcpd"
    f.write_text(text)
    return load_table([str(f)], {"workspace": str(tmp_path), "server_env": "A_1, B_*"})


def test_env_clause_compiles(tmp_path: Path) -> None:
    t = _compile(tmp_path, POLICY + 'archetype v {\n  env "${server_env}", "C"\n}\n')
    assert t.archetype("only-two").env == EnvSpec(default=False, names=("GITHUB_TOKEN", "PATH"))
    assert t.archetype("everything").env == EnvSpec(any=True, default=False)
    assert t.archetype("default-plus").env == EnvSpec(default=True, names=("MY_*",))
    assert t.archetype("v").env == EnvSpec(default=False, names=("A_1", "B_*", "C"))
    builtin = load_table(None, {"workspace": str(tmp_path)})
    assert builtin.archetype("filesystem").env == EnvSpec()  # no clause: the default
    assert "GITHUB_PERSONAL_ACCESS_TOKEN" in builtin.archetype("github").env.names
    assert "PG*" in builtin.archetype("database").env.names


@pytest.mark.parametrize(
    ("clause", "col", "code"),
    [('"GITHUB-TOKEN"', 7, "bad-env"), ('"PATH", "9LIVES"', 15, "bad-env")],
)
def test_bad_env_names_point_at_the_string(
    tmp_path: Path, clause: str, col: int, code: str
) -> None:
    with pytest.raises(PolicyError) as e:
        _compile(tmp_path, f"archetype a {{\n  env {clause}\n}}\n")
    (d,) = e.value.diagnostics
    assert (d.span.line, d.span.column, d.code) == (2, col, code)


def test_env_needs_something(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as e:
        _compile(tmp_path, "archetype a {\n  env\n}\n")
    assert e.value.diagnostics[0].span.line == 2


# ---------------------------------------------------------------- through the proxy


def _proxy_argv(tmp_path: Path, archetype: str, *flags: str) -> list[str]:
    policy = tmp_path / "env.mcpd"
    policy.write_text(POLICY)
    return [
        sys.executable, "-m", "mcp_defense", "stdio", "--archetype", archetype,
        "--archetypes", str(policy), "--set", f"workspace={tmp_path}",
        "--record", str(tmp_path / "rec.jsonl"), *flags, "--", *ENV_SERVER,
    ]  # fmt: skip


def _server_env(argv: list[str]) -> dict[str, str]:
    """The environment the server reports, through the SDK client and the proxy."""
    env = {**os.environ, **SECRETS, "PYTHONPATH": str(ROOT)}
    params = StdioServerParameters(command=argv[0], args=argv[1:], env=env, cwd=str(ROOT))

    async def run() -> str:
        async with Client(params, mode="legacy") as client:
            r = await client.call_tool("get_env", {})
            return r.content[0].text  # type: ignore[union-attr,no-any-return]

    return json.loads(anyio.run(run))  # type: ignore[no-any-return]


def _session_start(tmp_path: Path) -> dict[str, Any]:
    return [e for e in read_events(tmp_path / "rec.jsonl") if e["type"] == "session_start"][-1]


def test_credentials_are_withheld_by_default(tmp_path: Path) -> None:
    seen = _server_env(_proxy_argv(tmp_path, "filesystem"))
    assert not set(SECRETS) & set(seen)
    assert seen["PATH"] == os.environ["PATH"] and seen["PYTHONPATH"] == str(ROOT)
    start = _session_start(tmp_path)
    assert set(SECRETS) <= set(start["env_withheld"]) and start["env_credentials"] == []
    recorded = (tmp_path / "rec.jsonl").read_text()
    assert not any(v in recorded for v in SECRETS.values())  # names only, never values


def test_an_env_list_passes_exactly_those(tmp_path: Path) -> None:
    seen = _server_env(_proxy_argv(tmp_path, "only-two"))
    # LC_CTYPE: Python itself sets it in a C locale (PEP 538), the proxy did not pass it
    assert set(seen) - {"LC_CTYPE"} == {"GITHUB_TOKEN", "PATH"}
    assert seen["GITHUB_TOKEN"] == SECRETS["GITHUB_TOKEN"]
    start = _session_start(tmp_path)
    assert {"AWS_SECRET_ACCESS_KEY", "MY_API_KEY", "PYTHONPATH"} <= set(start["env_withheld"])
    assert start["env_credentials"] == ["GITHUB_TOKEN"]


def test_env_any_passes_everything_and_says_which_credentials(tmp_path: Path) -> None:
    seen = _server_env(_proxy_argv(tmp_path, "everything"))
    assert all(seen[k] == v for k, v in SECRETS.items())
    start = _session_start(tmp_path)
    assert start["env_withheld"] == [] and set(SECRETS) <= set(start["env_credentials"])


def test_default_plus_names_and_pass_env(tmp_path: Path) -> None:
    seen = _server_env(_proxy_argv(tmp_path, "default-plus", "--pass-env", "GITHUB_TOKEN"))
    assert {"MY_API_KEY", "GITHUB_TOKEN", "PATH"} <= set(seen)
    assert "AWS_SECRET_ACCESS_KEY" not in seen
    assert _session_start(tmp_path)["env_credentials"] == ["GITHUB_TOKEN", "MY_API_KEY"]


def test_stderr_names_what_was_withheld(tmp_path: Path) -> None:
    env = {**os.environ, **SECRETS, "PYTHONPATH": str(ROOT)}
    p = Proc(_proxy_argv(tmp_path, "filesystem"), tmp_path, env=env)
    try:
        p.initialize()
        reply = p.request(call(1, "get_env", {}))
        assert "GITHUB_TOKEN" not in json.loads(reply["result"]["content"][0]["text"])
        p.close_stdin()
        assert p.wait() == 0
    finally:
        p.kill()
    lines = [x for x in p.stderr().splitlines() if "withheld" in x]
    assert len(lines) == 1
    assert all(name in lines[0] for name in SECRETS) and "--pass-env" in lines[0]
    assert not any(v in p.stderr() for v in SECRETS.values())


def test_sandboxed_server_gets_the_same_environment(tmp_path: Path) -> None:
    from mcp_defense.sandbox.landlock import abi_version

    abi, why_not = abi_version()
    if not abi:
        pytest.skip(f"no Landlock here: {why_not}")
    seen = _server_env(_proxy_argv(tmp_path, "only-two", "--sandbox"))
    assert set(seen) - {"LC_CTYPE"} == {"GITHUB_TOKEN", "PATH"}
    start = _session_start(tmp_path)
    assert start["sandbox"]["landlock_abi"] == abi and start["env_credentials"] == ["GITHUB_TOKEN"]
