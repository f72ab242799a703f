"""Workflow engine benchmark: throughput, where a run's time goes, save-to-run and per-step cost.

Not part of the test run. Run it with `make bench` (or `.venv/bin/python tests/benchmarks/engine.py`
with `--runs N`, `--steps K`). It starts `slipway dev` (with its own Azurite) on a fresh
workspace and measures, through the API as a user drives it:

1. Throughput: N runs of a one-step workflow posted as fast as possible (8 clients), each going
   POST -> runs queue -> queue trigger -> orchestration -> plan, step and finish activities ->
   succeeded. Reported: runs per hour (N over the time from the first POST to the last run
   finished), latency p50/p95 from the run's ``created`` to its ``finished``, and the split of
   that latency from the timestamps the engine records (run created/started/finished, step
   started/finished): queue + start + plan, to the step's start, the step, to the run's end.
   Also the CPU seconds the runner and its Azurite used. Target (issue): 100,000 runs/hour.
2. Save-to-run: the workflow file is rewritten to return a new value, and a run is posted at
   once; reported is the time from the write to the POST accepted with the new version (the
   run's ``version`` is the SHA-256 prefix of the new source), and the run's output is checked
   to be the new value. Target: under 1 s.
3. Per-step overhead: a workflow of K sequential trivial steps against one of 1 step, each run
   alone: (total(K) - total(1)) / K.
4. A chatty neighbour: 20 one-step runs alone, then beside a run printing 500,000 lines of 100
   characters (ratio of the two), then the time a cancel of the chatty run takes to end it.
5. With `--profile` (py-spy on PATH or beside this Python, e.g. `pip install py-spy`): where
   the runner's CPU goes while it works through N more runs, sampled with `py-spy record --gil`,
   summarised by kind (storage SDK calls, orchestrator replay, HTTP serving, ...) and by
   Slipway function; `--profile-output FILE` keeps the raw samples for a flame graph.

Every figure is measured twice in one run, first on a reference checkout (``--against REV``, by
default the last commit whose steps ran inside the worker's process instead of a process of
their own; a git worktree beside this one), then on this checkout, both with the image's
``PYTHON_THREADPOOL_THREAD_COUNT`` of 16, and a comparison closes the output.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from runner_process import REPO_ROOT as REPO
from runner_process import Runner, start_runner

from slipway.engine.loader import source_version

TERMINAL = ("succeeded", "failed", "canceled")
# The last commit whose steps ran in the worker's own process (before slipway.isolation).
REFERENCE = "3bc1572"
CLIENTS = 8

ONE_STEP = """\
from slipway.sdk import Workflow

workflow = Workflow(description="one trivial step")


@workflow.step()
def only(ctx):
    return 1
"""

EDITED = """\
from slipway.sdk import Workflow

workflow = Workflow(description="rewritten between runs")


@workflow.step()
def answer(ctx):
    return {answer!r}
