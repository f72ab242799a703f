"""The run log writer against a real Azurite: a chatty run does not hold others, lines beyond
the limit cost no storage, order within a run holds, and a hung store bounds every wait."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from slipway.adapters.tables import TableStore
from slipway.engine.logs import RunLogStore, RunLogWriter

LIMIT = 20 * 1024 * 1024
# A chatty run: enough lines that storing them takes many seconds at Azurite's pace
# (~1,500 lines/s from one process), so the other runs are measured while it stores.
CHATTY_LINES = 20_000


class ObservedTables(TableStore):
    """The real table store, counting log transactions per run and able to hang them."""

    def __init__(self, service: TableServiceClient) -> None:
        super().__init__(service)
        self.transactions: dict[str, int] = {}
        self.hang = threading.Event()  # set: transactions wait until ``released``
        self.released = threading.Event()

    def transact(
        self, table: str, operations: list[tuple[str, Mapping[str, Any], dict[str, Any]]]
    ) -> list[str] | None:
        run_id = str(operations[0][1]["PartitionKey"])
        self.transactions[run_id] = self.transactions.get(run_id, 0) + 1
        if self.hang.is_set():
            self.released.wait(60)
        return super().transact(table, operations)


@pytest.fixture
def tables(storage_connection: str) -> Iterator[ObservedTables]:
    observed = ObservedTables(TableServiceClient.from_connection_string(storage_connection))
    yield observed
    observed.released.set()


def new_run() -> str:
    return uuid.uuid4().hex


def stored(store: RunLogStore, run_id: str) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    while page := store.read(run_id, after=lines[-1]["seq"] if lines else 0):
        lines += page
    return lines


def texts(store: RunLogStore, run_id: str) -> list[str]:
    return [line["text"] for line in stored(store, run_id)]


def test_a_chatty_run_does_not_delay_another_runs_flush(tables: ObservedTables) -> None:
    store = RunLogStore(tables, limit_bytes=LIMIT)
    writer = RunLogWriter(store)
    chatty = new_run()
    started = time.perf_counter()

    def chatter() -> None:
        for n in range(CHATTY_LINES):
            writer.write(chatty, "build", "stdout", f"compiling unit {n}\n")

    thread = threading.Thread(target=chatter)
    thread.start()
    while tables.transactions.get(chatty, 0) < 5:
        time.sleep(0.01)
    latencies = []
    quiet_runs = []
    for n in range(10):
        quiet = new_run()
        quiet_runs.append(quiet)
        begun = time.perf_counter()
        writer.line(quiet, "", "system", f"● quiet run {n} started")
        assert writer.flush(quiet)
        latencies.append(time.perf_counter() - begun)
    still_storing = tables.transactions[chatty] < CHATTY_LINES // 99
    thread.join()
    assert writer.flush(chatty)
    chatty_seconds = time.perf_counter() - started

    assert still_storing, "the quiet runs were not measured while the chatty one stored"
    assert [texts(store, quiet) for quiet in quiet_runs] == [[f"● quiet run {n} started"] for n in range(10)]
    assert len(stored(store, chatty)) == CHATTY_LINES
    # Each quiet run's flush is one transaction's wait, not the chatty run's backlog.
    assert max(latencies) < chatty_seconds / 10, (latencies, chatty_seconds)


def test_lines_beyond_the_limit_are_counted_not_stored(tables: ObservedTables) -> None:
    store = RunLogStore(tables, limit_bytes=64 * 1024)
    writer = RunLogWriter(store)
    run_id = new_run()
    line = "x" * 57  # with "{n:06d} " 64 bytes: 1,024 lines fill the limit
    for n in range(100_000):
        writer.write(run_id, "flood", "stdout", f"{n:06d} {line}\n")
    writer.line(run_id, "flood", "system", "✔ flood ended")
    assert writer.flush(run_id)

    lines = texts(store, run_id)
    assert lines[:1024] == [f"{n:06d} {line}" for n in range(1024)]
    assert lines[1024:] == [
        "[log limit of 0 MB reached: further output of this run is not stored]",
        "✔ flood ended",
    ]
    assert store.dropped(run_id) == 100_000 - 1024
    # 1,024 lines take 11 transactions; the 98,976 beyond the limit only a few counter updates.
    assert tables.transactions[run_id] < 30, tables.transactions[run_id]


def test_a_limit_reached_in_an_earlier_process_is_kept(tables: ObservedTables) -> None:
    store = RunLogStore(tables, limit_bytes=4096)
    run_id = new_run()
    first = RunLogWriter(store)
    for n in range(100):
        first.line(run_id, "a", "stdout", f"{n:03d} " + "y" * 60)
    assert first.flush(run_id)
    before = tables.transactions[run_id]

    later = RunLogWriter(RunLogStore(tables, limit_bytes=4096))  # as another worker would
    for n in range(1000):
        later.line(run_id, "b", "stdout", f"more {n}")
    later.line(run_id, "b", "system", "✔ b ended")
    assert later.flush(run_id)

    assert store.dropped(run_id) == 100 - 64 + 1000
    assert texts(store, run_id)[-1] == "✔ b ended"
    assert sum(1 for text in texts(store, run_id) if text.startswith("[log limit")) == 1
    assert tables.transactions[run_id] - before < 5


def test_order_within_a_run_holds_while_other_runs_write(tables: ObservedTables) -> None:
    store = RunLogStore(tables, limit_bytes=LIMIT)
    writer = RunLogWriter(store, max_pending_lines=300)
    runs = [new_run() for _ in range(4)]

    def produce(run_id: str) -> None:
        for n in range(1500):
            # As print writes them: the text, then its newline apart.
            writer.write(run_id, "step", "stdout", f"{run_id[:6]} line {n}")
            writer.write(run_id, "step", "stdout", "\n")
            if n % 100 == 0:
                writer.line(run_id, "step", "system", f"checkpoint {n}")

    threads = [threading.Thread(target=produce, args=(run_id,)) for run_id in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert writer.flush()

    for run_id in runs:
        expected = []
        for n in range(1500):
            expected.append(f"{run_id[:6]} line {n}")
            if n % 100 == 0:
                expected.append(f"checkpoint {n}")
        lines = stored(store, run_id)
        assert [line["text"] for line in lines] == expected
        assert [line["seq"] for line in lines] == list(range(1, len(expected) + 1))


def test_flush_at_shutdown_returns_in_its_bound_when_the_store_hangs(tables: ObservedTables) -> None:
    store = RunLogStore(tables, limit_bytes=LIMIT)
    writer = RunLogWriter(store)
    stuck, other = new_run(), new_run()
    writer.line(stuck, "", "system", "● stored before the store hung")
    assert writer.flush(stuck)
    tables.hang.set()
    writer.line(stuck, "", "system", "● waiting on a hung store")
    writer.line(other, "", "system", "● another run, also waiting")

    begun = time.perf_counter()
    assert writer.flush(timeout=1.0) is False
    assert time.perf_counter() - begun < 2.0
    begun = time.perf_counter()
    assert writer.close(timeout=1.0) is False
    assert time.perf_counter() - begun < 2.0

    tables.hang.clear()
    tables.released.set()
    assert writer.flush(stuck)
    assert writer.flush(other)
    assert texts(store, stuck) == ["● stored before the store hung", "● waiting on a hung store"]
    assert texts(store, other) == ["● another run, also waiting"]


def test_a_run_whose_store_hangs_loses_counted_lines_instead_of_blocking(tables: ObservedTables) -> None:
    store = RunLogStore(tables, limit_bytes=LIMIT)
    writer = RunLogWriter(store, max_pending_lines=100, write_wait_seconds=0.5)
    stuck, other = new_run(), new_run()
    writer.line(stuck, "", "system", "● started")
    assert writer.flush(stuck)
    tables.hang.set()

    begun = time.perf_counter()
    for n in range(5000):
        writer.write(stuck, "s", "stdout", f"line {n}\n")
    stuck_seconds = time.perf_counter() - begun
    # Another run's writes do not wait on the stuck one.
    begun = time.perf_counter()
    for n in range(50):
        writer.write(other, "s", "stdout", f"other {n}\n")
    other_seconds = time.perf_counter() - begun

    assert stuck_seconds < 3.0  # one bounded wait, then lines are counted as lost
    assert other_seconds < 0.5
    tables.hang.clear()
    tables.released.set()
    writer.line(stuck, "", "system", "● ended")
    assert writer.flush(stuck)
    assert writer.flush(other)

    lines = texts(store, stuck)
    kept = [text for text in lines if text.startswith("line ")]
    assert kept == [f"line {n}" for n in range(len(kept))]  # in order, a prefix of what was written
    assert lines[-2:] == [
        f"[{5000 - len(kept)} log lines were not stored: the log store failed or fell behind]",
        "● ended",
    ]
    assert texts(store, other) == [f"other {n}" for n in range(50)]


def test_partial_lines_are_stored_at_flush(tables: ObservedTables) -> None:
    store = RunLogStore(tables, limit_bytes=LIMIT)
    writer = RunLogWriter(store)
    run_id = new_run()
    writer.write(run_id, "s", "stdout", "progress: 10%")
    writer.write(run_id, "s", "stdout", " 20%")
    writer.write(run_id, "s", "stderr", "no newline on stderr either")
    writer.write(run_id, "s", "stdout", "complete\nthen a partial")
    assert writer.flush(run_id)

    lines = stored(store, run_id)
    assert {(line["stream"], line["text"]) for line in lines} == {
        ("stdout", "progress: 10% 20%complete"),
        ("stdout", "then a partial"),
        ("stderr", "no newline on stderr either"),
    }
    assert [line["text"] for line in lines if line["stream"] == "stdout"] == [
        "progress: 10% 20%complete",
        "then a partial",
    ]
    writer.write(run_id, "s", "stdout", " continues as a new line\n")
    assert writer.flush(run_id)
    assert texts(store, run_id)[-1] == " continues as a new line"
