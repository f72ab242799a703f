"""The Functions host's functionTimeout bounds every step: a longer declared timeout is a load
error, a step without one gets the host's limit, and a step that runs past it is timed out by
Slipway before the host would kill the worker (and every other invocation on it)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import azure.functions as func
import httpx
import pytest
from workflow_files import line_of, write_workflow

from slipway.api.app import create_api
from slipway.bootstrap import Services, build_services
from slipway.config import SettingsError, load_settings
from slipway.functions.workflows import ORCHESTRATOR, workflows_blueprint
from slipway.hostlimits import (
    BOOKKEEPING_SECONDS,
    DEFAULT_FUNCTION_TIMEOUT_SECONDS,
    HostLimitError,
    parse_function_timeout,
    read_host_limits,
)
from slipway.local.durable import DurableHarness

REPO_ROOT = Path(__file__).resolve().parents[1]


def app_root(folder: Path, function_timeout: object | None) -> Path:
    """A Functions app root whose host.json sets ``function_timeout`` (None: sets none)."""
    folder.mkdir(parents=True, exist_ok=True)
    host: dict[str, object] = {"version": "2.0"}
    if function_timeout is not None:
        host["functionTimeout"] = function_timeout
    (folder / "host.json").write_text(json.dumps(host), encoding="utf-8")
    return folder


def services_under(base_env: dict[str, str], root: Path) -> Services:
    return build_services(load_settings({**base_env, "AzureWebJobsScriptRoot": str(root)}))


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------------ functionTimeout values


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("00:05:00", 300.0),
        ("01:00:00", 3600.0),
        ("1.00:00:00", 86400.0),
        ("2.03:04:05", 2 * 86400 + 3 * 3600 + 4 * 60 + 5.0),
        ("00:00:10.5", 10.5),
        ("-1", None),
        (-1, None),
    ],
)
def test_function_timeout_is_read_as_the_host_reads_a_timespan(value: object, seconds: float | None) -> None:
    assert parse_function_timeout(value) == seconds


@pytest.mark.parametrize("value", ["an hour", "60", "01:60:00", "24:00:00", "00:00:00", "", "1:2", None])
def test_a_malformed_function_timeout_is_refused_naming_the_value(value: object) -> None:
    with pytest.raises(HostLimitError, match="is not a positive TimeSpan such as 00:05:00"):
        parse_function_timeout(value)


def test_the_repositorys_host_json_leaves_a_step_an_hour_less_the_bookkeeping_margin() -> None:
    limits = read_host_limits(REPO_ROOT)
    assert limits.function_timeout == 3600
    assert limits.step_seconds == 3600 - BOOKKEEPING_SECONDS
    assert "host.json's functionTimeout of 01:00:00" in limits.explain()


def test_without_a_function_timeout_the_premium_default_of_30_minutes_applies(tmp_path: Path) -> None:
    limits = read_host_limits(app_root(tmp_path / "app", None))
    assert limits.function_timeout == DEFAULT_FUNCTION_TIMEOUT_SECONDS == 1800
    assert "default functionTimeout of 00:30:00" in limits.explain()
    assert read_host_limits(tmp_path / "nowhere").function_timeout == 1800


def test_an_unbounded_function_timeout_still_stops_a_step_at_a_day(tmp_path: Path) -> None:
    assert read_host_limits(app_root(tmp_path / "app", "-1")).step_seconds == 86400


def test_a_malformed_host_json_stops_start_up_naming_the_file(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    root = app_root(tmp_path / "app", "one hour")
    with pytest.raises(SettingsError) as raised:
        load_settings({**base_env, "AzureWebJobsScriptRoot": str(root)})
    assert f"{root / 'host.json'}: functionTimeout 'one hour' is not a positive TimeSpan" in str(raised.value)
    short = app_root(tmp_path / "short", "00:01:00")
    with pytest.raises(SettingsError, match="leaves no time for a workflow step or a build"):
        load_settings({**base_env, "AzureWebJobsScriptRoot": str(short)})


def test_the_app_root_given_by_function_app_py_wins_over_the_environment(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    given = app_root(tmp_path / "given", "00:10:00")
    other = app_root(tmp_path / "other", "00:20:00")
    settings = load_settings({**base_env, "AzureWebJobsScriptRoot": str(other)}, app_root=given)
    assert settings.host_limits.function_timeout == 600


# ------------------------------------------------------------------------- workflows

TOO_LONG = """
    from slipway.sdk import Workflow

    workflow = Workflow()

    @workflow.step()
    def quick(ctx):
        return 1

    @workflow.step(after=[quick], timeout=7200)
    def soak(ctx, quick):
        return 2
