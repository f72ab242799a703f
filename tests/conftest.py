"""Shared fixtures: a real Azurite, settings pointing at it, and the API over real HTTP."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from slipway.cli import TEST_STORAGE_ENV
from slipway.local.azurite import Azurite, find_azurite, free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
# The worker library `make install` fetched; `slipway dev` children of the tests inherit it.
os.environ.setdefault("SLIPWAY_WORKER_LIBRARY", str(REPO_ROOT / ".worker" / "lib"))


def _traversable(folder: Path) -> None:
    """Let other users enter ``folder`` (not list it): workflow processes run as an unprivileged
    user (slipway.isolation.boundary) and must reach the interpreter and the tests' folders."""
    with contextlib.suppress(OSError):
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)


if os.getuid() == 0:
    # As root, the tests run steps as `nobody`: the interpreter they share with the platform
    # (a pyenv build under /root, say) must be reachable, as it is in the image (/usr/local);
    # so must the virtual environment it is started as, in a checkout under a 0700 `mktemp -d`.
    for _path in {
        Path(sys.executable).absolute(),
        Path(sys.executable).resolve(),
        Path(sys.base_prefix).resolve(),
    }:
        for _folder in _path.parents:
            _traversable(_folder)


def pytest_configure(config: pytest.Config) -> None:
    # pytest makes its temporary folders 0700; steps (another user) write pid files and read
    # workspaces under them.
    original = pytest.TempPathFactory.mktemp

    def mktemp(self: pytest.TempPathFactory, basename: str, numbered: bool = True) -> Path:
        made = original(self, basename, numbered)
        for folder in [made, *made.parents]:
            if folder == Path("/"):
                break
            _traversable(folder)
        return made

    pytest.TempPathFactory.mktemp = mktemp  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def storage_connection() -> Iterator[str]:
    """Azurite for the whole run: the one `make test` started, or one of our own."""
    given = os.environ.get(TEST_STORAGE_ENV)
    if given:
        yield given
        return
    with Azurite(launcher=find_azurite(REPO_ROOT)) as azurite:
        yield azurite.connection_string


@pytest.fixture
def base_env(tmp_path: Path, storage_connection: str) -> dict[str, str]:
    """A complete, valid settings environment with its own folders and task hub."""
    workspace = tmp_path / "workspace"
    temp = tmp_path / "tmp"
    workspace.mkdir()
    temp.mkdir()
    return {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "AzureWebJobsStorage": storage_connection,
        "SLIPWAY_TASK_HUB": "SlipwayTest",
        "SLIPWAY_WORKSPACE_DIR": str(workspace),
        "SLIPWAY_TEMP_DIR": str(temp),
        "SLIPWAY_MIN_FREE_MB": "1",
        "SLIPWAY_SECRET_STORE": "file",
        "SLIPWAY_SECRETS_FILE": str(tmp_path / "secrets" / "secrets.json"),
        "SLIPWAY_STEPS_DIR": str(tmp_path / "steps"),
    }


class LiveServer:
    """An ASGI app served by uvicorn on 127.0.0.1 in a background thread."""

    def __init__(self, app: object) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def live_server() -> type[LiveServer]:
    return LiveServer
