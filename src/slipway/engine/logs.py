"""Run logs: numbered lines in Table storage, written in atomic batches.

Each run's lines live in one partition of ``SlipwayRunLogs`` with row key = sequence number.
A counter row in the same partition is advanced in the same entity-group transaction as the
lines it numbers (conditional on its ETag), so numbers are unique across processes and a
reader that has seen line N never misses a line numbered below N later: lines become visible
only together with the counter that covers them.

Limits: a line longer than ``MAX_LINE_CHARS`` is cut with a marker; once a run's log reaches
its byte limit, one marker line says so and further output is counted, not stored (the
engine's own few lines, such as the run's end, are still kept).

Writing never holds a run or the engine: ``RunLogWriter`` keeps each run's lines apart and a
few flusher threads store them, one run at a time per thread, a few transactions per turn, so
a chatty run cannot make another wait. Lines beyond the limit are counted in memory (the
count rides on the next transaction); a run whose store falls behind slows down its own
writer, and one whose store fails loses lines, counted, rather than waiting for ever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from slipway.adapters.tables import TableStore
from slipway.engine.runs import now_iso
from slipway.names import RUN_LOGS_TABLE

log = logging.getLogger("slipway.engine.logs")

MAX_LINE_CHARS = 8000
_COUNTER = "~counter"
_BATCH = 99  # one transaction holds 100 operations: the counter and 99 lines


def _row_key(seq: int) -> str:
    return f"{seq:010d}"


@dataclass
class LogLine:
    step: str
    stream: str
    text: str
    time: str = field(default_factory=now_iso)
    # Not a line: here the writer counted ``dropped`` lines beyond the limit instead of keeping
    # them; the store writes the limit's marker at this place if it is the run's first drop.
    dropped: int = 0


class LogUsage(NamedTuple):
    """What a run's counter row says: bytes stored and lines dropped beyond the limit."""

    bytes: int
    dropped: int


def cap_line(text: str) -> str:
    if len(text) <= MAX_LINE_CHARS:
        return text
    return f"{text[:MAX_LINE_CHARS]} … [line truncated: {len(text) - MAX_LINE_CHARS} more characters]"


def _limit_marker(limit_bytes: int) -> str:
    return (
        f"[log limit of {limit_bytes // (1024 * 1024)} MB reached: further output of this run is not stored]"
    )


