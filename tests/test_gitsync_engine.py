"""The git sync engine against real repositories: file:// and loopback HTTP remotes, no mocks.

After every sync the workspace is compared with ``git archive`` of the branch head, byte for
byte, with nothing else in it (skipped entries aside).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import pytest
from gitrepos import GitHttpServer, Repo, assert_mirrors, snapshot

from slipway import cli
from slipway.gitsync import engine
from slipway.gitsync.apply import FS, UNFINISHED
from slipway.workspace.paths import TEMP_PREFIX

TOKEN = "ghp_TestToken0123456789abcdefSECRET"


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path / "repo")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    folder = tmp_path / "workspace"
    folder.mkdir()
    return folder


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    return tmp_path / "mirror.git"


def sync(
    repo: Repo,
    mirror: Path,
    workspace: Path,
    *,
    base: str | None,
    url: str | None = None,
    workers: int | None = None,
) -> engine.SyncResult:
    head = engine.fetch(mirror, url or repo.url, repo.branch, token=None)
    return engine.apply(mirror, head, workspace, base=base, workers=workers)


def temps(workspace: Path) -> list[str]:
    return [p for p in snapshot(workspace) if p.rsplit("/", 1)[-1].startswith(TEMP_PREFIX)]


# ---------------------------------------------------------------------------------- basics


def fail_nth_write(monkeypatch: pytest.MonkeyPatch, n: int, error: OSError):  # type: ignore[no-untyped-def]
    """Make the n-th workspace write raise ``error``; returns the real write to put back."""
    real = FS.write_all
    calls = {"n": 0}

    def failing(self: FS, fd: int, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == n:
            raise error
        real(self, fd, data)

    monkeypatch.setattr(FS, "write_all", failing)
    return real


def test_first_sync_then_add_modify_delete_rename_and_folder_delete(
    repo: Repo, mirror: Path, workspace: Path
) -> None:
    repo.write_many(
        {
            "README.md": "# hello\n",
            "workflows/build.py": "print('build')\n",
            "workflows/lib/util.py": "X = 1\n",
            "old/gone/a.txt": "a",
            "old/gone/b.txt": "b",
            "keep/moved.txt": "same content for the rename\n" * 20,
            "empty.txt": "",
        }
    )
    first = repo.commit_push("first")
    result = sync(repo, mirror, workspace, base=None)
    assert (result.mode, result.before, result.after) == ("full", None, first)
    assert (result.added, result.changed, result.deleted) == (7, 0, 0)
    assert result.bytes_written == sum(len(v) for v in repo.archive(first).values())
    assert result.warnings == []
    assert_mirrors(repo, first, workspace)
    assert engine.last_synced(mirror, workspace) == first

    repo.write("workflows/new.py", "print('new')\n")  # add
    repo.write("README.md", "# hello again\n")  # modify
    repo.remove("workflows/lib/util.py")  # delete: workflows/lib is left empty
    repo.remove("old")  # folder delete: old/ and old/gone/ pruned
    repo.move("keep/moved.txt", "elsewhere/deep/moved.txt")  # exact rename; keep/ pruned
    second = repo.commit_push("second")
    result = sync(repo, mirror, workspace, base=first)
    assert (result.mode, result.before, result.after) == ("incremental", first, second)
    assert (result.added, result.changed, result.deleted, result.renamed) == (1, 1, 3, 1)
    assert_mirrors(repo, second, workspace)
    for pruned in ("old", "keep", "workflows/lib"):
        assert not (workspace / pruned).exists()

    again = sync(repo, mirror, workspace, base=second)
    assert (again.mode, again.added, again.changed, again.deleted) == ("incremental", 0, 0, 0)
    assert again.fs_operations <= 3  # open the root, look for an unfinished apply, close
    assert_mirrors(repo, second, workspace)


def test_http_remote_token_travels_only_in_the_environment(
    repo: Repo, mirror: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.write_many({"a.py": "a = 1\n", "pkg/b.py": "b = 2\n"})
    first = repo.commit_push()
    spawned: list[tuple[list[str], dict[str, str]]] = []
    real_popen = subprocess.Popen

    class Spy(real_popen):  # type: ignore[misc, valid-type]
        def __init__(self, args, *rest, **kwargs):  # type: ignore[no-untyped-def]
            spawned.append(([str(a) for a in args], dict(kwargs.get("env") or {})))
            super().__init__(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", Spy)
    with GitHttpServer(repo.root, TOKEN) as server:
        url = server.repo_url(repo)
        head = engine.fetch(mirror, url, "main", token=TOKEN)
        assert head == first
        engine.apply(mirror, head, workspace, base=None)
        assert_mirrors(repo, first, workspace)
        assert any(status == 200 for _, _, status in server.requests)

        with pytest.raises(engine.FetchError) as failure:
            engine.fetch(tmp := mirror.parent / "other.git", url, "main", token="wrong-" + TOKEN)
        assert any(status == 401 for _, _, status in server.requests)
        assert not tmp.joinpath("refs/heads/main").exists()
        assert server.token_in_argv is False

    text = f"{failure.value} {failure.value!r} {failure.value.args}"
    assert TOKEN not in text and "wrong-" not in text
    assert "refused the token" in str(failure.value)
    git_runs = [(argv, env) for argv, env in spawned if "git" in Path(argv[0]).name]
    assert git_runs, "git was not spawned"
    for argv, _env in git_runs:
        assert not any(TOKEN in part for part in argv), argv
        assert not any(url.replace("http://", f"http://{TOKEN}@") in part for part in argv)
    fetches = [env for argv, env in git_runs if "fetch" in argv]
    assert fetches and all(env.get("GIT_CONFIG_KEY_0") == "http.extraHeader" for env in fetches)
    assert all(
        env.get("GIT_TERMINAL_PROMPT") == "0" and env.get("GIT_CONFIG_NOSYSTEM") == "1" for env in fetches
    )


def test_token_never_reaches_argv_or_messages_on_a_file_remote_error(mirror: Path, tmp_path: Path) -> None:
    with pytest.raises(engine.FetchError) as failure:
        engine.fetch(mirror, (tmp_path / "missing.git").as_uri(), "main", token=TOKEN, timeout=30)
    assert TOKEN not in str(failure.value)
    with pytest.raises(engine.SyncError, match="holds credentials"):
        engine.fetch(mirror, f"https://x:{TOKEN}@example.invalid/r.git", "main", token=None)


def test_force_push_is_a_full_reconcile(repo: Repo, mirror: Path, workspace: Path) -> None:
    repo.write_many({"a.txt": "a", "b.txt": "b", "dir/c.txt": "c"})
    repo.commit_push("one")
    repo.write("a.txt", "a2")
    second = repo.commit_push("two")
    sync(repo, mirror, workspace, base=None)
    repo.remove("dir")
    repo.write("b.txt", "b rewritten")
    rewritten = repo.rewrite_last("two, rewritten")
    repo.push(force=True)
    result = sync(repo, mirror, workspace, base=second)
    assert (result.mode, result.before, result.after) == ("full", None, rewritten)
    assert (result.added, result.changed, result.deleted) == (0, 1, 1)
    assert_mirrors(repo, rewritten, workspace)


def test_deleted_branch_raises_and_leaves_the_workspace(repo: Repo, mirror: Path, workspace: Path) -> None:
    repo.write_many({"a.txt": "a", "d/b.txt": "b"})
    head = repo.commit_push()
    sync(repo, mirror, workspace, base=None)
    before = snapshot(workspace)
    repo.delete_remote_branch()
    with pytest.raises(engine.BranchNotFound, match="main"):
        sync(repo, mirror, workspace, base=head)
    assert snapshot(workspace) == before
    assert engine.last_synced(mirror, workspace) == head


def test_non_ascii_names(repo: Repo, mirror: Path, workspace: Path) -> None:
    repo.write_many({"café.py": "é = 1\n", "日本/語.txt": "日本語\n", "ümlaut dir/ß.md": "x"})
    first = repo.commit_push()
    sync(repo, mirror, workspace, base=None)
    assert_mirrors(repo, first, workspace)
    repo.move("日本/語.txt", "日本/新しい.txt")
    repo.remove("café.py")
    second = repo.commit_push()
    result = sync(repo, mirror, workspace, base=first)
    assert (result.mode, result.renamed, result.deleted) == ("incremental", 1, 1)
    assert_mirrors(repo, second, workspace)


# ---------------------------------------------------------------------------------- refused entries


def test_refused_names_links_and_submodules_are_skipped_with_warnings(
    repo: Repo, mirror: Path, workspace: Path
) -> None:
    repo.write_many(
        {"ok.py": "ok", "a:b.txt": "colon", "CON.py": "device", "trailing.": "dot", "bad?/x.txt": "q"}
    )
    repo.symlink("links/to-ok", "../ok.py")
    repo.submodule("vendor/sub")
    first = repo.commit_push()
    # Something the user keeps where the tree has a link: left alone, not replaced or deleted.
    (workspace / "links").mkdir()
    (workspace / "links" / "to-ok").write_text("mine")
    result = sync(repo, mirror, workspace, base=None)
    skipped = ("a:b.txt", "CON.py", "trailing.", "bad?", "links/to-ok", "vendor/sub")
    assert len(result.warnings) == len(skipped)
    for path in skipped:
        assert any(w.startswith(f"skipped {path}") for w in result.warnings), (path, result.warnings)
    assert any("symbolic link" in w for w in result.warnings)
    assert any("submodule" in w for w in result.warnings)
    assert any("reserved device name" in w for w in result.warnings)
    assert (workspace / "links" / "to-ok").read_text() == "mine"
    assert_mirrors(repo, first, workspace, ignore=skipped)

    repo.symlink("second-link", "ok.py")
    repo.write("new.txt", "n")
    second = repo.commit_push()
    result = sync(repo, mirror, workspace, base=first)
    assert result.mode == "incremental"
    assert result.warnings == [
        "skipped second-link: symbolic links are not synced (Azure Files cannot hold them)"
    ]
    assert_mirrors(repo, second, workspace, ignore=(*skipped, "second-link"))


def test_case_collision_refuses_the_tree_before_touching_the_workspace(
    repo: Repo, mirror: Path, workspace: Path
) -> None:
    repo.write_many({"README.md": "one", "src/a.py": "a"})
    first = repo.commit_push()
    sync(repo, mirror, workspace, base=None)
    (workspace / "local-extra.txt").write_text("would be deleted by a full sync")
    before = snapshot(workspace)
    repo.write("readme.md", "two")
    repo.write("SRC/b.py", "folder case clash")
    repo.write("new.txt", "new")
    repo.commit_push()
    for base in (first, None):
        with pytest.raises(engine.TreeRefused) as refused:
            sync(repo, mirror, workspace, base=base)
        assert "README.md and readme.md" in str(refused.value)
        assert "SRC and src" in str(refused.value)
        assert snapshot(workspace) == before
    with pytest.raises(engine.TreeRefused):
        engine.preview(mirror, repo.head(), workspace)


def test_case_only_rename_is_one_rename(repo: Repo, mirror: Path, workspace: Path) -> None:
    repo.write_many({"FOO.py": "foo content\n", "Lib/x.py": "x\n", "Lib/y.py": "y\n"})
    first = repo.commit_push()
    sync(repo, mirror, workspace, base=None)
    inode = (workspace / "FOO.py").stat().st_ino
    repo.move("FOO.py", "foo.py")
    repo.move("Lib/x.py", "lib/x.py")
    repo.move("Lib/y.py", "lib/y.py")
    second = repo.commit_push()
    result = sync(repo, mirror, workspace, base=first)
    assert (result.mode, result.renamed, result.added, result.deleted, result.bytes_written) == (
        "incremental",
        3,
        0,
        0,
        0,
    )
    assert (workspace / "foo.py").stat().st_ino == inode  # the same file, renamed
    assert_mirrors(repo, second, workspace)


def test_full_reconcile_fixes_letter_case_without_losing_files(
    repo: Repo, mirror: Path, workspace: Path
) -> None:
    repo.write_many({"docs/guide.md": "guide", "docs/api.md": "api", "Main.py": "main"})
    head = repo.commit_push()
    # The workspace as someone uploaded it: same files, other letter case.
    (workspace / "Docs").mkdir()
    (workspace / "Docs" / "guide.md").write_text("guide")
    (workspace / "Docs" / "API.md").write_text("old api")
    (workspace / "main.py").write_text("main")
    result = sync(repo, mirror, workspace, base=None)
    assert (result.added, result.changed, result.deleted) == (0, 1, 0)
    assert_mirrors(repo, head, workspace)


# ---------------------------------------------------------------------------------- contents


def test_large_file_is_streamed(repo: Repo, mirror: Path, workspace: Path) -> None:
    # 20 MiB, every 64 KiB piece different (a misplaced piece would show), quick to compress.
    big = b"".join(f"{n:08d}".encode() * 8192 for n in range(320))
    repo.write_many({"big.bin": big, "small.txt": "s"})
    head = repo.commit_push()
    fetched = engine.fetch(mirror, repo.url, "main", token=None)
    tracemalloc.start()
    try:
        result = engine.apply(mirror, fetched, workspace, base=None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.bytes_written == len(big) + 1
    assert peak < 8 * 1024 * 1024, f"peak Python memory {peak / 1e6:.1f} MB"
    assert_mirrors(repo, head, workspace)


def test_type_changes_file_to_folder_and_back(repo: Repo, mirror: Path, workspace: Path) -> None:
    repo.write_many({"a": "file a", "b/inner.txt": "in b"})
    first = repo.commit_push()
    sync(repo, mirror, workspace, base=None)
    repo.remove("a")
    repo.remove("b")
    repo.write_many({"a/inner.txt": "a is a folder now", "b": "b is a file now"})
    second = repo.commit_push()
    result = sync(repo, mirror, workspace, base=first)
    assert result.mode == "incremental"
    assert_mirrors(repo, second, workspace)
    result = sync(repo, mirror, workspace, base=None)
    assert (result.mode, result.added, result.changed, result.deleted) == ("full", 0, 0, 0)
    # The same switch done by the full reconcile.
    repo.remove("a")
    repo.remove("b")
    repo.write_many({"a": "file again", "b/x.txt": "folder again"})
    third = repo.commit_push()
    sync(repo, mirror, workspace, base=None)
    assert_mirrors(repo, third, workspace)


def test_full_reconcile_overwrites_edits_and_removes_extras(
    repo: Repo, mirror: Path, workspace: Path
) -> None:
    repo.write_many(
        {"a.py": "a = 1\n", "lib/b.py": "b = 2\n", "lib/c.py": "c = 3\n", "same-size.txt": "abcd"}
    )
    head = repo.commit_push()
    sync(repo, mirror, workspace, base=None)
    (workspace / "a.py").write_text("a = 'edited by hand'\n")
    (workspace / "same-size.txt").write_text("wxyz")  # same size, other content
    (workspace / "lib" / "c.py").unlink()
    (workspace / "notes.txt").write_text("extra")
    (workspace / "scratch" / "deep").mkdir(parents=True)
    (workspace / "scratch" / "deep" / "x.txt").write_text("x")
    (workspace / "empty-folder").mkdir()
    (workspace / "lib" / f"{TEMP_PREFIX}deadbeef").write_text("a dead writer's temp")
    os.symlink("/etc/passwd", workspace / "lib" / "escape")
    result = sync(repo, mirror, workspace, base=None)
    assert (result.mode, result.added, result.changed, result.deleted) == ("full", 1, 2, 2)
    assert_mirrors(repo, head, workspace)
    assert Path("/etc/passwd").exists()


def test_preview_counts_and_writes_nothing(repo: Repo, mirror: Path, workspace: Path) -> None:
    repo.write_many({"same.txt": "same", "differs.txt": "new", "added.txt": "add", "dir/added2.txt": "add2"})
    head = repo.commit_push()
    engine.fetch(mirror, repo.url, "main", token=None)
    (workspace / "same.txt").write_text("same")
    (workspace / "differs.txt").write_text("old!")
    (workspace / "old").mkdir()
    (workspace / "old" / "x.txt").write_text("x")
    (workspace / "old" / "y.txt").write_text("y")
    (workspace / "stray.txt").write_text("z")
    before = {p: (v, os.lstat(workspace / p).st_mtime_ns) for p, v in snapshot(workspace).items()}
    preview = engine.preview(mirror, head, workspace)
    assert preview == engine.SyncPreview(
        commit=head,
        add=2,
        overwrite=1,
        delete=3,
        unchanged=1,
        overwrite_paths=["differs.txt"],
        delete_paths=["old/x.txt", "old/y.txt", "stray.txt"],
    )
    after = {p: (v, os.lstat(workspace / p).st_mtime_ns) for p, v in snapshot(workspace).items()}
    assert after == before
    assert not (mirror / "slipway-state.json").exists() or engine.last_synced(mirror, workspace) is None
    result = engine.apply(mirror, head, workspace, base=None)
    assert (result.added, result.changed, result.deleted) == (2, 1, 3)
    assert_mirrors(repo, head, workspace)


def test_fs_operations_grow_with_the_change_not_the_repository(
    repo: Repo, mirror: Path, workspace: Path
) -> None:
    repo.write_many({f"pkg{n % 20:02d}/mod{n % 7}/file{n:04d}.py": f"value = {n}\n" * 5 for n in range(2000)})
    first = repo.commit_push()
    # Eight threads, as on Azure Files (a local disk gets one by default).
    full = sync(repo, mirror, workspace, base=None, workers=8)
    assert full.added == 2000
    assert_mirrors(repo, first, workspace)
    (workspace / "pkg03" / "mod3" / "file0003.py").write_text("drift")
    (workspace / "pkg04" / "extra.txt").write_text("extra")
    drift = sync(repo, mirror, workspace, base=None, workers=8)
    assert (drift.mode, drift.added, drift.changed, drift.deleted) == ("full", 0, 1, 1)
    assert_mirrors(repo, first, workspace)
    changed = [f"pkg{n % 20:02d}/mod{n % 7}/file{n:04d}.py" for n in range(0, 2000, 200)]
    for path in changed:
        repo.write(path, "changed\n")
    second = repo.commit_push()
    result = sync(repo, mirror, workspace, base=first)
    assert (result.mode, result.changed) == ("incremental", 10)
    assert result.fs_operations < 100, result.fs_operations
    assert_mirrors(repo, second, workspace)


def test_failure_while_staging_in_parallel_leaves_the_workspace_as_it_was(
    repo: Repo, mirror: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.write_many({f"d{n % 9}/f{n}.txt": f"old {n}" for n in range(300)})
    first = repo.commit_push()
    sync(repo, mirror, workspace, base=None, workers=8)
    repo.write_many({f"d{n % 9}/f{n}.txt": f"new {n}" for n in range(300)})
    repo.write_many({f"new{n % 5}/g{n}.txt": "g" for n in range(100)})
    second = repo.commit_push()
    before = snapshot(workspace)
    real = fail_nth_write(monkeypatch, 250, OSError(5, "Input/output error"))
    with pytest.raises(engine.SyncError, match="Input/output error"):
        sync(repo, mirror, workspace, base=first, workers=8)
    assert snapshot(workspace) == before
    monkeypatch.setattr(FS, "write_all", real)
    result = sync(repo, mirror, workspace, base=first, workers=8)
    assert (result.mode, result.changed, result.added) == ("incremental", 300, 100)
    assert_mirrors(repo, second, workspace)


# ---------------------------------------------------------------------------------- failures


def test_failure_while_staging_leaves_the_workspace_as_it_was(
    repo: Repo, mirror: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.write_many({"a.txt": "a", "b.txt": "b"})
    first = repo.commit_push()
    sync(repo, mirror, workspace, base=None)
    repo.write_many({"a.txt": "a2", "new/dir/c.txt": "c", "new/d.txt": "d"})
    repo.remove("b.txt")
    second = repo.commit_push()
    before = snapshot(workspace)
    real = fail_nth_write(monkeypatch, 3, OSError(28, "No space left on device"))
    with pytest.raises(engine.SyncError, match="No space left"):
        sync(repo, mirror, workspace, base=first)
    assert snapshot(workspace) == before
    monkeypatch.setattr(FS, "write_all", real)
    result = sync(repo, mirror, workspace, base=first)
    assert result.mode == "incremental"  # nothing was left half-done
    assert_mirrors(repo, second, workspace)


def test_apply_interrupted_in_phase_two_is_completed_by_the_next(
    repo: Repo, mirror: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.write_many({"a.txt": "a", "b.txt": "b", "c.txt": "c", "d/e.txt": "e"})
    first = repo.commit_push()
    sync(repo, mirror, workspace, base=None)
    repo.write_many({"a.txt": "a2", "b.txt": "b2", "c.txt": "c2", "f/g.txt": "g"})
    repo.remove("d")
    second = repo.commit_push()
    real = FS.rename
    calls = {"n": 0}

    def failing(self: FS, *args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(5, "Input/output error")
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(FS, "rename", failing)
    with pytest.raises(engine.SyncError, match="half-way"):
        sync(repo, mirror, workspace, base=first)
    assert engine.last_synced(mirror, workspace) == first
    assert (workspace / UNFINISHED).is_dir()
    monkeypatch.setattr(FS, "rename", real)
    # The caller still holds the old base; the marker in the workspace (not the mirror's
    # state, which another instance would not have) says the apply did not finish.
    (mirror / "slipway-state.json").unlink()
    result = sync(repo, mirror, workspace, base=first)
    assert result.mode == "full"
    assert_mirrors(repo, second, workspace)
    assert temps(workspace) == []
    assert engine.last_synced(mirror, workspace) == second


def test_apply_killed_mid_way_is_completed_by_the_next(repo: Repo, mirror: Path, workspace: Path) -> None:
    repo.write_many({f"f{n}.txt": f"old {n}" for n in range(10)})
    first = repo.commit_push()
    sync(repo, mirror, workspace, base=None)
    repo.write_many({f"f{n}.txt": f"new {n}" for n in range(10)})
    repo.write("sub/new.txt", "new")
    second = repo.commit_push()
    head = engine.fetch(mirror, repo.url, "main", token=None)
    child = textwrap.dedent(
        f"""
        import os, signal, sys
        from pathlib import Path
        from slipway.gitsync import engine
        from slipway.gitsync.apply import FS
        real = FS.rename
        calls = [0]
        def rename(self, *args, **kwargs):
            calls[0] += 1
            if calls[0] == 4:
                os.kill(os.getpid(), signal.SIGKILL)
            real(self, *args, **kwargs)
        FS.rename = rename
        engine.apply(Path({str(mirror)!r}), {head!r}, Path({str(workspace)!r}), base={first!r})
        """
    )
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, timeout=60, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    assert temps(workspace), "the killed apply should have left temps behind"
    result = engine.apply(mirror, head, workspace, base=first)
    assert result.mode == "full"
    assert_mirrors(repo, second, workspace)
    assert temps(workspace) == []


# ---------------------------------------------------------------------------------- command line


def test_cli_sync(
    repo: Repo,
    tmp_path: Path,
    workspace: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo.write_many({"a.py": "a", "lib/b.py": "b"})
    first = repo.commit_push()
    mirror = tmp_path / "cli-mirror"
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    args = ["sync", "--repo", repo.url, "--branch", "main", "--dest", str(workspace), "--mirror", str(mirror)]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "full" in out and first[:12] in out and "2 added" in out
    assert_mirrors(repo, first, workspace)

    repo.write("c.py", "c")
    second = repo.commit_push()
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "incremental" in out and second[:12] in out and "1 added" in out
    assert_mirrors(repo, second, workspace)

    monkeypatch.setenv("MY_TOKEN", TOKEN)
    bad = ["sync", "--repo", (tmp_path / "nope.git").as_uri(), "--branch", "main", "--dest", str(workspace)]
    code = cli.main([*bad, "--mirror", str(tmp_path / "m2"), "--token-env", "MY_TOKEN"])
    captured = capsys.readouterr()
    assert code != 0 and "slipway sync:" in captured.err
    assert TOKEN not in captured.err + captured.out


def test_the_exec_bit_follows_every_commit_in_full_and_incremental_syncs(
    repo: Repo, mirror: Path, workspace: Path
) -> None:
    repo.write_many({"deploy.sh": "echo deploy\n", "tools/lint.sh": "echo lint\n", "notes.txt": "n\n"})
    commits = [repo.commit_push("plain")]
    for flips in (("deploy.sh",), ("deploy.sh", "tools/lint.sh"), ("tools/lint.sh", "notes.txt")):
        for path in flips:
            (repo.work / path).chmod((repo.work / path).stat().st_mode ^ 0o111)
        commits.append(repo.commit_push("modes " + " ".join(flips)))
    for mode in ("full", "incremental"):
        sync(repo, mirror, workspace, base=None)
        last = commits[-1]
        # Every transition between commits, both ways, as force pushes back and forth would do.
        for target in [*commits, *reversed(commits)]:
            repo.reset_to(target)
            result = sync(repo, mirror, workspace, base=last if mode == "incremental" else None)
            assert_mirrors(repo, target, workspace)
            last = result.after


def test_a_push_over_hand_edited_files_reports_the_drift_and_repairs_it(
    repo: Repo, mirror: Path, workspace: Path
) -> None:
    repo.write_many({"flow.py": "print(1)\n", "lib/util.py": "x = 1\n", "other.py": "o\n", "gone.py": "g\n"})
    first = repo.commit_push("one")
    sync(repo, mirror, workspace, base=None)
    (workspace / "flow.py").write_text("print('edited by hand')\n")
    (workspace / "gone.py").unlink()
    repo.write("flow.py", "print(2)\n")
    repo.remove("gone.py")
    repo.write("new.py", "n\n")
    second = repo.commit_push("two")
    result = sync(repo, mirror, workspace, base=first)
    assert sorted(result.drift) == ["flow.py", "gone.py"]
    assert result.mode == "full"
    assert_mirrors(repo, second, workspace)

    # Without hand edits a push stays incremental and reports none.
    repo.write("lib/util.py", "x = 2\n")
    third = repo.commit_push("three")
    result = sync(repo, mirror, workspace, base=second)
    assert (result.mode, result.drift) == ("incremental", [])
    assert_mirrors(repo, third, workspace)
