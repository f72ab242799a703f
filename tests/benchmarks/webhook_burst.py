"""Webhook under load: a burst of signed push deliveries while commits are pushed.

Not part of the test run: `.venv/bin/python tests/benchmarks/webhook_burst.py` (options
`--deliveries N` (1000), `--clients C` (20), `--commits K` (10), `--duplicates F` (0.3)).
Against a real `slipway dev` (its own Azurite), the fake GitHub REST API and a real git
remote on disk, it sends N signed deliveries from C concurrent clients, a fraction F of them
re-sending an earlier delivery id (GitHub's retries, "Redeliver"), while K commits are pushed
one after another; each delivery names the newest commit pushed when it is sent. Reported:

- the webhook's answer time p50 / p99 / max, and how many took longer than GitHub's 10 s,
  beside `GET /api/health` timed the same way just before the burst (the ratio of p50s);
- the sync passes the orchestration ran (the runner's "sync pass" log lines) against the
  commits pushed, the journal rows, whether each commit was journaled at most once, whether
  two syncs' time spans overlapped, and whether the workspace ends equal to the last commit.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakes.github import FakeGitHub, FakeToken
from gitrepos import Repo, assert_mirrors
from runner_process import start_runner

from slipway.gitsync.signature import sign

TOKEN = "github_pat_bench_0123456789abcdef0123"
PUBLIC = "https://slipway.example.test"


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--commits", type=int, default=10)
    parser.add_argument("--duplicates", type=float, default=0.3)
    args = parser.parse_args()

    with TemporaryDirectory() as scratch, FakeGitHub() as github:
        root = Path(scratch)
        root.chmod(0o755)  # workflow steps run as another user, who must reach the data folder
        repo = Repo(root / "repo")
        repo.write_many({f"workflows/flow-{n}.py": f"print({n})\n" for n in range(50)})
        repo.commit_push("first")
        remotes = root / "remotes"
        (remotes / "octo").mkdir(parents=True)
        (remotes / "octo" / "flows.git").symlink_to(repo.bare, target_is_directory=True)
        github.tokens[TOKEN] = FakeToken()
        github.add_repo("octo/flows", branches={"main": repo.head()})
        runner = start_runner(
            root,
            extra_env={
                "SLIPWAY_GITHUB_API_URL": github.url,
                "SLIPWAY_GITHUB_WEB_URL": remotes.as_uri(),
                "SLIPWAY_PUBLIC_BASE_URL": PUBLIC,
            },
        )
        try:
            runner.remove_example()
            http = httpx.Client(base_url=runner.url, timeout=60)
            connected = http.post(
                "/api/github/connect", json={"repository": "octo/flows", "branch": "main", "token": TOKEN}
            )
            connected.raise_for_status()
            secret = str(next(iter(github.repos["octo/flows"].hooks.values()))["config"]["secret"])

            health: list[float] = []
            for _ in range(100):
                started = time.perf_counter()
                http.get("/api/health").raise_for_status()
                health.append(time.perf_counter() - started)

            heads = [repo.head()]
            lock = threading.Lock()
            pushing_done = threading.Event()

            def pusher() -> None:
                for n in range(args.commits):
                    time.sleep(0.4)
                    repo.write(f"burst/commit-{n}.txt", f"commit {n}\n")
                    head = repo.commit_push(f"burst {n}")
                    with lock:
                        heads.append(head)
                pushing_done.set()

            sent: list[str] = []
            times: list[float] = []
            statuses: list[int] = []
            counter = itertools.count()
            rng = random.Random(7)

            def client() -> None:
                with httpx.Client(base_url=runner.url, timeout=60) as own:
                    while next(counter) < args.deliveries:
                        with lock:
                            before, after = heads[-2] if len(heads) > 1 else heads[0], heads[-1]
                            if sent and rng.random() < args.duplicates:
                                delivery = rng.choice(sent)
                            else:
                                delivery = str(uuid.uuid4())
                                sent.append(delivery)
                        body = json.dumps(
                            {"ref": "refs/heads/main", "before": before, "after": after, "deleted": False}
                        ).encode()
                        headers = {
                            "X-GitHub-Event": "push",
                            "X-GitHub-Delivery": delivery,
                            "X-GitHub-Hook-ID": "1",
                            "X-Hub-Signature-256": sign(secret, body),
                            "Content-Type": "application/json",
                        }
                        started = time.perf_counter()
                        answer = own.post("/api/github/webhook", content=body, headers=headers)
                        elapsed = time.perf_counter() - started
                        with lock:
                            times.append(elapsed)
                            statuses.append(answer.status_code)

            passes_before = runner.log.read_text().count("gitsync: sync pass")
            threads = [threading.Thread(target=pusher)] + [
                threading.Thread(target=client) for _ in range(args.clients)
            ]
            burst_started = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            # The last push may land after the last delivery: GitHub would send one for it.
            body = json.dumps({"ref": "refs/heads/main", "before": heads[-2], "after": heads[-1]}).encode()
            http.post(
                "/api/github/webhook",
                content=body,
                headers={
                    "X-GitHub-Event": "push",
                    "X-GitHub-Delivery": str(uuid.uuid4()),
                    "X-Hub-Signature-256": sign(secret, body),
                    "Content-Type": "application/json",
                },
            )
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                sync = http.get("/api/github").json()["sync"]
                journal = http.get("/api/github/syncs?limit=500").json()["entries"]
                if sync["state"] == "idle" and any(e["after"] == heads[-1] for e in journal):
                    break
                time.sleep(0.5)
            settled = time.monotonic() - burst_started
            time.sleep(6)  # past the orchestration's linger: any further pass would show
            passes = runner.log.read_text().count("gitsync: sync pass") - passes_before
            journal = http.get("/api/github/syncs?limit=500").json()["entries"]
            pushes = [e for e in journal if e["trigger"] != "connect"]
            afters = [e["after"] for e in pushes if e["result"] == "succeeded"]
            spans = sorted(
                (
                    datetime.fromisoformat(e["at"].replace("Z", "+00:00"))
                    - timedelta(milliseconds=e["duration_ms"]),
                    datetime.fromisoformat(e["at"].replace("Z", "+00:00")),
                )
                for e in journal
            )
            overlaps = sum(1 for (_, end), (start, _) in itertools.pairwise(spans) if start < end)
            try:
                assert_mirrors(repo, "main", runner.workspace)
                final = "equal to the last commit"
            except AssertionError as exc:
                final = f"DIFFERENT: {exc}"
        finally:
            runner.stop()

    late = sum(1 for t in times if t > 10)
    print(
        f"deliveries: {len(times)} from {args.clients} clients, {len(sent)} distinct ids; statuses {sorted(set(statuses))}"
    )
    print(
        f"webhook answer: p50 {statistics.median(times) * 1000:.1f} ms, p99 {_quantile(times, 0.99) * 1000:.1f} ms,"
        f" max {max(times) * 1000:.1f} ms; {late} over 10 s"
    )
    print(
        f"reference GET /api/health alone: p50 {statistics.median(health) * 1000:.1f} ms;"
        f" webhook p50 / health p50 = {statistics.median(times) / statistics.median(health):.2f}"
    )
    print(
        f"commits pushed: {args.commits}; sync passes: {passes}; journal rows: {len(pushes)};"
        f" commits journaled more than once: {len(afters) - len(set(afters))}; overlapping syncs: {overlaps}"
    )
    print(f"settled {settled:.1f} s after the burst began; workspace {final}")


if __name__ == "__main__":
    main()
