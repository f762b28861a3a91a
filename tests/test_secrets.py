"""The secret detectors behind response rules and sink masking: what they find, what they
leave alone on real source trees (false positives), and redaction that keeps results valid."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import mcp
import pytest
import starlette

from mcp_defense.policy.extract.results import redact_result, result_facts
from mcp_defense.policy.extract.secrets import find_secrets, may_contain_secrets, redact

ROOT = Path(__file__).resolve().parent.parent
KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun"
    "\nVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
    "-----END RSA PRIVATE KEY-----"
)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (KEY, "private_key"),
        ("key: AKIAIOSFODNN7EXAMPLE", "aws_access_key_id"),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "aws_secret_access_key",
        ),
        ("export GITHUB_TOKEN=ghp_16C7e42F292c6912E7710c838347Ae178B4a", "github_token"),
        ("glpat-xxxxxxxxxxxxxxxxxxxx1234", "gitlab_token"),
        ("xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "slack_token"),
        ("//registry.npmjs.org/:_authToken=npm_abcdefghijklmnopqrstuvwxyz0123456789", "npm_token"),
        (
            "password = pypi-AgEIcHlwaS5vcmcCJDU5YWI0ZDY0LTQ5ZjAtNDg4Yy1iZmI0LWY5OGNmNDk3ZjI0",
            "pypi_token",
        ),
        ("AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY", "gcp_api_key"),
        (
            "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=" + "Ab1+" * 22 + "==",
            "azure_storage_key",
        ),
        (
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "jwt",
        ),
        ("DATABASE_PASSWORD=s3cr3tP4ssw0rd", "env_secret"),
        ("postgres://app:Xk2pL9qr@db.internal/app", "url_password"),
    ],
)
def test_each_kind_is_found_and_redacted(text: str, kind: str) -> None:
    found = find_secrets(text)
    assert [s.kind for s in found] == [kind], found
    out, kinds = redact(text)
    assert kinds == [kind] and f"[REDACTED:{kind}]" in out
    assert may_contain_secrets(json.dumps({"text": text}).encode())


def test_private_key_is_redacted_whole() -> None:
    out, _ = redact(f"before\n{KEY}\nafter")
    assert out == "before\n[REDACTED:private_key]\nafter"
    out, _ = redact("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1r")  # cut short
    assert out == "[REDACTED:private_key]"


def test_placeholders_and_code_are_not_secrets() -> None:
    for text in (
        "API_KEY=your-api-key-here",
        "PASSWORD=changeme",
        "token = progress_token_from_params(req.params)",
        "DB_PASSWORD=${DB_PASSWORD}",
        "https://user:password@example.com/",
        "Authorization: Bearer <token>",
    ):
        assert find_secrets(text) == [], text


def test_redaction_keeps_the_result_valid_and_the_rest_intact() -> None:
    result = {
        "content": [
            {"type": "text", "text": f"config:\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n{KEY}"},
            {"type": "image", "data": "QUtJQUlPU0ZPRE5ON0VYQU1QTEU=", "mimeType": "image/png"},
            {"type": "resource", "resource": {"uri": "file:///k", "text": KEY}},
        ],
        "structuredContent": {"env": "GH_TOKEN=ghp_16C7e42F292c6912E7710c838347Ae178B4a", "n": 3},
        "isError": False,
    }
    facts = result_facts(result)
    assert set(facts.secrets) == {"aws_access_key_id", "private_key", "github_token"}
    new, kinds = redact_result(result)
    text = json.dumps(new)
    assert "AKIA" not in text and "MIIE" not in text and "ghp_" not in text
    assert new["content"][1] == result["content"][1]  # a blob is not text
    assert new["structuredContent"]["n"] == 3 and new["isError"] is False
    assert len(kinds) == 4


def test_false_positives_on_real_source_trees() -> None:
    """Every text file of this repository and of the installed `mcp` package, as a tool
    result would carry it: secrets are found only where there are (fake) ones."""
    roots = [ROOT / d for d in ("mcp_defense", "docs", "policies", "examples", "benchmarks")]
    roots += [ROOT / "README.md"]
    roots += [Path(m.__file__).parent for m in (mcp, starlette, httpx2)]
    scanned = 0
    hits: dict[str, list[str]] = {}
    for root in roots:
        for p in [root] if root.is_file() else sorted(root.rglob("*")):
            if not p.is_file() or p.suffix in (".pyc", ".so"):
                continue
            try:
                text = p.read_text()
            except (UnicodeDecodeError, OSError):
                continue
            scanned += 1
            found = find_secrets(text)
            if found:
                hits[str(p.relative_to(p.parents[2]))] = [s.kind for s in found]
    print(f"{scanned} files scanned; detections: {hits}")
    assert scanned > 300
    # The fake keys of the demo and of the response benchmark are the only (true) detections.
    fakes = ("mcp_defense/demo.py", "benchmarks/bench_response.py")
    assert all(k.endswith(fakes) for k in hits), hits
