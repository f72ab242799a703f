"""The sync engine: fetch a branch into a bare mirror on local disk, mirror its tree into the workspace.

``fetch`` brings ``refs/heads/<branch>`` into the mirror (the first time only the head commit,
later the commits since, so the last synced commit stays an ancestor of the new head).
``apply`` makes the workspace equal the commit's tree, rsync-style:

* **incremental** when ``base`` is in the mirror, is an ancestor of the head, and the last
  apply to this workspace finished: the change set comes from ``git diff-tree -M`` (the
  plumbing form of ``git diff --name-status -M``, with modes and blob ids), so the number of
  file-system calls on the workspace grows with the change, not with the repository;
* **full** otherwise (first sync, force push, unknown base, or an apply that stopped
  half-way): the head tree is compared with the workspace by content (git blob ids of the
  workspace files; sizes first, never mtimes), only differing files are written, and
  everything the tree does not hold is removed, Slipway's stray temp files included.

Symbolic links, submodules and names Azure Files refuses are skipped with a warning each
(what the workspace has at such a path is left alone); paths differing only in case refuse
the whole tree before anything is touched. ``preview`` says what a full sync would do.

The mirror keeps, per workspace, the last commit applied and whether an apply is unfinished
(``last_synced``); ``sync`` is fetch + apply for the command line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import time
from pathlib import Path

from slipway.gitsync.apply import (
    CHUNK,
    FS,
    Applier,
    Delete,
    Dirs,
    FullPlanner,
    Move,
    Plan,
    StageFailed,
    Write,
    blob_id,
    clear_unfinished,
    is_unfinished,
    mark_unfinished,
    open_root,
    workers_for,
)
from slipway.gitsync.changes import (
    BranchNotFound,
    FetchError,
    SyncError,
    SyncPreview,
    SyncResult,
    TreeEntry,
    TreeRefused,
    Warnings,
    check_case,
    classify,
    folders_of,
)
from slipway.gitsync.mirror import (
    Git,
    check_branch,
    check_remote_url,
    ensure_mirror,
    fetch_branch,
    locked,
    read_state,
    safe_url,
    update_state,
    workspace_key,
)
from slipway.workspace.paths import TEMP_PREFIX

__all__ = [
    "BranchNotFound",
    "FetchError",
    "SyncError",
    "SyncPreview",
    "SyncResult",
    "TreeRefused",
    "apply",
    "discard_debris",
    "fetch",
    "last_synced",
    "preview",
    "sync",
]

PREVIEW_PATHS = 50


def fetch(mirror_dir: Path, remote_url: str, branch: str, *, token: str | None, timeout: float = 120) -> str:
    """Fetch the branch into the bare mirror ``mirror_dir`` (made on first use); returns its head commit.

    ``FetchError`` for network, authentication and remote failures (worth retrying),
    ``BranchNotFound`` when the remote has no such branch. No message holds the token.
    """
    check_remote_url(remote_url)
    check_branch(branch)
    git = Git(Path(mirror_dir), token=token)
    try:
        with locked(git.git_dir):
            return fetch_branch(git, remote_url, branch, timeout=timeout)
    except OSError as exc:
        raise FetchError(
            git.scrub(f"cannot use the mirror folder {mirror_dir}: {exc.strerror or exc}")
        ) from None


def remote_head(
    mirror_dir: Path, remote_url: str, branch: str, *, token: str | None, timeout: float = 30
) -> str:
    """The branch's head commit on the remote (``git ls-remote``), without fetching anything.

    Cheap enough to ask every few minutes: it catches pushes whose webhook never arrived.
    """
    check_remote_url(remote_url)
    check_branch(branch)
    git = Git(Path(mirror_dir), token=token)
    ensure_mirror(git)
    where = safe_url(remote_url)
    try:
        done = git.run(["ls-remote", "--end-of-options", remote_url, f"refs/heads/{branch}"], timeout=timeout)
    except TimeoutError:
        raise FetchError(f"asking {where} for its head timed out after {timeout:.0f} s") from None
    if done.returncode != 0:
        raise FetchError(
            f"asking {where} for its head failed: {git.scrub(done.stderr.decode(errors='replace')[-500:])}"
        )
    for line in done.stdout.decode(errors="replace").splitlines():
        sha, _, ref = line.partition("\t")
        if ref == f"refs/heads/{branch}":
            return sha
    raise BranchNotFound(f"branch {branch!r} does not exist in {where}")


def apply(
    mirror_dir: Path, commit: str, workspace: Path, *, base: str | None, workers: int | None = None
) -> SyncResult:
    """Make ``workspace`` equal the tree of ``commit`` (which must be in the mirror).

    ``workers``: threads for the file operations; by default 8 on a network file system
    (Azure Files), 1 on a local disk.
    """
    started = time.monotonic()
    git = Git(Path(mirror_dir))
    workspace = Path(workspace)
    workers = workers or workers_for(workspace)
    head = git.resolve(commit)
    if head is None:
        raise SyncError(f"commit {commit[:40]!r} is not in the mirror; fetch it first")
    fs = FS()
    with locked(git.git_dir):
        root_fd = open_root(fs, workspace)
        dirs = Dirs(fs, root_fd)
        try:
            known_base = git.resolve(base) if base else None
            incremental = (
                known_base is not None
                and git.is_ancestor(known_base, head)
                # An apply that stopped half-way (here or on another instance): full compare.
                and not is_unfinished(fs, root_fd)
            )
            warnings = Warnings()
            # Full: every skipped entry is reported; incremental: those in the change only.
            entries, protected = _tree(
                git, head, sizes=not incremental, warnings=None if incremental else warnings
            )
            check_case([e.parts for e in entries], folders_of([e.parts for e in entries]))
            drift: list[str] = []
            if incremental:
                assert known_base is not None
                plan = _plan_incremental(git, known_base, head, entries, warnings)
                drift = _drifted(git, known_base, head, workspace)
                if drift:
                    # Hand edits where the change lands: compare everything instead, so the
                    # push neither keeps them silently nor fails over them.
                    incremental = False
                    warnings = Warnings()
                    entries, protected = _tree(git, head, sizes=True, warnings=warnings)
            if not incremental:
                plan = FullPlanner(fs, dirs, entries, protected, workers=workers, listing=False).run()
                plan.warnings = warnings
            applier = Applier(fs, dirs, git, workers=workers)
            if not plan.empty:
                mark_unfinished(fs, root_fd)
                try:
                    applier.stage(plan)
                except StageFailed as exc:
                    if exc.clean:
                        clear_unfinished(fs, root_fd)
                    raise
                applier.commit(plan)
                clear_unfinished(fs, root_fd)
            elif not incremental:
                clear_unfinished(fs, root_fd)  # a full compare found nothing left to do
            update_state(git.git_dir, workspace, commit=head)
        finally:
            dirs.close_all()
            fs.close(root_fd)
    outcome = applier.outcome
    return SyncResult(
        before=known_base if incremental else None,
        after=head,
        mode=plan.mode,
        added=outcome.added,
        changed=outcome.changed,
        deleted=outcome.deleted,
        bytes_written=outcome.bytes_written,
        fs_operations=fs.ops,
        warnings=plan.warnings.as_list(),
        duration_ms=int((time.monotonic() - started) * 1000),
        renamed=outcome.renamed,
        drift=drift,
    )


def preview(mirror_dir: Path, commit: str, workspace: Path) -> SyncPreview:
    """What a full sync to ``commit`` would add, overwrite, delete and leave; writes nothing."""
    git = Git(Path(mirror_dir))
    head = git.resolve(commit)
    if head is None:
        raise SyncError(f"commit {commit[:40]!r} is not in the mirror; fetch it first")
    entries, protected = _tree(git, head, sizes=True, warnings=None)
    check_case([e.parts for e in entries], folders_of([e.parts for e in entries]))
    fs = FS()
    root_fd = open_root(fs, Path(workspace))
    dirs = Dirs(fs, root_fd)
    try:
        plan = FullPlanner(
            fs, dirs, entries, protected, workers=workers_for(Path(workspace)), listing=True
        ).run()
    finally:
        dirs.close_all()
        fs.close(root_fd)
    overwrite = sorted(w.path for w in plan.writes if w.replaces)
    deleted = sorted(plan.deleted_paths)
    return SyncPreview(
        commit=head,
        add=sum(1 for w in plan.writes if not w.replaces),
        overwrite=len(overwrite),
        delete=len(deleted),
        unchanged=plan.unchanged,
        overwrite_paths=overwrite[:PREVIEW_PATHS],
        delete_paths=deleted[:PREVIEW_PATHS],
    )


def sync(
    mirror_dir: Path,
    remote_url: str,
    branch: str,
    workspace: Path,
    *,
    token: str | None,
    base: str | None,
    timeout: float = 120,
) -> SyncResult:
    """Fetch the branch, then apply its head to the workspace."""
    head = fetch(mirror_dir, remote_url, branch, token=token, timeout=timeout)
    return apply(mirror_dir, head, workspace, base=base)


def discard_debris(workspace: Path) -> int:
    """Remove what interrupted applies left in ``workspace`` (staged temp files and folders,
    the unfinished marker); the number of entries removed.

    For a workspace no sync will complete any more (a disconnect, an undone connect): a sync
    that runs clears them itself. Walks the whole workspace, once.
    """
    removed = 0
    for folder, dirnames, filenames in os.walk(workspace):
        for name in [d for d in dirnames if d.startswith(TEMP_PREFIX)]:
            dirnames.remove(name)
            shutil.rmtree(Path(folder) / name, ignore_errors=True)
            removed += 1
        for name in filenames:
            if name.startswith(TEMP_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    (Path(folder) / name).unlink()
                    removed += 1
    return removed


def last_synced(mirror_dir: Path, workspace: Path) -> str | None:
    """The commit the last finished apply through this mirror put into ``workspace``, or None.

    A later apply that stopped half-way leaves a marker in the workspace itself, so passing
    this as ``base`` then still gives a full reconcile.
    """
    record = read_state(Path(mirror_dir)).get(workspace_key(Path(workspace))) or {}
    commit = record.get("commit")
    return commit if isinstance(commit, str) and commit else None


# ---------------------------------------------------------------------------------- helpers


def _tree(
    git: Git, head: str, *, sizes: bool, warnings: Warnings | None
) -> tuple[list[TreeEntry], set[tuple[str, ...]]]:
    """The head tree's files the share can hold, and the paths of those it cannot."""
    entries: list[TreeEntry] = []
    protected: set[tuple[str, ...]] = set()
    for mode, oid, size, raw in git.ls_tree(head, sizes=sizes):
        path, parts, why = classify(mode, raw)
        if why is None:
            entries.append(TreeEntry(path, parts, mode, oid, size))
        else:
            protected.add(parts)
            if warnings is not None:
                warnings.add(why)
    return entries, protected


