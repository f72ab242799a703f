"""Running a command as its own process group, and stopping it with everything it started.

Commands Slipway runs (workflow ``shell`` steps, builds, git, the SWA CLI) start in their own
session, so their process group holds every descendant that did not leave it on purpose.

:func:`run_command` is a build's or the SWA CLI's command: an explicit environment (never the
worker's: :mod:`slipway.childenv` builds it), output streamed line by line to a callback, the
tail of the output kept for the error message, stopped (the whole group) on a time limit or a
cancel, and no process of the group outliving its command (a watcher or server a script started
in the background is killed when the command ends). :func:`slipway.sdk.shell` does the same for a workflow step, writing into the
run's log.
"""

from __future__ import annotations

import collections
import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CommandResult", "LogSink", "StopCheck", "kill_process_group", "run_command"]


def kill_process_group(process: subprocess.Popen[Any], *, grace: float = 0.0) -> None:
    """SIGTERM the group and wait up to ``grace`` seconds for the leader to exit (when
    ``grace`` > 0), then SIGKILL whatever is left: children that ignored SIGTERM, or that
    outlived the group leader."""
    if grace > 0:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


LogCallback = Callable[[str, str], None]
# Returns a truthy value (a reason string, or True) when the build must stop now.
StopCheck = Callable[[], object]

_MAX_LINE_BYTES = 8192
_TAIL_LINES = 40
# After the command's own process exits, how long a child still holding its pipes may keep
# writing before the group is killed.
_DRAIN_SECONDS = 1.0
_POLL_SECONDS = 0.1


class LogSink:
    """The build's log: lines go to ``log(stream, line)`` until ``max_bytes`` have been written,
    then one marker line says so and further lines are dropped (the tail of each command is
    still kept for its error message)."""

    def __init__(self, log: LogCallback, *, max_bytes: int) -> None:
        self._log = log
        self.max_bytes = max_bytes
        self.written = 0
        self.truncated = False

    def write(self, stream: str, line: str) -> None:
        if self.truncated:
            return
        size = len(line.encode("utf-8", "replace")) + 1
        if self.written + size > self.max_bytes:
            self.truncated = True
            self._log(
                "slipway", f"[log limit of {self.max_bytes} bytes reached; further output is not logged]"
            )
            return
        self.written += size
        self._log(stream, line)


@dataclass(frozen=True)
class CommandResult:
    """How a command ended: its exit code (negative: killed by that signal), why it was stopped
    (``None`` if it ran to its end), and its last lines of output."""

    exit_code: int
    stopped: str | None
    tail: str
    seconds: float


def run_command(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: LogCallback,
    timeout: float | None,
    should_stop: StopCheck | None = None,
    kill_grace: float = 3.0,
    clean: Callable[[str], str] | None = None,
) -> CommandResult:
    """Run ``argv`` in ``cwd`` with exactly ``env``; pass each line of stdout and stderr to
    ``log(stream, line)``, after ``clean(line)`` when given (it also applies to the tail kept for
    error messages, so a secret it masks never reaches either).

    On timeout or when ``should_stop()`` answers truthy, the process group gets SIGTERM, then
    SIGKILL after ``kill_grace`` seconds. Whatever is left of the group when the command ends is
    killed too.
    """
    started = time.monotonic()
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    pending = {"stdout": b"", "stderr": b""}

    def emit(stream: str, data: bytes, *, final: bool = False) -> None:
        buffered = pending[stream] + data
        *lines, rest = buffered.split(b"\n")
        while len(rest) > _MAX_LINE_BYTES:
            lines.append(rest[:_MAX_LINE_BYTES])
            rest = rest[_MAX_LINE_BYTES:]
        if final and rest:
            lines.append(rest)
            rest = b""
        pending[stream] = rest
        for raw in lines:
            line = raw[:_MAX_LINE_BYTES].decode("utf-8", "replace").rstrip("\r")
            if clean is not None:
                line = clean(line)
            tail.append(line)
            log(stream, line)

    process = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stdout is not None and process.stderr is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ, "stdout")
    selector.register(process.stderr, selectors.EVENT_READ, "stderr")
    stopped: str | None = None
    exited_at: float | None = None
    try:
        while selector.get_map():
            for key, _ in selector.select(timeout=_POLL_SECONDS):
                chunk = os.read(key.fileobj.fileno(), 65536)  # type: ignore[union-attr]
                if not chunk:
                    selector.unregister(key.fileobj)
                else:
                    emit(key.data, chunk)
            now = time.monotonic()
            if stopped is None:
                stopped = _stop_reason(now - started, timeout, should_stop)
                if stopped is not None:
                    log("slipway", f"[stopping the command: {stopped}]")
                    kill_process_group(process, grace=kill_grace)
            if process.poll() is not None:
                exited_at = exited_at or now
                if stopped is not None or now - exited_at > _DRAIN_SECONDS:
                    break
    finally:
        selector.close()
        kill_process_group(process)
        process.wait()
        process.stdout.close()
        process.stderr.close()
    emit("stdout", b"", final=True)
    emit("stderr", b"", final=True)
    return CommandResult(process.returncode, stopped, "\n".join(tail), time.monotonic() - started)


def _stop_reason(elapsed: float, timeout: float | None, should_stop: StopCheck | None) -> str | None:
    if timeout is not None and elapsed > timeout:
        return f"timed out after {timeout:g} s"
    if should_stop is not None:
        answer = should_stop()
        if answer:
            return answer if isinstance(answer, str) else "canceled"
    return None
