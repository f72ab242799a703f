"""Debugging workflows: a debugger attached to `slipway dev` stops at a breakpoint in a step.

The test speaks the Debug Adapter Protocol (DAP) to debugpy in the runner, as VS Code does
when it attaches: initialize, attach (``"subProcess": true``), configurationDone. Steps run in
processes of their own (``slipway.isolation``): debugpy follows them, and for each one the
adapter sends a ``debugpyAttach`` event, which the client answers as VS Code does, with a new
connection that attaches to that process, sets the breakpoints (in the workflow file and in a
helper module it imports) and sends configurationDone. A run is started through the API, the
step stops at each breakpoint, the stack, scopes and variables are read, execution continues
and the run succeeds.
"""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from runner_process import Runner, start_runner

from slipway.config import DebugSettings, load_settings
from slipway.debugging import start_debugging
from slipway.local.azurite import free_port

# The step body's known line: `marker = ...` is line 10 of the file below (1-based).
WORKFLOW = """\
from helpers_dbg import shout
from slipway.sdk import Workflow

workflow = Workflow(description="stops at a breakpoint")


@workflow.step()
def probe(ctx):
    greeting = "hello " + ctx.params.get("who", "debugger")
    marker = len(greeting)
    loud = shout(greeting)
    return {"greeting": greeting, "marker": marker, "loud": loud}
"""
BREAK_LINE = 10
# A module of workflows/ that the workflow imports: `return upper + "!"` is line 6.
HELPER = """\
\"\"\"A helper the workflow imports: its breakpoint stops too.\"\"\"


def shout(text):
    upper = text.upper()
    return upper + "!"
"""
HELPER_LINE = 6
TIMEOUT = 20.0


class DapError(AssertionError):
    pass