"""


def chain(steps: int) -> str:
    lines = [
        "from slipway.sdk import Workflow",
        "",
        f'workflow = Workflow(description="{steps} sequential trivial steps")',
        "",
        "",
        "@workflow.step()",
        "def s0(ctx):",
        "    return 0",
    ]
    for n in range(1, steps):
        lines += [
            "",
            "",
            f"@workflow.step(after=[s{n - 1}])",
            f"def s{n}(ctx, s{n - 1}):",
            f"    return s{n - 1} + 1",
        ]
    return "\n".join(lines) + "\n"


def stamp(value: str | None) -> float:
    assert value, "a timestamp is missing"
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and of its children it has reaped (a step's processes
    come and go; their time lands in the runner's cutime/cstime); 0 for a process that is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    # utime, stime, cutime, cstime in clock ticks (USER_HZ 100)
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / 100.0


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(child) for child in text]
    return found


def write_workflow(runner: Runner, name: str, source: str) -> Path:
    path = runner.workspace / "workflows" / f"{name}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    return path


def post_run(client: httpx.Client, name: str) -> dict[str, Any]:
    response = client.post(f"/api/workflows/{name}/runs", json={"params": {}})
    assert response.status_code == 202, response.text
    return response.json()["run"]


def wait_run(client: httpx.Client, run_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/api/runs/{run_id}").json()
        if run["status"] in TERMINAL:
            assert run["status"] == "succeeded", run
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not end within {timeout} s")


def wait_all(client: httpx.Client, ids: list[str]) -> None:
    """Wait until every run in ``ids`` ended, looking at the oldest open run only: about one
    GET per run, so that watching does not load the runner (a listing would read every row)."""
    deadline = time.monotonic() + max(600, len(ids) * 2)
    open_runs = sorted(ids)  # run ids start with their creation time
    while open_runs:
        if client.get(f"/api/runs/{open_runs[0]}").json()["status"] in TERMINAL:
            open_runs.pop(0)
            continue
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(open_runs)} runs still open")
        time.sleep(0.1)


def one_alone(client: httpx.Client, name: str) -> dict[str, Any]:
    return wait_run(client, post_run(client, name)["id"])


# ------------------------------------------------------------------------------- throughput


def throughput(runner: Runner, client: httpx.Client, runs: int) -> None:
    print(f"\n1. Throughput: {runs} runs of a one-step workflow, posted by {CLIENTS} clients at once")
    azurite = children(runner.process.pid)
    cpu_before = {pid: cpu_seconds(pid) for pid in [runner.process.pid, *azurite]}
    posted: list[dict[str, Any]] = []
    post_times: list[float] = []
    lock = threading.Lock()

    def submit(_: int) -> None:
        with httpx.Client(base_url=runner.url, timeout=120) as own:
            start = time.perf_counter()
            run = post_run(own, "bench_one")
            elapsed = time.perf_counter() - start
        with lock:
            posted.append(run)
            post_times.append(elapsed)

    wall_start = time.time()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(submit, range(runs)))
    posting = time.time() - wall_start
    ids = [run["id"] for run in posted]
    wait_all(client, ids)
    cpu_after = {pid: cpu_seconds(pid) for pid in cpu_before}
    details = [client.get(f"/api/runs/{run_id}").json() for run_id in ids]
    failed = [d for d in details if d["status"] != "succeeded"]
    assert not failed, f"{len(failed)} runs did not succeed, e.g. {failed[0]}"

    first = min(stamp(d["created"]) for d in details)
    last = max(stamp(d["finished"]) for d in details)
    span = last - first
    latency = [stamp(d["finished"]) - stamp(d["created"]) for d in details]
    phases: dict[str, list[float]] = {"queue": [], "dispatch": [], "step": [], "finish": []}
    for d in details:
        [step] = d["steps"]
        phases["queue"].append(stamp(d["started"]) - stamp(d["created"]))
        phases["dispatch"].append(stamp(step["started"]) - stamp(d["started"]))
        phases["step"].append(stamp(step["finished"]) - stamp(step["started"]))
        phases["finish"].append(stamp(d["finished"]) - stamp(step["finished"]))
    per_hour = runs / span * 3600
    print(f"   posting      {runs} POSTs in {posting:.2f} s ({runs / posting:.0f}/s), "
          f"POST p50 {ms(statistics.median(post_times)).strip()} p95 {ms(pct(post_times, 0.95)).strip()}")  # fmt: skip
    print(f"   throughput   {runs} runs in {span:.2f} s (first created -> last finished) "
          f"= {per_hour:,.0f} runs/hour   (target 100,000: {per_hour / 1000:.1f}%)")  # fmt: skip
    print(f"   latency      created -> finished   p50 {ms(statistics.median(latency))}   p95 {ms(pct(latency, 0.95))}"
          f"   max {ms(max(latency))}")  # fmt: skip
    print("   where a run's time goes (mean / p50 / p95 per run, from the engine's timestamps):")
    labels = {
        "queue": "POST -> run started: queue wait, queue trigger, orchestration start, plan activity",
        "dispatch": "run started -> step started: orchestrator episode, activity dispatch, step load",
        "step": "step started -> step finished: the step body, its log lines, the step row",
        "finish": "step finished -> run finished: orchestrator episode, finish activity",
    }
    total_mean = statistics.mean(latency)
    for key, values in phases.items():
        mean = statistics.mean(values)
        print(f"     {ms(mean)} {ms(statistics.median(values))} {ms(pct(values, 0.95))}"
              f"  {mean / total_mean * 100:4.0f}%  {labels[key]}")  # fmt: skip
    names = {runner.process.pid: "runner (python)"} | {pid: "azurite (node)" for pid in azurite}
    used = {pid: cpu_after[pid] - cpu_before[pid] for pid in cpu_before}
    cpu_text = ", ".join(f"{names[pid]} {seconds:.1f} s" for pid, seconds in used.items())
    _figures["runs/hour"] = per_hour
    print(f"   CPU          {cpu_text} over {span:.1f} s of wall time "
          f"({sum(used.values()) / span * 100:.0f}% of one core; the machine has 2), "
          f"runner CPU per run {ms(used[runner.process.pid] / runs).strip()}")  # fmt: skip


# ------------------------------------------------------------------------------ save-to-run


def save_to_run(runner: Runner, client: httpx.Client, rounds: int = 10, idle_rounds: int = 3) -> None:
    print(f"\n2. Save-to-run: the workflow file rewritten, then a run posted at once ({rounds} rounds)")
    write_workflow(runner, "bench_edit", EDITED.format(answer="round -1"))
    one_alone(client, "bench_edit")

    def edit_and_run(n: int) -> tuple[float, float, float]:
        """Write version n, post a run: (write -> accepted, write -> succeeded, created -> started)."""
        source = EDITED.format(answer=f"round {n}")
        version = source_version(source.encode())
        began = time.perf_counter()
        write_workflow(runner, "bench_edit", source)
        run = post_run(client, "bench_edit")
        accepted = time.perf_counter() - began
        assert run["version"] == version, (
            f"round {n}: the run has version {run['version']}, the file {version}"
        )
        done = wait_run(client, run["id"])
        finished = time.perf_counter() - began
        assert done["steps"][0]["output"] == f"round {n}", done["steps"][0]
        shown = client.get("/api/workflows/bench_edit").json()
        assert shown["version"] == version, shown
        return accepted, finished, stamp(done["started"]) - stamp(done["created"])

    busy = [edit_and_run(n) for n in range(rounds)]
    accepted = [a for a, _, _ in busy]
    finished = [f for _, f, _ in busy]
    print(f"   write -> POST accepted with the new version   p50 {ms(statistics.median(accepted))}"
          f"   max {ms(max(accepted))}   (target < 1 s)")  # fmt: skip
    print(f"   write -> run succeeded with the new output    p50 {ms(statistics.median(finished))}"
          f"   max {ms(max(finished))}   (runs back to back)")  # fmt: skip
    idle = []
    for n in range(rounds, rounds + idle_rounds):
        time.sleep(5)  # the queue poller backs off while the queue is empty (host.json maxPollingInterval)
        idle.append(edit_and_run(n))
    print(f"   after 5 s idle: write -> run succeeded        p50 {ms(statistics.median(f for _, f, _ in idle))}"
          f"   max {ms(max(f for _, f, _ in idle))}   (POST -> run started p50 "
          f"{ms(statistics.median(w for _, _, w in idle)).strip()}: the queue poll interval)")  # fmt: skip


# -------------------------------------------------------------------------------- per step


def per_step(runner: Runner, client: httpx.Client, steps: int, rounds: int = 5) -> None:
    print(
        f"\n3. Per-step overhead: {steps} sequential trivial steps against 1, each run alone ({rounds} rounds)"
    )
    write_workflow(runner, "bench_chain", chain(steps))
    one_alone(client, "bench_chain")
    one_alone(client, "bench_one")

    def total(run: dict[str, Any]) -> float:
        return stamp(run["finished"]) - stamp(run["created"])

    def inside(run: dict[str, Any]) -> float:
        return stamp(run["finished"]) - stamp(run["started"])

    singles, chains, singles_in, chains_in, gaps, bodies = [], [], [], [], [], []
    for _ in range(rounds):
        run = one_alone(client, "bench_one")
        singles.append(total(run))
        singles_in.append(inside(run))
        run = one_alone(client, "bench_chain")
        chains.append(total(run))
        chains_in.append(inside(run))
        ordered = run["steps"]
        assert [s["output"] for s in ordered] == list(range(steps)), ordered
        bodies += [stamp(s["finished"]) - stamp(s["started"]) for s in ordered]
        gaps += [stamp(b["started"]) - stamp(a["finished"]) for a, b in itertools.pairwise(ordered)]
    one, many = statistics.median(singles), statistics.median(chains)
    one_in, many_in = statistics.median(singles_in), statistics.median(chains_in)
    print(f"   1 step       created -> finished p50 {ms(one)}   started -> finished p50 {ms(one_in)}")
    print(f"   {steps} steps     created -> finished p50 {ms(many)}   started -> finished p50 {ms(many_in)}")
    print(f"   overhead     ({steps} steps - 1 step) / {steps} = {ms((many - one) / steps)} per step from created"
          f" (includes the queue poll's jitter), {ms((many_in - one_in) / steps).strip()} from started")  # fmt: skip
    _figures["per-step overhead ms"] = (many - one) / steps * 1000
    _figures["per-step overhead from started ms"] = (many_in - one_in) / steps * 1000
    _figures["step started -> finished mean ms"] = statistics.mean(bodies) * 1000
    _figures[f"{steps} sequential steps, started -> finished ms"] = many_in * 1000
    print(f"   of which     step started -> finished (row + log writes) mean {ms(statistics.mean(bodies))}, "
          f"previous step finished -> next started (orchestrator + dispatch) mean {ms(statistics.mean(gaps))}")  # fmt: skip


CHATTY = """\
import sys
from slipway.sdk import Workflow