class RunLogStore:
    def __init__(self, tables: TableStore, *, limit_bytes: int) -> None:
        self._tables = tables
        self.limit_bytes = limit_bytes
        # The counter row as this process last wrote it: the next batch tries it without a
        # read, and reads only when another writer moved it (the ETag no longer matches).
        self._counters: dict[str, tuple[dict[str, Any], str]] = {}
        self._counters_lock = threading.Lock()

    def append(self, run_id: str, lines: list[LogLine], *, dropped: int = 0) -> LogUsage:
        """Store ``lines`` (already cut by ``cap_line``) after the run's last, and count
        ``dropped`` more lines the caller kept back beyond the limit; the counter as it is now."""
        usage = None
        batches = [lines[start : start + _BATCH] for start in range(0, len(lines), _BATCH)]
        for n, batch in enumerate(batches):
            # The count goes with the last batch, if its marker (should it need one) has room.
            counted = dropped if n == len(batches) - 1 and len(batch) < _BATCH else 0
            usage = self._append_batch(run_id, batch, counted)
            dropped -= counted
        if dropped:
            usage = self._append_batch(run_id, [], dropped)
        return usage if usage is not None else self.usage(run_id)

    def usage(self, run_id: str) -> LogUsage:
        """The run's counter, read once: the next ``append`` starts from it without a read."""
        with self._counters_lock:
            known = self._counters.get(run_id)
        if known is None:
            known = self._tables.get_entity_etag(RUN_LOGS_TABLE, run_id, _COUNTER)
            if known is not None:
                with self._counters_lock:
                    self._remember(run_id, known)
        counter = known[0] if known is not None else {}
        return LogUsage(int(counter.get("bytes", 0)), int(counter.get("dropped", 0)))

    def _remember(self, run_id: str, counter: tuple[dict[str, Any], str]) -> None:
        if len(self._counters) > 1000:
            self._counters.clear()
        self._counters[run_id] = counter

    def _append_batch(self, run_id: str, lines: list[LogLine], kept_back: int) -> LogUsage:
        for attempt in range(50):
            with self._counters_lock:
                known = self._counters.pop(run_id, None) if attempt == 0 else None
            found = known or self._tables.get_entity_etag(RUN_LOGS_TABLE, run_id, _COUNTER)
            counter, etag = found if found is not None else ({}, None)
            seq = int(counter.get("next", 1))
            used = int(counter.get("bytes", 0))
            dropped = int(counter.get("dropped", 0))
            kept: list[LogLine] = []
            marker = LogLine("", "system", _limit_marker(self.limit_bytes))
            for line in lines:
                if line.dropped:
                    if not dropped:
                        kept.append(marker)
                    dropped += line.dropped
                    continue
                size = len(line.text.encode("utf-8"))
                # The engine's own lines (a step started, ended, the run's end) are always kept.
                over = dropped or used + size > self.limit_bytes
                if over and line.stream != "system":
                    if not dropped:
                        kept.append(marker)
                    dropped += 1
                    continue
                kept.append(line)
                used += size
            if kept_back and not dropped:
                kept.append(marker)
            dropped += kept_back
            operations: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
                ("create", self._row(run_id, seq + n, line), {}) for n, line in enumerate(kept)
            ]
            seq += len(kept)
            counter_row = {
                "PartitionKey": run_id,
                "RowKey": _COUNTER,
                "next": seq,
                "bytes": used,
                "dropped": dropped,
            }
            operations.insert(
                0,
                ("replace", counter_row, {"etag": etag}) if etag is not None else ("create", counter_row, {}),
            )
            etags = self._tables.transact(RUN_LOGS_TABLE, operations)
            if etags is not None:
                if etags[0]:
                    with self._counters_lock:
                        self._remember(run_id, (counter_row, etags[0]))
                return LogUsage(used, dropped)
        raise RuntimeError(f"could not append to the log of run {run_id}: too much contention")

    @staticmethod
    def _row(run_id: str, seq: int, line: LogLine) -> dict[str, Any]:
        return {
            "PartitionKey": run_id,
            "RowKey": _row_key(seq),
            "step": line.step,
            "stream": line.stream,
            "text": line.text,
            "time": line.time,
        }

    def read(self, run_id: str, *, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        rows = self._tables.query_entities(
            RUN_LOGS_TABLE,
            "PartitionKey eq @pk and RowKey gt @after and RowKey lt @counter",
            parameters={"pk": run_id, "after": _row_key(max(after, 0)), "counter": _COUNTER},
            page_size=min(limit, 1000),
        )
        lines = []
        for row in rows:
            lines.append(
                {
                    "seq": int(row["RowKey"]),
                    "step": row.get("step", ""),
                    "stream": row.get("stream", ""),
                    "time": row.get("time"),
                    "text": row.get("text", ""),
                }
            )
            if len(lines) >= limit:
                break
        return lines

    def page(self, run_id: str, *, after: int, limit: int, status: str, finished: bool) -> dict[str, Any]:
        """The lines after ``after`` as the API pages them: ``next`` to ask from, and
        ``complete`` once the run (or deployment) has ``finished`` and no page follows, so a
        reader knows it has seen everything there will ever be."""
        lines = self.read(run_id, after=after, limit=limit)
        return {
            "lines": lines,
            "next": lines[-1]["seq"] if lines else after,
            "status": status,
            "complete": finished and len(lines) < limit,
        }

    def dropped(self, run_id: str) -> int:
        counter = self._tables.get_entity(RUN_LOGS_TABLE, run_id, _COUNTER)
        return int(counter.get("dropped", 0)) if counter else 0


# How the writer paces itself (RunLogWriter's keyword arguments default to these).
_FLUSHERS = 4  # threads storing runs' lines, each one run at a time
_TURN_TRANSACTIONS = 10  # a run stores this many batches, then waits behind the other runs
_MAX_PENDING_LINES = 5000  # a run with this many lines not yet stored makes its writer wait
_MAX_PENDING_BYTES = 2 * 1024 * 1024
_WRITE_WAIT_SECONDS = 10.0  # a writer waits this long for its run's store, then lines are lost
_GATHER_SECONDS = 0.25  # lines written this close together go out in one transaction
_RETRY_SECONDS = 1.0  # after a failed batch, the run's next try
_FLUSH_ALL_SECONDS = 10.0
_FLUSH_RUN_SECONDS = 60.0
_FORGET_SECONDS = 600.0  # an idle run's state is kept this long, then read again from its counter

_IDLE, _GATHERING, _READY, _STORING = "idle", "gathering", "ready", "storing"


class _RunLog:
    """One run's buffers; ``lock`` guards them (never held during storage I/O), ``phase`` is
    the writer's queue lock's."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)  # a batch went out or came back
        self.pending: deque[tuple[LogLine, int]] = deque()  # with each line's size in bytes
        self.pending_bytes = 0
        self.partial: dict[tuple[str, str], str] = {}
        self.known = False  # the counter row was read into ``used``
        self.used = 0  # bytes stored or on their way, as the limit counts them
        self.unstored = 0  # of which not yet stored
        self.over = False  # past the limit: only the engine's lines are kept
        self.dropped = 0  # lines beyond the limit, counted since the last batch took them
        self.dropped_total = 0
        self.dropped_sent = 0  # of dropped_total, tried to store
        self.lost = 0  # lines given up (store failing or too slow), not yet said in the log
        self.pushed = 0  # entries ever queued
        self.finished = 0  # of which stored or given up
        self.failures = 0
        self.failing = False  # the last batch failed
        self.stalled = False  # a writer waited its longest for room: further lines are lost
        self.touched = time.monotonic()
        self.forgotten = False
        self.phase = _IDLE
        self.ticket = 0


class RunLogWriter:
    """Buffers a process's log output per run and stores it in the background.

    Text arrives in arbitrary pieces (``print`` writes the text and the newline apart); it is
    split into lines per step and stream, and a partial line waits for its end or a flush.
    Each run's lines reach the store in order, one batch at a time; runs take turns.
    """

    def __init__(
        self,
        store: RunLogStore,
        *,
        flushers: int = _FLUSHERS,
        turn_transactions: int = _TURN_TRANSACTIONS,
        max_pending_lines: int = _MAX_PENDING_LINES,
        max_pending_bytes: int = _MAX_PENDING_BYTES,
        write_wait_seconds: float = _WRITE_WAIT_SECONDS,
        gather_seconds: float = _GATHER_SECONDS,
    ) -> None:
        self._store = store
        self._flushers = flushers
        self._turn_transactions = turn_transactions
        self._max_lines = max_pending_lines
        self._max_bytes = max_pending_bytes
        self._write_wait = write_wait_seconds
        self._gather = gather_seconds
        self._runs: dict[str, _RunLog] = {}
        self._runs_lock = threading.Lock()
        # Guards the queue of runs to store and each run's ``phase``; never held during I/O.
        # Lock order: a run's lock, then this one.
        self._queue = threading.Condition()
        self._ready: deque[_RunLog] = deque()
        self._gathering: deque[tuple[float, int, _RunLog]] = deque()
        self._threads: list[threading.Thread] = []
        self._closing = False

    # -- writing ---------------------------------------------------------------------------

    def write(self, run_id: str, step: str, stream: str, text: str) -> None:
        """Add ``text`` to the run's log; complete lines are stored soon. Waits (bounded) only
        when this run's store is far behind."""
        while True:
            run = self._run(run_id)
            with run.lock:
                if run.forgotten:
                    continue
                key = (step, stream)
                buffered = run.partial.pop(key, "") + text if run.partial else text
                *complete, rest = buffered.split("\n")
                if len(rest) > MAX_LINE_CHARS:
                    complete.append(rest)
                    rest = ""
                if rest:
                    run.partial[key] = rest
                for line in complete:
                    self._accept(run, LogLine(step, stream, cap_line(line)), wait=True)
                return

    def line(self, run_id: str, step: str, stream: str, text: str) -> None:
        self.write(run_id, step, stream, text.rstrip("\n") + "\n")

    def _run(self, run_id: str) -> _RunLog:
        run = self._runs.get(run_id)
        if run is None:
            with self._runs_lock:
                run = self._runs.get(run_id)
                if run is None:
                    run = self._runs[run_id] = _RunLog(run_id)
        run.touched = time.monotonic()
        return run

    def _accept(self, run: _RunLog, line: LogLine, *, wait: bool) -> None:
        """Queue ``line`` (the run's lock held), or count it: beyond the limit, or lost."""
        size = len(line.text.encode("utf-8"))
        if line.stream != "system":
            # The engine's own lines (a step started, ended, the run's end) are always kept,
            # and never wait.
            if run.over or run.used + size > self._store.limit_bytes:
                if run.over:
                    run.dropped += 1
                    run.dropped_total += 1
                    self._schedule(run, now=False)
                else:
                    run.over = True
                    self._push(run, LogLine("", "system", "", line.time, dropped=1), 0)
                return
            if wait and not self._room(run):
                run.lost += 1
                return
        self._say_lost(run)
        self._push(run, line, size)

    def _say_lost(self, run: _RunLog) -> None:
        if run.lost:
            lost, run.lost = run.lost, 0
            text = f"[{lost} log lines were not stored: the log store failed or fell behind]"
            self._push(run, LogLine("", "system", text), len(text.encode("utf-8")))

    def _push(self, run: _RunLog, line: LogLine, size: int) -> None:
        run.pending.append((line, size))
        run.pending_bytes += size
        run.used += size
        run.unstored += size
        run.pushed += 1
        # A run first seen goes at once: its counter says how much of its limit is left.
        self._schedule(run, now=not run.known)

    def _full(self, run: _RunLog) -> bool:
        return len(run.pending) >= self._max_lines or run.pending_bytes >= self._max_bytes

    def _room(self, run: _RunLog) -> bool:
        """Whether the run has room for one more line, waiting (bounded) for its store."""
        if not self._full(run):
            return True
        if run.failing or run.stalled:
            return False
        self._schedule(run, now=True)
        deadline = time.monotonic() + self._write_wait
        while self._full(run):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or run.failing:
                run.stalled = True
                log.warning(
                    "the log store of run %s fell behind: lines are lost until it catches up", run.run_id
                )
                return False
            run.changed.wait(min(remaining, 1.0))
        return True

    # -- scheduling ------------------------------------------------------------------------

    def _schedule(self, run: _RunLog, *, now: bool) -> None:
        """Queue the run for a flusher (the run's lock held): ``now``, or after a short wait
        so that lines written close together share a transaction."""
        if run.phase == _READY or run.phase == _STORING or (run.phase == _GATHERING and not now):
            return  # whoever stores it next sees what was added (phase leaves STORING under the run's lock)
        with self._queue:
            if run.phase == _IDLE or (run.phase == _GATHERING and now):
                self._enqueue(run, delay=0.0 if now else self._gather)
            self._start_flushers()

    def _enqueue(self, run: _RunLog, *, delay: float) -> None:
        # The queue's lock held.
        if delay <= 0:
            run.phase = _READY
            self._ready.append(run)
        else:
            run.phase = _GATHERING
            run.ticket += 1
            self._gathering.append((time.monotonic() + delay, run.ticket, run))
        self._queue.notify()

    def _start_flushers(self) -> None:
        # The queue's lock held.
        self._closing = False
        self._threads = [thread for thread in self._threads if thread.is_alive()]
        while len(self._threads) < self._flushers:
            thread = threading.Thread(target=self._flusher, name="slipway-run-logs", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _next(self) -> _RunLog | None:
        """The next run to store, waiting for one; None when closing and nothing is left."""
        with self._queue:
            while True:
                now = time.monotonic()
                while self._gathering and self._gathering[0][0] <= now:
                    _, ticket, run = self._gathering.popleft()
                    if run.phase == _GATHERING and run.ticket == ticket:
                        run.phase = _READY
                        self._ready.append(run)
                if self._ready:
                    run = self._ready.popleft()
                    run.phase = _STORING
                    return run
                if self._closing and not self._gathering:
                    return None
                timeout = self._gathering[0][0] - now if self._gathering else 60.0
                if not self._queue.wait(timeout) and not self._gathering:
                    self._forget_idle()

    def _flusher(self) -> None:
        while (run := self._next()) is not None:
            try:
                self._store_turn(run)
            except Exception:  # never lose the thread; the turn already counted what it lost
                log.exception("storing the log of run %s failed", run.run_id)

    # -- storing ---------------------------------------------------------------------------

    def _store_turn(self, run: _RunLog) -> None:
        """Store a few batches of the run's lines, then let the other runs have their turn."""
        failed = False
        try:
            if not run.known:
                self._learn_usage(run)
            for _ in range(self._turn_transactions):
                with run.lock:
                    taken = [run.pending.popleft() for _ in range(min(_BATCH, len(run.pending)))]
                    # The count of lines beyond the limit follows the marker's place in the
                    # queue, so it goes once the queue is empty.
                    dropped = 0
                    if not run.pending:
                        dropped, run.dropped = run.dropped, 0
                    if not taken and not dropped:
                        break
                    taken_bytes = sum(size for _, size in taken)
                    run.pending_bytes -= taken_bytes
                    run.changed.notify_all()  # room for a waiting writer
                lines = [line for line, _ in taken]
                try:
                    usage = self._store.append(run.run_id, lines, dropped=dropped)
                except Exception:
                    failed = True
                    if not run.failing:
                        log.exception("could not store %d log lines of run %s", len(lines), run.run_id)
                    usage = None
                with run.lock:
                    run.finished += len(taken)
                    run.dropped_sent += dropped
                    run.unstored -= taken_bytes
                    if usage is not None:
                        run.failing = run.stalled = False
                        run.used = usage.bytes + run.unstored
                        run.over = run.over or usage.dropped > 0
                    else:
                        run.failing = True
                        run.failures += 1
                        run.used -= taken_bytes
                        run.lost += sum(1 for line in lines if not line.dropped)
                        run.dropped += dropped  # the count rides on a later batch
                        run.dropped += sum(line.dropped for line in lines)
                    run.changed.notify_all()
                if failed:
                    break
        finally:
            with run.lock, self._queue:
                if run.pending or run.dropped:
                    self._enqueue(run, delay=_RETRY_SECONDS if failed else 0.0)
                else:
                    run.phase = _IDLE

    def _learn_usage(self, run: _RunLog) -> None:
        """What the run's counter says so far (another process may have written to it)."""
        try:
            usage = self._store.usage(run.run_id)
        except Exception:
            log.warning("could not read the log counter of run %s", run.run_id, exc_info=True)
            return
        with run.lock:
            # What was queued meanwhile is measured again from there: lines past the limit
            # are only counted, after one marker.
            run.known = True
            used, over, counted = usage.bytes, usage.dropped > 0, 0
            marked = over
            kept: deque[tuple[LogLine, int]] = deque()
            for line, size in run.pending:
                beyond = line.dropped or (
                    line.stream != "system" and (over or used + size > self._store.limit_bytes)
                )
                if not beyond:
                    kept.append((line, size))
                    used += size
                    continue
                over = True
                if marked:
                    counted += line.dropped or 1
                else:
                    marked = True
                    kept.append((LogLine("", "system", "", line.time, dropped=line.dropped or 1), 0))
            run.finished += len(run.pending) - len(kept)
            run.pending = kept
            run.pending_bytes = run.unstored = used - usage.bytes
            run.used = used
            run.over = run.over or over
            run.dropped += counted
            run.dropped_total += counted
            run.changed.notify_all()

    # -- flushing --------------------------------------------------------------------------

    def flush(self, run_id: str | None = None, *, timeout: float | None = None) -> bool:
        """Store what is buffered, partial lines included: for one run (waiting for that run
        only, up to ``timeout``, 60 s by default), or for all (10 s by default, as at shutdown).
        True when it all was stored in time."""
        if run_id is None:
            with self._runs_lock:
                runs = list(self._runs.values())
            timeout = _FLUSH_ALL_SECONDS if timeout is None else timeout
        else:
            found = self._runs.get(run_id)
            runs = [found] if found is not None else []
            timeout = _FLUSH_RUN_SECONDS if timeout is None else timeout
        deadline = time.monotonic() + timeout
        targets = []
        for run in runs:
            with run.lock:
                for (step, stream), rest in run.partial.items():
                    self._accept(run, LogLine(step, stream, cap_line(rest)), wait=False)
                run.partial.clear()
                self._say_lost(run)
                targets.append((run, run.pushed, run.dropped_total, run.failures))
                if run.pushed > run.finished or run.dropped:
                    self._schedule(run, now=True)
        stored = True
        for run, pushed, dropped, failures in targets:
            with run.lock:
                while run.finished < pushed or run.dropped_sent < dropped:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or run.failures != failures:
                        stored = False
                        break
                    run.changed.wait(remaining)
                stored = stored and run.failures == failures
        return stored

    def close(self, timeout: float = _FLUSH_ALL_SECONDS) -> bool:
        """Flush everything (bounded by ``timeout``) and let the flusher threads end."""
        deadline = time.monotonic() + timeout
        stored = self.flush(timeout=timeout)
        with self._queue:
            self._closing = True
            self._queue.notify_all()
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return stored

    def _forget_idle(self) -> None:
        """Drop the state of runs idle for long (the queue's lock held)."""
        horizon = time.monotonic() - _FORGET_SECONDS
        with self._runs_lock:
            for run_id, run in list(self._runs.items()):
                if run.phase != _IDLE or run.touched > horizon or not run.lock.acquire(blocking=False):
                    continue
                try:
                    if not (run.pending or run.partial or run.dropped or run.lost):
                        run.forgotten = True
                        del self._runs[run_id]
                finally:
                    run.lock.release()