"""


@pytest.fixture
def hour_client(
    base_env: dict[str, str], tmp_path: Path, live_server: type
) -> Iterator[tuple[Services, httpx.Client]]:
    base_env["SLIPWAY_DEV_PRINCIPAL"] = "true"
    services = services_under(base_env, app_root(tmp_path / "app", "01:00:00"))
    with live_server(create_api(services)) as server, server.client() as http:
        yield services, http


def test_a_step_timeout_above_the_host_limit_is_a_load_error_at_the_step(
    hour_client: tuple[Services, httpx.Client],
) -> None:
    services, client = hour_client
    path = write_workflow(services.settings.workspace_dir, "soak", TOO_LONG)
    listed = {w["name"]: w for w in client.get("/api/workflows").json()["workflows"]}
    error = listed["soak"]["error"]
    assert error["file"] == "workflows/soak.py"
    assert error["line"] == line_of(path, "timeout=7200")
    assert error["message"] == (
        "step 'soak': timeout=7200 s is more than a step may run here, 3480 s (host.json's "
        "functionTimeout of 01:00:00 less 120 s kept for bookkeeping); shorten it or raise "
        "functionTimeout in host.json"
    )
    refused = client.post("/api/workflows/soak/runs", json={"params": {}})
    assert refused.status_code == 422
    assert "soak.py" in refused.json()["error"]["message"]


def test_a_step_timeout_at_the_host_limit_loads(hour_client: tuple[Services, httpx.Client]) -> None:
    services, client = hour_client
    write_workflow(services.settings.workspace_dir, "edge", TOO_LONG.replace("7200", "3480"))
    listed = {w["name"]: w for w in client.get("/api/workflows").json()["workflows"]}
    assert listed["edge"]["error"] is None


def test_a_step_without_a_timeout_is_planned_with_the_host_limit(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    services = services_under(base_env, app_root(tmp_path / "app", "00:02:10"))
    name = _unique("planned")
    write_workflow(
        services.settings.workspace_dir,
        name,
        """
        from slipway.sdk import Workflow

        workflow = Workflow()

        @workflow.step()
        def unbounded(ctx):
            return 1

        @workflow.step(after=[unbounded], timeout=5)
        def bounded(ctx, unbounded):
            return 2

        @workflow.on_failure
        def tidy(ctx):
            return 3
        """,
    )
    run = services.workflows.start_run(name, {}, "test")
    plan = services.workflows.plan(run["id"])
    timeouts = {spec["name"]: spec["timeout"] for spec in [*plan["steps"], *plan["on_failure"]]}
    assert timeouts == {"unbounded": 10, "bounded": 5, "tidy": 10}
    notes = {spec["name"]: spec["timeout_note"] for spec in plan["steps"]}
    assert notes["bounded"] is None
    assert "host.json's functionTimeout of 00:02:10" in notes["unbounded"]


def test_a_step_that_runs_past_the_host_limit_is_timed_out_naming_function_timeout(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    services = services_under(base_env, app_root(tmp_path / "app", "00:02:02"))
    app = func.FunctionApp()
    app.register_functions(workflows_blueprint(services))
    harness = DurableHarness(app)  # the real clock: the step really runs past its 2 s
    name = _unique("overrun")
    write_workflow(
        services.settings.workspace_dir,
        name,
        """
        import time
        from slipway.sdk import Workflow

        workflow = Workflow()

        @workflow.step()
        def forever(ctx):
            time.sleep(4)  # plain Python: only the orchestration's timer can end it
            return "late"
        """,
    )
    run = services.workflows.start_run(name, {}, "test")
    harness.start_new(ORCHESTRATOR, run["id"], {"run_id": run["id"]})
    asyncio.run(harness.run_until_idle())
    ended = services.workflows.get_run(run["id"])
    assert ended["status"] == "failed"
    step = ended["steps"][0]
    assert step["status"] == "timed_out"
    assert step["error"] == (
        "timed out after 2 s (attempt 1): the longest a step without its own timeout may run: "
        "host.json's functionTimeout of 00:02:02 less 120 s kept for bookkeeping"
    )