workflow = Workflow(description="prints 500,000 lines of 100 characters")


@workflow.step(timeout=1200)
def chatter(ctx):
    line = "x" * 99 + "\\n"
    for _ in range(500_000):
        sys.stdout.write(line)
"""


def chatty_neighbour(runner: Runner, client: httpx.Client, runs: int = 20) -> None:
    print(f"\n4. A chatty run (500,000 lines of 100 characters) beside {runs} one-step runs, then its cancel")
    write_workflow(runner, "bench_chatty", CHATTY)

    def burst() -> float:
        began = time.monotonic()
        ids = [post_run(client, "bench_one")["id"] for _ in range(runs)]
        wait_all(client, ids)
        return time.monotonic() - began

    alone = burst()
    chatty = post_run(client, "bench_chatty")["id"]
    deadline = time.monotonic() + 60
    while client.get(f"/api/runs/{chatty}").json()["status"] != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # well into its output
    beside = burst()
    asked = time.monotonic()
    client.post(f"/api/runs/{chatty}/cancel")
    while client.get(f"/api/runs/{chatty}").json()["status"] not in TERMINAL:
        if time.monotonic() - asked > 120:
            break
        time.sleep(0.05)
    ended = time.monotonic() - asked
    final = client.get(f"/api/runs/{chatty}").json()
    print(
        f"   {runs} runs alone {ms(alone)}   beside the chatty run {ms(beside)}   ratio {beside / alone:.2f}"
    )
    print(f"   cancel of the chatty run: {final['status']} after {ms(ended)} (goal: within 10 s)")
    _figures["20 runs alone ms"] = alone * 1000
    _figures["20 runs beside a chatty run ms"] = beside * 1000
    _figures["cancel of a chatty run ms"] = ended * 1000


# -------------------------------------------------------------------------------- profile


def profile(runner: Runner, client: httpx.Client, runs: int, folder: Path, keep: Path | None) -> None:
    """A py-spy sample of the runner while it works through ``runs`` runs (if py-spy is there)."""
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    print(f"\n4. Profile: py-spy (--gil) on the runner during {runs} runs")
    if spy is None:
        print("   py-spy is not installed (pip install py-spy); skipped")
        return
    out = folder / "profile.txt"
    recorder = subprocess.Popen(
        [spy, "record", "--pid", str(runner.process.pid), "--format", "raw", "--output", str(out),
         "--rate", "250", "--nonblocking", "--gil"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(1.0)
    with ThreadPoolExecutor(CLIENTS) as pool:
        ids = [run["id"] for run in pool.map(lambda _: post_run(client, "bench_one"), range(runs))]
    wait_all(client, ids)
    recorder.send_signal(signal.SIGINT)
    _, errors = recorder.communicate(timeout=60)
    if not out.exists():
        print(f"   py-spy recorded nothing: {errors.strip()[-300:]}")
        return
    summarize_profile(out)
    if keep is not None:
        shutil.copyfile(out, keep)
        print(f"   raw samples (py-spy raw format, for flamegraph.pl): {keep}")


def summarize_profile(raw: Path) -> None:
    """The hottest frames holding the GIL (self time, and inclusive for Slipway and its libraries)."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
    if not total:
        print("   no samples")
        return
    print(f"   {total} samples of the thread holding the GIL (the runner's Python CPU time)")
    # py-spy names files relative to their sys.path entry: azure-core is "core/...", and so on.
    categories = (
        ("Azure Storage SDK calls to Azurite (azure-core, tables, queues, blobs, requests, urllib3)",
         ("(core/", "(tables/", "(queue/", "(blob/", "(requests/", "(urllib3/", "(http/client.py", "(email/")),
        ("Durable replay: orchestrator episodes", ("_run_episode", "(durable_functions/")),
        ("HTTP serving (uvicorn, FastAPI, Starlette)", ("(uvicorn/", "(fastapi/", "(starlette/", "(h11/")),
        ("the engine's own Python (slipway/), step code included", ("(slipway/",)),
        ("asyncio, threads and executors", ("(asyncio/", "(threading.py", "(concurrent/")),
    )  # fmt: skip
    roots = ("slipway/cli.py", "slipway/local/runner.py", "<frozen runpy>")
    shares = dict.fromkeys([label for label, _ in categories] + ["other"], 0)
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if count_text.isdigit():
            frames = ";".join(f for f in stack.split(";") if not any(root in f for root in roots))
            label = next((label for label, parts in categories if any(p in frames for p in parts)), "other")
            shares[label] += int(count_text)
    print("   by kind (first match, in this order):")
    for label, count in shares.items():
        print(f"     {count / total * 100:5.1f}%  {label}")
    print("   busiest frames (self):")
    for frame, count in sorted(own.items(), key=lambda item: -item[1])[:12]:
        print(f"     {count / total * 100:5.1f}%  {frame[:140]}")
    print("   inclusive time in Slipway's functions:")
    shown = [
        (f, c) for f, c in inclusive.items() if "(slipway/" in f and not any(root in f for root in roots)
    ]
    for frame, count in sorted(shown, key=lambda item: -item[1])[:25]:
        print(f"     {count / total * 100:5.1f}%  {frame[:140]}")


