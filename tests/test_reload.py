"""Hot reload with real files and real watchfiles events: every way an editor, a deploy or an
operator changes policy, and the guarantee that only a policy that compiled is ever in force."""

from __future__ import annotations

import io
import os
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.reload_policy import (
    ARCHETYPE,
    BROKEN,
    MAIN,
    markers,
    save_atomic,
    save_in_place,
    version_of,
    wait_until,
    write_policy,
)

from mcp_defense.events.model import Event, PolicyReloaded, PolicyReloadFailed
from mcp_defense.policy.facts import Action, ToolCall
from mcp_defense.policy.loader import load
from mcp_defense.policy.reload import PolicyReloader, ReloadOutcome, TableRef, rule_diff


def marker_call(j: int) -> ToolCall:
    return ToolCall(ARCHETYPE, "echo", {"text": f"m{j}"})


class Harness:
    """A started reloader over `main`, with its events, stderr and outcomes captured."""

    def __init__(self, main: Path, **kw: object) -> None:
        self.main = main
        first = load([main], {})
        assert first.table is not None
        self.ref = TableRef(first.table)
        self.events: list[Event] = []
        self.outcomes: list[ReloadOutcome] = []
        self.stderr = io.StringIO()
        self.reloader = PolicyReloader(
            [main],
            {},
            ref=self.ref,
            emit=self.events.append,
            stderr=self.stderr,
            on_reload=self.outcomes.append,
            **kw,  # type: ignore[arg-type]
        )

    def start(self) -> Harness:
        self.reloader.start()
        assert self.reloader.wait_ready(30)
        return self

    def of(self, cls: type[Event]) -> list[Event]:
        return [e for e in list(self.events) if isinstance(e, cls)]

    def wait_version(self, version: str) -> None:
        try:
            wait_until(lambda: self.ref.table.version == version, what=f"version {version}")
        except AssertionError as e:
            raise AssertionError(f"{e}; {self.state()}") from None

    def state(self) -> str:
        r = self.reloader
        w = r._watcher
        return (
            f"in force {self.ref.table.version}, attempts {r.attempts}, watcher "
            f"{'alive' if w and w.alive() else 'dead'} ({w.error if w else None}), last "
            f"{[(o.reason, o.ok, o.version) for o in self.outcomes[-3:]]}, "
            f"stderr {self.stderr.getvalue()[-500:]!r}"
        )

    def wait_failures(self, n: int) -> None:
        wait_until(lambda: len(self.of(PolicyReloadFailed)) >= n, what=f"{n} reload failure(s)")


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    main, _ = write_policy(tmp_path / "pol", 0)
    h = Harness(main).start()
    try:
        yield h
    finally:
        h.reloader.stop()


def test_start_primes_without_events_and_stop_is_clean(harness: Harness) -> None:
    r = harness.reloader
    assert r.table is harness.ref.table  # same version: nothing swapped at start
    assert harness.events == []
    assert str(harness.main.parent) in r.watched_dirs
    threads = {t.name for t in threading.enumerate()}
    assert {"mcpd-policy-reload", "mcpd-policy-watch"} <= threads
    r.stop()
    r.stop()  # idempotent
    r.start()  # a stopped reloader stays stopped
    alive = [t for t in threading.enumerate() if t.name.startswith("mcpd-policy") and t.is_alive()]
    assert alive == []


def test_import_change_swaps_and_reports_rule_diff(harness: Harness) -> None:
    """markers.mcpd is only imported by main.mcpd: its change must trigger the reload."""
    old = harness.ref.table
    assert old.decide(marker_call(0)).action is Action.DENY
    extra = 'rule extra {\n  when call.tool == "rm"\n  deny "no"\n}\n'
    save_atomic(harness.main.parent / "markers.mcpd", markers(1, extra))
    new_version = version_of(harness.main)
    harness.wait_version(new_version)
    t = harness.ref.table
    assert t.decide(marker_call(1)).action is Action.DENY
    assert t.decide(marker_call(0)).action is Action.ALLOW
    assert t.decide(marker_call(1)).policy_version == new_version
    [ev] = harness.of(PolicyReloaded)
    assert isinstance(ev, PolicyReloaded)
    assert (ev.old_version, ev.new_version) == (old.version, new_version)
    assert (ev.added, ev.removed, ev.changed) == (["extra", "marker_1"], ["marker_0"], [])
    assert "policy reloaded" in harness.stderr.getvalue()
    # Changing one rule's condition is reported as `changed`.
    save_atomic(harness.main.parent / "markers.mcpd", markers(1, extra.replace('"rm"', '"rmdir"')))
    harness.wait_version(version_of(harness.main))
    assert harness.of(PolicyReloaded)[-1].changed == ["extra"]  # type: ignore[attr-defined]


