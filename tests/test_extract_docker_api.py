"""The Docker daemon API over TCP (issue 11, class 10): 2375 and 2376 on any host are root on
that host, like `/var/run/docker.sock`; every spelling of the address is a denied endpoint."""

from __future__ import annotations

from typing import Any

import pytest

from mcp_defense.policy.extract import Environment, default_classifier, extract

ATTACKS: list[tuple[str, str, dict[str, Any]]] = [
    ("shell", "run_command", {"command": c})
    for c in (
        "docker -H tcp://10.0.0.5:2375 ps",
        "docker -H 10.0.0.5:2376 run --privileged -v /:/host alpine",
        "docker -H tcp://10.0.0.5 ps",
        "docker -Htcp://h.example.com:2375 ps",
        "docker --host=tcp://h.example.com:2376 --tlsverify ps",
        "docker --host tcp://[fd00::1]:2375 ps",
        "DOCKER_HOST=tcp://10.0.0.5:2375 docker ps",
        "DOCKER_HOST=tcp://h.example.com docker exec -it c sh",
        "export DOCKER_HOST=tcp://h.example.com:2375; docker ps",
        "env DOCKER_HOST=tcp://h.example.com docker ps",
        "podman --url tcp://h.example.com:2375 ps",
        "docker context create x --docker host=tcp://h.example.com",
        "curl -s http://10.0.0.5:2375/containers/json",
        "curl -X POST http://h.example.com:2375/containers/create -d @/workspace/c.json",
        "nc h.example.com 2375",
        "python -c \"import docker; docker.DockerClient(base_url='tcp://1.2.3.4:2376')\"",
        "docker -H unix:///var/run/docker.sock ps",
        "curl --unix-socket /var/run/docker.sock http://localhost/containers/json",
    )
] + [
    ("web-fetch", "fetch", {"url": u})
    for u in (
        "http://public.example.com:2375/v1.41/containers/json",
        "https://203.0.113.7:2376/info",
        "http://host.docker.internal:2375/containers/json",
    )
]


@pytest.mark.parametrize("arch,tool,args", ATTACKS, ids=lambda x: str(x)[:60])
def test_docker_api_is_denied_on_every_archetype(
    decide, arch: str, tool: str, args: dict[str, Any]
) -> None:
    d = decide(arch, tool, args)
    assert d.action.value == "deny", f"{d.rule}: {d.reason}"


@pytest.mark.parametrize(
    "url", ["http://public.example.com:2375/", "https://203.0.113.7:2376/info"]
)
def test_web_fetch_of_a_public_docker_api_is_a_container_api_deny(decide, url: str) -> None:
    d = decide("web-fetch", "fetch", {"url": url})
    assert d.rule == "container_engine_api", d.reason


ENV = Environment(workspace="/workspace", home="/home/alice", resolve_symlinks=False)


@pytest.mark.parametrize(
    "command,endpoint",
    [
        ("docker -H 10.0.0.5:2376 ps", "10.0.0.5:2376"),
        ("docker -H tcp://10.0.0.5 ps", "10.0.0.5:2375"),
        ("DOCKER_HOST=tcp://h.example.com docker ps", "h.example.com:2375"),
        ("docker -H ssh://u@h.example.com ps", "h.example.com:22"),
    ],
)
def test_docker_host_spellings_are_endpoints(command: str, endpoint: str) -> None:
    facts = extract("run_command", {"command": command}, default_classifier(), ENV)
    assert endpoint in facts.endpoints and facts.network


def test_prose_about_the_docker_api_is_content(decide) -> None:
    d = decide(
        "filesystem",
        "write_file",
        {
            "path": "/workspace/docs/ops.md",
            "content": "Never expose http://0.0.0.0:2375/ publicly.",
        },
    )
    assert d.action.value == "allow", f"{d.rule}: {d.reason}"


def test_local_docker_without_a_tcp_host_is_not_the_api_rule(decide) -> None:
    d = decide("shell", "run_command", {"command": "docker ps -a"})
    assert d.rule != "container_engine_api"
