"""What a stdio server inherits: the proxy's environment, less the credentials it does not need.

A server started by the proxy used to get the proxy's whole environment — the agent's cloud,
git-hosting and registry credentials included — and one `get-env` tool hands them all to the
model. By default every variable whose name says it is a credential is withheld; the user
passes the ones a server needs by name (`--pass-env NAME`, globs allowed). What was withheld
is recorded (names only) in `session_start` and said once on stderr.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping

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
    env: Mapping[str, str], passed: Iterable[str] = ()
) -> tuple[dict[str, str], list[str]]:
    """(the server's environment, the names withheld). `passed` names (or globs) pass even
    when they look like credentials: the user said the server needs them."""
    allow = list(passed)
    out: dict[str, str] = {}
    withheld: list[str] = []
    for name, value in env.items():
        if is_secret_name(name) and not any(fnmatch.fnmatchcase(name, p) for p in allow):
            withheld.append(name)
        else:
            out[name] = value
    return out, sorted(withheld)
