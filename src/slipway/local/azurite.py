"""Start and stop the Azurite storage emulator from the project's ``node_modules``.

Used by ``slipway dev`` and by the test session. Azurite is pinned in package-lock.json
(3.35.0: later versions need Node 21+). It is started with ``--skipApiVersionCheck``
because current Azure SDKs send API versions it would otherwise reject, and with
``--disableTelemetry`` because it would otherwise try to reach the internet.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# The emulator's well-known development account (documented by Microsoft, not a secret).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

_START_TIMEOUT = 30.0


class AzuriteError(RuntimeError):
    """Azurite could not be found or did not start."""


@dataclass(frozen=True)
class AzuritePorts:
    blob: int
    queue: int
    table: int


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def connection_string(ports: AzuritePorts, host: str = "127.0.0.1") -> str:
    """An explicit connection string (``UseDevelopmentStorage=true`` only knows default ports)."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"BlobEndpoint=http://{host}:{ports.blob}/{DEV_ACCOUNT};"
        f"QueueEndpoint=http://{host}:{ports.queue}/{DEV_ACCOUNT};"
        f"TableEndpoint=http://{host}:{ports.table}/{DEV_ACCOUNT};"
    )


def find_azurite(start: Path) -> Path:
    """The ``azurite`` launcher in the nearest ``node_modules/.bin`` at or above ``start``."""
    for folder in (start, *start.parents):
        candidate = folder / "node_modules" / ".bin" / "azurite"
        if candidate.exists():
            return candidate
    raise AzuriteError(
        f"azurite is not installed in node_modules at or above {start}; run `npm ci` in the Slipway checkout"
    )


class Azurite:
    """One Azurite process; use as a context manager or call ``start``/``stop``."""

    def __init__(
        self,
        *,
        launcher: Path,
        ports: AzuritePorts | None = None,
        location: Path | None = None,
        log_file: Path | None = None,
    ) -> None:
        self.launcher = launcher
        self.ports = ports or AzuritePorts(free_port(), free_port(), free_port())
        self.location = location
        self.log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        return connection_string(self.ports)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> Azurite:
        args = [
            str(self.launcher),
            "--blobHost", "127.0.0.1", "--blobPort", str(self.ports.blob),
            "--queueHost", "127.0.0.1", "--queuePort", str(self.ports.queue),
            "--tableHost", "127.0.0.1", "--tablePort", str(self.ports.table),
            "--skipApiVersionCheck", "--disableTelemetry", "--loose", "--silent",
        ]  # fmt: skip
        if self.location is None:
            args.append("--inMemoryPersistence")
        else:
            self.location.mkdir(parents=True, exist_ok=True)
            args += ["--location", str(self.location)]
        output = self.log_file.open("ab") if self.log_file else subprocess.DEVNULL
        try:
            # A session of its own, so stop() can end node and anything it started.
            self._process = subprocess.Popen(
                args,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            if self.log_file:
                output.close()  # type: ignore[union-attr]
        self._wait_until_listening()
        return self

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        pending = {self.ports.blob, self.ports.queue, self.ports.table}
        while pending:
            assert self._process is not None
            if self._process.poll() is not None:
                where = f"; see {self.log_file}" if self.log_file else ""
                raise AzuriteError(
                    f"Azurite exited with code {self._process.returncode} while starting{where}"
                )
            for port in list(pending):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.settimeout(0.2)
                    if sock.connect_ex(("127.0.0.1", port)) == 0:
                        pending.discard(port)
            if time.monotonic() > deadline:
                self.stop()
                raise AzuriteError(
                    f"Azurite did not listen on ports {sorted(pending)} within {_START_TIMEOUT:.0f} s"
                )
            if pending:
                time.sleep(0.1)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
