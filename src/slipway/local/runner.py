"""``slipway dev``: the whole product on one machine, playing the Functions host's part.

Start order: validate the listen address, start Azurite (data under ``--data``), set the app
settings, import ``function_app.py`` from the app root exactly as the worker would, then run
in one event loop: uvicorn for the app's HTTP functions, a loopback uvicorn for the Durable
extension's HTTP API, the queue poller, and the Durable replay harness. Ctrl-C (or SIGTERM)
stops all of them, then Azurite.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import ipaddress
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import azure.functions as func
import uvicorn

from slipway.bootstrap import build_services
from slipway.config import SettingsError, load_settings
from slipway.engine.execution import stop_running_steps
from slipway.functions import offload
from slipway.functions.catalog import indexed_functions
from slipway.local.azurite import Azurite, AzuriteError, find_azurite, free_port
from slipway.local.console_log import configure_runner_logging
from slipway.local.durable import DurableHarness
from slipway.local.durable_rpc import client_binding_json, create_rpc_app
from slipway.local.hostconfig import HostConfig, HostConfigError, load_host_config
from slipway.local.http_dispatch import HttpDispatcher, http_routes
from slipway.local.queue_poller import QueuePoller, queue_triggers
from slipway.local.timers import ScheduleError, TimerRunner, timer_triggers
from slipway.local.worker import FunctionIndexError, Worker, WorkerLibraryError, library_path

log = logging.getLogger("slipway.local.runner")


@dataclass(frozen=True)
class DevOptions:
    host: str = "127.0.0.1"
    port: int = 7071
    workspace: Path = Path("workspace")
    data: Path = Path(".dev")
    app_root: Path = Path(".")


class RunnerError(RuntimeError):
    """The runner cannot start; the message says what to change."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _local_settings(app_root: Path) -> dict[str, str]:
    """``Values`` of local.settings.json, as Core Tools applies them."""
    path = app_root / "local.settings.json"
    if not path.exists():
        return {}
    try:
        values = json.loads(path.read_text(encoding="utf-8")).get("Values", {})
    except (json.JSONDecodeError, AttributeError) as exc:
        raise RunnerError(f"{path} is not valid: {exc}") from None
    return {str(k): str(v) for k, v in values.items()}


def _reachable_host(host: str) -> str:
    """The address to tell others: a wildcard listen address is reachable at loopback here."""
    return "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 - compared, not bound


def compose_environment(
    options: DevOptions, base: Mapping[str, str], storage_connection: str
) -> dict[str, str]:
    """The app settings for this run: the environment, then local.settings.json, then defaults.

    Storage always points at the runner's Azurite, and the development principal follows the
    listen address, never a file: a copied local.settings.json must not make a public port admin.
    """
    data = options.data.resolve()
    defaults = {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "SLIPWAY_TASK_HUB": "SlipwayDev",
        "SLIPWAY_WORKSPACE_DIR": str(options.workspace.resolve()),
        "SLIPWAY_TEMP_DIR": str(data / "tmp"),
        "SLIPWAY_SECRET_STORE": "file",
        "SLIPWAY_SECRETS_FILE": str(data / "secrets.json"),
        "SLIPWAY_WEB_DIR": str((options.app_root / "web" / "dist").resolve()),
        "SLIPWAY_GIT_DIR": str(data / "git"),
        "SLIPWAY_STEPS_DIR": str(data / "steps"),
        "SLIPWAY_ENVIRONMENTS_DIR": str(data / "environments"),
        # The local static host: published sites are served at /sites/<site>/.
        "SLIPWAY_LOCAL_SITES_DIR": str(data / "sites"),
        # Where deployments verify what they published: this runner's own port.
        "SLIPWAY_LOCAL_SITES_URL": f"http://{_reachable_host(options.host)}:{options.port}",
        "SLIPWAY_DEPLOY_DIR": str(data / "deploy"),
        "SLIPWAY_DEPLOY_CACHE_DIR": str(data / "deploy-cache"),
        # GitHub cannot reach a developer's loopback; the URL still names where pushes go.
        "SLIPWAY_PUBLIC_BASE_URL": f"http://{_reachable_host(options.host)}:{options.port}",
    }
    env = {**defaults, **_local_settings(options.app_root), **base}
    env["AzureWebJobsStorage"] = storage_connection
    env["SLIPWAY_DEV_PRINCIPAL"] = "true" if is_loopback(options.host) else "false"
    return env


