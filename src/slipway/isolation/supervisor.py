"""The first process of a step's (or a load's) child: it runs the user code in a process of its
own and makes sure nothing the code started outlives it.

Run as ``python -m slipway.isolation.supervisor`` by :mod:`slipway.isolation.launcher`. It
becomes a *child subreaper* (``PR_SET_CHILD_SUBREAPER``): every process below it whose parent
exits, a ``setsid`` daemon or the child of ``sleep 600 &`` included, is re-parented to it rather
than to init, so it can always find them. It forks the user process (which runs
:func:`slipway.isolation.child.main`), then waits for one of:

- the user process ends: whatever is left below the supervisor is killed (SIGKILL), the
  killed processes are reported, and the supervisor exits;
- a ``stop`` from the platform (timeout, cancel, shutdown): SIGTERM to every descendant, a grace
  period for the code's ``finally`` blocks and commands to end, then SIGKILL to what remains;
- its stdin closes (the platform died): the same as a stop without grace.

It imports only the standard library, and never runs user code itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import sys
import time
from typing import Any

# Imported before the request comes (a process may be started ahead of its step), so the fork
# that runs the step starts with the SDK loaded.
from slipway.isolation import child
from slipway.isolation.protocol import EVENTS_FD, LineReader, send

_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36
_DEFAULT_GRACE_SECONDS = 3.0
_POLL_SECONDS = 0.05
_MAX_REPORTED = 20


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def descendants(root: int) -> list[int]:
    """Every live process below ``root``, parents before children, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat.rsplit(b")", 1)[-1].split()
        if len(fields) < 2 or fields[0] == b"Z":
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    queue = list(children.get(root, []))
    while queue:
        pid = queue.pop(0)
        found.append(pid)
        queue.extend(children.get(pid, []))
    return found


def _command_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read(400)
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip() or "?"


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


class Supervisor:
    def __init__(self, user_pid: int, grace: float) -> None:
        self.user_pid = user_pid
        self.grace = grace
        self.user_status: int | None = None
        self.me = os.getpid()

    def reap(self) -> None:
        """Collect every exited child (orphans land here too); note the user process's status."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.user_pid:
                self.user_status = status

    def kill_everything(self, *, grace: float) -> list[dict[str, Any]]:
        """SIGTERM (when ``grace``), then SIGKILL, to every descendant until none is left;
        the processes that were still there to be killed, the user process excepted."""
        killed: dict[int, str] = {}
        if grace > 0:
            pids = descendants(self.me)
            for pid in pids:
                killed.setdefault(pid, _command_of(pid))
            _signal_all(pids, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                self.reap()
                if not descendants(self.me):
                    break
                time.sleep(_POLL_SECONDS)
        # Stop first, then kill: a process forking in a loop cannot outrun the sweep.
        for _round in range(100):
            pids = descendants(self.me)
            if not pids:
                break
            for pid in pids:
                killed.setdefault(pid, _command_of(pid))
            _signal_all(pids, signal.SIGSTOP)
            _signal_all(descendants(self.me), signal.SIGKILL)
            time.sleep(0.01)
            self.reap()
        self.reap()
        return [{"pid": pid, "cmd": command} for pid, command in killed.items() if pid != self.user_pid][
            :_MAX_REPORTED
        ]


def main() -> int:
    # Under a debugger (ENABLE_DEBUGGING) pydevd runs this module as `python -m` would and puts
    # "" (the working folder, a run's workdir for the user code) first on sys.path: -P keeps it out.
    if sys.flags.safe_path and "" in sys.path:
        sys.path.remove("")
    given = int(os.environ.pop("SLIPWAY_EVENTS_FD", EVENTS_FD))
    if given != EVENTS_FD:
        os.dup2(given, EVENTS_FD)
        os.close(given)
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    # Another process of the same user may not read this one's memory or environment.
    _prctl(_PR_SET_DUMPABLE, 0)
    control = LineReader(0)
    request: dict[str, Any] | None = None
    pending: list[dict[str, Any]] = []
    while request is None:
        messages = control.read()
        if control.closed and not messages:
            return 2
        if messages:
            request, pending = messages[0], messages[1:]
    grace = float(request.get("grace", _DEFAULT_GRACE_SECONDS))
    user_pid = os.fork()
    if user_pid == 0:  # the user process
        code = 70
        try:
            os.setsid()
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.close(devnull)
            code = child.main(request)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    supervisor = Supervisor(user_pid, grace)
    stop_reason: str | None = None
    for message in pending:
        if message.get("t") == "stop":
            stop_reason = str(message.get("reason", "stopped"))
    # Readable when the user process exits: no polling delay between its end and the report.
    try:
        exited = [os.pidfd_open(user_pid)]
    except (AttributeError, OSError):
        exited = []
    while stop_reason is None and supervisor.user_status is None:
        readable, _, _ = select.select([0, *exited], [], [], _POLL_SECONDS)
        if 0 in readable:
            try:
                messages = control.read()
            except ValueError:
                messages = [{"t": "stop", "reason": "unreadable control message"}]
            for message in messages:
                if message.get("t") == "stop":
                    stop_reason = str(message.get("reason", "stopped"))
            if control.closed and stop_reason is None:
                stop_reason = "the platform went away"
                grace = 0.0
        supervisor.reap()
    killed = supervisor.kill_everything(grace=grace if stop_reason is not None else 0.0)
    if killed:
        send(EVENTS_FD, {"t": "killed", "processes": killed, "stopped": stop_reason})
    status = supervisor.user_status
    exit_info: dict[str, Any] = {"t": "exit", "stopped": stop_reason}
    if status is not None and os.WIFEXITED(status):
        exit_info["code"] = os.WEXITSTATUS(status)
    elif status is not None and os.WIFSIGNALED(status):
        exit_info["signal"] = os.WTERMSIG(status)
    send(EVENTS_FD, exit_info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
