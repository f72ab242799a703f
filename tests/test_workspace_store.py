"""The workspace store on a real folder: ETags, conflicts, case rules, atomic writes, crashes."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from slipway.workspace.errors import (
    AlreadyExists,
    EtagMismatch,
    FileTooLarge,
    FolderNotEmpty,
    NameConflict,
    NotFound,
    PathRejected,
    PreconditionRequired,
)
from slipway.workspace.paths import parse_path
from slipway.workspace.store import WorkspaceStore


@pytest.fixture
def store(tmp_path: Path) -> WorkspaceStore:
    return WorkspaceStore(tmp_path, max_file_bytes=1024 * 1024)


def create(store: WorkspaceStore, path: str, data: bytes) -> str:
    return store.write_file(parse_path(path), data, if_match=None, if_none_match="*").entry.etag or ""


def test_tree_lists_folders_and_files_with_size_mtime_and_content_etag(store: WorkspaceStore) -> None:
    create(store, "workflows/hello.py", b"print('hi')\n")
    store.make_folder(parse_path("empty"))
    entries = {e.path: e for e in store.tree()}
    assert set(entries) == {"empty", "workflows", "workflows/hello.py"}
    hello = entries["workflows/hello.py"]
    assert hello.size == 12
    content = b"print('hi')\n"
    assert hello.etag == '"' + hashlib.sha256(content).hexdigest() + '"'
    assert hello.text is True
    assert entries["empty"].type == "folder"


def test_etag_in_the_tree_follows_a_change_made_outside_slipway(
    store: WorkspaceStore, tmp_path: Path
) -> None:
    create(store, "a.py", b"one")
    first = store.tree()[0].etag
    time.sleep(0.01)
    (tmp_path / "a.py").write_bytes(b"two")
    second = store.tree()[0].etag
    assert first != second
    assert second == store.read_file(("a.py",)).entry.etag


def test_update_needs_the_current_etag_and_a_stale_one_gets_etag_mismatch(store: WorkspaceStore) -> None:
    etag = create(store, "a.py", b"v1")
    new = store.write_file(("a.py",), b"v2", if_match=etag, if_none_match=None)
    assert new.old_etag == etag and not new.created
    with pytest.raises(EtagMismatch, match="changed by someone else"):
        store.write_file(("a.py",), b"v3", if_match=etag, if_none_match=None)
    assert store.read_file(("a.py",)).data == b"v2"


def test_a_write_without_a_precondition_is_refused(store: WorkspaceStore) -> None:
    with pytest.raises(PreconditionRequired, match="If-None-Match"):
        store.write_file(("a.py",), b"x", if_match=None, if_none_match=None)


def test_create_never_overwrites(store: WorkspaceStore) -> None:
    create(store, "a.py", b"mine")
    with pytest.raises(AlreadyExists):
        create(store, "a.py", b"theirs")
    assert store.read_file(("a.py",)).data == b"mine"


def test_a_name_differing_only_in_case_is_a_name_conflict(store: WorkspaceStore) -> None:
    create(store, "build.py", b"x")
    with pytest.raises(NameConflict, match=r"differs only in case from build\.py"):
        create(store, "Build.py", b"y")
    store.make_folder(("Lib",))
    with pytest.raises(NameConflict):
        store.make_folder(("lib",))
    with pytest.raises(NameConflict):
        create(store, "LIB/x.py", b"y")


def test_case_only_rename_is_one_rename(store: WorkspaceStore, tmp_path: Path) -> None:
    create(store, "FOO.py", b"content")
    store.move(("FOO.py",), ("foo.py",))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foo.py"]
    assert (tmp_path / "foo.py").read_bytes() == b"content"


def test_move_never_replaces_and_moves_folders_with_their_files(store: WorkspaceStore) -> None:
    create(store, "a/one.py", b"1")
    create(store, "b.py", b"2")
    with pytest.raises(AlreadyExists, match="moves never replace"):
        store.move(("b.py",), ("a", "one.py"))
    moved = store.move(("a",), ("lib", "a"))
    assert moved.type == "folder"
    assert store.read_file(parse_path("lib/a/one.py")).data == b"1"
    with pytest.raises(PathRejected, match="into itself"):
        store.move(("lib",), ("lib", "a", "deeper"))
    with pytest.raises(NotFound):
        store.move(("missing.py",), ("x.py",))


def test_a_folder_is_deleted_only_when_asked_recursively(store: WorkspaceStore, tmp_path: Path) -> None:
    create(store, "a/b/c.py", b"x")
    with pytest.raises(FolderNotEmpty):
        store.delete(("a",), recursive=False)
    store.delete(("a",), recursive=True)
    assert not (tmp_path / "a").exists()
    store.make_folder(("empty",))
    store.delete(("empty",), recursive=False)


def test_delete_with_a_stale_etag_keeps_the_file(store: WorkspaceStore) -> None:
    etag = create(store, "a.py", b"v1")
    store.write_file(("a.py",), b"v2", if_match=etag, if_none_match=None)
    with pytest.raises(EtagMismatch):
        store.delete(("a.py",), recursive=False, if_match=etag)
    assert store.read_file(("a.py",)).data == b"v2"


def test_binary_files_are_stored_untouched_and_flagged_not_text(store: WorkspaceStore) -> None:
    blob = bytes(range(256)) * 40
    create(store, "img/logo.png", blob)
    read = store.read_file(parse_path("img/logo.png"))
    assert read.data == blob
    assert read.entry.text is False
    create(store, "notes.md", "café ☕\n".encode())
    assert store.read_file(("notes.md",)).entry.text is True


def test_files_over_the_limit_are_refused(tmp_path: Path) -> None:
    store = WorkspaceStore(tmp_path, max_file_bytes=10)
    with pytest.raises(FileTooLarge, match="the limit is 10 bytes"):
        create(store, "big.txt", b"x" * 11)
    assert not (tmp_path / "big.txt").exists()


def test_executable_bit_survives_an_update(store: WorkspaceStore, tmp_path: Path) -> None:
    etag = create(store, "run.sh", b"#!/bin/sh\n")
    os.chmod(tmp_path / "run.sh", 0o755)  # noqa: S103 - the executable bit is the point
    store.write_file(("run.sh",), b"#!/bin/sh\necho hi\n", if_match=etag, if_none_match=None)
    assert os.stat(tmp_path / "run.sh").st_mode & 0o111


def test_two_writers_with_the_same_etag_exactly_one_wins(store: WorkspaceStore) -> None:
    etag = create(store, "shared.py", b"base")
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def writer(n: int) -> None:
        barrier.wait()
        try:
            store.write_file(("shared.py",), f"writer {n}".encode(), if_match=etag, if_none_match=None)
            outcomes.append(f"won {n}")
        except EtagMismatch:
            outcomes.append("412")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if o.startswith("won")]
    assert len(winners) == 1 and outcomes.count("412") == 7
    assert store.read_file(("shared.py",)).data == f"writer {winners[0].split()[1]}".encode()


CRASH_WRITER = """
import os, sys, time
from pathlib import Path
from slipway.workspace.store import WorkspaceStore

