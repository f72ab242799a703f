"""Webhook under load: a burst of signed push deliveries while commits are pushed.

Not part of the test run: `.venv/bin/python tests/benchmarks/webhook_burst.py` (`--quick` for
the bounded burst tests/test_github_burst.py asserts; `--deliveries`, `--clients`,
`--commits`, `--duplicates` to set each). Against a real `slipway dev` (its own Azurite), the
fake GitHub REST API and a bare git remote on disk, connected through the API, it sends N
signed deliveries (GitHub's real push payload) from C concurrent clients, a fraction F of
them re-sending an earlier delivery exactly (GitHub's "Redeliver"), while K commits are
pushed spread over the burst; each new delivery names the newest commit pushed as `after`.
The scenario lives in tests/webhook_load.py, shared with the test. Reported:

- the webhook's answer time p50 / p99 / max and how many were answered later than GitHub's
  10 s (or not at all), beside `GET /api/health` from the same number of clients measured
  just before in the same run (the ratio of p50s; health touches no storage);
- the sync passes the orchestration ran (the runner's "sync pass" log lines) against the
  commits pushed, and how many ran after the last commit was synced; the journal rows; each
  commit's journal rows (0 means a later commit's pass synced it too); whether two syncs'
  time spans overlapped (both measured inside the sync lease); the orchestration's final
  runtime status; whether the workspace ends equal to `git archive` of the last commit.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from webhook_load import GITHUB_TIMEOUT_S, Burst, connected_runner, median_ms, run_burst


def report(burst: Burst, seconds: float, load: tuple[float, float]) -> None:
    ms = 1000
    statuses = {s: burst.statuses.count(s) for s in sorted(set(burst.statuses))}
    print(f"\n   deliveries   {len(burst.times)} from {burst.clients} clients, {burst.distinct} distinct ids;"
          f" answers by status {statuses}")  # fmt: skip
    print(f"   webhook      p50 {burst.quantile(0.5) * ms:7.1f} ms   p99 {burst.quantile(0.99) * ms:7.1f} ms"
          f"   max {max(burst.times) * ms:7.1f} ms   later than {GITHUB_TIMEOUT_S:.0f} s or unanswered: {burst.late()}")  # fmt: skip
    if burst.reference:
        ref = burst.reference
        print(f"   reference    GET /api/health, {burst.clients} clients: p50 {median_ms(ref):7.1f} ms"
              f"   p99 {burst.quantile(0.99, ref) * ms:7.1f} ms   webhook p50 / health p50"
              f" = {statistics.median(burst.times) / statistics.median(ref):.1f}")  # fmt: skip
    results = dict(Counter(p.get("result", "?") for p in burst.passes))
    print(f"   passes       {len(burst.passes)} for {len(burst.commits)} commits (results {results});"
          f" after the last commit was synced: {burst.passes_after_settled}")  # fmt: skip
    counts = list(burst.journaled().values())
    print(f"   journal      {len(burst.journal)} rows; rows per commit, oldest first {counts};"
          f" journaled more than once: {sum(1 for c in counts if c > 1)}; overlapping syncs: {burst.overlaps()}")  # fmt: skip
    print(f"   settled      {burst.settled_s:.1f} s after the first delivery; orchestration {burst.orchestration};"
          f" workspace {'equal to git archive of the last commit' if not burst.final else 'DIFFERENT: ' + burst.final}")  # fmt: skip
    busy = " (other work was running: expect noise)" if max(load) > (os.cpu_count() or 1) else ""
    print(f"\nSummary ({seconds:.0f} s; load average {load[0]:.1f} before, {load[1]:.1f} after{busy}):"
          f" {len(burst.times)} deliveries / {burst.clients} clients / {len(burst.commits)} commits;"
          f" webhook p50 {burst.quantile(0.5) * ms:.0f} ms p99 {burst.quantile(0.99) * ms:.0f} ms"
          f" max {max(burst.times) * ms:.0f} ms; over 10 s {burst.late()}; passes {len(burst.passes)};"
          f" commits journaled twice {sum(1 for c in counts if c > 1)}; overlaps {burst.overlaps()};"
          f" orchestration {burst.orchestration}; final tree {'ok' if not burst.final else 'DIFFERENT'}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 deliveries, 10 clients, 5 commits")
    parser.add_argument("--deliveries", type=int, help="signed deliveries sent (default 1000)")
    parser.add_argument("--clients", type=int, help="concurrent HTTP clients (default 20)")
    parser.add_argument("--commits", type=int, help="commits pushed during the burst (default 10)")
    parser.add_argument("--duplicates", type=float, default=0.3, help="share re-sent (default 0.3)")
    args = parser.parse_args()
    deliveries, clients, commits = (200, 10, 5) if args.quick else (1000, 20, 10)
    deliveries = args.deliveries or deliveries
    clients = args.clients or clients
    commits = args.commits or commits
    load = os.getloadavg()[0]
    print(f"Webhook burst benchmark: {deliveries} deliveries ({args.duplicates:.0%} re-sent) from {clients}"
          f" clients while {commits} commits are pushed; {os.cpu_count()} CPUs, load average {load:.1f}")  # fmt: skip
    began = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="slipway-bench-webhook-") as scratch,
        connected_runner(Path(scratch)) as world,
    ):
        burst = run_burst(world, deliveries=deliveries, clients=clients, commits=commits,
                          duplicates=args.duplicates, reference_requests=deliveries)  # fmt: skip
    report(burst, time.perf_counter() - began, (load, os.getloadavg()[0]))


if __name__ == "__main__":
    main()