class DapClient:
    """A minimal DAP client: requests wait for their response; events are queued in order."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float = TIMEOUT,
        on_event: Callable[[DapClient, dict[str, Any]], None] | None = None,
    ) -> None:
        self.name = f"{host}:{port}"
        self._on_event = on_event
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._sock.settimeout(None)
        self._timeout = timeout
        self._seq = 0
        self._seq_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._responses: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._responses_lock = threading.Lock()
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen_events: list[dict[str, Any]] = []
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read_loop, name="dap-reader", daemon=True)
        self._reader.start()

    # ------------------------------------------------------------------ wire

    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode("utf-8")
        with self._send_lock:
            self._sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def _read_message(self, stream: Any) -> dict[str, Any] | None:
        length = None
        while True:
            line = stream.readline()
            if not line:
                return None
            line = line.strip()
            if not line:
                break
            name, _, value = line.decode("ascii").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length is None:
            raise DapError("a DAP message without Content-Length")
        body = stream.read(length)
        if len(body) < length:
            return None
        return json.loads(body)

    def _read_loop(self) -> None:
        stream = self._sock.makefile("rb")
        try:
            while True:
                message = self._read_message(stream)
                if message is None:
                    break
                kind = message.get("type")
                if kind == "response":
                    with self._responses_lock:
                        waiting = self._responses.get(message["request_seq"])
                    if waiting is not None:
                        waiting.put(message)
                elif kind == "event":
                    self.seen_events.append(message)
                    self.events.put(message)
                    if self._on_event is not None:
                        self._on_event(self, message)
                elif kind == "request":
                    # Reverse requests (runInTerminal, startDebugging) are not expected on attach.
                    self._send(
                        {"seq": self._next_seq(), "type": "response", "request_seq": message["seq"],
                         "command": message.get("command"), "success": False, "message": "not supported"}
                    )  # fmt: skip
        except (OSError, ValueError):
            pass
        finally:
            self._closed.set()

    def _next_seq(self) -> int:
        with self._seq_lock:
            self._seq += 1
            return self._seq

    # ------------------------------------------------------------------ API

    def send_request(
        self, command: str, arguments: dict[str, Any] | None = None
    ) -> queue.Queue[dict[str, Any]]:
        """Send a request; the queue receives its response (for requests answered late)."""
        seq = self._next_seq()
        answer: queue.Queue[dict[str, Any]] = queue.Queue()
        with self._responses_lock:
            self._responses[seq] = answer
        message: dict[str, Any] = {"seq": seq, "type": "request", "command": command}
        if arguments is not None:
            message["arguments"] = arguments
        self._send(message)
        return answer

    def response(self, answer: queue.Queue[dict[str, Any]], command: str) -> dict[str, Any]:
        try:
            response = answer.get(timeout=self._timeout)
        except queue.Empty:
            raise DapError(f"no response to {command!r} within {self._timeout} s") from None
        if not response.get("success"):
            raise DapError(f"{command!r} failed: {response.get('message')} {response.get('body')}")
        return response

    def request(self, command: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.response(self.send_request(command, arguments), command)

    def wait_event(self, name: str, timeout: float | None = None) -> dict[str, Any]:
        """The next event called ``name``; other events are skipped (they stay in seen_events)."""
        deadline = time.monotonic() + (timeout or self._timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                names = [e.get("event") for e in self.seen_events]
                raise DapError(f"no {name!r} event within {timeout or self._timeout} s (events: {names})")
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if event.get("event") == name:
                return event

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._reader.join(timeout=5)


SETTINGS_ENV = {
    "FUNCTIONS_WORKER_RUNTIME": "python",
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "SLIPWAY_TASK_HUB": "SlipwayTest",
    "SLIPWAY_WORKSPACE_DIR": "/tmp/slipway-test-workspace",
    "SLIPWAY_TEMP_DIR": "/tmp/slipway-test-temp",
    "SLIPWAY_SECRET_STORE": "file",
    "SLIPWAY_SECRETS_FILE": "/tmp/slipway-test-secrets.json",
}


@pytest.mark.parametrize("flag", [None, "false"])
def test_without_enable_debugging_nothing_listens(flag: str | None) -> None:
    env = {**SETTINGS_ENV, "DEBUG_PORT": "5999"}
    if flag is not None:
        env["ENABLE_DEBUGGING"] = flag
    settings = load_settings(env)
    assert settings.debugging is None
    assert start_debugging(settings.debugging) is None


def test_enable_debugging_names_where_debugpy_listens() -> None:
    settings = load_settings({**SETTINGS_ENV, "ENABLE_DEBUGGING": "true", "DEBUG_PORT": "5999"})
    assert settings.debugging == DebugSettings("127.0.0.1", 5999, False)


@pytest.fixture
def debug_runner(tmp_path: Path) -> Iterator[tuple[Runner, int]]:
    port = free_port()
    runner = start_runner(
        tmp_path,
        extra_env={
            "ENABLE_DEBUGGING": "true",
            "DEBUG_PORT": str(port),
            "DEBUG_HOST": "127.0.0.1",
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        },
    )
    try:
        yield runner, port
    finally:
        runner.stop()


INITIALIZE = {
    "clientID": "slipway-test", "adapterID": "python", "pathFormat": "path",
    "linesStartAt1": True, "columnsStartAt1": True, "supportsVariableType": True,
}  # fmt: skip


class Debugger:
    """What VS Code does when it attaches with ``"subProcess": true``: the root session, and
    for each ``debugpyAttach`` event (a step's process, and the process it forks for the user
    code) a new connection that attaches, sets the breakpoints and sends configurationDone.
    ``stopped`` receives (session, event) for every stop in any session."""

    def __init__(self, port: int, breakpoints: dict[Path, list[int]]) -> None:
        self.port = port
        self.breakpoints = breakpoints
        self.stopped: queue.Queue[tuple[DapClient, dict[str, Any]]] = queue.Queue()
        self.sessions: list[DapClient] = []
        self.attached: list[dict[str, Any]] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()

    def _on_event(self, session: DapClient, event: dict[str, Any]) -> None:
        name = event.get("event")
        if name == "stopped":
            self.stopped.put((session, event))
        elif name == "debugpyAttach":
            # Not on the reader thread: it must keep reading while the new session attaches.
            threading.Thread(
                target=self._attach_subprocess, args=(event["body"],), name="dap-attach", daemon=True
            ).start()

    def _open(self, host: str, port: int) -> DapClient:
        session = DapClient(host, port, on_event=self._on_event)
        with self._lock:
            self.sessions.append(session)
        return session

    def _configure(self, session: DapClient, attach: dict[str, Any]) -> None:
        init = session.request("initialize", INITIALIZE)
        assert init["body"].get("supportsConfigurationDoneRequest"), init
        # debugpy answers attach only after configurationDone; `initialized` comes first.
        attached = session.send_request("attach", attach)
        session.wait_event("initialized")
        for path, lines in self.breakpoints.items():
            placed = session.request(
                "setBreakpoints",
                {"source": {"path": str(path)}, "breakpoints": [{"line": line} for line in lines],
                 "lines": lines, "sourceModified": False},
            )["body"]["breakpoints"]  # fmt: skip
            assert [b.get("line", line) for b, line in zip(placed, lines, strict=True)] == lines, placed
        session.request("configurationDone")
        session.response(attached, "attach")

    def attach_root(self, runner: Runner) -> DapClient:
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                root = self._open("127.0.0.1", self.port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"debugpy does not listen on {self.port}:\n{runner.log.read_text()}"
                    ) from None
                time.sleep(0.1)
        # subProcess true (debugpy's default, spelled out): follow the step processes.
        # stopAllThreadsOnSuspend false: only the step's thread stops; by default debugpy
        # suspends every thread, the runner's event loop too, and the API stops answering.
        self._configure(root, {"justMyCode": False, "subProcess": True, "stopAllThreadsOnSuspend": False})
        return root

    def _attach_subprocess(self, body: dict[str, Any]) -> None:
        try:
            connect = body["connect"]
            session = self._open(connect["host"], int(connect["port"]))
            self._configure(session, body)
            with self._lock:
                self.attached.append(body)
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.errors.append(exc)

    def wait_stopped(self, timeout: float = TIMEOUT) -> tuple[DapClient, dict[str, Any]]:
        try:
            return self.stopped.get(timeout=timeout)
        except queue.Empty:
            raise DapError(
                f"no 'stopped' event within {timeout} s; subprocesses attached: "
                f"{[b.get('subProcessId') for b in self.attached]}; errors: {self.errors}; "
                f"events: {[[e.get('event') for e in s.seen_events] for s in self.sessions]}"
            ) from None

    def close(self) -> None:
        for session in reversed(self.sessions):
            session.close()


def _top_frame(session: DapClient, thread_id: int) -> dict[str, Any]:
    frames = session.request("stackTrace", {"threadId": thread_id, "startFrame": 0, "levels": 20})
    return frames["body"]["stackFrames"][0]


def _locals(session: DapClient, frame: dict[str, Any]) -> dict[str, str]:
    scopes = session.request("scopes", {"frameId": frame["id"]})["body"]["scopes"]
    local_scope = next(s for s in scopes if s["name"].lower().startswith("locals"))
    variables = session.request("variables", {"variablesReference": local_scope["variablesReference"]})
    return {v["name"]: v["value"] for v in variables["body"]["variables"]}


def test_a_breakpoint_in_a_workflow_step_stops_the_run_and_shows_its_frame(
    debug_runner: tuple[Runner, int],
) -> None:
    runner, port = debug_runner
    assert f"debug_port={port}" in runner.log.read_text(), runner.log.read_text()
    workflows = runner.workspace / "workflows"
    workflows.mkdir(parents=True, exist_ok=True)
    helper_file = workflows / "helpers_dbg.py"
    helper_file.write_text(HELPER)
    workflow_file = workflows / "probe.py"
    workflow_file.write_text(WORKFLOW)
    assert WORKFLOW.splitlines()[BREAK_LINE - 1].strip().startswith("marker = ")
    assert HELPER.splitlines()[HELPER_LINE - 1].strip().startswith("return upper")
    loaded = runner.api("GET", "/api/workflows/probe")
    assert loaded.status_code == 200, loaded.text
    assert loaded.json().get("error") in (None, {}), loaded.text

    debugger = Debugger(port, {workflow_file: [BREAK_LINE], helper_file: [HELPER_LINE]})
    try:
        root = debugger.attach_root(runner)

        started = runner.api("POST", "/api/workflows/probe/runs", json={"params": {}})
        assert started.status_code == 202, started.text
        run_id = started.json()["run"]["id"]

        # In the step's process: the workflow file, before `marker = ...` ran.
        session, stopped = debugger.wait_stopped()
        assert session is not root, "the step stopped in the platform's process, not its own"
        assert stopped["body"]["reason"] == "breakpoint", stopped
        thread_id = stopped["body"]["threadId"]
        top = _top_frame(session, thread_id)
        assert Path(top["source"]["path"]).resolve() == workflow_file.resolve(), top
        assert top["line"] == BREAK_LINE, top
        assert top["name"] == "probe", top
        values = _locals(session, top)
        assert values.get("greeting") == "'hello debugger'", values
        assert "marker" not in values  # stopped before the line ran
        # pydevd runs the supervisor as `-m` would, with "" on sys.path; -P's promise holds.
        on_path = session.request(
            "evaluate",
            {"expression": '"" in __import__("sys").path', "frameId": top["id"], "context": "repl"},
        )
        assert on_path["body"]["result"] == "False", on_path

        # While the step is held, the platform answers and shows the run as running.
        assert runner.api("GET", "/api/health").status_code == 200
        held = httpx.get(f"{runner.url}/api/runs/{run_id}", timeout=5).json()
        assert held["status"] == "running", held
        assert held["steps"][0]["status"] == "running", held

        session.request("continue", {"threadId": thread_id})

        # In the helper module the workflow imported from workflows/.
        helper_session, stopped = debugger.wait_stopped()
        assert helper_session is session, "the helper stopped in another process than the step"
        assert stopped["body"]["reason"] == "breakpoint", stopped
        thread_id = stopped["body"]["threadId"]
        top = _top_frame(session, thread_id)
        assert Path(top["source"]["path"]).resolve() == helper_file.resolve(), top
        assert top["line"] == HELPER_LINE, top
        assert top["name"] == "shout", top
        values = _locals(session, top)
        assert values.get("text") == "'hello debugger'", values
        assert values.get("upper") == "'HELLO DEBUGGER'", values
        assert runner.api("GET", "/api/health").status_code == 200

        session.request("continue", {"threadId": thread_id})
        run = runner.wait(
            lambda: (
                (r := runner.api("GET", f"/api/runs/{run_id}").json())["status"]
                in ("succeeded", "failed", "canceled")
                and r
            ),
            "the run to end after continue",
            timeout=TIMEOUT,
        )
        assert run["status"] == "succeeded", run
        [step] = run["steps"]
        assert step["output"] == {
            "greeting": "hello debugger",
            "marker": len("hello debugger"),
            "loud": "HELLO DEBUGGER!",
        }
        assert not debugger.errors, debugger.errors
        # Both processes of the step were followed: the supervisor and the user process it forks.
        assert len(debugger.attached) >= 2, debugger.attached
        # debugpy's frozen-modules warning stays out of the step's log.
        logs = runner.api("GET", f"/api/runs/{run_id}/logs").json()["lines"]
        assert not [line for line in logs if "Debugger warning" in line["text"]], logs

        # Detach without stopping the runner: the app keeps serving.
        root.request("disconnect", {"restart": False, "terminateDebuggee": False})
    finally:
        debugger.close()
    assert runner.api("GET", "/api/health").status_code == 200
