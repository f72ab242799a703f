"""FileSecretStore: one owner-only JSON file, written atomically, never echoing values."""

from __future__ import annotations

import os
import stat
import threading
import traceback
from pathlib import Path

import pytest

from slipway.adapters.secrets import FileSecretStore, SecretStoreError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "secrets" / "secrets.json"


def test_the_file_is_created_owner_only_in_an_owner_only_folder(path: Path) -> None:
    FileSecretStore(path).set_secret("github-token", "ghp_s3cret")

    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700


def test_values_survive_a_new_store_on_the_same_path(path: Path) -> None:
    FileSecretStore(path).set_secret("github-token", "ghp_s3cret")
    FileSecretStore(path).set_secret("api-key", "k3y")

    again = FileSecretStore(path)
    assert again.get_secret("github-token") == "ghp_s3cret"
    assert again.get_secret("api-key") == "k3y"
    assert again.get_secret("never-set") is None


def test_a_file_readable_by_others_is_refused_with_the_chmod_to_run_and_not_read(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    FileSecretStore(path).set_secret("github-token", "ghp_s3cret")
    path.chmod(0o644)
    reads: list[Path] = []
    real_read_text = Path.read_text

    def spy(self: Path, *args: object, **kwargs: object) -> str:
        reads.append(self)
        return real_read_text(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", spy)

    with pytest.raises(SecretStoreError) as raised:
        FileSecretStore(path).get_secret("github-token")

    assert f"chmod 600 {path}" in str(raised.value)
    assert "ghp_s3cret" not in str(raised.value)
    assert path not in reads


@pytest.mark.parametrize(
    "content",
    [
        b'{"github-token": "ghp_s3cret"',  # cut short mid-write
        b"github-token=ghp_s3cret\n",  # not JSON at all
        b'["ghp_s3cret"]',  # JSON, but not an object
        b'{"github-token": {"value": "ghp_s3cret"}}',  # an object, but not of strings
        b'{"github-token": "ghp_s3cret\xff"}',  # not UTF-8
    ],
    ids=["truncated", "not-json", "list", "nested", "not-utf8"],
)
def test_a_corrupt_file_names_the_path_without_echoing_its_content(path: Path, content: bytes) -> None:
    path.parent.mkdir(mode=0o700)
    path.write_bytes(content)
    path.chmod(0o600)

    with pytest.raises(SecretStoreError) as raised:
        FileSecretStore(path).get_secret("github-token")

    assert str(path) in str(raised.value)
    # Not in the message, nor anywhere in the traceback a log would show.
    assert "ghp_s3cret" not in "".join(traceback.format_exception(raised.value))


def test_concurrent_sets_from_eight_threads_lose_no_update(path: Path) -> None:
    store = FileSecretStore(path)
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            start.wait()
            for i in range(10):
                store.set_secret(f"thread-{n}-secret-{i}", f"value-{n}-{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    again = FileSecretStore(path)
    for n in range(8):
        for i in range(10):
            assert again.get_secret(f"thread-{n}-secret-{i}") == f"value-{n}-{i}"


def test_a_crash_between_writing_and_renaming_keeps_the_old_content_and_no_temp_file(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileSecretStore(path)
    store.set_secret("github-token", "old")
    before = path.read_bytes()

    def crash(src: object, dst: object) -> None:
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        store.set_secret("github-token", "new")
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert FileSecretStore(path).get_secret("github-token") == "old"
    # Only the secrets file and its lock file: no temp file left behind.
    assert sorted(p.name for p in path.parent.iterdir()) == ["secrets.json", "secrets.json.lock"]


def _set_many(path: str, prefix: str) -> None:
    store = FileSecretStore(Path(path))
    for i in range(15):
        store.set_secret(f"{prefix}-{i}", str(i))


def test_two_processes_writing_the_same_file_lose_no_update(path: Path) -> None:
    import multiprocessing

    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_set_many, args=(str(path), f"p{n}")) for n in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    store = FileSecretStore(path)
    assert all(store.get_secret(f"p{n}-{i}") == str(i) for n in range(2) for i in range(15))
