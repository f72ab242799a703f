"""Install, test and build a project in a clean environment.

The commands get only: from the worker (through :mod:`slipway.childenv`), ``PATH`` to find Node
and the package managers and the proxy and certificate settings to reach the registry; ``HOME``
and ``TMPDIR`` inside the build's own folder, ``LANG=C.UTF-8``, ``CI=true``, npm's cache folder
inside the build's folder (``npm_config_cache``) with npm's update check, funding and audit
messages off, ``NODE_ENV`` (unset while installing so devDependencies are installed, ``test``
while testing, ``production`` while building), and the variables the site configures for its
build. Nothing else of the worker's environment: its storage keys, identity endpoints and
Slipway's own settings are for Slipway, not for a project's scripts.

With a lockfile and a :class:`~slipway.deploy.cache.DependencyCache`, ``node_modules`` is
restored from the cache and checked against the lockfile: for npm by reading the lockfile and
the installed packages' versions (no npm process), for yarn, pnpm and bun with an *offline*
install (a missing package fails instead of being downloaded). If that check fails the restored
tree is removed and the normal install runs.
After a normal install succeeds, ``node_modules`` is saved to the cache before the tests run.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from slipway.childenv import CERTIFICATES, PROXIES, child_environment
from slipway.deploy.cache import DependencyCache, cache_key, npm_tree_problem
from slipway.deploy.detect import BuildPlan, DetectError, find_output_dir, snapshot_output_candidates
from slipway.processes import LogSink, StopCheck, run_command

__all__ = [
    "PHASES",
    "BuildDeadline",
    "BuildFailed",
    "BuildLimits",
    "BuildResult",
    "build_environment",
    "run_build",
]

PHASES = ("install", "test", "build")
# What a build inherits from the worker; the rest of its environment it sets itself.
_INHERITED = ("PATH", *PROXIES, *CERTIFICATES)
# Names a site may not give its build variables: the platform's (a script that sees them would
# take them for Slipway's storage, identity or settings), and those the build sets itself.
_RESERVED_PREFIXES = ("AzureWebJobs", "SLIPWAY_", "AZURE_", "IDENTITY_", "MSI_", "APPLICATIONINSIGHTS_")
_FIXED_ENV = ("PATH", "HOME", "TMPDIR", "npm_config_cache")


class BuildFailed(Exception):
    """A phase did not succeed. ``reason`` is ``failed`` (non-zero exit), ``timed_out``,
    ``canceled`` or ``unavailable`` (a tool is missing); ``output_tail`` holds the command's
    last lines."""

    def __init__(
        self,
        phase: str,
        message: str,
        *,
        reason: str = "failed",
        exit_code: int | None = None,
        output_tail: str = "",
    ) -> None:
        super().__init__(message)
        self.phase = phase
        self.reason = reason
        self.exit_code = exit_code
        self.output_tail = output_tail


@dataclass(frozen=True)
class BuildLimits:
    """Time limits (seconds) per phase, the log's size limit and the kill grace period."""

    install_timeout: float = 900
    test_timeout: float = 600
    build_timeout: float = 900
    max_log_bytes: int = 5 * 1024 * 1024
    kill_grace: float = 3.0


@dataclass(frozen=True)
class BuildDeadline:
    """When the whole build must have ended (``time.monotonic()``), and why: a phase whose own
    time limit reaches past it gets only the time left (and the log says so)."""

    at: float
    reason: str


@dataclass(frozen=True)
class BuildResult:
    output_dir: Path
    cache_key: str | None = None
    cache_restored: bool = False
    cache_saved: bool = False
    seconds: Mapping[str, float] | None = None
    log_truncated: bool = False


