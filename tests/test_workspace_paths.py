"""Hostile paths never reach outside the workspace: property test plus the known attacks."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slipway.workspace.errors import PathRejected, WorkspaceError
from slipway.workspace.paths import parse_path
from slipway.workspace.store import WorkspaceStore

SECRET = b"outside the workspace"


@contextlib.contextmanager
def _jail() -> Iterator[tuple[Path, Path, WorkspaceStore]]:
    base = Path(tempfile.mkdtemp(prefix="jail-"))
    try:
        yield _furnish(base)
    finally:
        shutil.rmtree(base)


def _furnish(base: Path) -> tuple[Path, Path, WorkspaceStore]:
    root, outside = base / "workspace", base / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    (root / "ok").mkdir()
    (root / "ok" / "file.txt").write_text("inside")
    os.symlink(outside, root / "escape")  # a link out of the root
    os.symlink("/etc", root / "etc-link")
    os.symlink("loop", root / "loop")  # a link to itself
    return root, outside, WorkspaceStore(root, max_file_bytes=1024)


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


def _everything_under(root: Path) -> list[Path]:
    return [Path(dirpath) / name for dirpath, dirs, files in os.walk(root) for name in dirs + files]


def _try_everything(store: WorkspaceStore, raw: str) -> list[bytes]:
    """Every store operation on ``raw``; returns whatever file content came back."""
    seen: list[bytes] = []
    try:
        parts = parse_path(raw)
    except PathRejected:
        return seen
    operations = [
        lambda: seen.append(store.read_file(parts).data),
        lambda: store.write_file(parts, b"written", if_match=None, if_none_match="*"),
        lambda: store.write_file(parts, b"updated", if_match="*", if_none_match=None),
        lambda: store.make_folder(parts),
        lambda: store.move(("ok", "file.txt"), parts),
        lambda: store.move(parts, ("moved-here",)),
        lambda: store.delete(parts, recursive=False),
    ]
    for operation in operations:
        with contextlib.suppress(WorkspaceError, OSError):
            operation()
    return seen


SEGMENTS = st.sampled_from(
    ["..", ".", "", "ok", "file.txt", "escape", "etc-link", "loop", "secret.txt", "passwd", "a", "é", "%2e%2e",
     "..\\..", "x\x00y", "CON", "nul.txt", "trail.", "trail ", "a:b", "new"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(SEGMENTS, min_size=1, max_size=5).map("/".join) | st.text(max_size=40))
def test_any_path_stays_inside_the_root_or_is_rejected(raw: str) -> None:
    with _jail() as (root, outside, store):
        before = _snapshot(outside)
        returned = _try_everything(store, raw)
        assert _snapshot(outside) == before, "something outside the workspace changed"
        assert SECRET not in returned, "a file outside the workspace was read"
        real_root = root.resolve()
        for path in _everything_under(root):
            if not path.is_symlink():
                assert path.resolve().is_relative_to(real_root)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("../outside/secret.txt", "'..' segments are not allowed"),
        ("ok/../../outside/secret.txt", "'..' segments are not allowed"),
        ("/etc/passwd", "absolute paths are not allowed"),
        ("ok\\..\\..\\secret.txt", "backslashes are not path separators"),
        ("ok/fi\x00le.txt", "control character"),
        ("ok//file.txt", "empty segment"),
        ("ok/", "empty segment"),
        ("./ok", "'.' segments are not allowed"),
        ("CON", "reserved device name"),
        ("ok/lpt1.txt", "reserved device name"),
        ("ok/name.", "ends with a dot or a space"),
        ("ok/name ", "ends with a dot or a space"),
        ("ok/a|b", "contains |"),
        ("ok/what?.py", "contains ?"),
        ("x" * 256, "the limit is 255"),
        ("/".join(["abcdefghij"] * 190), "Azure Files allows 2048"),
        (".slipway-tmp-1234", "reserved for Slipway's temporary files"),
    ],
)
def test_known_attacks_and_invalid_names_are_rejected_with_the_reason(raw: str, reason: str) -> None:
    with pytest.raises(PathRejected, match=reason.replace("?", r"\?").replace("|", r"\|")):
        parse_path(raw)


@pytest.mark.parametrize("raw", ["escape/secret.txt", "etc-link/passwd", "loop/x", "escape/new.txt"])
def test_symbolic_links_are_never_followed(raw: str) -> None:
    with _jail() as (_, outside, store):
        parts = parse_path(raw)
        with pytest.raises(PathRejected, match="symbolic link"):
            store.read_file(parts)
        with pytest.raises(PathRejected, match="symbolic link"):
            store.write_file(parts, b"x", if_match=None, if_none_match="*")
        assert not (outside / "new.txt").exists()


def test_percent_encoded_dots_are_just_characters(tmp_path: Path) -> None:
    store = WorkspaceStore(tmp_path, max_file_bytes=1024)
    store.write_file(parse_path("%2e%2e/x.txt"), b"literal", if_match=None, if_none_match="*")
    assert (tmp_path / "%2e%2e" / "x.txt").read_bytes() == b"literal"


def test_a_symlinked_root_is_still_the_root(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "mount")
    store = WorkspaceStore(tmp_path / "mount", max_file_bytes=1024)
    store.write_file(("a.txt",), b"x", if_match=None, if_none_match="*")
    assert (real / "a.txt").read_bytes() == b"x"
