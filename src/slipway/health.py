"""Health checks: is each dependency reachable, usable, and how fast did it answer.

Readiness asks the questions that decide whether this instance can do its work: storage
tables and queues answer through the same adapters the app uses, and the workspace and
temp folders exist, take a real write, and have free space. Checks run in parallel, each
bounded by a deadline, so one hung dependency is reported as such instead of hanging the
probe.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from slipway.adapters.queues import QueueBus
from slipway.adapters.secrets import SecretStore
from slipway.adapters.tables import TableStore
from slipway.names import HEALTH_QUEUE, HEALTH_TABLE

CHECK_DEADLINE_SECONDS = 10.0
# Probes arriving together (platform health checks, several browser tabs) share one run
# instead of each writing to storage and the workspace share.
READY_CACHE_SECONDS = 2.0


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    latency_ms: float
    detail: str
    info: dict[str, str] = field(default_factory=dict)

    def to_json(self, *, with_info: bool) -> dict[str, object]:
        body: dict[str, object] = {
            "name": self.name,
            "ok": self.ok,
            "latency_ms": round(self.latency_ms, 1),
            "detail": self.detail,
        }
        if with_info:
            body["info"] = self.info
        return body


class CheckFailed(Exception):
    """A check ran and found a problem; the message is shown to the operator."""


Probe = Callable[[], tuple[str, dict[str, str]]]


def _mount_type(path: Path) -> str:
    """The filesystem type under ``path`` (cifs for an Azure Files share), from /proc/mounts."""
    try:
        mounts = Path("/proc/mounts").read_text(encoding="utf-8").splitlines()
    except OSError:
        return "unknown"
    resolved = str(path.resolve())
    best, fstype = "", "unknown"
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, fstype = point, parts[2]
    return fstype


def folder_probe(label: str, path: Path, min_free_mb: int) -> Probe:
    """Exists, is a folder, takes a write that reads back, and has ``min_free_mb`` free."""

    def probe() -> tuple[str, dict[str, str]]:
        if not path.exists():
            raise CheckFailed(f"{label} folder {path} does not exist (is the share mounted?)")
        if not path.is_dir():
            raise CheckFailed(f"{label} path {path} is not a folder")
        marker = path / f".slipway-probe-{uuid.uuid4().hex}"
        payload = uuid.uuid4().bytes
        try:
            with marker.open("xb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            if marker.read_bytes() != payload:
                raise CheckFailed(f"{label} folder {path} returned different bytes than were written")
        except OSError as exc:
            raise CheckFailed(f"{label} folder {path} is not writable: {exc.strerror or exc}") from None
        finally:
            marker.unlink(missing_ok=True)
        usage = shutil.disk_usage(path)
        free_mb = usage.free // (1024 * 1024)
        info = {
            "path": str(path),
            "filesystem": _mount_type(path),
            "free_mb": str(free_mb),
            "total_mb": str(usage.total // (1024 * 1024)),
        }
        if free_mb < min_free_mb:
            raise CheckFailed(
                f"{label} folder {path} has {free_mb} MiB free, below the {min_free_mb} MiB minimum"
            )
        return f"writable, {free_mb} MiB free", info

    return probe


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


class HealthService:
    """Runs the checks for ``/api/health/ready`` and ``/api/health/detailed``."""

    def __init__(
        self,
        *,
        tables: TableStore,
        queues: QueueBus,
        secrets: SecretStore,
        workspace_dir: Path,
        temp_dir: Path,
        min_free_mb: int,
        storage_description: str,
    ) -> None:
        self._tables = tables
        self._queues = queues
        self._secrets = secrets
        self._storage = storage_description
        self._instance = f"{socket.gethostname()}-{os.getpid()}"
        self._ready_lock = threading.Lock()
        self._last_ready: tuple[float, list[CheckResult]] | None = None
        self._ready: dict[str, Probe] = {
            "tables": self._probe_tables,
            "queues": self._probe_queues,
            "workspace": folder_probe("workspace", workspace_dir, min_free_mb),
            "temp": folder_probe("temp", temp_dir, min_free_mb),
        }

    @property
    def readiness_checks(self) -> tuple[str, ...]:
        return tuple(self._ready)

    def _probe_tables(self) -> tuple[str, dict[str, str]]:
        entity = {"PartitionKey": "probe", "RowKey": self._instance, "checked_at": time.time()}
        versions = self._tables.probe(HEALTH_TABLE, entity)
        return "write and read succeeded", {
            "endpoint": self._tables.endpoint,
            "account": self._storage,
            **versions,
        }

    def _probe_queues(self) -> tuple[str, dict[str, str]]:
        versions = self._queues.probe(HEALTH_QUEUE)
        return "queue properties read", {
            "endpoint": self._queues.endpoint,
            "account": self._storage,
            **versions,
        }

    def _probe_secrets(self) -> tuple[str, dict[str, str]]:
        return "reachable", self._secrets.check_access()

    def check_ready(self) -> list[CheckResult]:
        with self._ready_lock:
            fresh = (
                self._last_ready is not None and time.monotonic() - self._last_ready[0] < READY_CACHE_SECONDS
            )
            if not fresh:
                self._last_ready = (time.monotonic(), _run_checks(self._ready))
            assert self._last_ready is not None
            return self._last_ready[1]

    def check_detailed(self) -> tuple[list[CheckResult], dict[str, str]]:
        checks = _run_checks({**self._ready, "secrets": self._probe_secrets})
        runtime = {
            "slipway": _package_version("slipway"),
            "python": platform.python_version(),
            "azure-functions": _package_version("azure-functions"),
            "azure-functions-durable": _package_version("azure-functions-durable"),
            "azure-data-tables": _package_version("azure-data-tables"),
            "azure-storage-queue": _package_version("azure-storage-queue"),
            "instance": self._instance,
        }
        return checks, runtime


def _run_checks(probes: dict[str, Probe]) -> list[CheckResult]:
    pool = ThreadPoolExecutor(max_workers=len(probes), thread_name_prefix="health")
    started = {name: time.perf_counter() for name in probes}
    futures = {name: pool.submit(_timed, probe) for name, probe in probes.items()}
    wait(futures.values(), timeout=CHECK_DEADLINE_SECONDS)
    # A hung dependency keeps its thread; the pool is not waited for so the answer is not.
    pool.shutdown(wait=False)
    results = []
    for name, future in futures.items():
        if not future.done():
            elapsed = (time.perf_counter() - started[name]) * 1000
            results.append(
                CheckResult(name, False, elapsed, f"no answer within {CHECK_DEADLINE_SECONDS:.0f} s")
            )
            continue
        results.append(_result(name, future.result()))
    return results


def _timed(probe: Probe) -> tuple[float, tuple[str, dict[str, str]] | BaseException]:
    start = time.perf_counter()
    try:
        outcome: tuple[str, dict[str, str]] | BaseException = probe()
    except Exception as exc:
        outcome = exc
    return (time.perf_counter() - start) * 1000, outcome


def _result(name: str, timed: tuple[float, tuple[str, dict[str, str]] | BaseException]) -> CheckResult:
    latency, outcome = timed
    if isinstance(outcome, BaseException):
        return CheckResult(name, False, latency, _describe_error(outcome))
    detail, info = outcome
    return CheckResult(name, True, latency, detail, info)


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, CheckFailed):
        return str(exc)
    # SDK errors can be long multi-line dumps; the first line names the problem.
    first_line = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__
