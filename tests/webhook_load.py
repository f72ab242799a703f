"""A burst of signed push deliveries against a real `slipway dev` while commits are pushed.

Shared by tests/test_github_burst.py (a bounded burst, asserted) and
tests/benchmarks/webhook_burst.py (the full one, printed). Real pieces throughout: the runner
as a child process with its own Azurite, the fake GitHub REST API for what connect asks, and
a bare git remote on disk fetched over file://. Deliveries are GitHub's real push payload
(@octokit/webhooks-examples) with this repository's commits in ``before``/``after``,
signed with the secret the connect gave the fake's webhook.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import httpx
from fakes.github import FakeGitHub, FakeToken
from gitrepos import Repo, assert_mirrors
from runner_process import REPO_ROOT, Runner, start_runner

from slipway.functions.gitsync import LINGER_SECONDS, SYNC_INSTANCE
from slipway.gitsync.signature import sign

TOKEN = "github_pat_burst_0123456789abcdef0123"
PUBLIC = "https://slipway.example.test"
GITHUB_TIMEOUT_S = 10.0  # GitHub counts a delivery as failed past this, and never retries it
EXAMPLES = REPO_ROOT / "node_modules" / "@octokit" / "webhooks-examples" / "api.github.com" / "index.json"
_RUNNING = {"Running", "Pending", "ContinuedAsNew"}


@dataclass
class Burst:
    """What one burst did and what the runner made of it."""

    deliveries: int
    clients: int
    commits: list[str]  # pushed during the burst, oldest first
    times: list[float]  # seconds from request to answer, one per delivery sent
    statuses: list[int]  # 0 for a request that got no answer
    distinct: int  # delivery ids among them
    journal: list[dict[str, object]]  # rows of this burst's pushes, newest first
    passes: list[dict[str, str]]  # the runner's "sync pass" log lines during and after the burst
    passes_after_settled: int  # of those, how many ran after the last commit was synced and idle
    settled_s: float  # from the first delivery to the last commit synced and the sync idle
    orchestration: str  # the sync orchestration's runtime status at the end
    final: str  # "" when the workspace equals git archive of the last commit, else how it differs
    reference: list[float] = field(default_factory=list)  # GET /api/health under the same clients

    def late(self) -> int:
        return sum(
            1 for t, s in zip(self.times, self.statuses, strict=True) if t > GITHUB_TIMEOUT_S or s == 0
        )

    def quantile(self, q: float, values: list[float] | None = None) -> float:
        ordered = sorted(self.times if values is None else values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def journaled(self) -> dict[str, int]:
        """Succeeded journal rows per commit pushed (0: synced within a later commit's pass)."""
        counts = Counter(str(e["after"]) for e in self.journal if e["result"] == "succeeded")
        return {commit: counts[commit] for commit in self.commits}

    def overlaps(self) -> int:
        """Pairs of consecutive journal rows whose time spans overlap.

        A row's span is its duration ending at its time; both are measured inside the sync
        lease (GitSyncPasses.sync), so an overlap would mean two holders at once."""
        spans = sorted(
            (_at(e) - timedelta(milliseconds=int(str(e["duration_ms"]))), _at(e)) for e in self.journal
        )
        # A row's time is taken a moment after its duration ends: allow those milliseconds.
        slack = timedelta(milliseconds=5)
        return sum(1 for (_, end), (start, _) in itertools.pairwise(spans) if start < end - slack)


def _at(entry: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(entry["at"]).replace("Z", "+00:00"))


def push_template() -> dict[str, object]:
    """GitHub's own push payload (the first to a branch), to carry this repository's commits."""
    examples = json.loads(EXAMPLES.read_text())
    pushes = next(e for e in examples if e["name"] == "push")["examples"]
    return next(p for p in pushes if str(p["ref"]).startswith("refs/heads/") and not p["deleted"])


def listening_ports(pid: int) -> set[int]:
    """TCP ports a process listens on, from /proc (Linux)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in itertools.islice(lines, 1, None):
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def orchestration_status(runner: Runner) -> str:
    """The sync orchestration's runtime status, from the Durable HTTP API the app's own queue
    trigger uses. The runner serves it on a free loopback port it does not announce: found as
    the runner process's other listening port that answers the Durable status route."""
    own = int(runner.url.rsplit(":", 1)[1])
    for port in sorted(listening_ports(runner.process.pid) - {own}):
        url = f"http://127.0.0.1:{port}/runtime/webhooks/durabletask/instances/{SYNC_INSTANCE}"
        try:
            answer = httpx.get(url, timeout=5)
        except httpx.HTTPError:
            continue
        if answer.status_code in (200, 202) and "runtimeStatus" in answer.text:
            return str(answer.json()["runtimeStatus"])
        if answer.status_code == 404 and not answer.content:
            return "NotFound"
    raise AssertionError("the runner's Durable HTTP API was not found among its listening ports")


def sync_passes(log: Path, start: int) -> list[dict[str, str]]:
    """The "sync pass" lines the runner logged from byte ``start`` on, as their key=value fields."""
    with log.open("rb") as text:
        text.seek(start)
        lines = text.read().decode(errors="replace").splitlines()
    return [
        dict(part.split("=", 1) for part in line.split(": sync pass ", 1)[1].split() if "=" in part)
        for line in lines
        if ": sync pass " in line
    ]


@dataclass
class World:
    runner: Runner
    repo: Repo
    secret: str
    hook_id: int


@contextlib.contextmanager
def connected_runner(root: Path, *, files: int = 50) -> Iterator[World]:
    """A runner connected to a repository of ``files`` workflow files, through connect's API."""
    root.chmod(0o755)  # workflow steps run as another user, who must reach the data folder
    repo = Repo(root / "repo")
    repo.write_many({f"workflows/flow-{n}.py": f"print({n})\n" for n in range(files)})
    repo.commit_push("first")
    remotes = root / "remotes"
    (remotes / "octo").mkdir(parents=True)
    (remotes / "octo" / "flows.git").symlink_to(repo.bare, target_is_directory=True)
    with FakeGitHub() as github:
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
            body = {"repository": "octo/flows", "branch": "main", "token": TOKEN}
            connected = runner.api("POST", "/api/github/connect", json=body)
            assert connected.status_code == 200, connected.text
            hook_id, hook = next(iter(github.repos["octo/flows"].hooks.items()))
            yield World(runner, repo, str(hook["config"]["secret"]), int(hook_id))
        finally:
            runner.stop()


def run_burst(
    world: World,
    *,
    deliveries: int,
    clients: int,
    commits: int,
    duplicates: float,
    reference_requests: int = 0,
    seed: int = 7,
) -> Burst:
    """Send ``deliveries`` from ``clients`` at once, a fraction ``duplicates`` of them re-sending
    an earlier delivery exactly (GitHub's redelivery: same id, same body), while ``commits``
    commits are pushed spread over the burst (commit k once k/commits of the deliveries have
    gone out); a new delivery names the newest commit pushed. Then wait for the sync to
    settle and the orchestration to end, and read what happened."""
    runner, repo = world.runner, world.repo
    reference = _reference(runner, clients, reference_requests) if reference_requests else []
    template = push_template()
    log_start = runner.log.stat().st_size
    first = repo.head()
    heads: list[str] = []
    lock = threading.Lock()
    going_out = threading.Condition(lock)  # notified as each delivery is taken
    rng = random.Random(seed)
    sent: list[tuple[dict[str, str], bytes]] = []
    times: list[float] = []
    statuses: list[int] = []
    taken = 0

    def push(n: int) -> None:
        repo.write(f"burst/commit-{n}.txt", f"commit {n}\n")
        if n % 3 == 2:
            repo.remove(f"burst/commit-{n - 1}.txt")  # some commits delete, not only add
        head = repo.commit_push(f"burst {n}")
        with lock:
            heads.append(head)

    def pusher() -> None:
        for n in range(1, commits):
            with going_out:
                going_out.wait_for(lambda n=n: taken >= n * deliveries // commits)
            push(n)

    def delivery() -> tuple[dict[str, str], bytes] | None:
        nonlocal taken
        with going_out:
            if taken >= deliveries:
                return None
            taken += 1
            going_out.notify_all()
            if sent and rng.random() < duplicates:
                return rng.choice(sent)
            before = heads[-2] if len(heads) > 1 else first
            payload = {**template, "ref": "refs/heads/main", "before": before, "after": heads[-1]}
            body = json.dumps(payload).encode()
            headers = {
                "X-GitHub-Event": "push",
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-GitHub-Hook-ID": str(world.hook_id),
                "X-Hub-Signature-256": sign(world.secret, body),
                "Content-Type": "application/json",
            }
            sent.append((headers, body))
            return headers, body

    def client() -> None:
        with httpx.Client(base_url=runner.url, timeout=30) as http:
            while (next_one := delivery()) is not None:
                headers, body = next_one
                began = time.perf_counter()
                try:
                    status = http.post("/api/github/webhook", content=body, headers=headers).status_code
                except httpx.HTTPError:
                    status = 0
                elapsed = time.perf_counter() - began
                with lock:
                    times.append(elapsed)
                    statuses.append(status)

    push(0)
    burst_began = time.monotonic()
    threads = [threading.Thread(target=pusher)] + [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    def settled() -> bool:
        sync = runner.api("GET", "/api/github").json()["sync"]
        rows = runner.api("GET", "/api/github/syncs?limit=500").json()["entries"]
        synced = any(e["after"] == heads[-1] and e["result"] == "succeeded" for e in rows)
        return synced and sync["state"] == "idle"

    runner.wait(settled, "the last commit to be synced and the sync to be idle", timeout=120)
    settled_s = time.monotonic() - burst_began
    passes_at_settle = len(sync_passes(runner.log, log_start))
    # Past the orchestration's linger, with room for passes it may still start.
    deadline = time.monotonic() + LINGER_SECONDS + 20
    status = orchestration_status(runner)
    while status in _RUNNING and time.monotonic() < deadline:
        time.sleep(0.5)
        status = orchestration_status(runner)
    passes = sync_passes(runner.log, log_start)
    ids = {h["X-GitHub-Delivery"] for h, _ in sent}
    journal = [
        e
        for e in runner.api("GET", "/api/github/syncs?limit=500").json()["entries"]
        if e["trigger"] != "connect" and (set(e["deliveries"]) & ids or e["after"] in heads)
    ]
    try:
        assert_mirrors(repo, heads[-1], runner.workspace)
        final = ""
    except AssertionError as exc:
        final = str(exc)
    return Burst(
        deliveries=deliveries,
        clients=clients,
        commits=heads,
        times=times,
        statuses=statuses,
        distinct=len(ids),
        journal=journal,
        passes=passes,
        passes_after_settled=len(passes) - passes_at_settle,
        settled_s=settled_s,
        orchestration=status,
        final=final,
        reference=reference,
    )


def _reference(runner: Runner, clients: int, requests: int) -> list[float]:
    """GET /api/health answer times from the same number of clients at once: the runner's own
    pace for a request that touches no storage, measured in the same run."""
    times: list[float] = []
    lock = threading.Lock()
    taken = itertools.count()

    def client() -> None:
        with httpx.Client(base_url=runner.url, timeout=30) as http:
            while next(taken) < requests:
                began = time.perf_counter()
                http.get("/api/health").raise_for_status()
                with lock:
                    times.append(time.perf_counter() - began)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return times


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000
