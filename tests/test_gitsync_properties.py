"""The sync engine against git itself: random histories, every sync compared with `git archive`.

A hypothesis state machine edits a real working repository and pushes to its bare remote:
adds, edits, deletes, renames (case-only ones too), exec-bit flips, file↔folder swaps, force
pushes back to an older commit, names Azure Files refuses, symbolic links, submodules, and
hand edits of the workspace (drift). After every step the engine syncs — incremental from
the last synced commit, or a full reconcile — and the workspace must equal `git archive` of
the target, contents and exec bits, less the entries it reports skipped. A tree with two
paths differing only in case must be refused with the workspace untouched.

Bounded in `make test` (12 histories of 10 steps); `HYPOTHESIS_PROFILE=long` runs 300 of 40.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from gitrepos import Repo, assert_mirrors, git, snapshot
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from slipway.gitsync import engine
from slipway.gitsync.changes import classify

NAMES = st.sampled_from(["a", "b", "c", "flow", "lib", "notes"])
EXTENSIONS = st.sampled_from([".py", ".txt", ".sh", ""])
CONTENT = st.binary(max_size=200) | st.text(max_size=80).map(str.encode)
REFUSED = st.sampled_from(["CON.py", "a:b.txt", "trailing.", "space ", "pipe|.txt", "q?.md"])


class SyncAgainstGit(RuleBasedStateMachine):
    @initialize(content=CONTENT)
    def start(self, content: bytes) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sync-property-"))
        self.repo = Repo(self.root / "repo")
        self.workspace = self.root / "workspace"
        self.workspace.mkdir()
        self.mirror = self.root / "mirror.git"
        self.repo.write("flow.py", content)
        self.commits = [self.repo.commit_push("first")]
        self.synced: str | None = None
        self.drifted = False
        self.counter = 0

    def teardown(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------------ the repository

    def _files(self) -> list[str]:
        listed = git(self.repo.work, "ls-files", "-z", "--stage").split(b"\0")
        return sorted(
            line.split(b"\t", 1)[1].decode()
            for line in listed
            if line
            and line.split(b" ", 1)[0] in (b"100644", b"100755")
            and classify(line.split(b" ", 1)[0].decode(), line.split(b"\t", 1)[1])[2] is None
        )

    def _fresh(self, name: str, extension: str) -> str:
        self.counter += 1
        return f"{name}{self.counter}{extension}"

    @rule(folder=st.none() | NAMES, name=NAMES, extension=EXTENSIONS, content=CONTENT)
    def add(self, folder: str | None, name: str, extension: str, content: bytes) -> None:
        path = self._fresh(name, extension)
        self.repo.write(f"{folder}/{path}" if folder else path, content)

    @precondition(lambda self: self._files())
    @rule(data=st.data(), content=CONTENT)
    def edit(self, data: st.DataObject, content: bytes) -> None:
        self.repo.write(data.draw(st.sampled_from(self._files())), content)

    @precondition(lambda self: len(self._files()) > 1)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        self.repo.remove(data.draw(st.sampled_from(self._files())))

    @precondition(lambda self: self._files())
    @rule(data=st.data(), folder=st.none() | NAMES, name=NAMES)
    def rename(self, data: st.DataObject, folder: str | None, name: str) -> None:
        source = data.draw(st.sampled_from(self._files()))
        target = self._fresh(name, Path(source).suffix)
        self.repo.move(source, f"{folder}/{target}" if folder else target)

    @precondition(lambda self: self._files())
    @rule(data=st.data())
    def rename_case_only(self, data: st.DataObject) -> None:
        source = data.draw(st.sampled_from(self._files()))
        folder, _, name = source.rpartition("/")
        target = f"{folder}/{name.swapcase()}" if folder else name.swapcase()
        siblings = {p.rpartition("/")[2].casefold() for p in self._files() if p.rpartition("/")[0] == folder}
        if name.swapcase() != name and not (self.repo.work / target).exists() and name.casefold() in siblings:
            self.repo.move(source, target)

    @precondition(lambda self: self._files())
    @rule(data=st.data())
    def flip_exec_bit(self, data: st.DataObject) -> None:
        path = self.repo.work / data.draw(st.sampled_from(self._files()))
        path.chmod(path.stat().st_mode ^ 0o111)

    @precondition(lambda self: self._files())
    @rule(data=st.data(), content=CONTENT)
    def file_becomes_folder(self, data: st.DataObject, content: bytes) -> None:
        path = data.draw(st.sampled_from(self._files()))
        self.repo.remove(path)
        self.repo.write(f"{path}/inside.txt", content)

    @precondition(lambda self: any("/" in p for p in self._files()))
    @rule(data=st.data(), content=CONTENT)
    def folder_becomes_file(self, data: st.DataObject, content: bytes) -> None:
        folder = data.draw(st.sampled_from(sorted({p.split("/")[0] for p in self._files() if "/" in p})))
        shutil.rmtree(self.repo.work / folder)
        self.repo.write(folder, content)

    @rule(name=REFUSED, content=CONTENT)
    def refused_name(self, name: str, content: bytes) -> None:
        self.repo.write(f"odd/{name}", content)

    @rule(name=NAMES)
    def symlink(self, name: str) -> None:
        self.repo.symlink(self._fresh(f"link-{name}", ""), "flow.py")

    @rule(name=NAMES)
    def submodule(self, name: str) -> None:
        self.repo.submodule(self._fresh(f"vendor/{name}", ""))

    @precondition(lambda self: len(self.commits) > 1)
    @rule(data=st.data())
    def force_push_elsewhere(self, data: st.DataObject) -> None:
        self.repo.reset_to(data.draw(st.sampled_from(self.commits)))

    @precondition(lambda self: self.synced is not None)
    @rule(data=st.data(), content=CONTENT)
    def hand_edit_the_workspace(self, data: st.DataObject, content: bytes) -> None:
        files = sorted(p for p, v in snapshot(self.workspace).items() if v[0] == "file")
        if files:
            (self.workspace / data.draw(st.sampled_from(files))).write_bytes(content + b"drift")
            self.drifted = True

    @rule()
    def case_collision_is_refused(self) -> None:
        before = snapshot(self.workspace)
        self.repo.write("Clash.txt", "upper")
        self.repo.write("clash.txt", "lower")
        clash = self.repo.commit_push("clash")
        head = engine.fetch(self.mirror, self.repo.url, self.repo.branch, token=None)
        assert head == clash
        with pytest.raises(engine.TreeRefused):
            engine.apply(self.mirror, head, self.workspace, base=self.synced)
        assert snapshot(self.workspace) == before
        self.repo.remove("Clash.txt")
        self.repo.remove("clash.txt")

    # ------------------------------------------------------------------ syncing

    @invariant()
    def the_workspace_is_the_pushed_tree(self) -> None:
        if not hasattr(self, "repo"):
            return
        head = self.repo.commit_push("step")
        if head not in self.commits:
            self.commits.append(head)
        full = self.drifted or self.synced is None or self.counter % 3 == 0
        fetched = engine.fetch(self.mirror, self.repo.url, self.repo.branch, token=None)
        result = engine.apply(self.mirror, fetched, self.workspace, base=None if full else self.synced)
        self.synced, self.drifted = result.after, False
        assert_mirrors(self.repo, fetched, self.workspace, ignore=self._skipped(fetched))

    def _skipped(self, commit: str) -> tuple[str, ...]:
        out = git(self.repo.bare, "ls-tree", "-r", "-z", "--full-tree", commit)
        skipped = []
        for record in out.split(b"\0"):
            if record:
                meta, raw = record.split(b"\t", 1)
                if classify(meta.split(b" ")[0].decode(), raw)[2] is not None:
                    skipped.append(raw.decode("utf-8", "surrogateescape"))
        return tuple(skipped)


LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
SyncAgainstGit.TestCase.settings = settings(
    max_examples=300 if LONG else 12,
    stateful_step_count=40 if LONG else 10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_sync_against_git = SyncAgainstGit.TestCase