def test_burst_of_saves_is_one_reload(tmp_path: Path) -> None:
    """Ten saves inside one debounce step: one load, and no intermediate version in force."""
    main, mk = write_policy(tmp_path / "pol", 0)
    h = Harness(main, step_ms=400, debounce_ms=2000).start()
    try:
        before = h.reloader.attempts
        for k in range(1, 11):
            save_in_place(mk, markers(k))
        h.wait_version(version_of(main))
        assert h.reloader.attempts == before + 1
        assert [o.version for o in h.outcomes if o.swapped] == [h.ref.table.version]
        assert len(h.of(PolicyReloaded)) == 1
    finally:
        h.reloader.stop()


def test_rename_over_is_seen(harness: Harness) -> None:
    """vim/JetBrains style: write a temporary file (odd names included), rename it over."""
    d = harness.main.parent
    for k, tmpname in ((1, "4913"), (2, "markers.mcpd~"), (3, ".markers.mcpd.swp")):
        tmp = d / tmpname
        tmp.write_text(markers(k))
        os.replace(tmp, d / "markers.mcpd")
        harness.wait_version(version_of(harness.main))
        assert harness.ref.table.decide(marker_call(k)).action is Action.DENY
    assert len(harness.of(PolicyReloaded)) == 3
    assert harness.of(PolicyReloadFailed) == []


def test_editor_noise_does_not_reload(harness: Harness) -> None:
    """Swap and lock files appear beside the policy: a few reads, no compile, no event."""
    d = harness.main.parent
    (d / ".markers.mcpd.swp").write_text("swap")
    (d / "4913").write_text("")
    os.symlink("user@host.1234", d / ".#markers.mcpd")  # emacs lock (dangling symlink)
    (d / "notes.txt").write_text("x")
    attempts = harness.reloader.attempts
    # Then a real change: once it is in force, the noise before it has been processed too.
    save_atomic(d / "markers.mcpd", markers(5))
    harness.wait_version(version_of(harness.main))
    assert harness.reloader.attempts == attempts + 1
    assert harness.of(PolicyReloadFailed) == []


def test_delete_then_recreate(harness: Harness) -> None:
    d = harness.main.parent
    version = harness.ref.table.version
    (d / "markers.mcpd").unlink()
    harness.wait_failures(1)
    assert harness.ref.table.version == version  # last good table stays in force
    assert harness.ref.table.decide(marker_call(0)).action is Action.DENY
    [ev] = harness.of(PolicyReloadFailed)
    assert isinstance(ev, PolicyReloadFailed)
    assert ev.version_in_force == version
    assert any("main.mcpd:1:8" in line and "markers.mcpd" in line for line in ev.diagnostics)
    assert "main.mcpd:1:8" in harness.stderr.getvalue()
    (d / "markers.mcpd").write_text(markers(2))
    harness.wait_version(version_of(harness.main))
    assert harness.ref.table.decide(marker_call(2)).action is Action.DENY


def test_recreate_with_same_content_reports_recovery(harness: Harness) -> None:
    d = harness.main.parent
    text = (d / "markers.mcpd").read_text()
    (d / "markers.mcpd").unlink()
    harness.wait_failures(1)
    (d / "markers.mcpd").write_text(text)
    wait_until(lambda: harness.of(PolicyReloaded), what="recovery event")
    [ev] = harness.of(PolicyReloaded)
    assert ev.old_version == ev.new_version == harness.ref.table.version  # type: ignore[attr-defined]


@pytest.mark.parametrize("broken", range(len(BROKEN)))
def test_broken_then_good_recovers(harness: Harness, broken: int) -> None:
    mk = harness.main.parent / "markers.mcpd"
    good = harness.ref.table
    save_atomic(mk, BROKEN[broken])
    harness.wait_failures(1)
    assert harness.ref.table is good
    [ev] = harness.of(PolicyReloadFailed)
    assert isinstance(ev, PolicyReloadFailed)
    assert ev.version_in_force == good.version
    assert ev.diagnostics and all(":" in d for d in ev.diagnostics)
    file, line = ev.diagnostics[0].split(":")[:2]
    assert file.endswith(".mcpd") and line.isdigit()  # file:line:col
    assert "policy reload failed, keeping version " + good.version in harness.stderr.getvalue()
    save_atomic(mk, markers(7))
    harness.wait_version(version_of(harness.main))
    assert harness.ref.table.decide(marker_call(7)).action is Action.DENY