real_write, chunks = os.write, 0

def slow_write(fd, data):
    # Half of the new content is written when the parent is told to kill us.
    global chunks
    chunks += 1
    if chunks == 5:
        print("mid-write", flush=True)
        time.sleep(30)
    return real_write(fd, data)

os.write = slow_write
store = WorkspaceStore(Path(sys.argv[1]), max_file_bytes=64 * 1024 * 1024)
store.write_file(("big.bin",), bytes([int(sys.argv[2])]) * (8 * 1024 * 1024), if_match="*", if_none_match=None)
"""


def test_a_writer_killed_midway_leaves_the_old_content_never_a_torn_file(tmp_path: Path) -> None:
    store = WorkspaceStore(tmp_path, max_file_bytes=64 * 1024 * 1024)
    old = b"\x00" * (8 * 1024 * 1024)
    create(store, "big.bin", old)
    for version in (1, 2, 3):
        child = subprocess.Popen(
            [sys.executable, "-c", CRASH_WRITER, str(tmp_path), str(version)], stdout=subprocess.PIPE
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"mid-write"
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert (tmp_path / "big.bin").read_bytes() == old
    # A complete write afterwards replaces it whole.
    store.write_file(("big.bin",), b"\x07" * 10, if_match="*", if_none_match=None)
    assert (tmp_path / "big.bin").read_bytes() == b"\x07" * 10
    # Temp files the killed writers left are never listed.
    assert [e.path for e in store.tree()] == ["big.bin"]


def test_listing_removes_temp_files_of_dead_writers_but_not_of_live_ones(
    store: WorkspaceStore, tmp_path: Path
) -> None:
    create(store, "a.py", b"x")
    stale = tmp_path / ".slipway-tmp-dead"
    fresh = tmp_path / ".slipway-tmp-writing"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    assert [e.path for e in store.tree()] == ["a.py"]
    assert not stale.exists()
    assert fresh.exists()
