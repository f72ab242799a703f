"""The Python worker's own code, playing the worker's part for ``slipway dev`` and the tests.

Microsoft publishes the Python worker's indexing and invocation code on PyPI as
``azure-functions-runtime`` (the worker library of Python 3.13+; pure Python, it imports on
3.11). The 4.x worker that the Functions images carry runs the same checks: a parameter
annotation it refuses stops the host from loading *any* function. So the runner does not
imitate the worker, it calls it:

- **indexing**: ``functions.Registry.add_indexed_function`` for every function of the app,
  with the worker's parameter and binding checks; any refusal stops the runner with the
  worker's own message;
- **invocation**: ``handle_event.invocation_request``, fed the same messages the host sends
  (``InvocationRequest`` with ``TypedData`` inputs and trigger metadata). The worker converts
  the inputs with the app's ``azure.functions`` converters, runs ``async`` functions on the
  event loop and every synchronous one on its **one** thread pool of
  ``PYTHON_THREADPOOL_THREAD_COUNT`` threads, and converts the return value back;
- **functionTimeout**: the host's part. An invocation that passes it makes the host restart
  the worker process, which fails every invocation in flight on it; :class:`Worker` does the
  same: in-flight invocations raise :class:`WorkerRestarted`, async ones are cancelled, work
  queued for the old thread pool never starts. It cannot stop a thread already running Python
  code: that code finishes in the background, its result discarded.

The generated gRPC classes are not published for Python 3.11; the stand-ins below carry the
fields the worker reads and writes, with the generated enums' values.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import azure.functions as func

from slipway.functions.catalog import indexed_functions

log = logging.getLogger("slipway.local.worker")

# The worker library the runner and the tests use: pinned, and checked by hash when fetched.
WORKER_LIBRARY = "azure-functions-runtime==1.3.0"
WORKER_LIBRARY_SHA256 = "5045cf1e1a9a33ff262043eb52cf976834d2f2b6c67c20da61588fe7dc2fcf64"
# Where `make install` puts it (relative to the app root), and the variable that overrides it.
DEFAULT_LIBRARY_DIR = Path(".worker") / "lib"
LIBRARY_ENV = "SLIPWAY_WORKER_LIBRARY"


class WorkerLibraryError(RuntimeError):
    """The worker library is missing or does not import; the message says how to get it."""


class FunctionIndexError(RuntimeError):
    """The worker refused functions of the app: the host would load none of them."""

    def __init__(self, refused: list[tuple[str, str]]) -> None:
        self.refused = refused
        lines = "\n".join(f"  - {name}: {message}" for name, message in refused)
        super().__init__(f"the Python worker refuses {len(refused)} function(s):\n{lines}")


class FunctionFailed(RuntimeError):
    """The function raised; the message is the worker's ("<Type>: <message>")."""


class WorkerRestarted(RuntimeError):
    """The invocation was in flight when the host restarted the worker (a functionTimeout)."""


# ----------------------------------------------------------------------------- protos


class _Message:
    """A protobuf message: the keyword fields it was built with; ``WhichOneof`` names the set one."""

    _oneof: tuple[str, ...] = ()

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    def WhichOneof(self, group: str) -> str | None:  # protobuf's name
        for name in self._oneof:
            if name in self.__dict__:
                return name
        return None


def _message(name: str, *oneof: str, **constants: Any) -> type[_Message]:
    return type(name, (_Message,), {"_oneof": oneof, **constants})


_TYPED_DATA_FIELDS = (
    "string", "json", "bytes", "stream", "http", "int", "double", "collection_bytes",
    "collection_string", "collection_double", "collection_sint64", "model_binding_data",
    "collection_model_binding_data",
)  # fmt: skip

TypedData = _message("TypedData", *_TYPED_DATA_FIELDS)
ParameterBinding = _message("ParameterBinding", "data", "rpc_shared_memory")

PROTOS = SimpleNamespace(
    # A message whose nested enums BindingInfo.Direction and .DataType read as class constants,
    # with the values protoc generates.
    BindingInfo=_message(
        "BindingInfo", **{"in": 0}, out=1, inout=2, undefined=0, string=1, binary=2, stream=3
    ),
    RpcFunctionMetadata=_message("RpcFunctionMetadata"),
    RpcRetryOptions=_message("RpcRetryOptions"),
    TypedData=TypedData,
    ParameterBinding=ParameterBinding,
    RpcHttp=_message("RpcHttp"),
    RpcHttpCookie=_message(
        "RpcHttpCookie", SameSite=SimpleNamespace(**{"None": 0}, Lax=1, Strict=2, ExplicitNone=3)
    ),
    NullableString=_message("NullableString"),
    NullableDouble=_message("NullableDouble"),
    NullableBool=_message("NullableBool"),
    NullableTimestamp=_message("NullableTimestamp"),
    Timestamp=_message("Timestamp"),
    RpcException=_message("RpcException"),
    StatusResult=_message("StatusResult", Failure=0, Success=1, Cancelled=2),
    InvocationResponse=_message("InvocationResponse"),
)


