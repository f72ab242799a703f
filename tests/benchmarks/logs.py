"""Run log benchmark: how fast one chatty run's lines are stored, and whether it holds others.

Not part of the test run. Run it with `.venv/bin/python tests/benchmarks/logs.py` (options
`--lines N` for the first figure, `--chatty-lines N`, `--small-runs K`). It uses the Azurite in
``SLIPWAY_TEST_STORAGE`` when set (as under `slipway with-azurite`), else starts its own, and
drives ``RunLogWriter`` in this process as the engine does:

1. Throughput: one run writes N lines of 100 characters from one thread (as a step's output
   arrives); reported are lines per second from the first write to its ``flush`` returning,
   how long the writer was held by backpressure, and the ratio to the same lines handed to
   ``RunLogStore.append`` directly in the same run.
2. Isolation: K small runs, each from its own thread, write three lines and ``flush`` their
   run; reported are p50 and max of that flush's latency alone, and again while a chatty run
   writes 500,000 lines of 100 characters (measured once it is storing), with their ratio. The
   chatty run is then stopped and its rate while the small runs were measured is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from azure.data.tables import TableServiceClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from runner_process import REPO_ROOT as REPO

from slipway.adapters.tables import TableStore
from slipway.cli import TEST_STORAGE_ENV
from slipway.engine.logs import LogLine, RunLogStore, RunLogWriter
from slipway.local.azurite import Azurite, find_azurite

LIMIT = 100 * 1024 * 1024  # above what the benchmark writes: every line is stored
TEXT = "x" * 92


@contextlib.contextmanager
def storage() -> Iterator[str]:
    given = os.environ.get(TEST_STORAGE_ENV)
    if given:
        yield given
        return
    with Azurite(launcher=find_azurite(REPO)) as azurite:
        yield azurite.connection_string


def run_id() -> str:
    return uuid.uuid4().hex


def throughput(writer: RunLogWriter, store: RunLogStore, lines: int) -> None:
    # The same lines handed to the store directly, in batches of 990 (as a writer's turn
    # stores them): what the writer's own work costs on top. Azurite slows as its tables
    # grow, and this goes first, so the comparison leans against the writer.
    direct = [LogLine("build", "stdout", f"{n:07d} {TEXT}") for n in range(lines)]
    run = run_id()
    started = time.perf_counter()
    for start in range(0, lines, 990):
        store.append(run, direct[start : start + 990])
    reference = time.perf_counter() - started
    print(f"  RunLogStore.append directly: {lines / reference:,.0f} lines/s")
    run = run_id()
    started = time.perf_counter()
    for n in range(lines):
        writer.write(run, "build", "stdout", f"{n:07d} {TEXT}\n")
    written = time.perf_counter() - started
    assert writer.flush(run, timeout=3600)
    total = time.perf_counter() - started
    print(
        f"  one chatty run: {lines:,} lines of 100 chars stored in {total:.1f} s = {lines / total:,.0f} lines/s"
    )
    print(f"  (its writer returned after {written:.1f} s: backpressure holds it to the store's pace)")
    print(f"  writer / direct: {reference / total:.2f} of the store's own pace")


def small_runs(writer: RunLogWriter, count: int) -> list[float]:
    latencies: list[float] = [0.0] * count
    barrier = threading.Barrier(count)

    def one(index: int) -> None:
        run = run_id()
        barrier.wait()
        begun = time.perf_counter()
        for n in range(3):
            writer.line(run, "", "system", f"● small run {index} line {n}")
        assert writer.flush(run, timeout=120)
        latencies[index] = time.perf_counter() - begun

    threads = [threading.Thread(target=one, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies


def figures(latencies: list[float]) -> tuple[float, float]:
    return statistics.median(latencies), max(latencies)


def isolation(writer: RunLogWriter, tables: CountingTables, chatty_lines: int, count: int) -> None:
    small_runs(writer, count)  # warm: tables, connections
    alone = figures(small_runs(writer, count))
    chatty = run_id()
    stop = threading.Event()
    written = [0]

    def chatter() -> None:
        for n in range(chatty_lines):
            if stop.is_set():
                return
            writer.write(chatty, "build", "stdout", f"{n:07d} {TEXT}\n")
            written[0] = n + 1

    thread = threading.Thread(target=chatter, daemon=True)
    thread.start()
    while tables.transactions.get(chatty, 0) < 20:
        time.sleep(0.01)
    stored_before, begun = tables.transactions[chatty], time.perf_counter()
    beside = figures(small_runs(writer, count))
    rate = (tables.transactions[chatty] - stored_before) * 99 / (time.perf_counter() - begun)
    stop.set()
    thread.join()
    print(f"  {count} small runs, 3 lines and a flush each, concurrently:")
    print(f"    alone:                  p50 {alone[0] * 1000:7.1f} ms   max {alone[1] * 1000:7.1f} ms")
    print(f"    beside a chatty run:    p50 {beside[0] * 1000:7.1f} ms   max {beside[1] * 1000:7.1f} ms")
    print(f"    ratio (beside / alone): p50 {beside[0] / alone[0]:7.2f}      max {beside[1] / alone[1]:7.2f}")
    print(
        f"  the chatty run ({chatty_lines:,} lines of 100 chars asked) had written {written[0]:,} lines "
        f"and stored ~{rate:,.0f} lines/s meanwhile; at that pace all of it would take "
        f"{chatty_lines / max(rate, 1):,.0f} s"
    )
    writer.flush(chatty, timeout=300)  # what it had queued (at most the backpressure's bound)


class CountingTables(TableStore):
    """The real table store, counting transactions per partition (to see the chatty run store)."""

    def __init__(self, service: TableServiceClient) -> None:
        super().__init__(service)
        self.transactions: dict[str, int] = {}

    def transact(self, table, operations):  # type: ignore[no-untyped-def]
        run = str(operations[0][1]["PartitionKey"])
        self.transactions[run] = self.transactions.get(run, 0) + 1
        return super().transact(table, operations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--chatty-lines", type=int, default=500_000)
    parser.add_argument("--small-runs", type=int, default=20)
    options = parser.parse_args()
    with storage() as connection:
        tables = CountingTables(TableServiceClient.from_connection_string(connection))
        store = RunLogStore(tables, limit_bytes=LIMIT)
        print("Run logs (RunLogWriter into Azurite, this process):")
        throughput(RunLogWriter(store), store, options.lines)
        isolation(RunLogWriter(store), tables, options.chatty_lines, options.small_runs)


if __name__ == "__main__":
    main()
