"""Deploy pipeline benchmark: its overhead over the same npm build by hand, and the cached install.

Not part of the test run. Run it with `.venv/bin/python tests/benchmarks/deploy.py` (options
`--repeat N`, `--cache-rounds N`, `--json FILE`; about 35 s with the defaults). It starts
`slipway dev` (with its own Azurite) on a fresh workspace and data folder, so the dependency
cache starts empty, and deploys through the API as a user does: ``POST /api/deployments`` with
a workspace folder, then ``GET /api/deployments/{id}`` until the deployment is final.

1. Pipeline overhead: the npm fixture ``tests/fixtures/sites/npm-build`` (a lockfile without
   dependencies; its test and build run only Node) deployed from a fresh copy in the workspace
   to a new site, timed from the POST to the final status as the client sees it, against the
   same work done by hand on another fresh copy (``npm ci``, ``npm test``, ``npm run build``
   with subprocess). One warm-up of each comes first (not counted): the runner's first
   deployment and npm's first start are not what is measured. The compared runs are then like
   with like: this fixture's lockfile lists no packages, so ``npm ci`` creates no
   ``node_modules`` and the pipeline's dependency cache (keyed on the lockfile hash) has nothing
   to save or restore; both sides run the same ``npm ci`` with nothing to download. (Each
   pipeline run's log is checked and the output says what its cache did.) The two alternate,
   swapping order every round, ``--repeat`` times each. Reported: median and min of both, the
   overhead (pipeline - manual, target under 2 s), and for the median pipeline run its steps,
   phases and the gaps between steps, so the overhead can be located.
2. Cached install: ``tests/fixtures/sites/npm-dep`` (one small dependency from the npm
   registry) deployed twice, ``--cache-rounds`` times. The first install of a pair is cold: the
   dependency cache has no entry for the lockfile (round 1: the runner's data folder is fresh;
   later rounds delete the entry first) and npm's cache is the build's own, empty folder. The
   second restores the cache. Reported: the install step's ``duration_ms`` of both and the
   ratio of the medians (target at least 5x), both deployments' wall times, where the install
   time goes (from Slipway's log lines), and the same npm commands by hand for scale.

Targets are printed with PASS or MISS; a miss does not fail the process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from runner_process import Runner, start_runner

from slipway.deploy.cache import cache_key
from slipway.deploy.detect import detect_build

SITES = Path(__file__).resolve().parents[1] / "fixtures" / "sites"
FINAL = ("succeeded", "failed", "canceled", "superseded", "rolled_back")
POLL_SECONDS = 0.05
# What the queued phase holds (see slipway.local.queue_poller and host.json).
QUEUED_NOTE = (
    " (the deploys-queue poll, which backs off from 0.1 s to 2 s while the queue is idle,"
    " then orchestration start and the start activity)"
)
OVERHEAD_TARGET_S = 2.0
CACHE_SPEEDUP_TARGET = 5.0
# The npm settings the pipeline gives its builds (slipway.deploy.build.build_environment) that
# change what npm does over the network; the manual reference uses them too, so that the two
# sides differ by the pipeline and not by npm's audit request or update check.
NPM_QUIET = {"npm_config_update_notifier": "false", "npm_config_fund": "false", "npm_config_audit": "false"}


def stamp(value: str | None) -> float | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def secs(value: float | None) -> str:
    return "      -  " if value is None else f"{value:7.2f} s"


def msec(value: float | None) -> str:
    return "       -  " if value is None else f"{value:7.0f} ms"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# ------------------------------------------------------------------------------ deployments


def workspace_copy(runner: Runner, fixture: str) -> str:
    """A fresh copy of a fixture inside the runner's workspace; its workspace-relative path."""
    folder = f"sites/{fixture}-{uuid.uuid4().hex[:8]}"
    shutil.copytree(SITES / fixture, runner.workspace / folder, ignore=shutil.ignore_patterns("node_modules"))
    return folder


def deploy(
    client: httpx.Client, site: str, folder: str, timeout: float = 300
) -> tuple[float, dict[str, Any]]:
    """POST a workspace deployment and poll it until it is final: (wall seconds, deployment)."""
    began = time.perf_counter()
    answer = client.post("/api/deployments", json={"site": site, "source": "workspace", "folder": folder})
    assert answer.status_code == 202, answer.text
    status_url = answer.json()["status_url"]
    deadline = began + timeout
    while True:
        deployment = client.get(status_url).json()
        if deployment["status"] in FINAL:
            return time.perf_counter() - began, deployment
        if time.perf_counter() > deadline:
            raise AssertionError(f"deployment {deployment['id']} not final after {timeout} s: {deployment}")
        time.sleep(POLL_SECONDS)


