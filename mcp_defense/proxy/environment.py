"""What a stdio server inherits: the proxy's environment, less the credentials it does not need.

A server started by the proxy used to get the proxy's whole environment — the agent's cloud,
git-hosting and registry credentials included — and one `get-env` tool hands them all to the
model. The archetype's `env` clause says what the server gets (docs/language.md): without
one, every variable but those whose name says it is a credential (`SECRET_NAMES`,
`_SECRET_SHAPE`: the one list); `env "A", "B_*"` only those; `env default, "A"` the default
plus A; `env any` everything. `--pass-env NAME` adds names on the command line. What was
withheld, and which credentials were passed, are recorded (names only) in `session_start`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping

from mcp_defense.policy.table import EnvSpec

# Credentials by exact name (cloud SDKs, git hosting, registries, agents' own API keys).
SECRET_NAMES = frozenset(
    {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        "AZURE_CLIENT_SECRET",
        "AZURE_CLIENT_CERTIFICATE_PATH",
        "AZURE_FEDERATED_TOKEN_FILE",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GOOGLE_OAUTH_ACCESS_TOKEN",
        "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE",
        "GH_TOKEN",
        "GITHUB_TOKEN",
        "GITHUB_PERSONAL_ACCESS_TOKEN",
        "GH_ENTERPRISE_TOKEN",
        "GITLAB_TOKEN",
        "GLAB_TOKEN",
        "CI_JOB_TOKEN",
        "NPM_TOKEN",
        "NODE_AUTH_TOKEN",
        "PYPI_TOKEN",
        "TWINE_PASSWORD",
        "DOCKER_AUTH_CONFIG",
        "DOCKER_PASSWORD",
        "ANTHROPIC_API_KEY",
        "OPENAI_API_KEY",
        "VAULT_TOKEN",
        "KUBECONFIG",
        "SSH_AUTH_SOCK",
        "DATABASE_URL",
        "PGPASSWORD",
        "MYSQL_PWD",
    }
)
# Credentials by the shape of the name (case-insensitive).
_SECRET_SHAPE = re.compile(
    r"(?i)(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIALS?|API_?KEY|ACCESS_?KEY|"
    r"PRIVATE_?KEY|SECRET_?KEY|AUTH)(_|$)|_KEY$"
)


def is_secret_name(name: str) -> bool:
    return name.upper() in SECRET_NAMES or _SECRET_SHAPE.search(name) is not None


def server_environment(
    env: Mapping[str, str], spec: EnvSpec | None = None, passed: Iterable[str] = ()
) -> tuple[dict[str, str], list[str]]:
    """(the server's environment, the names withheld, sorted). `spec` is the archetype's
    `env` (None: the default); `passed` names or globs (`--pass-env`) pass whatever they look
    like: the user said the server needs them."""
    spec = spec or EnvSpec()
    if spec.any:
        return dict(env), []
    named = [*spec.names, *passed]
    out: dict[str, str] = {}
    withheld: list[str] = []
    for name, value in env.items():
        if (spec.default and not is_secret_name(name)) or any(
            fnmatch.fnmatchcase(name, p) for p in named
        ):
            out[name] = value
        else:
            withheld.append(name)
    return out, sorted(withheld)


def credentials_passed(env: Iterable[str]) -> list[str]:
    """The names in `env` that look like credentials (sorted): what a policy let through."""
    return sorted(n for n in env if is_secret_name(n))
