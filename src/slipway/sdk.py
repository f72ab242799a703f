"""The workflow SDK: what a file in ``/workspace/workflows/`` imports.

A workflow file declares one :class:`Workflow` at module level; its name is the file's name.
Steps are plain functions decorated with :meth:`Workflow.step`. A step receives a
:class:`StepContext` and, as keyword arguments, the outputs of the steps it runs ``after``;
what it returns (JSON-able) is passed on to the steps that depend on it. Steps that do not
depend on each other run in parallel. :meth:`Workflow.on_failure` handlers run, in the order
declared, when a step fails for good. :func:`shell` runs a command with its output streamed
into the run's log.

Example (shipped as ``workflows/hello.py`` in a new workspace)::

    from slipway.sdk import Param, Workflow, shell

    workflow = Workflow(
        description="Greets someone, in parallel, then cleans up.",
        params={"name": Param(str, default="world"), "times": Param(int, default=2)},
    )

    @workflow.step()
    def greet(ctx):
        return f"Hello, {ctx.params['name']}!"

    @workflow.step(after=[greet], retries=2, timeout=60)
    def shout(ctx, greet):
        return shell(f"echo {greet!r} | tr a-z A-Z").stdout.strip()
"""

from __future__ import annotations

import contextvars
import inspect
import os
import re
import selectors
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from slipway.childenv import child_environment
from slipway.processes import kill_process_group

__all__ = [
    "Param",
    "Secrets",
    "ShellError",
    "ShellResult",
    "Step",
    "StepContext",
    "Workflow",
    "WorkflowDefinitionError",
    "shell",
]

PARAM_TYPES: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
# A workflow secret's name: as an environment variable's, in capitals (Key Vault's names are
# case-insensitive, so two names differing in case could not both be kept there).
SECRET_NAME_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]{0,62}$")
_MAX_STEPS = 200
# A shell's captured stdout stays in memory for the caller; beyond this only the log has it.
_MAX_CAPTURE_BYTES = 1024 * 1024
_KILL_GRACE_SECONDS = 3.0
# After a command exits, how long output of what it left running is still read.
_DRAIN_SECONDS = 1.0


class WorkflowDefinitionError(Exception):
    """The workflow file declares something Slipway cannot run (reported with file and line)."""


@dataclass(frozen=True)
class Param:
    """A run parameter: its type (str, int, float or bool), default and allowed values.

    A parameter without a default is required.
    """

    type: type = str
    default: Any = None
    choices: Sequence[Any] | None = None
    help: str = ""
    required: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if self.type not in PARAM_TYPES:
            raise WorkflowDefinitionError(
                f"Param type must be one of str, int, float, bool (got {self.type!r})"
            )
        object.__setattr__(self, "required", self.default is None)


@dataclass(frozen=True)
class Step:
    """A step as declared: the function and how to run it."""

    name: str
    function: Callable[..., Any]
    after: tuple[str, ...]
    retries: int
    retry_delay: float
    timeout: float | None
    line: int
    on_failure: bool = False


class StepRuntime(Protocol):
    """What the engine gives a running step: where its output goes and whether to stop."""

    def write(self, text: str, stream: str) -> None: ...

    def should_stop(self) -> str | None:
        """A reason to stop now (canceled, timed out), or None."""
        ...

    def remaining_seconds(self) -> float | None: ...

    @property
    def workdir(self) -> Path:
        """The run's scratch folder: where commands run unless told otherwise."""
        ...


_runtime: contextvars.ContextVar[StepRuntime | None] = contextvars.ContextVar("slipway_step", default=None)


@dataclass
class StepContext:
    """What a step function receives first.

    ``secrets`` holds the values of the workflow secrets the workflow declares
    (``Workflow(secrets=["NAME"])``), masked wherever they appear in the run's log;
    ``params`` are the run's validated parameters; ``outputs`` the outputs of every step that
    finished before this one (for ``on_failure`` handlers, all of them); ``failure`` names the
    step that failed for good and why (``on_failure`` handlers only); ``workdir`` is a scratch
    folder shared by the run's steps and removed when the run ends.
    """

    run_id: str
    workflow: str
    step: str
    attempt: int
    params: Mapping[str, Any]
    outputs: Mapping[str, Any]
    workdir: Path
    failure: Mapping[str, str] | None = None
    secrets: Mapping[str, str] = field(default_factory=dict)

    def log(self, message: str) -> None:
        """Write a line to the run's log."""
        runtime = _runtime.get()
        if runtime is not None:
            runtime.write(message.rstrip("\n") + "\n", "log")