def import_function_app(app_root: Path) -> func.FunctionApp:
    """Import ``function_app.py`` from ``app_root`` the way the Python worker does."""
    path = app_root.resolve() / "function_app.py"
    if not path.exists():
        raise RunnerError(f"{path} does not exist: --app-root must hold function_app.py")
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("function_app", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["function_app"] = module
    spec.loader.exec_module(module)
    app = getattr(module, "app", None)
    if not isinstance(app, func.FunctionRegister):
        raise RunnerError(f"{path} defines no Functions app named `app`")
    return app


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the runner stops every part together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve(
    options: DevOptions, app: func.FunctionRegister, env: Mapping[str, str], host: HostConfig
) -> None:
    functions = indexed_functions(app)
    # Indexing through the worker's own code: a function it refuses stops the runner here, as
    # it stops the host from loading any function.
    worker = Worker(
        app,
        library=library_path(options.app_root.resolve(), env),
        function_timeout=host.function_timeout,
    )
    log.info("the Python worker indexed %d functions", len(functions), extra={"threads": worker.thread_count})
    harness = DurableHarness(
        app,
        max_parallel_activities=host.max_concurrent_activities,
        max_parallel_orchestrators=host.max_concurrent_orchestrators,
        task_hub=host.task_hub,
        worker=worker,
    )

    rpc_port = free_port()
    rpc_url = f"http://127.0.0.1:{rpc_port}/runtime/webhooks/durabletask/"
    rpc_server = _Server(
        uvicorn.Config(
            create_rpc_app(harness), host="127.0.0.1", port=rpc_port, log_level="warning", lifespan="off"
        )
    )
    client_json = client_binding_json(rpc_url, host.task_hub)

    dispatcher = HttpDispatcher(
        http_routes(functions, route_prefix=host.route_prefix),
        worker=worker,
        function_key=env.get("SLIPWAY_API_TOKEN", ""),
    )
    http_server = _Server(
        uvicorn.Config(dispatcher, host=options.host, port=options.port, log_level="warning", lifespan="off")
    )

    queues = build_services(load_settings(env)).queues
    poller = QueuePoller(
        queue_triggers(functions, env),
        queues,
        host,
        durable_client_json=lambda: client_json,
        worker=worker,
    )

    timers = TimerRunner(
        timer_triggers(functions, env), worker=worker, durable_client_json=lambda: client_json
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def request_stop() -> None:
        if not stop.is_set():
            log.info("stopping")
        stop.set()
        # Running workflow commands would otherwise hold the shutdown until they end.
        stop_running_steps()
        http_server.should_exit = True
        rpc_server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, request_stop)

    tasks = [
        asyncio.create_task(rpc_server.serve(), name="durable-rpc"),
        asyncio.create_task(http_server.serve(), name="http"),
        asyncio.create_task(poller.run(stop), name="queues"),
        asyncio.create_task(harness.serve(stop), name="durable"),
        asyncio.create_task(timers.run(stop), name="timers"),
    ]
    log.info(
        "slipway dev is up",
        extra={
            "url": f"http://{options.host}:{options.port}/",
            "workspace": env["SLIPWAY_WORKSPACE_DIR"],
            "queue_triggers": len(queue_triggers(functions, env)),
        },
    )
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task.exception() is not None and not stop.is_set():
                log.error("%s stopped unexpectedly: %s", task.get_name(), task.exception())
    finally:
        request_stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        await _notify_asgi_shutdown(app)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        worker.close()
        offload.shutdown()


async def _notify_asgi_shutdown(app: func.FunctionRegister) -> None:
    """Send the API the lifespan shutdown its ASGI middleware started it with."""
    middleware = getattr(app, "middleware", None)
    if getattr(middleware, "lifespan_receive_queue", None) is None:
        return
    with contextlib.suppress(Exception):
        await asyncio.wait_for(middleware.notify_shutdown(), timeout=5)


def _check_port_free(host: str, port: int) -> None:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise RunnerError(
                f"cannot listen on {host}:{port}: {exc.strerror} (is another `slipway dev` running?)"
            ) from None


# How long a stopping runner waits for function code still running (steps in pure Python).
SHUTDOWN_GRACE_SECONDS = 10.0


def _wait_for_function_threads(grace: float) -> int:
    """Wait up to ``grace`` seconds for the threads function code runs on; how many are left."""
    deadline = time.monotonic() + grace
    while True:
        alive = [
            t
            for t in threading.enumerate()
            if t is not threading.main_thread() and not t.daemon and t.is_alive()
        ]
        if not alive or time.monotonic() >= deadline:
            return len(alive)
        alive[0].join(timeout=min(0.2, max(0.0, deadline - time.monotonic())))


def run_dev(options: DevOptions) -> int:
    configure_runner_logging(os.environ.get("SLIPWAY_LOG_LEVEL", "INFO"))
    if not is_loopback(options.host) and len(os.environ.get("SLIPWAY_API_TOKEN", "")) < 32:
        log.error(
            "refusing to listen on %s without SLIPWAY_API_TOKEN (32+ characters): the development "
            "principal is only for loopback addresses",
            options.host,
        )
        return 2
    azurite: Azurite | None = None
    leftover = 0
    try:
        _check_port_free(options.host, options.port)
        options.workspace.mkdir(parents=True, exist_ok=True)
        (options.data / "tmp").mkdir(parents=True, exist_ok=True)
        azurite = Azurite(
            launcher=find_azurite(options.app_root.resolve()),
            location=options.data / "azurite",
            log_file=options.data / "azurite.log",
        ).start()
        env = compose_environment(options, os.environ, azurite.connection_string)
        # The app reads its settings from the process environment, as under the host.
        os.environ.update(env)
        host = load_host_config(options.app_root, env)
        app = import_function_app(options.app_root)
        asyncio.run(_serve(options, app, env, host))
        leftover = _wait_for_function_threads(SHUTDOWN_GRACE_SECONDS)
        return 0
    except (
        RunnerError, AzuriteError, HostConfigError, SettingsError, ScheduleError, OSError,
        WorkerLibraryError, FunctionIndexError,
    ) as exc:  # fmt: skip
        log.error("slipway dev cannot start: %s", exc)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if azurite is not None:
            azurite.stop()
        if leftover:
            # As the host ends a worker that outlives its shutdown grace: Python code still
            # running in function threads cannot be stopped any other way.
            log.warning(
                "%d function thread(s) still running after %g s; exiting without them",
                leftover,
                SHUTDOWN_GRACE_SECONDS,
            )
            logging.shutdown()
            os._exit(0)
