"""`slipway dev` as a real child process, for tests that use the product as a user runs it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

import httpx
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueServiceClient

from slipway.adapters.queues import QueueBus
from slipway.adapters.tables import TableStore
from slipway.local.azurite import AzuritePorts, connection_string, free_port
from slipway.local.worker import LIBRARY_ENV

REPO_ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Runner:
    process: subprocess.Popen[str]
    url: str
    workspace: Path
    temp: Path
    log: Path

    def wait(self, condition: Callable[[], T], what: str, timeout: float = 30.0) -> T:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"runner exited ({self.process.returncode}) while waiting for {what}:\n{self.log.read_text()}"
                )
            value = condition()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log.read_text()}")

    def remove_example(self) -> None:
        """Take away the example workflow the runner seeds into an empty workspace, for tests
        that count the workspace's files."""
        (self.workspace / "workflows" / "hello.py").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            (self.workspace / "workflows").rmdir()

    def api(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        return httpx.request(method, self.url + path, timeout=30, **kwargs)  # type: ignore[arg-type]

    def stop(self) -> int:
        """Ctrl-C, as a developer stops it; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                return self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                raise
        return self.process.returncode

    def azurite_ports(self) -> AzuritePorts:
        """The runner's Azurite, found through what /api/health/detailed reports."""
        checks = {
            c["name"]: c for c in httpx.get(self.url + "/api/health/detailed", timeout=30).json()["checks"]
        }
        queue_port = urlparse(checks["queues"]["info"]["endpoint"]).port
        table_port = urlparse(checks["tables"]["info"]["endpoint"]).port
        assert queue_port and table_port
        return AzuritePorts(blob=0, queue=queue_port, table=table_port)

    def queue_bus(self) -> QueueBus:
        return QueueBus(QueueServiceClient.from_connection_string(connection_string(self.azurite_ports())))

    def table_store(self) -> TableStore:
        return TableStore(TableServiceClient.from_connection_string(connection_string(self.azurite_ports())))


def start_runner(
    folder: Path, app_root: Path = REPO_ROOT, extra_env: dict[str, str] | None = None, host: str = "127.0.0.1"
) -> Runner:
    port = free_port()
    log = folder / "runner.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLIPWAY_", "AzureWebJobs"))}
    # Not an app setting: where the runner finds the worker library `make install` fetched.
    env[LIBRARY_ENV] = os.environ.get(LIBRARY_ENV, str(REPO_ROOT / ".worker" / "lib"))
    env.update(extra_env or {})
    process = subprocess.Popen(
        [sys.executable, "-m", "slipway.cli", "dev", "--host", host, "--port", str(port),
         "--workspace", str(folder / "workspace"), "--data", str(folder / "data"),
         "--app-root", str(app_root)],
        cwd=folder, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    runner = Runner(process, f"http://127.0.0.1:{port}", folder / "workspace", folder / "data" / "tmp", log)
    try:
        runner.wait(
            lambda: answers(runner.url + "/api/health"), "the runner to answer /api/health", timeout=60
        )
    except BaseException:
        # A runner that never answered is not left behind; the original failure is what is reported.
        with contextlib.suppress(subprocess.TimeoutExpired):
            runner.stop()
        raise
    return runner
