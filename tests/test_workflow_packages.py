"""Workflows with packages of their own, through `slipway dev`: a PEP 723 block and the shared
workflows/requirements.txt are installed into an environment built once, reused by later runs,
recorded with each run; a package that does not resolve is a load error at its line."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from runner_process import Runner, start_runner
from test_environments import write_wheel
from workflow_files import line_of, write_workflow

TERMINAL = {"succeeded", "failed", "canceled"}


@pytest.fixture(scope="module")
def wheel_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    write_wheel(folder, "slipway-probe-colour", "1.2.0")
    write_wheel(folder, "slipway-probe-shape", "3.0.1")
    return folder


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory, wheel_folder: Path) -> Iterator[Runner]:
    # The probe packages exist only in the folder of wheels (PyPI answers 404 for them).
    started = start_runner(
        tmp_path_factory.mktemp("packages"), extra_env={"SLIPWAY_PACKAGE_FIND_LINKS": str(wheel_folder)}
    )
    try:
        yield started
    finally:
        started.stop()


def run_to_end(runner: Runner, name: str) -> dict[str, Any]:
    answer = runner.api("POST", f"/api/workflows/{name}/runs", json={"params": {}})
    assert answer.status_code == 202, answer.text
    run_id = answer.json()["run"]["id"]
    return runner.wait(
        lambda: (run := runner.api("GET", f"/api/runs/{run_id}").json())["status"] in TERMINAL and run,
        f"run {run_id} to end",
        90,
    )


PEP723 = """
    # /// script
    # dependencies = ["slipway-probe-colour==1.2.0"]
    # ///
    import slipway_probe_colour
    from slipway.sdk import Workflow

    workflow = Workflow()

    @workflow.step()
    def colour(ctx):
        import sys
        return [slipway_probe_colour.VERSION, sys.prefix]
    """


def test_a_pep_723_workflow_runs_with_its_package_in_an_environment_built_once(runner: Runner) -> None:
    write_workflow(runner.workspace, "coloured", PEP723)
    first = run_to_end(runner, "coloured")
    assert first["status"] == "succeeded", first
    version, prefix = first["steps"][0]["output"]
    assert version == "1.2.0"
    environment = Path(prefix)
    assert environment.is_dir() and environment.parent.name == "envs"
    assert not os.stat(environment).st_mode & 0o022, "an environment must not be writable by steps"
    built = (environment / "bin" / "python").stat().st_mtime_ns
    second = run_to_end(runner, "coloured")
    assert second["steps"][0]["output"] == ["1.2.0", prefix]
    assert (environment / "bin" / "python").stat().st_mtime_ns == built
    # A workflow without packages never sees them (nor the platform's own).
    write_workflow(
        runner.workspace,
        "plain",
        """
        from slipway.sdk import Workflow

        workflow = Workflow()

        @workflow.step()
        def probe(ctx):
            found = []
            for name in ("slipway_probe_colour", "azure.functions", "fastapi"):
                try:
                    __import__(name)
                    found.append(name)
                except ImportError:
                    pass
            return found
        """,
    )
    assert run_to_end(runner, "plain")["steps"][0]["output"] == []


def test_the_shared_requirements_file_serves_every_workflow(runner: Runner) -> None:
    (runner.workspace / "workflows").mkdir(exist_ok=True)
    (runner.workspace / "workflows" / "requirements.txt").write_text("# for all\nslipway-probe-shape>=3\n")
    try:
        write_workflow(
            runner.workspace,
            "shaped",
            """
            import slipway_probe_shape
            from slipway.sdk import Workflow

            workflow = Workflow()

            @workflow.step()
            def shape(ctx):
                return slipway_probe_shape.VERSION
            """,
        )
        run = run_to_end(runner, "shaped")
        assert run["status"] == "succeeded", run
        assert run["steps"][0]["output"] == "3.0.1"
    finally:
        (runner.workspace / "workflows" / "requirements.txt").unlink()


def test_a_package_that_does_not_resolve_is_a_load_error_naming_it_and_its_line(runner: Runner) -> None:
    path = write_workflow(
        runner.workspace,
        "missing",
        """
        # /// script
        # dependencies = [
        #   "slipway-probe-colour",
        #   "slipway-probe-nowhere==9.9",
        # ]
        # ///
        from slipway.sdk import Workflow

        workflow = Workflow()

        @workflow.step()
        def never(ctx):
            return 1
        """,
    )
    answer = runner.api("GET", "/api/workflows/missing")
    assert answer.status_code == 200
    error = answer.json()["error"]
    assert error is not None, answer.json()
    assert "slipway-probe-nowhere" in error["message"]
    assert error["file"] == "workflows/missing.py"
    assert error["line"] == line_of(path, "slipway-probe-nowhere")
    started = runner.api("POST", "/api/workflows/missing/runs", json={"params": {}})
    assert started.status_code == 422
    assert "slipway-probe-nowhere" in started.text
