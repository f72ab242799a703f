"""Workflows as the API lists and starts them: load errors with file:line, params checked (422)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from workflow_files import line_of, write_workflow

from slipway.api.app import create_api
from slipway.bootstrap import Services, build_services
from slipway.config import load_settings

PARAMS_WORKFLOW = """
    from slipway.sdk import Param, Workflow

    workflow = Workflow(
        description="deploys a thing",
        params={
            "target": Param(str, choices=["staging", "production"]),
            "replicas": Param(int, default=2),
            "ratio": Param(float, default=0.5),
            "dry_run": Param(bool, default=True),
        },
    )

    @workflow.step()
    def only(ctx):
        return dict(ctx.params)
"""


@pytest.fixture
def services(base_env: dict[str, str]) -> Services:
    return build_services(load_settings(base_env))


@pytest.fixture
def client(services: Services, live_server: type) -> Iterator[httpx.Client]:
    env_workspace = services.settings.workspace_dir
    env_workspace.mkdir(exist_ok=True)
    with live_server(create_api(services)) as server, server.client() as http:
        http.headers["x-test"] = "1"
        yield http


@pytest.fixture(autouse=True)
def _dev_principal(base_env: dict[str, str]) -> None:
    base_env["SLIPWAY_DEV_PRINCIPAL"] = "true"


def _workspace(services: Services) -> Path:
    return services.settings.workspace_dir


def test_a_syntax_error_is_listed_with_its_file_and_line_and_its_run_is_refused(
    services: Services, client: httpx.Client
) -> None:
    path = write_workflow(
        _workspace(services),
        "broken",
        "from slipway.sdk import Workflow\n\nworkflow = Workflow(\n\ndef x(:\n",
    )
    write_workflow(_workspace(services), "fine", PARAMS_WORKFLOW)
    listed = {w["name"]: w for w in client.get("/api/workflows").json()["workflows"]}
    assert set(listed) == {"broken", "fine"}
    error = listed["broken"]["error"]
    assert error["file"] == "workflows/broken.py"  # as the user names it, not the server's path
    assert error["line"] == line_of(path, "def x(:")
    assert error["message"].startswith("SyntaxError")
    assert listed["fine"]["error"] is None

    refused = client.post("/api/workflows/broken/runs", json={"params": {}})
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "workflow_load_failed"
    assert f"broken.py:{error['line']}" in refused.json()["error"]["message"]


def test_an_import_error_points_at_the_import_line(services: Services, client: httpx.Client) -> None:
    path = write_workflow(
        _workspace(services),
        "needs_lib",
        """
        from slipway.sdk import Workflow
        import not_installed_anywhere

        workflow = Workflow()
        """,
    )
    error = client.get("/api/workflows/needs_lib").json()["error"]
    assert error["message"] == "ModuleNotFoundError: No module named 'not_installed_anywhere'"
    assert (error["file"], error["line"]) == ("workflows/needs_lib.py", line_of(path, "import not_installed"))


def test_a_step_that_runs_after_an_unknown_step_is_reported_at_its_declaration(
    services: Services, client: httpx.Client
) -> None:
    path = write_workflow(
        _workspace(services),
        "dangling",
        """
        from slipway.sdk import Workflow

        workflow = Workflow()

        @workflow.step(after=["build"])
        def deploy(ctx, build):
            return None
        """,
    )
    error = client.get("/api/workflows/dangling").json()["error"]
    assert "runs after 'build', which is not a step declared above it" in error["message"]
    assert error["line"] == line_of(path, "@workflow.step(after")


def test_helpers_and_other_files_are_not_listed_as_workflows(
    services: Services, client: httpx.Client
) -> None:
    write_workflow(_workspace(services), "_shared", "X = 1\n")
    write_workflow(_workspace(services), "real", PARAMS_WORKFLOW)
    (_workspace(services) / "workflows" / "notes.txt").write_text("not code")
    names = [w["name"] for w in client.get("/api/workflows").json()["workflows"]]
    assert names == ["real"]
    assert client.get("/api/workflows/_shared").status_code == 404
    assert client.get("/api/workflows/nope").json()["error"]["code"] == "workflow_not_found"


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({}, "target", "is required"),
        ({"target": "mars"}, "target", "must be one of 'staging', 'production'"),
        ({"target": "staging", "replicas": "3"}, "replicas", "must be a integer"),
        ({"target": "staging", "replicas": True}, "replicas", "must be a integer"),
        ({"target": "staging", "dry_run": "false"}, "dry_run", "must be a boolean"),
        ({"target": "staging", "colour": "red"}, "colour", "is not a parameter of this workflow"),
    ],
)
def test_bad_params_are_refused_with_422_naming_the_field(
    services: Services, client: httpx.Client, params: dict[str, object], field: str, words: str
) -> None:
    name = f"deploy-{uuid.uuid4().hex[:8]}"  # the run history is shared by the tests' one Azurite
    write_workflow(_workspace(services), name, PARAMS_WORKFLOW)
    answer = client.post(f"/api/workflows/{name}/runs", json={"params": params})
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "params_invalid"
    assert answer.json()["error"]["message"].startswith(f"params.{field}: {words}")
    assert client.get("/api/runs", params={"workflow": name}).json()["runs"] == []


def test_garbage_bodies_are_refused_with_clear_errors(services: Services, client: httpx.Client) -> None:
    write_workflow(_workspace(services), "deploy", PARAMS_WORKFLOW)
    not_json = client.post("/api/workflows/deploy/runs", content=b"{nope")
    assert not_json.status_code == 422 and "not JSON" in not_json.json()["error"]["message"]
    wrong_shape = client.post("/api/workflows/deploy/runs", json={"target": "staging"})
    assert wrong_shape.status_code == 422 and '{"params"' in wrong_shape.json()["error"]["message"]
    huge = client.post("/api/workflows/deploy/runs", json={"params": {"target": "x" * 100_000}})
    assert huge.status_code == 413
    bad_id = client.get("/api/runs/../../etc")
    assert bad_id.status_code == 404


def test_a_valid_request_queues_a_run_with_defaults_filled_in_and_the_version_pinned(
    services: Services, client: httpx.Client
) -> None:
    name = f"deploy-{uuid.uuid4().hex[:8]}"
    write_workflow(_workspace(services), name, PARAMS_WORKFLOW)
    version = client.get(f"/api/workflows/{name}").json()["version"]
    answer = client.post(f"/api/workflows/{name}/runs", json={"params": {"target": "staging", "ratio": 1}})
    assert answer.status_code == 202
    run = answer.json()["run"]
    assert answer.headers["location"] == f"/api/runs/{run['id']}" == answer.json()["status_url"]
    assert run["status"] == "queued"
    assert run["version"] == version
    assert run["params"] == {"target": "staging", "replicas": 2, "ratio": 1.0, "dry_run": True}
    assert client.get(f"/api/runs/{run['id']}").json()["status"] == "queued"
    assert [r["id"] for r in client.get("/api/runs", params={"workflow": name}).json()["runs"]] == [run["id"]]


def test_an_edit_is_seen_by_the_next_listing_at_once(services: Services, client: httpx.Client) -> None:
    path = write_workflow(_workspace(services), "deploy", PARAMS_WORKFLOW)
    before = client.get("/api/workflows/deploy").json()
    path.write_text(path.read_text().replace('"deploys a thing"', '"deploys two things"'))
    after = client.get("/api/workflows/deploy").json()
    assert after["description"] == "deploys two things"
    assert after["version"] != before["version"]


def test_canceling_a_queued_run_ends_it_before_it_starts(services: Services, client: httpx.Client) -> None:
    write_workflow(_workspace(services), "deploy", PARAMS_WORKFLOW)
    run = client.post("/api/workflows/deploy/runs", json={"params": {"target": "staging"}}).json()["run"]
    canceled = client.post(f"/api/runs/{run['id']}/cancel")
    assert canceled.status_code == 202
    assert canceled.json()["status"] == "canceled"
    again = client.post(f"/api/runs/{run['id']}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "run_finished"
    assert "cancel requested" in client.get(f"/api/runs/{run['id']}/logs").json()["lines"][-1]["text"]


def test_a_new_workspace_gets_the_example_workflow_and_it_loads(
    services: Services, client: httpx.Client
) -> None:
    assert services.workflows.seed_example() is True
    assert services.workflows.seed_example() is False  # never twice, never over a user's files
    hello = client.get("/api/workflows/hello").json()
    assert hello["error"] is None
    assert [s["name"] for s in hello["steps"]] == ["greet", "count_up", "count_down", "goodbye"]
    assert [p["name"] for p in hello["params"]] == ["name", "count", "fail"]


def test_the_readme_shows_the_example_workflow_exactly() -> None:
    root = Path(__file__).resolve().parents[1]
    example = (root / "src" / "slipway" / "engine" / "examples" / "hello.py").read_text()
    readme = (root / "README.md").read_text()
    assert f"```python\n{example}```" in readme


def test_the_reaper_settles_runs_whose_orchestration_is_gone_or_ignored_a_cancel(services: Services) -> None:
    name = f"reaped-{uuid.uuid4().hex[:8]}"
    write_workflow(_workspace(services), name, PARAMS_WORKFLOW)
    engine = services.workflows
    lost = engine.start_run(name, {"target": "staging"}, "test")["id"]
    stuck = engine.start_run(name, {"target": "staging"}, "test")["id"]
    for run_id in (lost, stuck):
        engine.plan(run_id)  # running, as if its orchestration had started
    engine.cancel_run(stuck, "ada")
    later = datetime.now(UTC) + timedelta(minutes=2)

    unfinished = {row["run_id"]: row for row in engine.unfinished_runs()}
    assert {lost, stuck} <= set(unfinished)
    assert engine.reap(unfinished[lost], None, later) is None
    assert engine.get_run(lost)["status"] == "failed"
    assert "orchestration is gone" in engine.get_run(lost)["error"]

    assert engine.reap(unfinished[stuck], "Running", datetime.now(UTC)) is None  # within its grace
    assert engine.reap(unfinished[stuck], "Running", later) == "terminate"
    engine.reap(unfinished[stuck], "Terminated", later)
    assert engine.get_run(stuck)["status"] == "canceled"
    assert {lost, stuck}.isdisjoint(row["run_id"] for row in engine.unfinished_runs())