def log_text(client: httpx.Client, deployment_id: str) -> str:
    page = client.get(f"/api/deployments/{deployment_id}/logs").json()
    return "\n".join(line["text"] for line in page["lines"])


def require_success(client: httpx.Client, deployment: dict[str, Any]) -> None:
    if deployment["status"] != "succeeded":
        raise AssertionError(
            f"deployment {deployment['id']} {deployment['status']}: {deployment.get('error')}\n"
            f"{log_text(client, deployment['id'])[-3000:]}"
        )


def step_ms(deployment: dict[str, Any], name: str) -> int | None:
    return next((s.get("duration_ms") for s in deployment["steps"] if s["name"] == name), None)


def timeline(deployment: dict[str, Any]) -> list[tuple[str, float]]:
    """The deployment's time from queued to finished, cut into its steps and the gaps between
    them (the orchestration's hops, status writes), in order: (label, seconds)."""
    queued, finished = stamp(deployment.get("queued_at")), stamp(deployment.get("finished_at"))
    assert queued is not None and finished is not None, deployment
    parts: list[tuple[str, float]] = []
    cursor, previous = queued, "queued"
    for step in deployment["steps"]:
        start, end = stamp(step.get("started_at")), stamp(step.get("finished_at"))
        if start is None or end is None:
            continue
        parts.append((f"  gap {previous} -> {step['name']}", start - cursor))
        parts.append((f"step {step['name']}", end - start))
        cursor, previous = end, step["name"]
    parts.append((f"  gap {previous} -> finished", finished - cursor))
    return parts


def cache_state(log: str) -> str:
    """What the dependency cache did in a deployment, from the lines the build writes."""
    if "[dependencies restored from the cache" in log:
        if "[restored dependencies do not match the lockfile" in log:
            return "restored but stale: installed afresh"
        return "restored"
    if "[dependencies saved to the cache" in log:
        return "miss: installed, then saved"
    if "[no cached dependencies" in log:
        return "miss: installed, nothing saved (no node_modules)"
    return "not used"


def comparison(states: list[str]) -> str:
    """Which kind of runs part 1 compared, in words, from the pipeline runs' cache states."""
    if all(state == "restored" for state in states):
        return (
            "warm against warm: the pipeline restored node_modules from its dependency cache and checked it\n"
            "   against package-lock.json; by hand, `npm ci` with npm's own ~/.npm cache"
        )
    if all(state.startswith("miss: installed, nothing saved") for state in states):
        return (
            "like with like: the lockfile lists no packages, so `npm ci` makes no node_modules and the\n"
            "   pipeline's dependency cache has nothing to restore; both sides run `npm ci` (nothing to\n"
            "   download), `npm run test`/`npm test` and `npm run build`, after a warm-up of each"
        )
    return f"mixed: pipeline dependency cache {', '.join(sorted(set(states)))}; by hand `npm ci` with ~/.npm"


# ----------------------------------------------------------------------------------- manual


def manual_build(fixture: str, scratch: Path) -> dict[str, float]:
    """``npm ci``, ``npm test``, ``npm run build`` on a fresh copy: seconds per command and total."""
    project = scratch / f"{fixture}-{uuid.uuid4().hex[:8]}"
    shutil.copytree(SITES / fixture, project, ignore=shutil.ignore_patterns("node_modules"))
    install = ["npm", "ci"] if (project / "package-lock.json").is_file() else ["npm", "install"]
    env = {**os.environ, **NPM_QUIET}
    times: dict[str, float] = {}
    began = time.perf_counter()
    for name, argv in (("install", install), ("test", ["npm", "test"]), ("build", ["npm", "run", "build"])):
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True, check=False)
        times[name] = time.perf_counter() - start
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    times["total"] = time.perf_counter() - began
    assert (project / "dist" / "index.html").is_file(), "the manual build wrote no dist/index.html"
    shutil.rmtree(project, ignore_errors=True)
    return times


# --------------------------------------------------------------------------------- overhead


