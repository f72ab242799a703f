"""What a command Slipway starts can see of the worker's environment (slipway.childenv): a
workflow step's shell(), a deployment's build commands and git get the basics a command needs and
what they were given explicitly, never the platform's secrets, whatever those are called.

The worker's environment here is what the Functions host gives a real one: the storage account
key twice, an APPSETTING_ copy of an app setting, the managed identity's secret and the worker's
own folder on PYTHONPATH and PATH.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_deploy_build import PRINT_ENV, Log, site
from test_workflow_orchestration import Engine
from workflow_files import write_workflow

from slipway.bootstrap import build_services
from slipway.config import load_settings
from slipway.deploy.build import run_build
from slipway.deploy.detect import detect_build
from slipway.gitsync.mirror import Git
from slipway.sdk import shell

WORKER_FOLDER = "/azure-functions-host/workers/python/3.11/LINUX/X64"
PLATFORM_SECRETS = {
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING": "DefaultEndpointsProtocol=https;AccountKey=share-key",
    "AzureWebJobsStorage": "DefaultEndpointsProtocol=https;AccountKey=storage-key",
    "APPSETTING_SLIPWAY_API_TOKEN": "api-token-copied-by-app-service",
    "MSI_SECRET": "msi-secret",
    "IDENTITY_HEADER": "identity-header",
    "PYTHONPATH": WORKER_FOLDER,
}
SYSTEM_PATH = os.environ["PATH"]
NETWORK = {
    "HTTPS_PROXY": "http://proxy.example:3128",
    "no_proxy": "127.0.0.1,localhost",
    "NODE_EXTRA_CA_CERTS": "/etc/ssl/corporate-root.pem",
    "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
}


@pytest.fixture
def host_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """The worker's environment under the Functions host; returns the variables it added."""
    home = tmp_path / "home"
    home.mkdir()
    added = {**PLATFORM_SECRETS, **NETWORK, "HOME": str(home)}
    for name, value in added.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PATH", f"{WORKER_FOLDER}:{WORKER_FOLDER}/bin:{SYSTEM_PATH}")
    return added


def environment_of(printed: str) -> dict[str, str]:
    """``env``'s output as a mapping."""
    return dict(line.split("=", 1) for line in printed.splitlines() if "=" in line)


def assert_basics_but_no_secret(env: dict[str, str], text: str) -> None:
    assert not set(PLATFORM_SECRETS) & set(env)
    assert not [value for value in PLATFORM_SECRETS.values() if value in text]
    assert env["PATH"].endswith(SYSTEM_PATH)  # npm puts node_modules/.bin in front
    assert {name: env.get(name) for name in NETWORK} == NETWORK


# ------------------------------------------------------------------------------------ shell


@pytest.fixture
def engine(base_env: dict[str, str]) -> Iterator[Engine]:
    yield Engine.of(build_services(load_settings(base_env)))


SHOW_ENV = """
    from slipway.sdk import Workflow, shell

    workflow = Workflow()

    @workflow.step()
    def show(ctx):
        shell("env", env={"DEPLOY_TARGET": "staging"})
        return shell("echo $HOME").stdout.strip()
"""


def test_a_shell_step_gets_path_home_network_and_its_env_but_none_of_the_platforms_secrets(
    engine: Engine, host_environment: dict[str, str]
) -> None:
    name = f"show-env-{uuid.uuid4().hex[:8]}"
    write_workflow(engine.services.settings.workspace_dir, name, SHOW_ENV)

    run = engine.run(name)

    step = engine.steps(run)["show"]
    assert step["status"] == "succeeded", step
    # HOME is the run's own folder (the step runs as another user than the worker's HOME's owner).
    assert step["output"].endswith(f"/runs/{run['id']}/.home")
    assert step["output"] != host_environment["HOME"]
    log = engine.log_text(run)
    env = environment_of(log)
    assert_basics_but_no_secret(env, log)
    assert env["HOME"] == step["output"]
    assert env["DEPLOY_TARGET"] == "staging"


def test_python_in_a_shell_step_imports_nothing_from_the_workers_folder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTHONPATH", WORKER_FOLDER)
    monkeypatch.setenv("PATH", f"{WORKER_FOLDER}:{SYSTEM_PATH}")
    printed = shell("python -c 'import json, sys; print(json.dumps(sys.path))'").stdout
    path = json.loads(printed)
    assert path and not [entry for entry in path if entry.startswith("/azure-functions-host")]


def test_a_variable_nobody_allowed_does_not_reach_a_command_whatever_its_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = f"FOO_SECRET_{uuid.uuid4().hex[:8].upper()}"
    monkeypatch.setenv(name, "not-for-commands")
    monkeypatch.setenv("LC_TIME", "C.UTF-8")
    env = environment_of(shell("env").stdout)
    assert name not in env
    assert env["LC_TIME"] == "C.UTF-8"
    assert environment_of(shell("env", env={name: "given"}).stdout)[name] == "given"


def test_a_worker_folder_on_path_is_left_out_and_system_tools_are_still_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTHONPATH", "/opt/worker/lib")
    monkeypatch.setenv("PATH", "/opt/worker/lib/bin::/usr/bin:/bin")
    assert shell("echo $PATH; command -v sh").stdout.split() == ["/usr/bin:/bin", "/usr/bin/sh"]


# ------------------------------------------------------------------------------------ build


def test_a_build_command_gets_path_and_network_but_none_of_the_platforms_secrets(
    tmp_path: Path, host_environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    unlisted = f"FOO_SECRET_{uuid.uuid4().hex[:8].upper()}"
    monkeypatch.setenv(unlisted, "not-for-builds")
    project = site(tmp_path, "npm-build", files={"build.js": PRINT_ENV})
    log = Log()

    run_build(detect_build(project), build_dir=tmp_path / "scratch", log=log)

    printed = next(line for _, line in log.lines if line.startswith("ENV "))
    env = json.loads(printed[len("ENV ") :])
    assert_basics_but_no_secret(env, log.text)
    assert unlisted not in env
    assert env["HOME"] == str(tmp_path / "scratch" / "home")  # the build's own, not the worker's


# -------------------------------------------------------------------------------------- git


@pytest.mark.usefixtures("host_environment")
def test_git_gets_path_and_network_but_none_of_the_platforms_secrets(tmp_path: Path) -> None:
    git = Git(tmp_path / "mirror.git", token="ghs_" + "t" * 36)

    done = git.run(["-c", "alias.show-env=!env", "show-env"], bare=False, cwd=tmp_path)

    printed = done.stdout.decode()
    assert done.returncode == 0, done.stderr
    env = environment_of(printed)
    assert_basics_but_no_secret(env, printed)
    assert env["HOME"] == str(tmp_path / "mirror.git" / "slipway-home")
    assert env["GIT_CONFIG_KEY_0"] == "http.extraHeader"  # the token, in git's own configuration
