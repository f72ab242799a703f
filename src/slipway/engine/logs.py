"""Run logs: numbered lines in Table storage, written in atomic batches.

Each run's lines live in one partition of ``SlipwayRunLogs`` with row key = sequence number.
A counter row in the same partition is advanced in the same entity-group transaction as the
lines it numbers (conditional on its ETag), so numbers are unique across processes and a
reader that has seen line N never misses a line numbered below N later: lines become visible
only together with the counter that covers them.

Limits: a line longer than ``MAX_LINE_CHARS`` is cut with a marker; once a run's log reaches
its byte limit, one marker line says so and further output is counted, not stored (the
engine's own few lines, such as the run's end, are still kept).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from slipway.adapters.tables import TableStore
from slipway.engine.runs import now_iso
from slipway.names import RUN_LOGS_TABLE

log = logging.getLogger("slipway.engine.logs")

MAX_LINE_CHARS = 8000
_COUNTER = "~counter"
_BATCH = 99  # one transaction holds 100 operations: the counter and 99 lines
_FLUSH_SECONDS = 0.25


def _row_key(seq: int) -> str:
    return f"{seq:010d}"


@dataclass
class LogLine:
    step: str
    stream: str
    text: str
    time: str = field(default_factory=now_iso)


def cap_line(text: str) -> str:
    if len(text) <= MAX_LINE_CHARS:
        return text
    return f"{text[:MAX_LINE_CHARS]} … [line truncated: {len(text) - MAX_LINE_CHARS} more characters]"


class RunLogStore:
    def __init__(self, tables: TableStore, *, limit_bytes: int) -> None:
        self._tables = tables
        self.limit_bytes = limit_bytes
        # The counter row as this process last wrote it: the next batch tries it without a
        # read, and reads only when another writer moved it (the ETag no longer matches).
        self._counters: dict[str, tuple[dict[str, Any], str]] = {}
        self._counters_lock = threading.Lock()

    def append(self, run_id: str, lines: list[LogLine]) -> None:
        for start in range(0, len(lines), _BATCH):
            self._append_batch(run_id, lines[start : start + _BATCH])

    def _append_batch(self, run_id: str, lines: list[LogLine]) -> None:
        for attempt in range(50):
            with self._counters_lock:
                known = self._counters.pop(run_id, None) if attempt == 0 else None
            found = known or self._tables.get_entity_etag(RUN_LOGS_TABLE, run_id, _COUNTER)
            counter, etag = found if found is not None else ({}, None)
            seq = int(counter.get("next", 1))
            used = int(counter.get("bytes", 0))
            dropped = int(counter.get("dropped", 0))
            operations: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
            for line in lines:
                text = cap_line(line.text)
                size = len(text.encode("utf-8"))
                # The engine's own lines (a step started, ended, the run's end) are always kept.
                over = dropped or used + size > self.limit_bytes
                if over and line.stream != "system":
                    if not dropped:
                        operations.append(("create", self._row(run_id, seq, LogLine(
                            "", "system",
                            f"[log limit of {self.limit_bytes // (1024 * 1024)} MB reached: "
                            "further output of this run is not stored]",
                        )), {}))  # fmt: skip
                        seq += 1
                    dropped += 1
                    continue
                operations.append(
                    ("create", self._row(run_id, seq, LogLine(line.step, line.stream, text, line.time)), {})
                )
                seq += 1
                used += size
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
                if not etags[0]:
                    return
                with self._counters_lock:
                    if len(self._counters) > 1000:
                        self._counters.clear()
                    self._counters[run_id] = (counter_row, etags[0])
                return
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


class RunLogWriter:
    """Buffers a process's log output per run and flushes it in the background.

    Text arrives in arbitrary pieces (``print`` writes the text and the newline apart); it is
    split into lines per step and stream, and a partial line waits for its end or a flush.
    """

    def __init__(self, store: RunLogStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._pending: dict[str, list[LogLine]] = {}
        self._partial: dict[tuple[str, str, str], str] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def write(self, run_id: str, step: str, stream: str, text: str) -> None:
        with self._lock:
            key = (run_id, step, stream)
            buffered = self._partial.pop(key, "") + text
            *complete, rest = buffered.split("\n")
            if len(rest) > MAX_LINE_CHARS:
                complete.append(rest)
                rest = ""
            if rest:
                self._partial[key] = rest
            if complete:
                self._pending.setdefault(run_id, []).extend(LogLine(step, stream, line) for line in complete)
            self._ensure_thread()
        self._wake.set()

    def line(self, run_id: str, step: str, stream: str, text: str) -> None:
        self.write(run_id, step, stream, text.rstrip("\n") + "\n")

    def flush(self, run_id: str | None = None) -> None:
        """Store what is buffered (for one run, or all), partial lines included."""
        self._drain(run_id, partial=True)

    def _drain(self, run_id: str | None, *, partial: bool) -> None:
        # One drain at a time, so a run's batches reach the store in the order they were written.
        with self._flush_lock:
            with self._lock:
                if partial:
                    for key in [key for key in self._partial if run_id is None or key[0] == run_id]:
                        rest = self._partial.pop(key)
                        self._pending.setdefault(key[0], []).append(LogLine(key[1], key[2], rest))
                runs = [run_id] if run_id is not None else list(self._pending)
                batches = {run: self._pending.pop(run) for run in runs if self._pending.get(run)}
            for run, lines in batches.items():
                try:
                    self._store.append(run, lines)
                except Exception:
                    log.exception("could not store %d log lines of run %s", len(lines), run)

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="slipway-run-logs", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        pause = threading.Event()
        while True:
            self._wake.wait()
            self._wake.clear()
            # Lines written close together go out in one transaction.
            pause.wait(_FLUSH_SECONDS)
            self._drain(None, partial=False)