def overhead(runner: Runner, client: httpx.Client, repeat: int, scratch: Path) -> dict[str, Any]:
    print(
        f"\n1. Pipeline overhead: npm-build deployed through `slipway dev` vs by hand, {repeat} rounds each"
    )
    print("   warm-up (not counted): the runner's first deployment and a first manual build")
    warm_wall, warm = deploy(
        client, f"bench-warm-{uuid.uuid4().hex[:6]}", workspace_copy(runner, "npm-build")
    )
    require_success(client, warm)
    warm_state = cache_state(log_text(client, warm["id"]))
    warm_manual = manual_build("npm-build", scratch)
    print(f"   warm-up      deployment {secs(warm_wall)} (install step {msec(step_ms(warm, 'install'))}; "
          f"dependency cache: {warm_state}), manual {secs(warm_manual['total'])}")  # fmt: skip

    pipeline: list[tuple[float, dict[str, Any]]] = []
    manual: list[dict[str, float]] = []
    states: list[str] = []
    for round_ in range(repeat):
        order = ("pipeline", "manual") if round_ % 2 == 0 else ("manual", "pipeline")
        for side in order:
            if side == "pipeline":
                site = f"bench-{uuid.uuid4().hex[:8]}"
                wall, deployment = deploy(client, site, workspace_copy(runner, "npm-build"))
                require_success(client, deployment)
                states.append(cache_state(log_text(client, deployment["id"])))
                pipeline.append((wall, deployment))
            else:
                manual.append(manual_build("npm-build", scratch))
        print(
            f"   round {round_ + 1}      deployment {secs(pipeline[-1][0])}   manual {secs(manual[-1]['total'])}"
        )

    walls = [wall for wall, _ in pipeline]
    hand = [m["total"] for m in manual]
    p_med, p_min = statistics.median(walls), min(walls)
    m_med, m_min = statistics.median(hand), min(hand)
    over_med, over_min = p_med - m_med, p_min - m_min
    compared = comparison(states)
    print(f"\n   compared: {compared}")
    print("                      median        min")
    print(f"   pipeline       {secs(p_med)}  {secs(p_min)}   POST -> final status seen by the client")
    print(f"   manual         {secs(m_med)}  {secs(m_min)}   npm ci + npm test + npm run build")
    print(f"   overhead       {secs(over_med)}  {secs(over_min)}   pipeline - manual "
          f"(target < {OVERHEAD_TARGET_S:.0f} s: {verdict(over_med < OVERHEAD_TARGET_S)} on the median)")  # fmt: skip

    # The median pipeline run (the lower middle one for an even count).
    median_wall, median_run = sorted(pipeline, key=lambda item: item[0])[(len(pipeline) - 1) // 2]
    print(f"\n   where the median deployment's {median_wall:.2f} s go ({median_run['id']}):")
    print("   phases (durations_ms): " + ", ".join(f"{k} {v} ms" for k, v in median_run["durations_ms"].items())
          + f"; total_ms {median_run['total_ms']}")  # fmt: skip
    parts = timeline(median_run)
    recorded = sum(seconds for _, seconds in parts)
    for label, seconds in parts:
        note = QUEUED_NOTE if label.endswith("queued -> checkout") else ""
        print(f"     {msec(seconds * 1000)}  {label}{note}")
    print(f"     {msec((median_wall - recorded) * 1000)}  client side: POST -> queued_at, finished_at -> seen by "
          f"the poll ({POLL_SECONDS * 1000:.0f} ms interval)")  # fmt: skip
    per_step = {
        name: statistics.median(d for _, run in pipeline if (d := step_ms(run, name)) is not None)
        for name in ("checkout", "detect", "install", "test", "build", "package", "publish", "verify")
    }
    manual_steps = {name: statistics.median(m[name] for m in manual) for name in ("install", "test", "build")}
    print("   medians over all rounds, pipeline step vs the same command by hand:")
    for name, value in per_step.items():
        by_hand = f"   by hand {msec(manual_steps[name] * 1000)}" if name in manual_steps else ""
        print(f"     {name:9} {msec(value)}{by_hand}")
    phases = {
        name: [run["durations_ms"].get(name) for _, run in pipeline]
        for name in ("queued", "building", "publishing", "verifying")
    }
    print("   phases over all rounds (durations_ms), median [min - max]:")
    for name, values in phases.items():
        known = [v for v in values if v is not None]
        print(f"     {name:10} {msec(statistics.median(known))}  [{min(known):.0f} - {max(known):.0f} ms]")
    in_steps = sum(per_step.values()) / 1000
    print(f"     in steps {msec(in_steps * 1000)}, outside steps (queue, orchestration hops, status writes, "
          f"polling) {msec((p_med - in_steps) * 1000)} of the {p_med:.2f} s median")  # fmt: skip
    return {
        "compared": compared,
        "pipeline_cache": states,
        "warmup_cache": warm_state,
        "warmup": {
            "pipeline_s": warm_wall,
            "pipeline_install_ms": step_ms(warm, "install"),
            "manual": warm_manual,
        },
        "pipeline_s": walls,
        "manual_s": hand,
        "manual_steps_s": manual,
        "pipeline_median_s": p_med,
        "pipeline_min_s": p_min,
        "manual_median_s": m_med,
        "manual_min_s": m_min,
        "overhead_median_s": over_med,
        "overhead_min_s": over_min,
        "overhead_target_s": OVERHEAD_TARGET_S,
        "overhead_pass": over_med < OVERHEAD_TARGET_S,
        "step_medians_ms": per_step,
        "phases_ms": phases,
        "median_run": {
            "id": median_run["id"],
            "wall_s": median_wall,
            "durations_ms": median_run["durations_ms"],
            "total_ms": median_run["total_ms"],
            "steps": [
                {"name": s["name"], "status": s["status"], "duration_ms": s.get("duration_ms")}
                for s in median_run["steps"]
            ],
            "timeline_ms": [[label.strip(), round(seconds * 1000)] for label, seconds in parts],
        },
    }


# ------------------------------------------------------------------------------------ cache


def log_lines(client: httpx.Client, deployment_id: str) -> list[dict[str, Any]]:
    return list(client.get(f"/api/deployments/{deployment_id}/logs").json()["lines"])


def install_split(client: httpx.Client, deployment: dict[str, Any]) -> list[tuple[str, int]]:
    """Where the dependency work goes, from the end of ``detect`` to the end of ``install``: the
    build writes its cache lines (lookup, restore) *before* the install step starts, so the
    restore's copy is in the gap detect -> install, not in the step. Marks: Slipway's own log
    lines in that window and the step's start and end; ms between consecutive marks."""
    steps = {s["name"]: s for s in deployment["steps"]}
    start, begin, end = (
        stamp(steps["detect"]["finished_at"]),
        stamp(steps["install"]["started_at"]),
        stamp(steps["install"]["finished_at"]),
    )
    assert start is not None and begin is not None and end is not None
    marks: list[tuple[str, float]] = [("install step starts", begin)]
    for line in log_lines(client, deployment["id"]):
        when = stamp(line.get("time"))
        text = line["text"]
        if when is not None and start <= when <= end and text.startswith(("$ ", "[")):
            marks.append((text.split(", key")[0].strip("[]"), when))
    marks.sort(key=lambda mark: mark[1])  # stable: the step's start before a line of the same ms
    split, cursor, label = [], start, "detect ends"
    for text, when in marks:
        split.append((f"{label} -> {text}", round((when - cursor) * 1000)))
        cursor, label = when, text
    split.append((f"{label} -> install step ends", round((end - cursor) * 1000)))
    return split


def npm_by_hand(scratch: Path) -> dict[str, float]:
    """The same install by hand, for scale: a cold ``npm ci`` (empty npm cache), ``npm install
    --offline --no-save`` over the installed tree (what checking a restored tree with npm would cost), and
    ``npm --version`` (npm's start-up, the floor of any npm command); median of 3, seconds."""
    project = scratch / f"npm-dep-{uuid.uuid4().hex[:8]}"
    shutil.copytree(SITES / "npm-dep", project)
    env = {**os.environ, **NPM_QUIET, "npm_config_cache": str(scratch / f"npm-cache-{uuid.uuid4().hex[:8]}")}

    def timed(argv: list[str]) -> float:
        began = time.perf_counter()
        subprocess.run(argv, cwd=project, env=env, capture_output=True, check=True)
        return time.perf_counter() - began

    figures = {"npm ci, empty npm cache": timed(["npm", "ci"])}
    figures["npm install --offline --no-save, tree installed"] = statistics.median(
        timed(["npm", "install", "--offline", "--no-save"]) for _ in range(3)
    )
    figures["npm --version"] = statistics.median(timed(["npm", "--version"]) for _ in range(3))
    shutil.rmtree(project, ignore_errors=True)
    return figures


def npm_dep_cache_key() -> str | None:
    """npm-dep's key in the dependency cache, as the build computes it."""
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout
    plan = detect_build(SITES / "npm-dep")
    return cache_key(plan, node_major=int(node.strip().lstrip("v").split(".")[0]))


def dependency_ms(deployment: dict[str, Any]) -> int | None:
    """From the end of ``detect`` to the end of ``install``: the install step plus the cache
    lookup and restore that run just before it."""
    steps = {s["name"]: s for s in deployment["steps"]}
    start, end = stamp(steps["detect"].get("finished_at")), stamp(steps["install"].get("finished_at"))
    return None if start is None or end is None else round((end - start) * 1000)


def cached_install(runner: Runner, client: httpx.Client, scratch: Path, rounds: int) -> dict[str, Any]:
    print(f"\n2. Cached install: npm-dep (escape-html from the npm registry) deployed twice, {rounds} rounds")
    cache_root = runner.workspace.parent / "data" / "deploy-cache"
    entries = (
        [p.name for p in cache_root.iterdir() if not p.name.startswith(".")] if cache_root.is_dir() else []
    )
    key = npm_dep_cache_key()
    assert key is not None and key not in entries, (
        "npm-dep's dependencies are already cached: the first install would not be cold"
    )
    print(f"   dependency cache before: {len(entries)} entries, none for npm-dep's key {key[:12]} "
          "(the runner's data folder is fresh)")  # fmt: skip
    print("   cold = empty dependency cache for the key (round 1: never filled; later rounds: its entry")
    print("   deleted first) and npm's cache is the build's own, empty folder, so the package comes from")
    print("   the registry; cached = the next deployment, node_modules restored from the dependency cache")
    print("   and checked against package-lock.json (no npm process)")
    print("                   install step (ms)        detect end -> install end (ms)   deployment (s)")
    print("            cold   cached  speed-up       cold   cached                  cold  cached")
    pairs: list[dict[str, Any]] = []
    for round_ in range(rounds):
        if round_:
            shutil.rmtree(cache_root / key)
        site = f"bench-dep-{uuid.uuid4().hex[:6]}"
        folder = workspace_copy(runner, "npm-dep")
        cold_wall, cold = deploy(client, site, folder)
        require_success(client, cold)
        warm_wall, warm = deploy(client, site, folder)
        require_success(client, warm)
        cold_log, warm_log = log_text(client, cold["id"]), log_text(client, warm["id"])
        assert "[no cached dependencies" in cold_log and "[dependencies saved to the cache" in cold_log, (
            cold_log
        )
        assert "[dependencies restored from the cache" in warm_log, warm_log
        cold_ms, warm_ms = step_ms(cold, "install"), step_ms(warm, "install")
        assert cold_ms is not None and warm_ms is not None
        pair = {
            "cold_install_ms": cold_ms,
            "warm_install_ms": warm_ms,
            "install_speedup": cold_ms / max(warm_ms, 1),
            "cold_dependency_ms": dependency_ms(cold),
            "warm_dependency_ms": dependency_ms(warm),
            "cold_deployment_s": cold_wall,
            "warm_deployment_s": warm_wall,
            "cold_steps_ms": {s["name"]: s.get("duration_ms") for s in cold["steps"]},
            "warm_steps_ms": {s["name"]: s.get("duration_ms") for s in warm["steps"]},
            "cold_install_split_ms": install_split(client, cold),
            "warm_install_split_ms": install_split(client, warm),
        }
        pairs.append(pair)
        print(f"   round {round_ + 1} {cold_ms:6d}   {warm_ms:6d}  {pair['install_speedup']:6.1f}x     "
              f"{pair['cold_dependency_ms']:6d}   {pair['warm_dependency_ms']:6d}               "
              f"{cold_wall:6.2f}  {warm_wall:6.2f}")  # fmt: skip

    def median(name: str) -> float:
        return statistics.median(pair[name] for pair in pairs)

    cold_ms_med, warm_ms_med = median("cold_install_ms"), median("warm_install_ms")
    ratio = cold_ms_med / max(warm_ms_med, 1)
    print(f"   median  {cold_ms_med:6.0f}   {warm_ms_med:6.0f}  {ratio:6.1f}x     "
          f"{median('cold_dependency_ms'):6.0f}   {median('warm_dependency_ms'):6.0f}               "
          f"{median('cold_deployment_s'):6.2f}  {median('warm_deployment_s'):6.2f}")  # fmt: skip
    print(f"   speed-up of the install step (medians) {ratio:.1f}x: target >= {CACHE_SPEEDUP_TARGET:.0f}x "
          f"{verdict(ratio >= CACHE_SPEEDUP_TARGET)}; whole deployment "
          f"{median('cold_deployment_s') / median('warm_deployment_s'):.2f}x")  # fmt: skip
    print("   round 1, from Slipway's log lines:")
    for side in ("cold", "warm"):
        print(f"     {'cold' if side == 'cold' else 'cached'}:")
        for label, value in pairs[0][f"{side}_install_split_ms"]:
            print(f"       {msec(value)}  {label}")
    by_hand = npm_by_hand(scratch)
    print("   the same npm commands by hand, for scale:")
    for label, value in by_hand.items():
        print(f"       {msec(value * 1000)}  {label}")
    return {
        "cold_install_ms": cold_ms_med,
        "warm_install_ms": warm_ms_med,
        "install_speedup": ratio,
        "speedup_target": CACHE_SPEEDUP_TARGET,
        "speedup_pass": ratio >= CACHE_SPEEDUP_TARGET,
        "cold_deployment_s": median("cold_deployment_s"),
        "warm_deployment_s": median("warm_deployment_s"),
        "rounds": pairs,
        "by_hand_s": by_hand,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--repeat", type=int, default=5, help="deployments and manual builds each (default 5)"
    )
    parser.add_argument(
        "--cache-rounds", type=int, default=3, help="cold + cached deployment pairs of npm-dep (default 3)"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures to FILE as JSON")
    args = parser.parse_args()
    if shutil.which("npm") is None or shutil.which("node") is None:
        sys.exit("the deploy benchmark needs node and npm on PATH")
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    npm = subprocess.run(["npm", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    load = os.getloadavg()[0]
    print(f"Deploy benchmark: node {node}, npm {npm}, {os.cpu_count()} CPUs, load average {load:.1f}")
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="slipway-bench-deploy-") as scratch_name:
        scratch = Path(scratch_name)
        (scratch / "workspace").mkdir()
        (scratch / "manual").mkdir()
        runner = start_runner(scratch)
        try:
            with httpx.Client(base_url=runner.url, timeout=60) as client:
                pipeline = overhead(runner, client, args.repeat, scratch / "manual")
                # After part 1, so the runner is warm; npm-dep's cache key (its lockfile's hash)
                # has not been seen by this fresh runner, so its first install is still cold.
                cache = cached_install(runner, client, scratch / "manual", args.cache_rounds)
        finally:
            runner.stop()
    elapsed = time.perf_counter() - began
    load_after = os.getloadavg()[0]
    busy = " (other work was running: expect noise)" if max(load, load_after) > (os.cpu_count() or 1) else ""
    print(f"\nSummary ({elapsed:.0f} s in all; load average {load:.1f} before, {load_after:.1f} after{busy})")
    print(f"   pipeline overhead (median)   {pipeline['overhead_median_s']:6.2f} s   "
          f"target < {OVERHEAD_TARGET_S:.0f} s   {verdict(pipeline['overhead_pass'])}"
          f"   (pipeline {pipeline['pipeline_median_s']:.2f} s, manual {pipeline['manual_median_s']:.2f} s, {pipeline['compared'].split(':')[0]})")  # fmt: skip
    print(f"   cached install speed-up      {cache['install_speedup']:6.1f} x   "
          f"target >= {CACHE_SPEEDUP_TARGET:.0f} x   {verdict(cache['speedup_pass'])}"
          f"   (install step median {cache['cold_install_ms']:.0f} ms cold, {cache['warm_install_ms']:.0f} ms cached)")  # fmt: skip
    if args.json is not None:
        report = {"node": node, "npm": npm, "repeat": args.repeat, "cache_rounds": args.cache_rounds,
                  "load_average": [load, load_after], "seconds": elapsed,
                  "overhead": pipeline, "cache": cache}  # fmt: skip
        args.json.write_text(json.dumps(report, indent=2))
        print(f"   figures written to {args.json}")


if __name__ == "__main__":
    main()
