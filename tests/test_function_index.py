"""The function index the host builds from function_app.py, checked binding by binding."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import azure.functions as func
import pytest

from slipway.config import SettingsError
from slipway.functions import create_function_app
from slipway.functions.catalog import indexed_functions

REPO_ROOT = Path(__file__).resolve().parents[1]


def _load_function_app(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> func.FunctionApp:
    """Import function_app.py as the worker does, with ``env`` as the app settings."""
    for name in list(env):
        monkeypatch.setenv(name, env[name])
    spec = importlib.util.spec_from_file_location("function_app_under_test", REPO_ROOT / "function_app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "function_app_under_test", module)
    spec.loader.exec_module(module)
    return module.app


def _bindings(function: func.Function) -> list[dict[str, object]]:
    return json.loads(function.get_function_json())["bindings"]


def test_function_app_indexes_every_function_with_the_bindings_the_host_expects(
    base_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _load_function_app(base_env, monkeypatch)
    functions = {f.get_function_name(): f for f in indexed_functions(app)}
    assert set(functions) == {
        "http_app_func",
        "automation_api",
        "github_webhook",
        "gitsync_requested",
        "workspace_sync",
        "gitsync_pass",
        "gitsync_reconcile",
        "workflow_run_requested",
        "workflow_run_poisoned",
        "workflow_run",
        "workflow_plan",
        "workflow_step",
        "workflow_record",
        "workflow_finish",
        "workflow_reaper",
        "deployment_requested",
        "deployment_request_poisoned",
        "deployment_reaper",
        "deployment_run",
        "deployment_start",
        "deployment_build",
        "deployment_publish",
        "deployment_verify",
        "deployment_rollback",
        "deployment_finish",
        "durable_purge",
    }

    catch_all = _bindings(functions["http_app_func"])
    trigger = next(b for b in catch_all if b["type"] == "httpTrigger")
    assert trigger["route"] == "/{*route}"
    # The library writes the enum name (ANONYMOUS); the host reads auth levels case-insensitively.
    assert str(trigger["authLevel"]).lower() == "anonymous"
    assert sorted(trigger["methods"]) == sorted(m.value for m in func.HttpMethod)
    assert {"type": "http", "direction": "OUT", "name": "$return"} in catch_all

    automation = _bindings(functions["automation_api"])
    trigger = next(b for b in automation if b["type"] == "httpTrigger")
    assert trigger["route"] == "api/automation/{*path}"
    # The host checks the function key; Slipway then treats the caller as admin.
    assert str(trigger["authLevel"]).lower() == "function"
    assert trigger["name"] == "req"
    assert {"type": "http", "direction": "OUT", "name": "$return"} in automation

    webhook = next(b for b in _bindings(functions["github_webhook"]) if b["type"] == "httpTrigger")
    # Anonymous at the host: GitHub proves itself with the HMAC signature instead.
    assert (webhook["route"], webhook["methods"], str(webhook["authLevel"]).lower()) == (
        "api/github/webhook",
        ["POST"],
        "anonymous",
    )

    queue = _bindings(functions["gitsync_requested"])
    assert {
        "direction": "IN",
        "type": "queueTrigger",
        "name": "msg",
        "queueName": "slipway-sync",
        "connection": "AzureWebJobsStorage",
    } in queue
    assert {"direction": "IN", "type": "durableClient", "name": "client"} in queue
    assert _bindings(functions["workspace_sync"]) == [
        {"direction": "IN", "type": "orchestrationTrigger", "name": "context"}
    ]
    assert _bindings(functions["gitsync_pass"]) == [
        {"direction": "IN", "type": "activityTrigger", "name": "request"}
    ]

    runs = _bindings(functions["workflow_run_requested"])
    assert {
        "direction": "IN",
        "type": "queueTrigger",
        "name": "msg",
        "queueName": "slipway-runs",
        "connection": "AzureWebJobsStorage",
    } in runs
    assert {"direction": "IN", "type": "durableClient", "name": "client"} in runs
    # A start message that kept failing marks its run failed instead of leaving it queued.
    poisoned = next(b for b in _bindings(functions["workflow_run_poisoned"]) if b["type"] == "queueTrigger")
    assert poisoned["queueName"] == "slipway-runs-poison"
    reaper = _bindings(functions["workflow_reaper"])
    assert {"direction": "IN", "type": "durableClient", "name": "client"} in reaper
    assert next(b for b in reaper if b["type"] == "timerTrigger")["schedule"] == "30 * * * * *"
    assert _bindings(functions["workflow_run"]) == [
        {"direction": "IN", "type": "orchestrationTrigger", "name": "context"}
    ]
    for activity, argument in [
        ("workflow_plan", "runid"),
        ("workflow_step", "request"),
        ("workflow_record", "request"),
        ("workflow_finish", "request"),
    ]:
        assert _bindings(functions[activity]) == [
            {"direction": "IN", "type": "activityTrigger", "name": argument}
        ]

    deploys = _bindings(functions["deployment_requested"])
    assert {
        "direction": "IN",
        "type": "queueTrigger",
        "name": "msg",
        "queueName": "slipway-deploys",
        "connection": "AzureWebJobsStorage",
    } in deploys
    assert {"direction": "IN", "type": "durableClient", "name": "client"} in deploys
    # A start message that kept failing shows as a failed deployment with the reason.
    poisoned = next(
        b for b in _bindings(functions["deployment_request_poisoned"]) if b["type"] == "queueTrigger"
    )
    assert poisoned["queueName"] == "slipway-deploys-poison"
    reaper = _bindings(functions["deployment_reaper"])
    assert {"direction": "IN", "type": "durableClient", "name": "client"} in reaper
    assert next(b for b in reaper if b["type"] == "timerTrigger")["schedule"] == "45 * * * * *"

    # Finished orchestrations past SLIPWAY_DURABLE_RETENTION_DAYS are purged every hour.
    purge = _bindings(functions["durable_purge"])
    assert {"direction": "IN", "type": "durableClient", "name": "client"} in purge
    assert next(b for b in purge if b["type"] == "timerTrigger")["schedule"] == "0 20 * * * *"
    assert _bindings(functions["deployment_run"]) == [
        {"direction": "IN", "type": "orchestrationTrigger", "name": "context"}
    ]
    for activity, argument in [
        ("deployment_start", "deploymentid"),
        ("deployment_build", "deploymentid"),
        ("deployment_publish", "deploymentid"),
        ("deployment_verify", "request"),
        ("deployment_rollback", "request"),
        ("deployment_finish", "request"),
    ]:
        assert _bindings(functions[activity]) == [
            {"direction": "IN", "type": "activityTrigger", "name": argument}
        ]


def test_every_binding_names_a_parameter_of_its_function(
    base_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the worker's indexer checks on Python 3.13 and get_functions() does not."""
    import inspect

    app = _load_function_app(base_env, monkeypatch)
    for function in indexed_functions(app):
        parameters = set(inspect.signature(function.get_user_function()).parameters)
        for item in _bindings(function):
            if item["name"] != "$return":
                assert item["name"] in parameters, (function.get_function_name(), item)


def test_function_app_refuses_to_start_naming_the_missing_setting(
    base_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {k: v for k, v in base_env.items() if k != "SLIPWAY_SECRET_STORE"}
    monkeypatch.delenv("SLIPWAY_SECRET_STORE", raising=False)
    with pytest.raises(SettingsError, match="SLIPWAY_SECRET_STORE is missing"):
        create_function_app(env)


def test_host_json_is_what_the_functions_host_expects() -> None:
    host = json.loads((REPO_ROOT / "host.json").read_text(encoding="utf-8"))
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {
        "id": "Microsoft.Azure.Functions.ExtensionBundle",
        "version": "[4.*, 5.0.0)",
    }
    assert host["extensions"]["durableTask"]["hubName"] == "%SLIPWAY_TASK_HUB%"
    queues = host["extensions"]["queues"]
    assert queues["messageEncoding"] == "base64"
    assert queues["maxDequeueCount"] >= 2
    sampling = host["logging"]["applicationInsights"]["samplingSettings"]
    # Errors are never sampled away.
    assert "Exception" in sampling["excludedTypes"].split(";")