# ----------------------------------------------------------------------------- library


def library_path(app_root: Path, env: Mapping[str, str] | None = None) -> Path:
    given = (env if env is not None else os.environ).get(LIBRARY_ENV)
    return Path(given) if given else app_root / DEFAULT_LIBRARY_DIR


def load_library(path: Path) -> SimpleNamespace:
    """Import the worker library from ``path`` (a folder holding ``azure_functions_runtime``)."""
    if not (path / "azure_functions_runtime" / "handle_event.py").is_file():
        raise WorkerLibraryError(
            f"the Python worker library is not in {path}: run `make install`, or "
            f"`slipway fetch-worker {path}` (it downloads {WORKER_LIBRARY} from PyPI), or set "
            f"{LIBRARY_ENV} to a folder that holds it"
        )
    if str(path) not in sys.path:
        # Appended: the app's own packages (azure.functions above all) must win, as they do in
        # the worker with PYTHON_ISOLATE_WORKER_DEPENDENCIES=1.
        sys.path.append(str(path))
    try:
        modules = SimpleNamespace(
            handle_event=importlib.import_module("azure_functions_runtime.handle_event"),
            functions=importlib.import_module("azure_functions_runtime.functions"),
            loader=importlib.import_module("azure_functions_runtime.loader"),
            meta=importlib.import_module("azure_functions_runtime.bindings.meta"),
            threadpool=importlib.import_module("azure_functions_runtime.utils.threadpool"),
        )
    except ImportError as exc:
        raise WorkerLibraryError(f"the Python worker library in {path} does not import: {exc}") from None
    # Its per-invocation info lines ("Function name: ..., Function Type: ...") are host-log noise here.
    logging.getLogger("azure_functions_runtime").setLevel(logging.WARNING)
    return modules


def index_with_worker(
    app: func.FunctionRegister, library: SimpleNamespace, *, function_directory: str = "."
) -> dict[str, Any]:
    """Index every function as the worker does at start (``loader.process_indexed_function``:
    the registry's parameter checks, then the binding, retry and raw-binding metadata the host
    is sent); its FunctionInfo by function id.

    Raises :class:`FunctionIndexError` naming each refused function and the worker's message
    (the worker stops at the first; all of them are named here).
    """
    library.meta.load_binding_registry()
    registry = library.functions.Registry()
    refused: list[tuple[str, str]] = []
    for function in indexed_functions(app):
        try:
            library.loader.process_indexed_function(PROTOS, registry, [function], function_directory)
        except Exception as exc:
            refused.append((function.get_function_name(), str(exc)))
    if refused:
        raise FunctionIndexError(refused)
    return dict(registry._functions)


# ----------------------------------------------------------------------------- invocation


@dataclass(frozen=True)
class Invocation:
    """What the worker answered: the return value's TypedData, or the failure it reported."""

    ok: bool
    value: Any = None
    message: str = ""
    stack_trace: str = ""

    def raise_if_failed(self) -> None:
        """As the host treats a failed invocation of a trigger it retries or logs."""
        if not self.ok:
            raise FunctionFailed(self.message)

    def json_value(self) -> str | None:
        """The return value as the JSON text the host stores (activities, orchestrators)."""
        if self.value is None:
            return None
        kind = self.value.WhichOneof("data")
        if kind is None:
            return None
        raw = getattr(self.value, kind)
        return raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)