def _drifted(git: Git, base: str, head: str, workspace: Path) -> list[str]:
    """Paths the change replaces, deletes or renames whose workspace file is not the base's
    blob (content, or exec bit): read only for the files the change touches."""
    drifted: list[str] = []
    for change in git.diff(base, head):
        if change.status not in "MTDR":
            continue
        path, _, why = classify(change.old_mode, change.src)
        if why is not None:
            continue
        target = workspace / path
        try:
            info = target.lstat()
            if not stat.S_ISREG(info.st_mode):
                drifted.append(path)
                continue
            with target.open("rb") as handle:
                digest = blob_id(
                    info.st_size, iter(lambda: handle.read(CHUNK), b""), long=len(change.old_oid) == 64
                )
        except FileNotFoundError:
            drifted.append(path)
            continue
        executable = bool(info.st_mode & stat.S_IXUSR)
        if digest != change.old_oid or executable != (change.old_mode == "100755"):
            drifted.append(path)
    return drifted


def _plan_incremental(git: Git, base: str, head: str, entries: list[TreeEntry], warnings: Warnings) -> Plan:
    plan = Plan("incremental", keep=folders_of([e.parts for e in entries]), warnings=warnings)
    for change in git.diff(base, head):
        if change.status in "AMTC":
            path, parts, why = classify(change.new_mode, change.dst)
            if why is not None:
                warnings.add(why)
                continue
            entry = TreeEntry(path, parts, change.new_mode, change.new_oid, -1)
            plan.writes.append(Write(parts[:-1], parts[-1], entry, replaces=change.status in "MT"))
        elif change.status == "D":
            path, parts, why = classify(change.old_mode, change.src)
            if why is None:
                plan.deletes.append(Delete(parts[:-1], parts[-1], "file", path))
        elif change.status == "R":
            src_path, src, src_why = classify(change.old_mode, change.src)
            dst_path, dst, dst_why = classify(change.new_mode, change.dst)
            entry = TreeEntry(dst_path, dst, change.new_mode, change.new_oid, -1)
            if dst_why is not None:
                warnings.add(dst_why)
            if change.score == 100 and src_why is None and dst_why is None:
                # One rename: also the only safe way for FOO -> foo on a case-insensitive share.
                plan.moves.append(Move(src[:-1], src[-1], dst[:-1], dst[-1], entry=entry))
                continue
            if src_why is None:
                plan.deletes.append(Delete(src[:-1], src[-1], "file", src_path))
            if dst_why is None:
                plan.writes.append(Write(dst[:-1], dst[-1], entry, replaces=False))
        else:
            raise SyncError(
                f"git reported an unexpected change {change.status!r} between {base[:12]} and {head[:12]}"
            )
    return plan
