"""Starting a workflow's process from the platform, streaming its output, and stopping it.

:meth:`Launcher.run` starts ``python -m slipway.isolation.supervisor`` as the step's user
(:mod:`slipway.isolation.boundary`), writes the request to its stdin and reads, until it exits,
its stdout and stderr (the step's output, line by line) and its events. A stop (the step's
timeout, a cancel, shutdown) is asked of the supervisor, which gives the code a grace period
and then kills every process below it; a supervisor that does not answer is killed outright.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slipway.isolation.boundary import StepIdentity, prepare_folder, step_environment
from slipway.isolation.protocol import LineReader, encode

log = logging.getLogger("slipway.isolation.launcher")

MAX_LINE_BYTES = 8192
# Beyond the supervisor's own grace, how long it may take to report before it is killed.
_SUPERVISOR_SLACK_SECONDS = 5.0
_POLL_SECONDS = 0.1
# A process started ahead is used within this long or replaced (an environment rebuilt, say).
_WARM_MAX_SECONDS = 600.0
# Interpreters (environments) kept warm at once.
_WARM_KEYS = 4

OutputCallback = Callable[[str, str], None]
StopCheck = Callable[[], str | None]


@dataclass
class ChildOutcome:
    """How a child ended: its answer (``described``, ``load_error`` or ``result``), the
    processes its supervisor had to kill, why it was stopped, and how its user process exited."""

    answer: dict[str, Any] | None = None
    killed: list[dict[str, Any]] = field(default_factory=list)
    stopped: str | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    seconds: float = 0.0

    def describe_exit(self) -> str:
        if self.exit_signal is not None:
            try:
                name = signal.Signals(self.exit_signal).name
            except ValueError:
                name = str(self.exit_signal)
            return f"its process was killed by {name}"
        if self.exit_code is not None:
            return f"its process exited with code {self.exit_code}"
        return "its process ended without a word"


class Launcher:
    def __init__(
        self,
        identity: StepIdentity,
        sdk_dir: Path,
        *,
        grace: float = 3.0,
        warm: bool = True,
        debugging: bool = False,
    ) -> None:
        self.identity = identity
        self.debugging = debugging
        self.sdk_dir = sdk_dir
        self.grace = grace
        # One process per interpreter started ahead, waiting for its request: a step does not
        # wait for Python to start and import the SDK (about 40 ms), only for a fork.
        self._warm_enabled = warm
        self._warm: dict[tuple[Path, bool], tuple[subprocess.Popen[bytes], int, float]] = {}
        self._warm_lock = threading.Lock()

    def _spawn(self, python: Path, site: bool) -> tuple[subprocess.Popen[bytes], int]:
        events_read, events_write = os.pipe()
        argv = [str(python), "-P", "-s", *([] if site else ["-S"]), "-m", "slipway.isolation.supervisor"]
        env = step_environment(self.sdk_dir, self.sdk_dir, self.identity, debugging=self.debugging)
        env["SLIPWAY_EVENTS_FD"] = str(events_write)
        identity: dict[str, Any] = {}
        if self.identity.separate:
            identity = {"user": self.identity.uid, "group": self.identity.gid, "extra_groups": []}
        try:
            process = subprocess.Popen(
                argv,
                cwd="/",
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(events_write,),
                start_new_session=True,
                **identity,
            )
        except BaseException:
            os.close(events_read)
            raise
        finally:
            os.close(events_write)
        return process, events_read

    def _take(self, python: Path, site: bool) -> tuple[subprocess.Popen[bytes], int]:
        key = (python, site)
        taken = None
        with self._warm_lock:
            waiting = self._warm.pop(key, None)
        if waiting is not None:
            process, events_read, since = waiting
            if process.poll() is None and time.monotonic() - since < _WARM_MAX_SECONDS:
                taken = (process, events_read)
            else:
                _retire(process, events_read)
        if self._warm_enabled:
            threading.Thread(target=self._prepare, args=(key,), name="slipway-warm", daemon=True).start()
        return taken or self._spawn(python, site)

    def _prepare(self, key: tuple[Path, bool]) -> None:
        try:
            process, events_read = self._spawn(*key)
        except OSError:
            return
        with self._warm_lock:
            previous = self._warm.pop(key, None)
            self._warm[key] = (process, events_read, time.monotonic())
            while len(self._warm) > _WARM_KEYS:
                oldest = min(self._warm, key=lambda k: self._warm[k][2])
                _retire(*self._warm.pop(oldest)[:2])
        if previous is not None:
            _retire(*previous[:2])

    def close(self) -> None:
        """Stop the processes waiting for work (the platform is stopping)."""
        self._warm_enabled = False
        with self._warm_lock:
            waiting, self._warm = list(self._warm.values()), {}
        for process, events_read, _since in waiting:
            _retire(process, events_read)

    def run(
        self,
        request: Mapping[str, Any],
        *,
        python: Path,
        site: bool,
        home: Path,
        on_output: OutputCallback,
        should_stop: StopCheck,
        timeout: float | None,
    ) -> ChildOutcome:
        """Run one request to its end; never raises for what the user code does."""
        started = time.monotonic()
        prepare_folder(home, self.identity)
        process, events_read = self._take(python, site)
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        outcome = ChildOutcome()
        try:
            self._send(process, {**request, "grace": self.grace, "home": str(home)})
            self._pump(process, events_read, outcome, on_output, should_stop, timeout, started)
        finally:
            with contextlib.suppress(OSError):
                os.close(events_read)
            if process.poll() is None:
                _kill_group(process.pid)
                process.wait()
            for pipe in (process.stdin, process.stdout, process.stderr):
                with contextlib.suppress(OSError):
                    pipe.close()
        outcome.seconds = time.monotonic() - started
        return outcome

    @staticmethod
    def _send(process: subprocess.Popen[bytes], message: Mapping[str, Any]) -> None:
        assert process.stdin is not None
        try:
            process.stdin.write(encode(dict(message)))
            process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it already died; its exit says why

    def _pump(
        self,
        process: subprocess.Popen[bytes],
        events_fd: int,
        outcome: ChildOutcome,
        on_output: OutputCallback,
        should_stop: StopCheck,
        timeout: float | None,
        started: float,
    ) -> None:
        assert process.stdout is not None and process.stderr is not None
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ, "stdout")
        selector.register(process.stderr, selectors.EVENT_READ, "stderr")
        events = LineReader(events_fd)
        selector.register(events_fd, selectors.EVENT_READ, "events")
        pending = {"stdout": b"", "stderr": b""}
        stop_sent_at: float | None = None
        exited_at: float | None = None

        def emit(stream: str, data: bytes, final: bool = False) -> None:
            buffered = pending[stream] + data
            *lines, rest = buffered.split(b"\n")
            while len(rest) > MAX_LINE_BYTES:
                lines.append(rest[:MAX_LINE_BYTES])
                rest = rest[MAX_LINE_BYTES:]
            if final and rest:
                lines.append(rest)
                rest = b""
            pending[stream] = rest
            for line in lines:
                on_output(stream, line.decode("utf-8", "replace").rstrip("\r"))

        def event(message: dict[str, Any]) -> None:
            kind = message.get("t")
            if kind in ("log", "cmd"):
                for line in str(message.get("text", "")).rstrip("\n").split("\n"):
                    on_output(str(kind), line)
            elif kind in ("described", "load_error", "result"):
                outcome.answer = message
            elif kind == "killed":
                outcome.killed = list(message.get("processes") or [])
            elif kind == "exit":
                outcome.exit_code = message.get("code")
                outcome.exit_signal = message.get("signal")

        try:
            while selector.get_map():
                for key, _ in selector.select(timeout=_POLL_SECONDS):
                    if key.data == "events":
                        try:
                            messages = events.read()
                        except ValueError:
                            messages = []
                            log.warning("a step's process sent an unreadable event")
                        for message in messages:
                            event(message)
                        if events.closed:
                            selector.unregister(events_fd)
                        continue
                    chunk = os.read(key.fileobj.fileno(), 65536)  # type: ignore[union-attr]
                    if not chunk:
                        selector.unregister(key.fileobj)
                    else:
                        emit(key.data, chunk)
                now = time.monotonic()
                if outcome.stopped is None:
                    reason = should_stop()
                    if reason is None and timeout is not None and now - started > timeout:
                        reason = f"stopped: the step's timeout of {timeout:g} s passed"
                    if reason is not None:
                        outcome.stopped = reason
                        stop_sent_at = now
                        self._send(process, {"t": "stop", "reason": reason})
                elif stop_sent_at is not None and now - stop_sent_at > self.grace + _SUPERVISOR_SLACK_SECONDS:
                    log.warning("a step's supervisor did not stop in time; killing it")
                    _kill_group(process.pid)
                    stop_sent_at = None
                if process.poll() is not None:
                    # Its pipes may still be held by a process that escaped the supervisor.
                    exited_at = exited_at or now
                    if now - exited_at > 1.0:
                        break
        finally:
            selector.close()
        emit("stdout", b"", final=True)
        emit("stderr", b"", final=True)


def _retire(process: subprocess.Popen[bytes], events_read: int) -> None:
    """End a waiting process: closing its stdin is its signal to exit."""
    with contextlib.suppress(OSError):
        os.close(events_read)
    for pipe in (process.stdin, process.stdout, process.stderr):
        with contextlib.suppress(OSError):
            if pipe is not None:
                pipe.close()
    _kill_group(process.pid)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=1)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
