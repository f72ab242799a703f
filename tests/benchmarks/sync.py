"""Git sync benchmark: the engine against rsync on a generated repository.

Not part of the test run: `.venv/bin/python tests/benchmarks/sync.py`. It builds a repository
of 10,000 files (100 MB) with a bare remote, then measures in the same run:

1. the first sync into an empty workspace (``apply`` after the fetch) against
   ``rsync -a --delete`` from a checkout of the same commit into an empty folder
   (target: at most 1.5 times rsync's time);
2. a push changing 10 files: the wall time of ``apply`` after the fetch (target: under 1 s)
   and its file-system calls on the workspace (the engine's own count), against
   ``rsync -a --delete --checksum`` from the updated checkout: its time, and its system
   calls counted with strace (every file and descriptor call of all rsync processes, and
   those naming the destination).

Slipway flushes the new files to disk before renaming them (one ``syncfs`` for a large
batch, an fsync per file for a small one); rsync does not flush at all, so the figures are
also printed with a ``sync`` after rsync.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gitrepos import Repo, assert_mirrors

from slipway.gitsync import engine

FILES = 10_000
FOLDERS = 100
TOTAL_BYTES = 100 * 1024 * 1024
CHANGED = 10
WORDS = ("def", "return", "import", "workflow", "step", "shell", "deploy", "build", "if", "for", "in",
         "self", "context", "result", "yield", "print", "value", "config", "path", "name")  # fmt: skip


def generate(repo: Repo) -> list[str]:
    rng = random.Random(11)
    size = TOTAL_BYTES // FILES
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) + "\n" for _ in range(4000)]
    paths = []
    for n in range(FILES):
        path = f"pkg{n % FOLDERS:03d}/sub{(n // FOLDERS) % 5}/file{n:05d}.py"
        text = f"# {path}\n" + "".join(rng.choices(lines, k=size // 30))
        while len(text) < size:
            text += rng.choice(lines)
        repo.write(path, text[:size])
        paths.append(path)
    return paths


def timed(call):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def rsync(source: Path, dest: Path, *extra: str) -> float:
    argv = ["rsync", "-a", "--delete", "--exclude=/.git", *extra, f"{source}/", f"{dest}/"]
    elapsed, _ = timed(lambda: subprocess.run(argv, check=True))
    return elapsed


def strace_rsync(source: Path, dest: Path, log: Path, *extra: str) -> tuple[int, int] | None:
    """(all file and descriptor calls of every rsync process, those naming ``dest``), or None."""
    if shutil.which("strace") is None:
        return None
    argv = ["rsync", "-a", "--delete", "--exclude=/.git", *extra, f"{source}/", f"{dest}/"]
    subprocess.run(["strace", "-f", "-qq", "-o", str(log), "-e", "trace=%file,%desc", *argv], check=True)
    total = naming = 0
    with log.open(errors="replace") as lines:
        for line in lines:
            if "resumed>" in line or "+++" in line or "---" in line:
                continue
            total += 1
            naming += str(dest) in line
    return total, naming


def flush() -> float:
    elapsed, _ = timed(lambda: subprocess.run(["sync"], check=True))
    return elapsed


def first_sync_in_memory(repo: Repo, mirror: Path, head: str) -> float | None:
    """Best-of-three ratio of the same first sync with both targets on tmpfs, where no disk waits.

    Separates what the engine costs from what the disk costs: on disk Slipway flushes (syncfs)
    so that a crash cannot leave torn files, and rsync does not.
    """
    shm = Path("/dev/shm")
    if not shm.is_dir():
        return None
    with tempfile.TemporaryDirectory(prefix="slipway-sync-bench-", dir=shm) as raw:
        ours, theirs = [], []
        for turn in range(3):
            target = Path(raw) / f"s{turn}"
            target.mkdir()
            ours.append(timed(lambda target=target: engine.apply(mirror, head, target, base=None))[0])
            target = Path(raw) / f"r{turn}"
            target.mkdir()
            theirs.append(rsync(repo.work, target))
        return min(ours) / min(theirs)


def main() -> int:
    if shutil.which("rsync") is None:
        print("rsync is not installed (Debian package 'rsync'); it is needed for the comparison")
        return 1
    with tempfile.TemporaryDirectory(prefix="slipway-sync-bench-") as raw:
        root = Path(raw)
        repo = Repo(root / "repo")
        started = time.perf_counter()
        paths = generate(repo)
        repo.commit_push("generated")
        print(f"repository: {FILES:,} files, {TOTAL_BYTES / 2**20:.0f} MB in {FOLDERS} folders "
              f"(generated, committed and pushed in {time.perf_counter() - started:.1f} s)")  # fmt: skip
        mirror = root / "mirror.git"
        fetch_time, head = timed(lambda: engine.fetch(mirror, repo.url, "main", token=None))
        print(f"first fetch into the mirror (file://, depth 1): {fetch_time:.2f} s")
        flush()

        # (1) first sync into an empty folder: each tool three times, in the order S R R S S R,
        # so that neither gains from its turn (the disk settles after git's writes, and the
        # machine may be shared); the best of each is compared, every time is printed.
        slipway_times: list[float] = []
        rsync_times: list[float] = []
        rsync_flushed: list[float] = []
        workspace = rsync_dest = root
        for turn, tool in enumerate("SRRSSR"):
            target = root / f"first-{turn}"
            target.mkdir()
            flush()
            if tool == "S":
                elapsed, result = timed(lambda target=target: engine.apply(mirror, head, target, base=None))
                slipway_times.append(elapsed)
                workspace = target
            else:
                elapsed = rsync(repo.work, target)
                rsync_times.append(elapsed)
                rsync_flushed.append(elapsed + flush())
                rsync_dest = target
        assert_mirrors(repo, head, workspace)
        best_s, best_r = min(slipway_times), min(rsync_times)
        print()
        print(
            "(1) first sync into an empty folder (each three times, S R R S S R: the best, then every time)"
        )
        print(f"    slipway apply (full)       {best_s:6.2f} s   ({', '.join(f'{t:.2f}' for t in slipway_times)}) "
              f"{result.added:,} files, {result.bytes_written / 2**20:.0f} MB, {result.fs_operations:,} file-system calls")  # fmt: skip
        print(f"    rsync -a --delete          {best_r:6.2f} s   ({', '.join(f'{t:.2f}' for t in rsync_times)}); "
              f"with a sync after it {min(rsync_flushed):.2f} s")  # fmt: skip
        print(f"    ratio slipway / rsync      {best_s / best_r:6.2f}x  "
              f"({best_s / min(rsync_flushed):.2f}x against rsync + sync; target <= 1.5x)")  # fmt: skip
        memory_ratio = first_sync_in_memory(repo, mirror, head)
        if memory_ratio is not None:
            print(
                f"    on tmpfs (/dev/shm, no disk): slipway / rsync {memory_ratio:.2f}x (the rest on disk is the flush)"
            )

        drift_time, drift = timed(lambda: engine.apply(mirror, head, workspace, base=None))
        print(f"    full compare, nothing to change (drift check): {drift_time:.2f} s, "
              f"{drift.fs_operations:,} file-system calls")  # fmt: skip

        # (2) a push changing 10 files
        rsync_old = root / "rsync-old"
        subprocess.run(["cp", "-a", str(rsync_dest), str(rsync_old)], check=True)
        rng = random.Random(5)
        for path in rng.sample(paths, CHANGED):
            repo.write(path, f"# changed\nvalue = {rng.random()}\n")
        second = repo.commit_push("ten files")
        fetch_time, head2 = timed(lambda: engine.fetch(mirror, repo.url, "main", token=None))
        assert head2 == second
        flush()
        apply_time, result = timed(lambda: engine.apply(mirror, head2, workspace, base=head))
        assert result.mode == "incremental" and result.changed == CHANGED
        assert_mirrors(repo, head2, workspace)
        flush()
        rsync_time = rsync(repo.work, rsync_dest, "--checksum")
        counted = strace_rsync(repo.work, rsync_old, root / "strace.log", "--checksum")
        print()
        print(f"(2) a push changing {CHANGED} files (fetch {fetch_time:.2f} s, not counted below)")
        print(f"    slipway apply (incremental) {apply_time * 1000:7.1f} ms   "
              f"{result.fs_operations} file-system calls on the workspace (target < 1 s)")  # fmt: skip
        print(f"    rsync -a --delete --checksum {rsync_time * 1000:6.1f} ms")
        if counted is None:
            print("    rsync's calls: strace is not installed, not counted")
        else:
            total, naming = counted
            print(f"    rsync's calls (strace -f, %file + %desc, all processes): {total:,}; "
                  f"naming the destination: {naming:,}")  # fmt: skip
        print(f"\ntotal benchmark time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
