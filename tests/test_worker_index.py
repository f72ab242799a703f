"""Every function of the app indexes in the real Python worker's code (azure-functions-runtime).

The 4.x worker in the Functions image runs these same checks at start-up; one refused function
and the host loads none, HTTP included. ``app.get_functions()`` does not run them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import pytest

from slipway.functions.catalog import indexed_functions
from slipway.local.worker import (
    LIBRARY_ENV,
    PROTOS,
    FunctionIndexError,
    index_with_worker,
    load_library,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def library() -> Any:
    return load_library(Path(os.environ[LIBRARY_ENV]))


def _function_app(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> func.FunctionApp:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("function_app_for_worker", REPO_ROOT / "function_app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "function_app_for_worker", module)
    spec.loader.exec_module(module)
    return module.app


def test_the_worker_library_is_the_pinned_release(library: Any) -> None:
    dist = next(Path(os.environ[LIBRARY_ENV]).glob("azure_functions_runtime-*.dist-info"))
    assert dist.name == "azure_functions_runtime-1.3.0.dist-info"


def test_every_function_of_the_app_indexes_in_the_worker(
    base_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, library: Any
) -> None:
    app = _function_app(base_env, monkeypatch)
    try:
        infos = index_with_worker(app, library)
    except FunctionIndexError as exc:
        pytest.fail(str(exc))
    names = {info.name for info in infos.values()}
    assert names == {f.get_function_name() for f in indexed_functions(app)}
    assert len(names) >= 25
    # What the worker learned about them is what the runner dispatches on.
    by_name = {info.name: info for info in infos.values()}
    assert by_name["http_app_func"].is_async and by_name["http_app_func"].is_http_func
    assert not by_name["workflow_run"].is_async  # the SDK's orchestrator handle is synchronous


def test_the_worker_refuses_a_built_in_generic_annotation_and_names_the_function(library: Any) -> None:
    # The annotation that kept the host from loading anything: put back, it must be caught.
    blueprint = df.Blueprint()

    @blueprint.activity_trigger(input_name="request")
    def generic_activity(request: dict[str, Any]) -> dict[str, Any]:
        return request

    @blueprint.activity_trigger(input_name="request")
    def plain_activity(request: dict) -> dict[str, Any]:
        return request

    app = func.FunctionApp()
    app.register_functions(blueprint)
    with pytest.raises(FunctionIndexError) as caught:
        index_with_worker(app, library)
    assert caught.value.refused == [
        (
            "generic_activity",
            "cannot load the generic_activity function: binding request has invalid non-type "
            "annotation dict[str, typing.Any]",
        )
    ]


def test_the_worker_refuses_a_parameter_without_a_binding(library: Any) -> None:
    app = func.FunctionApp()

    @app.queue_trigger(arg_name="msg", queue_name="q", connection="AzureWebJobsStorage")
    def lonely(msg: func.QueueMessage, extra: str) -> None:
        return None

    with pytest.raises(FunctionIndexError) as caught:
        index_with_worker(app, library)
    assert caught.value.refused[0][0] == "lonely"
    assert "extra" in caught.value.refused[0][1]


def test_the_worker_finds_the_one_app_in_function_app_py_and_builds_its_metadata(
    base_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, library: Any
) -> None:
    # As worker_init_request does: import function_app.py by name from the app's folder, find
    # its one top-level app (two would be refused), index it and build the host's metadata.
    for name, value in base_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    monkeypatch.delitem(sys.modules, "function_app", raising=False)
    library.meta.load_binding_registry()
    functions = library.loader.index_function_app(str(REPO_ROOT / "function_app.py"))
    metadata, _ = library.loader.process_indexed_function(
        PROTOS, library.functions.Registry(), functions, str(REPO_ROOT)
    )
    by_name = {m.name: m for m in metadata}
    assert len(by_name) == len(functions) >= 25
    webhook = by_name["github_webhook"]
    assert webhook.script_file == "function_app.py"
    assert [json.loads(raw)["route"] for raw in webhook.raw_bindings if "route" in raw] == [
        "api/github/webhook"
    ]
    assert by_name["workflow_step"].bindings["request"].type == "activityTrigger"
