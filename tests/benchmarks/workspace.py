"""Workspace benchmark: tree, open and save over loopback HTTP, and the zip's speed and memory.

Not part of the test run. Run it with `make bench` (or `.venv/bin/python tests/benchmarks/workspace.py`).
It starts `slipway dev` on a generated workspace of 5,000 files (100 MB in total), then prints
p50/p99 of `GET /api/workspace/tree`, of opening and of saving a 10 KB file, and the throughput
and peak memory growth of the runner process while it streams the zip of the whole workspace.

Targets (issue 3): p99 under 50 ms for tree, open and save; the zip at 100 MB/s or more with
peak memory growth under 50 MB.
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from runner_process import start_runner

FILES = 5_000
FOLDERS = 50
TOTAL_BYTES = 100 * 1024 * 1024
ROUNDS = 200
WORDS = ("def", "return", "import", "workflow", "step", "shell", "deploy", "build", "if", "for", "in",
         "self", "context", "result", "yield", "print", "value", "config", "path", "name")  # fmt: skip


def generate(workspace: Path) -> None:
    rng = random.Random(7)
    size = TOTAL_BYTES // FILES
    for n in range(FILES):
        folder = workspace / f"pkg{n % FOLDERS:02d}" / f"mod{(n // FOLDERS) % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        length = 0
        while length < size:
            line = "    " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) + "\n"
            lines.append(line)
            length += len(line)
        (folder / f"file{n:04d}.py").write_text("".join(lines)[:size])


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    return f"p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   (n={len(ordered)})"


def timed(call) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    response = call()
    elapsed = time.perf_counter() - start
    assert response.status_code < 400, response.text
    return elapsed


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="slipway-bench-") as scratch:
        folder = Path(scratch)
        (folder / "workspace").mkdir()
        generate(folder / "workspace")
        runner = start_runner(folder)
        try:
            with httpx.Client(base_url=runner.url, timeout=120) as client:
                client.get("/api/workspace/tree")  # first listing hashes every file once
                tree = [timed(lambda: client.get("/api/workspace/tree")) for _ in range(ROUNDS)]
                entries = client.get("/api/workspace/tree").json()["entries"]
                files = [e["path"] for e in entries if e["type"] == "file"]
                print(f"workspace: {len(files)} files in {len(entries) - len(files)} folders")
                print(f"tree           {percentiles(tree)}")

                body = ("x = 1\n" * 1707)[:10240].encode()
                client.put(
                    "/api/workspace/files/bench/ten-kb.py", content=body, headers={"If-None-Match": "*"}
                )
                opened = [
                    timed(lambda: client.get("/api/workspace/files/bench/ten-kb.py")) for _ in range(ROUNDS)
                ]
                print(f"open 10 KB     {percentiles(opened)}")

                saves = []
                etag = client.get("/api/workspace/files/bench/ten-kb.py").headers["ETag"]
                for n in range(ROUNDS):
                    content = body[:-8] + f"{n:08d}".encode()
                    start = time.perf_counter()
                    response = client.put(
                        "/api/workspace/files/bench/ten-kb.py", content=content, headers={"If-Match": etag}
                    )
                    saves.append(time.perf_counter() - start)
                    assert response.status_code == 200, response.text
                    etag = response.headers["ETag"]
                print(f"save 10 KB     {percentiles(saves)}")

                pid = runner.process.pid
                baseline = rss_kb(pid)
                peak = [baseline]
                done = threading.Event()

                def sample() -> None:
                    while not done.is_set():
                        peak[0] = max(peak[0], rss_kb(pid))
                        time.sleep(0.002)

                sampler = threading.Thread(target=sample)
                sampler.start()
                start = time.perf_counter()
                received = 0
                with client.stream("GET", "/api/workspace/archive") as response:
                    for chunk in response.iter_bytes():
                        received += len(chunk)
                elapsed = time.perf_counter() - start
                done.set()
                sampler.join()
                source_mb = TOTAL_BYTES / (1024 * 1024)
                print(
                    f"zip            {source_mb:.0f} MB of files in {elapsed:.2f} s = {source_mb / elapsed:.0f} MB/s, "
                    f"zip size {received / (1024 * 1024):.1f} MB, "
                    f"peak memory growth {(peak[0] - baseline) / 1024:.1f} MB"
                )
        finally:
            runner.stop()


if __name__ == "__main__":
    main()