# The figures of the checkout being measured, for the comparison at the end.
_figures: dict[str, float] = {}
# The image's thread count, so the worker's pool is the one Azure runs with.
RUNNER_ENV = {"PYTHON_THREADPOOL_THREAD_COUNT": "16"}


@contextlib.contextmanager
def checkout_of(revision: str) -> Iterator[Path]:
    """A worktree of ``revision`` beside this checkout, with its node_modules and built UI."""
    with tempfile.TemporaryDirectory(prefix="slipway-bench-ref-") as scratch:
        tree = Path(scratch) / "tree"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(tree), revision], check=True
        )
        try:
            (tree / "node_modules").symlink_to(REPO / "node_modules")
            if (REPO / "web" / "dist").exists() and not (tree / "web" / "dist").exists():
                (tree / "web" / "dist").symlink_to(REPO / "web" / "dist")
            yield tree
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)


def measure(args: argparse.Namespace, app_root: Path, label: str) -> dict[str, float]:
    print(f"\n=== {label}")
    _figures.clear()
    # A reference checkout's own slipway package comes first on the path of its runner.
    env = {**RUNNER_ENV, **({"PYTHONPATH": str(app_root / "src")} if app_root != REPO else {})}
    with tempfile.TemporaryDirectory(prefix="slipway-bench-") as scratch:
        folder = Path(scratch)
        folder.chmod(0o755)  # workflow processes run as another user and must reach its folders
        (folder / "workspace").mkdir()
        runner = start_runner(folder, app_root=app_root, extra_env=env)
        try:
            with httpx.Client(base_url=runner.url, timeout=120) as client:
                write_workflow(runner, "bench_one", ONE_STEP)
                for _ in range(3):  # warm up: first load, first tables and queues
                    one_alone(client, "bench_one")
                throughput(runner, client, args.runs)
                save_to_run(runner, client)
                per_step(runner, client, args.steps)
                if not args.no_chatty:
                    chatty_neighbour(runner, client)
                if args.profile:
                    profile(runner, client, args.runs, folder, args.profile_output)
        finally:
            runner.stop()
    return dict(_figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="runs for the throughput figure")
    parser.add_argument("--steps", type=int, default=40, help="steps of the sequential workflow")
    parser.add_argument("--no-chatty", action="store_true", help="skip the chatty-neighbour figure")
    parser.add_argument("--profile", action="store_true", help="sample the runner with py-spy as well")
    parser.add_argument("--profile-output", type=Path, help="keep py-spy's raw samples in this file")
    parser.add_argument(
        "--against",
        default=REFERENCE,
        help=f"git revision measured the same way first, as the reference (default {REFERENCE}, the "
        "last one whose steps ran in the worker's own process); 'none' to skip it",
    )
    args = parser.parse_args()
    results: list[tuple[str, dict[str, float]]] = []
    if args.against != "none":
        with checkout_of(args.against) as tree:
            results.append((f"reference {args.against}", measure(args, tree, f"reference: {args.against}")))
    results.append(("this checkout", measure(args, REPO, "this checkout")))
    if len(results) > 1:
        print("\n=== comparison (same machine, same run)")
        (ref_label, ref), (label, now) = results
        for key in now:
            ratio = now[key] / ref[key] if ref.get(key) else float("nan")
            print(
                f"   {key:36s} {ref_label}: {ref.get(key, float('nan')):10,.1f}   {label}: {now[key]:10,.1f}   ratio {ratio:.2f}"
            )


if __name__ == "__main__":
    main()
