"""A sync killed with SIGKILL at many points of fetch, staging and commit, then run again.

A real `slipway sync` process brings a workspace from commit A (1,000 files) to commit B
(every file changed, some deleted, some added). One uninterrupted run is timed; then, for
kill points spread over that time, a fresh copy of the synced-A workspace and mirror is
synced and killed. Each time no file may be torn (every file holds A's or B's version of its
path, whole), and the next sync must leave exactly B: no file, folder or temp file more.
`HYPOTHESIS_PROFILE=long` tries 40 kill points instead of 10.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from gitrepos import Repo, assert_mirrors, snapshot

from slipway.workspace.paths import TEMP_PREFIX

POINTS = 40 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 10


def _sync_command(repo: Repo, workspace: Path, mirror: Path) -> list[str]:
    return [
        sys.executable, "-m", "slipway.cli", "sync", "--repo", repo.url, "--branch", "main",
        "--dest", str(workspace), "--mirror", str(mirror),
    ]  # fmt: skip


def test_a_sync_killed_anywhere_tears_no_file_and_the_next_one_completes_exactly(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo")
    a = {f"flows/{n % 30:02d}/file-{n:04d}.txt": f"A {n}\n" * 60 for n in range(1000)}
    repo.write_many(a)
    first = repo.commit_push("A")
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_TOKEN"}
    template, template_mirror = tmp_path / "synced-a", tmp_path / "mirror-a"
    subprocess.run(_sync_command(repo, template, template_mirror), env=env, check=True, capture_output=True)
    assert_mirrors(repo, first, template)

    b = {path: f"B {n}\n" * 61 for n, path in enumerate(a) if n % 10}
    b.update({f"added/{n:03d}.txt": f"new {n}\n" for n in range(200)})
    for n, path in enumerate(a):
        if n % 10 == 0:
            repo.remove(path)
    repo.write_many(b)
    second = repo.commit_push("B")

    def fresh(tag: str) -> tuple[Path, Path]:
        workspace, mirror = tmp_path / f"ws-{tag}", tmp_path / f"mirror-{tag}"
        shutil.copytree(template, workspace)
        shutil.copytree(template_mirror, mirror, symlinks=True)
        return workspace, mirror

    workspace, mirror = fresh("timed")
    started = time.monotonic()
    subprocess.run(_sync_command(repo, workspace, mirror), env=env, check=True, capture_output=True)
    whole = time.monotonic() - started
    assert_mirrors(repo, second, workspace)

    torn: list[str] = []
    for point in range(POINTS):
        workspace, mirror = fresh(str(point))
        child = subprocess.Popen(_sync_command(repo, workspace, mirror), env=env, stdout=subprocess.DEVNULL)
        time.sleep(whole * point / POINTS)
        child.send_signal(signal.SIGKILL)
        child.wait()
        for path, entry in snapshot(workspace).items():
            if entry[0] != "file" or path.rsplit("/", 1)[-1].startswith(TEMP_PREFIX):
                continue
            content = entry[1].decode()
            if content not in (a.get(path), b.get(path)):
                torn.append(f"point {point}: {path}")
        subprocess.run(_sync_command(repo, workspace, mirror), env=env, check=True, capture_output=True)
        assert_mirrors(repo, second, workspace)
        leftovers = [p for p in snapshot(workspace) if TEMP_PREFIX in p]
        assert leftovers == [], f"point {point}: {leftovers[:5]}"
        shutil.rmtree(workspace)
        shutil.rmtree(mirror)
    assert torn == []