class Worker:
    """One worker process's worth of the real worker: its registry, its thread pool, its loop."""

    def __init__(
        self,
        app: func.FunctionRegister,
        *,
        library: Path,
        function_timeout: timedelta | None,
    ) -> None:
        self._lib = load_library(library)
        self._timeout = function_timeout
        handle_event: ModuleType = self._lib.handle_event
        handle_event.protos = PROTOS
        infos = index_with_worker(app, self._lib)
        # The worker dispatches by function id from its module-level registry.
        handle_event._functions._functions.clear()
        handle_event._functions._functions.update(infos)
        self._names = {info.name.lower(): info for info in infos.values()}
        # The thread pool sized from PYTHON_THREADPOOL_THREAD_COUNT, as at worker start.
        self._lib.threadpool.start_threadpool_executor()
        self._in_flight: dict[str, tuple[asyncio.Future[Any], asyncio.Task[Any]]] = {}
        self.restarts = 0

    @property
    def thread_count(self) -> int:
        pool = self._lib.threadpool.get_threadpool_executor()
        return int(pool._max_workers) if pool is not None else 0

    async def invoke(
        self,
        name: str,
        inputs: Mapping[str, Any],
        *,
        trigger_metadata: Mapping[str, Any] | None = None,
    ) -> Invocation:
        """Invoke function ``name`` with ``inputs`` (binding name → TypedData), as the host does."""
        info = self._names.get(name.lower())
        if info is None:
            return Invocation(False, message=f"function {name!r} is not indexed")
        invocation_id = str(uuid.uuid4())
        request = SimpleNamespace(
            request=SimpleNamespace(
                invocation_request=SimpleNamespace(
                    invocation_id=invocation_id,
                    function_id=info.function_id,
                    input_data=[ParameterBinding(name=k, data=v) for k, v in inputs.items()],
                    trigger_metadata=dict(trigger_metadata or {}),
                    trace_context=SimpleNamespace(trace_parent="", trace_state="", attributes={}),
                    retry_context=SimpleNamespace(retry_count=0, max_retry_count=0, exception=None),
                )
            ),
            properties={"protos": PROTOS},
        )
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        task = loop.create_task(self._lib.handle_event.invocation_request(request))
        task.add_done_callback(lambda done: _settle(answer, done))
        self._in_flight[invocation_id] = (answer, task)
        timeout = None if self._timeout is None else self._timeout.total_seconds()
        try:
            response = await asyncio.wait_for(asyncio.shield(answer), timeout=timeout)
        except TimeoutError:
            self._restart(name, invocation_id)
            raise WorkerRestarted(_timeout_message(name, invocation_id, self._timeout)) from None
        finally:
            self._in_flight.pop(invocation_id, None)
        result = response.result
        if result.status == PROTOS.StatusResult.Success:
            return Invocation(True, value=response.return_value)
        exception = result.exception
        return Invocation(
            False, message=str(exception.message or ""), stack_trace=str(exception.stack_trace or "")
        )

    def _restart(self, name: str, invocation_id: str) -> None:
        """The host's answer to a functionTimeout: the worker process goes, and all it ran with it."""
        self.restarts += 1
        log.error(
            "%s; the host restarts the worker and every invocation in flight on it fails",
            _timeout_message(name, invocation_id, self._timeout),
            extra={"function": name, "in_flight": len(self._in_flight)},
        )
        reason = _timeout_message(name, invocation_id, self._timeout)
        for other, (future, task) in list(self._in_flight.items()):
            if not future.done():
                if other == invocation_id:
                    future.cancel()
                else:
                    future.set_exception(WorkerRestarted(f"the worker restarted: {reason}"))
            # The process is gone: async work stops where it is, and nothing waits for sync work.
            task.cancel()
        # A new process means a new pool. Work queued for the old one never starts; threads
        # already running Python code cannot be stopped and end when their code does.
        old = self._lib.threadpool.get_threadpool_executor()
        if old is not None:
            old.shutdown(wait=False, cancel_futures=True)
        self._lib.threadpool.start_threadpool_executor()

    def close(self) -> None:
        pool = self._lib.threadpool.get_threadpool_executor()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def _settle(answer: asyncio.Future[Any], done: asyncio.Task[Any]) -> None:
    if answer.done():
        return
    if done.cancelled():
        answer.cancel()
    elif done.exception() is not None:
        answer.set_exception(done.exception())  # type: ignore[arg-type]
    else:
        answer.set_result(done.result())


def _timeout_message(name: str, invocation_id: str, timeout: timedelta | None) -> str:
    # The host's wording (FunctionTimeoutException), its TimeSpan as hh:mm:ss.
    seconds = int(timeout.total_seconds()) if timeout is not None else 0
    span = f"{seconds // 3600:02}:{seconds // 60 % 60:02}:{seconds % 60:02}"
    return f"Timeout value of {span} exceeded by function 'Functions.{name}' (Id: '{invocation_id}')"


def fetch_library(dest: Path) -> Path:
    """Download the pinned worker library from PyPI (checked by hash) and unpack it into ``dest``.

    It is a wheel for Python 3.13+, so pip is told that interpreter version and only downloads:
    installing it into this interpreter's environment would refuse it.
    """
    import subprocess
    import tempfile
    import zipfile

    if (dest / "azure_functions_runtime" / "handle_event.py").is_file():
        return dest
    with tempfile.TemporaryDirectory() as scratch:
        pins = Path(scratch) / "requirements.txt"
        pins.write_text(f"{WORKER_LIBRARY} --hash=sha256:{WORKER_LIBRARY_SHA256}\n", encoding="utf-8")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--python-version", "3.13",
             "--only-binary=:all:", "--require-hashes", "-r", str(pins), "-d", scratch],
            check=True,
        )  # fmt: skip
        wheels = sorted(Path(scratch).glob("azure_functions_runtime-*.whl"))
        if not wheels:
            raise WorkerLibraryError(f"pip downloaded no wheel of {WORKER_LIBRARY}")
        staging = Path(tempfile.mkdtemp(prefix=".worker-", dir=dest.parent if dest.parent.exists() else None))
        with zipfile.ZipFile(wheels[0]) as wheel:
            wheel.extractall(staging)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            import shutil

            shutil.rmtree(dest)
        staging.rename(dest)
    return dest