def build_environment(
    build_dir: Path, *, node_env: str | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The whole environment of a build command (see the module's docstring)."""
    extra = dict(extra or {})
    refused = sorted(name for name in extra if name.startswith(_RESERVED_PREFIXES) or name in _FIXED_ENV)
    if refused:
        raise ValueError(f"these variables cannot be set for a build: {', '.join(refused)}")
    own = {
        **extra,
        "HOME": str(build_dir / "home"),
        "TMPDIR": str(build_dir / "tmp"),
        "LANG": "C.UTF-8",
        "CI": "true",
        "npm_config_cache": str(build_dir / "npm-cache"),
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
    }
    if node_env is not None:
        own["NODE_ENV"] = node_env
    else:
        own.pop("NODE_ENV", None)
    return child_environment(own, inherit=_INHERITED)


def run_build(
    plan: BuildPlan,
    *,
    build_dir: str | os.PathLike[str],
    log: Callable[[str, str], None],
    should_stop: StopCheck | None = None,
    cache: DependencyCache | None = None,
    env: Mapping[str, str] | None = None,
    limits: BuildLimits | None = None,
    on_phase: Callable[[str], None] | None = None,
    deadline: BuildDeadline | None = None,
) -> BuildResult:
    """Run ``plan``'s install, test and build commands in ``plan.project_dir``.

    ``build_dir`` is this build's own scratch folder (home, temp and npm cache; not the project).
    ``log(stream, line)`` receives every line (stream ``stdout``, ``stderr`` or ``slipway``);
    ``on_phase(phase)`` is told when install, test or build begins (once per phase, and not for a
    phase the project does not have). Raises :class:`BuildFailed`.
    """
    limits = limits or BuildLimits()
    scratch = Path(build_dir)
    for name in ("home", "tmp", "npm-cache"):
        (scratch / name).mkdir(parents=True, exist_ok=True)
    sink = LogSink(log, max_bytes=limits.max_log_bytes)
    if plan.kind == "static":
        assert plan.output_dir is not None
        sink.write("slipway", f"static site: publishing {plan.output_dir} as it is")
        return BuildResult(output_dir=plan.output_dir, log_truncated=sink.truncated)
    runner = _Runner(plan, scratch, sink, should_stop, env or {}, limits, on_phase, deadline)
    manager = plan.package_manager or "npm"
    if shutil.which(manager, path=runner.env(None)["PATH"]) is None:
        raise BuildFailed(
            "install",
            f"{manager} is not installed on this worker; configure another package manager",
            reason="unavailable",
        )
    before = snapshot_output_candidates(plan.project_dir)

    key, restored, saved = None, False, False
    if cache is not None and plan.lockfile is not None:
        node_major = runner.node_major()
        key = cache_key(plan, node_major=node_major)
    if plan.install_command:
        runner.begin("install")
    if key is not None and cache is not None and plan.offline_install_command:
        if cache.restore(key, plan.project_dir):
            sink.write("slipway", f"[dependencies restored from the cache, key {key[:12]}]")
            restored, problem = _check_restored(plan, runner)
            if restored:
                sink.write("slipway", "[the restored dependencies match the lockfile: nothing to install]")
            else:
                sink.write(
                    "slipway",
                    f"[restored dependencies do not match the lockfile ({problem}); installing afresh]",
                )
                shutil.rmtree(plan.project_dir / "node_modules", ignore_errors=True)
        else:
            sink.write("slipway", f"[no cached dependencies for key {key[:12]}]")
    if not restored and plan.install_command:
        runner.run("install", plan.install_command)
        if key is not None and cache is not None:
            saved = cache.save(
                key,
                plan.project_dir,
                meta={"package_manager": manager, "lockfile": plan.lockfile},
            )
            if saved:
                sink.write("slipway", f"[dependencies saved to the cache, key {key[:12]}]")
    if plan.test_command:
        runner.run("test", plan.test_command, node_env="test")
    if plan.build_command:
        runner.run("build", plan.build_command, node_env="production")
    try:
        output = find_output_dir(plan, before=before)
    except DetectError as exc:
        raise BuildFailed("build", str(exc)) from exc
    sink.write("slipway", f"output folder: {output.relative_to(plan.project_dir).as_posix() or '.'}")
    return BuildResult(
        output_dir=output,
        cache_key=key,
        cache_restored=restored,
        cache_saved=saved,
        seconds=dict(runner.seconds),
        log_truncated=sink.truncated,
    )


def _check_restored(plan: BuildPlan, runner: _Runner) -> tuple[bool, str]:
    """Whether a tree restored from the cache can be used as it is, and if not, why."""
    if plan.package_manager == "npm" and plan.lockfile == "package-lock.json":
        problem = npm_tree_problem(plan.project_dir)
        return problem is None, problem or ""
    assert plan.offline_install_command is not None
    if runner.run("install", plan.offline_install_command, check=False):
        return True, ""
    return False, "the offline install failed"


class _Runner:
    """Runs a build's commands with the same scratch folder, log, limits and stop check."""

    def __init__(
        self,
        plan: BuildPlan,
        scratch: Path,
        sink: LogSink,
        should_stop: StopCheck | None,
        extra_env: Mapping[str, str],
        limits: BuildLimits,
        on_phase: Callable[[str], None] | None = None,
        deadline: BuildDeadline | None = None,
    ) -> None:
        self.plan = plan
        self.on_phase = on_phase
        self.deadline = deadline
        self.phase: str | None = None
        self.scratch = scratch
        self.sink = sink
        self.should_stop = should_stop
        self.extra_env = extra_env
        self.limits = limits
        self.seconds: dict[str, float] = {}
        self.env(None)  # refuse forbidden variables before anything runs

    def begin(self, phase: str) -> None:
        """Tell ``on_phase`` that ``phase`` begins (once per phase)."""
        if phase != self.phase:
            self.phase = phase
            if self.on_phase is not None:
                self.on_phase(phase)

    def env(self, node_env: str | None) -> dict[str, str]:
        return build_environment(self.scratch, node_env=node_env, extra=self.extra_env)

    def node_major(self) -> int:
        try:
            done = subprocess.run(
                ["node", "--version"],
                env=self.env(None),
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise BuildFailed(
                "install", f"node is not usable on this worker: {exc}", reason="unavailable"
            ) from exc
        match = re.match(r"v(\d+)\.", done.stdout.strip())
        if match is None:
            raise BuildFailed("install", f"unexpected `node --version` output: {done.stdout.strip()!r}")
        return int(match.group(1))

    def run(
        self, phase: str, argv: tuple[str, ...], *, node_env: str | None = None, check: bool = True
    ) -> bool:
        timeout = {
            "install": self.limits.install_timeout,
            "test": self.limits.test_timeout,
            "build": self.limits.build_timeout,
        }[phase]
        shown = argv[2] if argv[:2] == ("/bin/sh", "-c") else shlex.join(argv)
        self.begin(phase)
        if self.should_stop is not None and self.should_stop():
            raise BuildFailed(phase, f"{phase} canceled before it started", reason="canceled")
        timeout = self._within_deadline(phase, timeout)
        self.sink.write("slipway", f"$ {shown}")
        result = run_command(
            argv,
            cwd=self.plan.project_dir,
            env=self.env(node_env),
            log=self.sink.write,
            timeout=timeout,
            should_stop=self.should_stop,
            kill_grace=self.limits.kill_grace,
        )
        self.seconds[phase] = self.seconds.get(phase, 0.0) + result.seconds
        if result.stopped is not None:
            reason = "timed_out" if result.stopped.startswith("timed out") else "canceled"
            raise BuildFailed(
                phase,
                f"{phase} {result.stopped}: {shown}",
                reason=reason,
                exit_code=result.exit_code,
                output_tail=result.tail,
            )
        if result.exit_code != 0:
            if not check:
                return False
            raise BuildFailed(
                phase,
                f"{phase} failed: `{shown}` exited with code {result.exit_code}",
                exit_code=result.exit_code,
                output_tail=result.tail,
            )
        return True

    def _within_deadline(self, phase: str, timeout: float) -> float:
        """``timeout``, or the time left before the build's deadline when that is shorter."""
        if self.deadline is None:
            return timeout
        left = self.deadline.at - time.monotonic()
        if left >= timeout:
            return timeout
        if left < 1:
            raise BuildFailed(
                phase,
                f"{phase} not started: no time is left for it ({self.deadline.reason})",
                reason="timed_out",
            )
        self.sink.write(
            "slipway",
            f"[{phase} may run {left:.0f} s, not its {timeout:g} s: the whole build must end "
            f"within {self.deadline.reason}]",
        )
        return left