class Secrets(Mapping[str, str]):
    """``ctx.secrets``: the values of the secrets the workflow declared, read-only."""

    def __init__(self, values: Mapping[str, str], *, declared: Sequence[str]) -> None:
        self._values = dict(values)
        self._declared = tuple(declared)

    def __getitem__(self, name: str) -> str:
        try:
            return self._values[name]
        except KeyError:
            if name not in self._declared:
                raise KeyError(
                    f"{name!r} is not declared: add it to Workflow(secrets=[...]) to read it"
                ) from None
            raise KeyError(f"secret {name!r} is not set: an admin sets it under Secrets") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:  # never the values, even in a debugger or a traceback
        return f"Secrets({sorted(self._values)})"


class Workflow:
    """A workflow: parameters, secrets it reads, steps and failure handlers."""

    def __init__(
        self,
        *,
        description: str = "",
        params: Mapping[str, Param] | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        self.description = description
        if isinstance(secrets, str):
            raise WorkflowDefinitionError('secrets must be a list of names, such as secrets=["API_TOKEN"]')
        self.secrets: tuple[str, ...] = tuple(dict.fromkeys(secrets))
        for name in self.secrets:
            if not isinstance(name, str) or not SECRET_NAME_PATTERN.match(name):
                raise WorkflowDefinitionError(
                    f"secret name {name!r}: use capitals, digits and _ (such as API_TOKEN), at most 63"
                )
        self.params: dict[str, Param] = dict(params or {})
        for name, param in self.params.items():
            if not name.isidentifier():
                raise WorkflowDefinitionError(f"parameter name {name!r} is not a Python identifier")
            if not isinstance(param, Param):
                raise WorkflowDefinitionError(f"parameter {name!r} must be declared with Param(...)")
        self.steps: dict[str, Step] = {}
        self.failure_handlers: dict[str, Step] = {}

    def step(
        self,
        *,
        after: Sequence[Callable[..., Any] | str] = (),
        retries: int = 0,
        retry_delay: float = 1.0,
        timeout: float | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Declare a step. ``retries`` extra attempts, waiting ``retry_delay`` seconds, doubled
        after each failure; ``timeout`` seconds per attempt."""

        def register(function: Callable[..., Any]) -> Callable[..., Any]:
            names = tuple(_step_name(dependency) for dependency in after)
            for name in names:
                if name not in self.steps:
                    raise WorkflowDefinitionError(
                        f"step {function.__name__!r} runs after {name!r}, which is not a step declared above it"
                    )
            _check_signature(function, names)
            self._add(self.steps, _new_step(function, names, retries, retry_delay, timeout, on_failure=False))
            return function

        return register

    def on_failure(self, function: Callable[..., Any] | None = None, *, timeout: float | None = None) -> Any:
        """Declare a handler that runs when a step fails for good (``ctx.failure`` says which)."""

        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            _check_signature(handler, ())
            self._add(self.failure_handlers, _new_step(handler, (), 0, 1.0, timeout, on_failure=True))
            return handler

        return register(function) if function is not None else register

    def _add(self, into: dict[str, Step], step: Step) -> None:
        if step.name in self.steps or step.name in self.failure_handlers:
            raise WorkflowDefinitionError(f"two steps are named {step.name!r}")
        if len(self.steps) + len(self.failure_handlers) >= _MAX_STEPS:
            raise WorkflowDefinitionError(f"a workflow has at most {_MAX_STEPS} steps")
        into[step.name] = step


def _step_name(dependency: Callable[..., Any] | str) -> str:
    return dependency if isinstance(dependency, str) else getattr(dependency, "__name__", repr(dependency))


def _new_step(
    function: Callable[..., Any],
    after: tuple[str, ...],
    retries: int,
    retry_delay: float,
    timeout: float | None,
    *,
    on_failure: bool,
) -> Step:
    name = function.__name__
    if not isinstance(retries, int) or not 0 <= retries <= 20:
        raise WorkflowDefinitionError(f"step {name!r}: retries must be an integer from 0 to 20")
    if not 0 <= retry_delay <= 3600:
        raise WorkflowDefinitionError(f"step {name!r}: retry_delay must be 0 to 3600 seconds")
    if timeout is not None and not 0 < timeout <= 24 * 3600:
        raise WorkflowDefinitionError(f"step {name!r}: timeout must be more than 0 and at most 86400 seconds")
    line = function.__code__.co_firstlineno
    return Step(name, function, after, retries, float(retry_delay), timeout, line, on_failure)


def _check_signature(function: Callable[..., Any], after: tuple[str, ...]) -> None:
    """The step must accept the context and one keyword argument per step it runs after."""
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError) as exc:
        raise WorkflowDefinitionError(f"step {function!r} is not a function") from exc
    if not parameters or parameters[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise WorkflowDefinitionError(
            f"step {function.__name__!r} must take the step context as its first argument"
        )
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return
    accepted = {p.name for p in parameters[1:]}
    missing = [name for name in after if name not in accepted]
    if missing:
        raise WorkflowDefinitionError(
            f"step {function.__name__!r} runs after {', '.join(missing)} and must accept "
            f"{'that output' if len(missing) == 1 else 'those outputs'} as keyword argument(s)"
        )
    extra = [p.name for p in parameters[1:] if p.name not in after and p.default is inspect.Parameter.empty]
    if extra:
        raise WorkflowDefinitionError(
            f"step {function.__name__!r} has argument(s) {', '.join(extra)} that are not steps it runs after"
        )


# ----------------------------------------------------------------------------------- shell


@dataclass(frozen=True)
class ShellResult:
    exit_code: int
    stdout: str
    stdout_truncated: bool = False


class ShellError(Exception):
    """A command exited non-zero, timed out or was stopped; the step fails with this message."""

    def __init__(self, message: str, result: ShellResult | None = None) -> None:
        super().__init__(message)
        self.result = result


def shell(
    cmd: str | Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    check: bool = True,
) -> ShellResult:
    """Run ``cmd`` (a string through ``/bin/sh``, or an argument list) and stream its output
    into the run's log; raise :class:`ShellError` on a non-zero exit when ``check``.

    The command runs in ``cwd``, by default the run's ``ctx.workdir``. Its environment is the
    worker's allow-listed basics (search path, home, locale, temp folder, proxy and certificate
    settings; see :mod:`slipway.childenv`) plus ``env``, and nothing else. It runs in its own
    process group: a timeout, the step's timeout or a cancel of the run stops the whole group
    (SIGTERM, then SIGKILL after a grace period).
    """
    runtime = _runtime.get()
    argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else [str(part) for part in cmd]
    shown = cmd if isinstance(cmd, str) else " ".join(argv)
    child_env = child_environment(env)
    if runtime is not None:
        runtime.write(f"$ {shown}\n", "cmd")
    if cwd is None and runtime is not None:
        cwd = runtime.workdir
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    started = time.monotonic()
    captured = bytearray()
    truncated = False
    pending = {"stdout": b"", "stderr": b""}
    selector = selectors.DefaultSelector()
    assert process.stdout is not None and process.stderr is not None
    selector.register(process.stdout, selectors.EVENT_READ, "stdout")
    selector.register(process.stderr, selectors.EVENT_READ, "stderr")
    stop_reason: str | None = None
    exited_at: float | None = None

    def emit(stream: str, data: bytes, final: bool = False) -> None:
        buffered = pending[stream] + data
        *lines, rest = buffered.split(b"\n")
        if final and rest:
            lines.append(rest)
            rest = b""
        pending[stream] = rest
        if runtime is not None:
            for line in lines:
                runtime.write(line.decode("utf-8", "replace") + "\n", stream)
        elif lines:
            target = sys.stdout if stream == "stdout" else sys.stderr
            target.write(b"\n".join(lines).decode("utf-8", "replace") + "\n")

    try:
        while selector.get_map():
            for key, _ in selector.select(timeout=0.2):
                chunk = os.read(key.fileobj.fileno(), 65536)  # type: ignore[union-attr]
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                if key.data == "stdout":
                    room = _MAX_CAPTURE_BYTES - len(captured)
                    captured += chunk[: max(room, 0)]
                    truncated = truncated or len(chunk) > room
                emit(key.data, chunk)
            if stop_reason is None:
                stop_reason = _stop_reason(runtime, started, timeout)
                if stop_reason is not None:
                    kill_process_group(process, grace=_KILL_GRACE_SECONDS)
            if process.poll() is not None:
                # A process it started in the background may hold the pipes open: stop reading
                # soon after the command itself ended (the step's end kills what is left).
                exited_at = exited_at or time.monotonic()
                if stop_reason is not None or time.monotonic() - exited_at > _DRAIN_SECONDS:
                    break
        process.wait()
    finally:
        selector.close()
        if process.poll() is None:
            kill_process_group(process, grace=_KILL_GRACE_SECONDS)
            process.wait()
        process.stdout.close()
        process.stderr.close()
    emit("stdout", b"", final=True)
    emit("stderr", b"", final=True)
    result = ShellResult(process.returncode, captured.decode("utf-8", "replace"), truncated)
    if stop_reason is not None:
        raise ShellError(f"command {stop_reason}: {shown}", result)
    if check and process.returncode != 0:
        raise ShellError(f"command exited with code {process.returncode}: {shown}", result)
    return result


def _stop_reason(runtime: StepRuntime | None, started: float, timeout: float | None) -> str | None:
    if timeout is not None and time.monotonic() - started > timeout:
        return f"timed out after {timeout:g} s"
    if runtime is None:
        return None
    return runtime.should_stop()
