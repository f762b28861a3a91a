"""The shell lexer on its own: words, operators, quotes, expansions, heredocs, and two properties
(it never raises; a quoted word list lexes back to the same words)."""

from __future__ import annotations

import shlex

from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_defense.policy.extract.shell.lexer import (
    _brace_expand,
    _Heredoc,
    _Lexer,
    _simple_commands,
    _Word,
)


def _texts(s: str) -> list[object]:
    return [t.text if isinstance(t, _Word) else t for t in _Lexer(s).tokens()]


def test_words_and_operators() -> None:
    assert _texts("ls -la /tmp && cat a|wc -l; echo x") == [
        "ls",
        "-la",
        "/tmp",
        "&&",
        "cat",
        "a",
        "|",
        "wc",
        "-l",
        ";",
        "echo",
        "x",
    ]


def test_quotes_are_removed_and_joined() -> None:
    assert _texts("""cat 'a b'"c d"e\\ f""") == ["cat", "a bc de f"]


def test_ansi_c_quoting_is_decoded() -> None:
    assert _texts("cat $'\\x2fetc\\x2fpasswd'") == ["cat", "/etc/passwd"]


def test_comment_is_dropped_but_hash_inside_word_is_kept() -> None:
    assert _texts("echo a#b # comment") == ["echo", "a#b"]


def test_command_substitution_body_is_kept_for_analysis() -> None:
    toks = _Lexer("echo $(cat ~/.ssh/id_rsa) `id`").tokens()
    subs = [s for t in toks if isinstance(t, _Word) for s in t.subs]
    assert "cat ~/.ssh/id_rsa" in subs
    assert "id" in subs


def test_process_substitution_is_a_word_with_its_body() -> None:
    toks = _Lexer("diff <(cat /etc/shadow) b").tokens()
    word = toks[1]
    assert isinstance(word, _Word)
    assert word.subs == ["cat /etc/shadow"]


def test_heredoc_body_is_collected() -> None:
    toks = _Lexer("cat <<EOF > out.txt\nhello /etc/passwd\nEOF\n").tokens()
    docs = [t for t in toks if isinstance(t, _Heredoc)]
    assert len(docs) == 1


def test_unbalanced_quote_closes_at_end_of_input() -> None:
    lexer = _Lexer("cat 'unterminated /etc/passwd")
    assert [t.text for t in lexer.tokens() if isinstance(t, _Word)] == [
        "cat",
        "unterminated /etc/passwd",
    ]


def test_simple_commands_split_and_redirections() -> None:
    cmds = _simple_commands(_Lexer("cat a > b; ls | wc").tokens())
    assert [[w.text for w in c.words] for c in cmds] == [["cat", "a"], ["ls"], ["wc"]]
    assert [(op, w.text if w else None) for op, w in cmds[0].redirs] == [(">", "b")]


def test_brace_expansion() -> None:
    assert _brace_expand("~/.{ssh,aws}/x") == ["~/.ssh/x", "~/.aws/x"]
    assert _brace_expand("f{1..3}") == ["f1", "f2", "f3"]


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_never_raises_on_any_text(s: str) -> None:
    _simple_commands(_Lexer(s).tokens())


_WORD = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_WORD, min_size=1, max_size=8))
def test_quoted_words_survive_a_round_trip(words: list[str]) -> None:
    line = " ".join(shlex.quote(w) for w in words)
    assert [t.text for t in _Lexer(line).tokens() if isinstance(t, _Word)] == words
