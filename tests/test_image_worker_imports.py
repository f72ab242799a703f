"""The image's build-time check of which azure-functions the Python worker imports, run here
against a stand-in for the worker's folder (no Docker engine: the code is taken from the
Dockerfile's RUN step as Docker joins its lines, and only the worker's root is moved)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import azure.functions

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKER_ROOT = "/azure-functions-host/workers/python"


def dockerfile_final_stage() -> str:
    # Docker removes each backslash-newline and keeps the next line as it is.
    text = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", "")
    return text.rsplit("\nFROM ", 1)[1]


def import_check_code() -> str:
    (run,) = [
        line
        for line in dockerfile_final_stage().splitlines()
        if line.startswith('RUN python -c "') and "import azure.functions" in line
    ]
    code = run.removeprefix('RUN python -c "')
    assert code.endswith('"') and '"' not in code[:-1], "the check is one double-quoted python -c"
    return code[:-1]


def run_check(
    tmp_path: Path, pin: str, *, with_worker: bool = True, isolated: bool = True
) -> subprocess.CompletedProcess[str]:
    """The check with the worker under tmp_path, holding an old bundled azure-functions."""
    worker = tmp_path / "workers" / "python" / "{}.{}".format(*sys.version_info[:2]) / "LINUX" / "X64"
    if with_worker:
        bundled = worker / "azure" / "functions"
        bundled.mkdir(parents=True)
        (bundled / "__init__.py").write_text("__version__ = '1.17.0'\n", encoding="utf-8")
    project = tmp_path / "opt-slipway"
    project.mkdir()
    pyproject = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    pyproject = re.sub(r'"azure-functions[<>=!~][^"]*"', f'"azure-functions{pin}"', pyproject)
    (project / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    code = import_check_code()
    assert WORKER_ROOT in code
    if not isolated:  # the worker's own order, without PYTHON_ISOLATE_WORKER_DEPENDENCIES
        code = "; ".join(s for s in code.split("; ") if not s.startswith("sys.path = "))
    return subprocess.run(
        [sys.executable, "-c", code.replace(WORKER_ROOT, str(tmp_path / "workers" / "python"))],
        cwd=project,
        # As the host starts the worker: its folder on PYTHONPATH, ahead of site-packages.
        env={"PYTHONPATH": str(worker), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_the_image_sets_dependency_isolation_and_checks_after_installing() -> None:
    final = dockerfile_final_stage()
    env = dict(
        re.findall(r"(\S+?)=(\S+)", " ".join(line for line in final.splitlines() if line.startswith("ENV ")))
    )
    assert env["PYTHON_ISOLATE_WORKER_DEPENDENCIES"] == "1"
    runs = [line for line in final.splitlines() if line.startswith("RUN ")]
    check = next(i for i, run in enumerate(runs) if "import azure.functions" in run)
    assert check > next(
        i for i, run in enumerate(runs) if "pip install --no-cache-dir -r requirements.txt" in run
    )
    assert "/azure-functions-host/workers/python/%d.%d/LINUX/X64" in runs[check]


def test_with_isolation_the_apps_pinned_azure_functions_is_imported(tmp_path: Path) -> None:
    pin = re.search(
        r'"azure-functions([<>=!~][^"]*)"', (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    )
    assert pin is not None
    result = run_check(tmp_path, pin.group(1))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["azure-functions", azure.functions.__version__, azure.functions.__file__]
    assert "1.17.0" not in result.stdout  # the worker's bundled copy stays behind the app's


def test_the_check_fails_when_the_imported_version_is_outside_the_pin(tmp_path: Path) -> None:
    result = run_check(tmp_path, ">=9.0,<10")
    assert result.returncode != 0
    assert f"azure-functions {azure.functions.__version__} is outside azure-functions" in result.stderr


def test_the_check_fails_when_the_worker_is_not_where_the_image_puts_it(tmp_path: Path) -> None:
    result = run_check(tmp_path, ">=1.26,<2", with_worker=False)
    assert result.returncode != 0 and "no Python worker at" in result.stderr


def test_without_the_isolation_order_the_bundled_copy_wins_and_the_check_fails(tmp_path: Path) -> None:
    result = run_check(tmp_path, ">=1.26,<2", isolated=False)
    assert result.returncode != 0
    assert "azure-functions 1.17.0" in result.stdout
    assert "the worker bundled azure-functions would be imported" in result.stderr