def test_new_import_in_new_directory_is_watched(harness: Harness) -> None:
    """The watch set follows the imports: a file imported from a new directory is watched."""
    d = harness.main.parent
    sub = d / "team" / "extra"
    sub.mkdir(parents=True)
    (sub / "more.mcpd").write_text('rule more {\n  when call.tool == "x"\n  deny "x"\n}\n')
    save_atomic(d / "main.mcpd", 'import "team/extra/more.mcpd"\n' + MAIN)
    harness.wait_version(version_of(harness.main))
    wait_until(lambda: str(sub) in harness.reloader.watched_dirs, what="watch of new dir")
    save_atomic(sub / "more.mcpd", 'rule more {\n  when call.tool == "y"\n  deny "y"\n}\n')
    harness.wait_version(version_of(harness.main))
    assert harness.ref.table.decide(ToolCall(ARCHETYPE, "y", {})).action is Action.DENY


def test_directory_root_picks_up_new_files(tmp_path: Path) -> None:
    d = tmp_path / "pol"
    write_policy(d, 0)
    first = load([d], {})
    assert first.table is not None
    ref = TableRef(first.table)
    r = PolicyReloader([d], {}, ref=ref, stderr=None)
    r.start()
    try:
        assert r.wait_ready(30)
        (d / "nested").mkdir()
        save_atomic(
            d / "nested" / "late.mcpd", 'rule late {\n  when call.tool == "z"\n  deny "z"\n}\n'
        )
        wait_until(lambda: "late" in ref.table.rule_fingerprints, what="rule from the new file")
    finally:
        r.stop()


def test_configmap_style_symlink_swap(tmp_path: Path) -> None:
    """Kubernetes mounts a ConfigMap as name -> ..data/name, ..data -> ..<timestamp>/, and
    updates it by renaming a new ..data link over the old one."""
    conf = tmp_path / "conf"
    write_policy(conf / "..v1", 1)
    (conf / "..data").symlink_to("..v1")
    for name in ("main.mcpd", "markers.mcpd"):
        (conf / name).symlink_to(Path("..data") / name)
    main = conf / "main.mcpd"
    h = Harness(main).start()
    try:
        assert h.ref.table.decide(marker_call(1)).action is Action.DENY
        write_policy(conf / "..v2", 2)
        (conf / "..data_tmp").symlink_to("..v2")
        os.replace(conf / "..data_tmp", conf / "..data")
        h.wait_version(version_of(main))
        assert h.ref.table.decide(marker_call(2)).action is Action.DENY
        # The old directory goes away, as kubelet does; the next update is still seen.
        for f in (conf / "..v1").iterdir():
            f.unlink()
        (conf / "..v1").rmdir()
        write_policy(conf / "..v3", 3)
        (conf / "..data_tmp").symlink_to("..v3")
        os.replace(conf / "..data_tmp", conf / "..data")
        h.wait_version(version_of(main))
        assert h.of(PolicyReloadFailed) == []
    finally:
        h.reloader.stop()


def test_directory_deleted_and_recreated(tmp_path: Path) -> None:
    """`rm -rf policies && git checkout policies`: the new directory needs a new watch."""
    d = tmp_path / "pol"
    main, _ = write_policy(d, 0)
    h = Harness(main).start()
    try:
        for f in d.iterdir():
            f.unlink()
        d.rmdir()
        h.wait_failures(1)
        d.mkdir()  # empty for now: no reload, but the new directory must be watched at once
        wait_until(lambda: str(d) in h.reloader.watched_dirs, what="watch of re-created dir")
        write_policy(d, 4)
        h.wait_version(version_of(main))
        save_atomic(d / "markers.mcpd", markers(5))
        h.wait_version(version_of(main))
    finally:
        h.reloader.stop()


def test_directory_replaced_in_one_go(tmp_path: Path) -> None:
    """Deleted and re-created at once: the new directory often gets the same inode number,
    so only the deletion event says the old watch is dead."""
    d = tmp_path / "pol"
    main, _ = write_policy(d, 0)
    h = Harness(main).start()
    try:
        for f in d.iterdir():
            f.unlink()
        d.rmdir()
        write_policy(d, 4)
        h.wait_version(version_of(main))
        save_atomic(d / "markers.mcpd", markers(5))
        h.wait_version(version_of(main))
    finally:
        h.reloader.stop()


def test_sighup_forces_a_reload_even_without_watching(tmp_path: Path) -> None:
    main, mk = write_policy(tmp_path / "pol", 0)
    h = Harness(main, watch=False).start()
    restore = h.reloader.install_sighup()
    try:
        assert h.reloader.watched_dirs == frozenset()
        os.kill(os.getpid(), signal.SIGHUP)
        wait_until(lambda: h.of(PolicyReloaded), what="reload after SIGHUP")
        [ev] = h.of(PolicyReloaded)
        assert ev.old_version == ev.new_version  # type: ignore[attr-defined]  # asked, unchanged
        save_atomic(mk, markers(9))  # --no-reload: picked up only when asked
        os.kill(os.getpid(), signal.SIGHUP)
        h.wait_version(version_of(main))
        assert h.ref.table.decide(marker_call(9)).action is Action.DENY
    finally:
        restore()
        h.reloader.stop()
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL


def test_policy_that_drops_the_served_archetype_is_refused(tmp_path: Path) -> None:
    main, _ = write_policy(tmp_path / "pol", 0)
    h = Harness(main, archetypes=[ARCHETYPE]).start()
    try:
        good = h.ref.table
        save_atomic(main, MAIN.replace("archetype ws", "archetype other"))
        h.wait_failures(1)
        assert h.ref.table is good
        assert "does not define archetype 'ws'" in h.of(PolicyReloadFailed)[0].diagnostics[0]  # type: ignore[attr-defined]
    finally:
        h.reloader.stop()


def test_rule_diff() -> None:
    assert rule_diff({"a": "1", "b": "2"}, {"b": "3", "c": "4"}) == (("c",), ("a",), ("b",))


def test_decisions_from_threads_during_20_rewrites(tmp_path: Path) -> None:
    """Four threads decide continuously while the policy is rewritten 24 times (some broken,
    some saved in place, so an empty file is briefly a valid policy): every decision matches
    the version it names, and no broken version is ever in force."""
    main, mk = write_policy(tmp_path / "pol", 0)
    expected: dict[str, int | None] = {version_of(main): 0}
    h = Harness(main).start()
    stop = threading.Event()
    seen: Counter[tuple[str, int, str, str]] = Counter()  # constant memory however many

    def worker(offset: int) -> None:
        j = offset
        while not stop.is_set():
            table = h.ref.table  # read once: this call runs under this table
            d = table.decide(marker_call(j % 26))
            assert d.policy_version == table.version
            seen[(d.policy_version, j % 26, d.action.value, d.rule)] += 1
            j += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        failures = 0
        for k in range(1, 25):
            if k % 5 == 0:
                save_atomic(mk, BROKEN[(k // 5) % len(BROKEN)])
                failures += 1
                h.wait_failures(failures)
                continue
            (save_in_place if k % 2 else save_atomic)(mk, markers(k))
            expected[version_of(main)] = k
            save_in_place(mk, "")  # the empty markers file is a valid policy, denying nothing
            expected[version_of(main)] = None
            (save_in_place if k % 2 else save_atomic)(mk, markers(k))
            h.wait_version(version_of(main))
    finally:
        stop.set()
        for t in threads:
            t.join()
        h.reloader.stop()
    assert seen.total() > 1000
    versions = {v for v, *_ in seen}
    assert versions <= set(expected), "a decision named a version that never compiled"
    assert len({expected[v] for v in versions} - {None}) >= 20
    for version, j, action, rule in seen:
        k = expected[version]
        if j == k:
            assert (action, rule) == ("deny", f"marker_{k}")
        else:
            assert (action, rule) == ("allow", "")


def test_edit_racing_a_load_is_not_lost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A→B→A while a load runs: the load compiles B, the files say A again. The snapshot holds
    what was compiled (B), so the next check sees A as a change and reloads it."""
    import mcp_defense.policy.reload as reload_mod

    main, mk = write_policy(tmp_path / "pol", 0)
    version_a = version_of(main)
    real_load = reload_mod.load
    armed = threading.Event()

    def racing_load(*args: object, **kw: object) -> object:
        if not armed.is_set():
            return real_load(*args, **kw)  # type: ignore[arg-type]
        armed.clear()
        save_in_place(mk, markers(1))  # B, read by this load
        try:
            return real_load(*args, **kw)  # type: ignore[arg-type]
        finally:
            save_in_place(mk, markers(0))  # back to A before anyone looks again

    monkeypatch.setattr(reload_mod, "load", racing_load)
    h = Harness(main).start()
    try:
        armed.set()
        h.reloader.request_reload()
        wait_until(lambda: not armed.is_set() and h.reloader.attempts >= 2, what="racing load")
        h.wait_version(version_a)
        assert h.ref.table.decide(marker_call(0)).action is Action.DENY
    finally:
        h.reloader.stop()


def test_failing_sink_and_listener_do_not_stop_reloads(tmp_path: Path) -> None:
    main, mk = write_policy(tmp_path / "pol", 0)
    first = load([main], {})
    assert first.table is not None
    ref = TableRef(first.table)
    err = io.StringIO()

    def broken(_: object) -> None:
        raise RuntimeError("sink down")

    r = PolicyReloader([main], {}, ref=ref, emit=broken, on_reload=broken, stderr=err)
    r.start()
    try:
        assert r.wait_ready(30)
        for k in (1, 2):
            save_atomic(mk, markers(k))
            wait_until(lambda: ref.table.version == version_of(main), what=f"version {k}")
        assert "cannot record policy_reloaded event: sink down" in err.getvalue()
        assert "reload listener failed: sink down" in err.getvalue()
    finally:
        r.stop()
