"""The container files, checked without a Docker engine: hadolint on the Dockerfile, the
compose files against the Compose Specification, and both against the settings the code reads."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from compose_files import load_compose, validate_compose

from slipway.cli import main as slipway_cli
from slipway.config import SETTINGS, load_settings
from slipway.engine.loader import WorkflowLoader
from slipway.engine.snapshots import Snapshots
from slipway.isolation.boundary import install_sdk, resolve_identity
from slipway.isolation.launcher import Launcher

REPO_ROOT = Path(__file__).resolve().parents[1]
SLIPWAY_SETTINGS = {s.env for s in SETTINGS if not s.host_only}
COMPOSE_FILES = ["docker-compose.dev.yml", "docker-compose.prod.yml", "docker-compose.source.yml"]
# Read by the Functions host or the Python worker, not by Slipway's code.
HOST_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_WORKER_PROCESS_COUNT",
    "PYTHON_THREADPOOL_THREAD_COUNT",
    "PYTHON_ISOLATE_WORKER_DEPENDENCIES",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "PYDEVD_DISABLE_FILE_VALIDATION",
}


def compose(name: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """A compose file as Compose reads it, variables resolved from ``env`` (defaults otherwise)."""
    return load_compose(REPO_ROOT / name, env or {})


def image_env() -> dict[str, str]:
    """The ENV of the Dockerfile's final stage."""
    text = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    final = text.rsplit("\nFROM ", 1)[1]
    found: dict[str, str] = {}
    for line in final.splitlines():
        if line.startswith("ENV "):
            found.update(dict(re.findall(r"(\S+?)=(\S+)", line[4:])))
    return found


def mount_targets(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source of each volume of a service (short syntax)."""
    targets = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        targets[target] = source
    return targets


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run(
        [str(hadolint), "--failure-threshold", "info", str(REPO_ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_builds_the_ui_apart_and_sets_only_known_settings() -> None:
    text = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert text.count("\nFROM ") + text.startswith("FROM ") >= 3  # web build, node, final
    final = text.rsplit("\nFROM ", 1)[1]
    assert final.startswith("${FUNCTIONS_IMAGE}")
    assert "ARG FUNCTIONS_IMAGE=mcr.microsoft.com/azure-functions/python:4-python3.12\n" in text
    # 4-python3.11 is built on Debian 11, whose LTS ended on 2026-08-31: apt-get fails on it.
    assert "python:4-python3.11" not in text
    assert "COPY --from=web /web/dist /home/site/wwwroot/web/dist" in final
    assert "npm ci" not in final  # no web build tooling in the final stage
    assert "--no-cache-dir" in final and "HEALTHCHECK" in final and "/api/health" in final
    env = image_env()
    assert env["AzureWebJobsScriptRoot"] == "/home/site/wwwroot"
    assert env["AzureFunctionsJobHost__Logging__Console__IsEnabled"] == "true"
    slipway_keys = {k for k in env if k.startswith("SLIPWAY_")}
    assert slipway_keys <= SLIPWAY_SETTINGS, slipway_keys - SLIPWAY_SETTINGS
    assert not {s.env for s in SETTINGS if s.secret} & set(env)  # no secrets baked in


def final_stage_runs() -> list[str]:
    """The RUN instructions of the Dockerfile's final stage, continuation lines joined."""
    text = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    final = text.rsplit("\nFROM ", 1)[1]
    return [line[4:] for line in final.splitlines() if line.startswith("RUN ")]


def test_the_image_pins_the_static_web_apps_cli_and_prefetches_its_uploader() -> None:
    runs = final_stage_runs()
    (install,) = [run for run in runs if "@azure/static-web-apps-cli@" in run]
    (version,) = re.findall(r"@azure/static-web-apps-cli@(\S+)", install)
    # An exact version: CLI versions before 2.0.9 exit 0 when an upload fails, so a range that
    # could resolve to one of them, or an unpinned install, would report failed deploys as done.
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"pin an exact version, not {version!r}"
    assert tuple(int(part) for part in version.split(".")) >= (2, 0, 9)
    assert "npm install --global" in install and "--no-audit --no-fund" in install
    assert "npm cache clean --force" in install  # in the same layer: no npm cache in the image
    # Node is there before the CLI is installed (the symlinks of npm come from the node stage).
    assert runs.index(install) > next(i for i, run in enumerate(runs) if "npm-cli.js" in run)
    # The uploader is fetched at build time by the CLI's own code into $HOME/.swa/deploy, where
    # `swa deploy` looks for it, and the build fails if it is not there.
    assert "getDeployClientPath()" in install
    assert "test -f /home/.swa/deploy/StaticSitesClient.json" in install
    assert image_env()["HOME"] == "/home"
    assert {s.env: s for s in SETTINGS}["SLIPWAY_SWA_CLI"].default == "swa"  # the CLI's bin name


def test_the_docker_build_context_holds_what_the_dockerfile_copies_and_nothing_else() -> None:
    ignore = (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    included = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "**" in ignore
    copies = re.findall(
        r"^COPY (?!--from)(.+) \S+$", (REPO_ROOT / "Dockerfile").read_text(), flags=re.MULTILINE
    )
    for copy in copies:
        for source in copy.split():
            top = source.rstrip("/").split("/")[0]
            assert top in included, f"{source} is copied but .dockerignore excludes it"


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_files_follow_the_compose_specification(name: str) -> None:
    validate_compose(compose(name))


def test_the_dev_compose_file_gives_every_setting_the_code_reads() -> None:
    app = compose("docker-compose.dev.yml")["services"]["app"]
    environment = {k: str(v) for k, v in app["environment"].items()}
    assert SLIPWAY_SETTINGS - set(environment) == set()
    assert set(environment) - SLIPWAY_SETTINGS <= HOST_SETTINGS | {"FUNCTIONS_WORKER_RUNTIME"}
    settings = load_settings(environment)  # the values as given are valid
    assert settings.dev_principal and settings.debugging is None  # debugging is opt-in
    debugging = load_settings(
        {
            k: str(v)
            for k, v in compose("docker-compose.dev.yml", {"ENABLE_DEBUGGING": "true"})["services"]["app"][
                "environment"
            ].items()
        }
    ).debugging
    assert debugging is not None and debugging.host == "0.0.0.0"
    assert environment["FUNCTIONS_WORKER_PROCESS_COUNT"] == "1"  # one worker, one debug port


def test_the_dev_compose_file_mounts_and_publishes_what_the_settings_name() -> None:
    app = compose("docker-compose.dev.yml")["services"]["app"]
    env = app["environment"]
    mounts = mount_targets(app)
    assert mounts[env["SLIPWAY_WORKSPACE_DIR"]] == "./workspace"
    assert (
        compose("docker-compose.dev.yml", {"SLIPWAY_WORKSPACE": "/home/ada/flows"})["services"]["app"][
            "volumes"
        ][0]
        == "/home/ada/flows:/workspace"
    )
    assert env["SLIPWAY_TEMP_DIR"] in mounts and not env["SLIPWAY_TEMP_DIR"].startswith("/tmp")
    state = [target for target in mounts if env["SLIPWAY_SECRETS_FILE"].startswith(target + "/")]
    assert state and env["SLIPWAY_GIT_DIR"].startswith(state[0] + "/")  # secrets and mirror survive restarts
    assert env["SLIPWAY_DEPLOY_CACHE_DIR"].startswith(state[0] + "/")  # the dependency cache too
    assert not any(env["SLIPWAY_DEPLOY_DIR"].startswith(target + "/") for target in mounts)  # local disk
    assert env["SLIPWAY_LOCAL_SITES_URL"] == "http://127.0.0.1:80"  # the host's port in the container
    assert f"127.0.0.1:{env['DEBUG_PORT']}:{env['DEBUG_PORT']}" in app["ports"]
    assert "127.0.0.1:7071:80" in app["ports"]
    assert all(port.startswith("127.0.0.1:") for port in app["ports"])  # dev principal: local only
    assert app["depends_on"]["azurite"]["condition"] == "service_healthy"
    assert "/api/health/ready" in " ".join(app["healthcheck"]["test"])
    assert "azurite:10001" in env["AzureWebJobsStorage"]


def test_the_source_override_mounts_the_engine_where_the_image_installs_it() -> None:
    app = compose("docker-compose.source.yml")["services"]["app"]
    mounts = mount_targets(app)
    assert mounts["/opt/slipway/src"] == "./src"
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert (
        "WORKDIR /opt/slipway" in dockerfile
        and "COPY src/ src/" in dockerfile
        and "--editable ." in dockerfile
    )


def test_the_prod_compose_file_runs_the_published_image_with_settings_from_the_env_file() -> None:
    services = compose("docker-compose.prod.yml")["services"]
    app = services["app"]
    assert app["image"] == "docker.io/slipway/slipway:latest"
    assert (
        compose("docker-compose.prod.yml", {"SLIPWAY_IMAGE": "ghcr.io/me/slipway:1.2"})["services"]["app"][
            "image"
        ]
        == "ghcr.io/me/slipway:1.2"
    )
    assert app["restart"] == "unless-stopped" and "build" not in app
    assert all("5678" not in port for port in app["ports"])  # no debug port
    assert "environment" not in app and app["env_file"][0]["path"] == "slipway.env"
    example = dict(
        line.split("=", 1)
        for line in (REPO_ROOT / "slipway.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    environment = {**image_env(), **example, "SLIPWAY_API_TOKEN": "t" * 40}
    settings = load_settings(environment)
    assert not settings.dev_principal and settings.debugging is None
    mounts = mount_targets(app)
    assert str(settings.workspace_dir) in mounts and str(settings.temp_dir) in mounts
    assert any(str(settings.secrets_file).startswith(target + "/") for target in mounts)


def test_slipway_init_writes_a_workflow_repository_that_runs_and_debugs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "flows"
    assert slipway_cli(["init", str(repo)]) == 0
    assert "docker compose up" in capsys.readouterr().out
    assert {p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file()} == {
        "docker-compose.yml", ".vscode/launch.json", "workflows/hello.py", "README.md",
    }  # fmt: skip
    stack = load_compose(repo / "docker-compose.yml", {})
    validate_compose(stack)
    slipway = stack["services"]["slipway"]
    assert slipway["image"] == "docker.io/slipway/slipway:latest"
    assert mount_targets(slipway)["/workspace"] == "."
    launch = json.loads((repo / ".vscode" / "launch.json").read_text())
    attach = launch["configurations"][0]
    assert attach["request"] == "attach" and attach["connect"]["port"] == int(
        slipway["environment"]["DEBUG_PORT"]
    )
    assert attach["pathMappings"] == [{"localRoot": "${workspaceFolder}", "remoteRoot": "/workspace"}]
    assert f"127.0.0.1:{attach['connect']['port']}:5678" in slipway["ports"]

    class NoVersions:
        def put_if_absent(self, container: str, name: str, data: bytes) -> bool:
            return True

        def get(self, container: str, name: str) -> bytes | None:
            return None

    steps = tmp_path / "steps"
    loader = WorkflowLoader(
        repo,
        NoVersions(),
        snapshots=Snapshots(repo, NoVersions(), steps / "snapshots"),
        launcher=Launcher(resolve_identity(""), install_sdk(steps), warm=False),
        home=steps / "home",
    )
    hello = loader.load_current("hello")
    assert hello is not None and hello.error is None

    # A second init refuses to overwrite; --keep-existing only fills in what is missing.
    (repo / "README.md").write_text("mine\n")
    (repo / ".vscode" / "launch.json").unlink()
    assert slipway_cli(["init", str(repo)]) == 1
    assert "--force overwrites" in capsys.readouterr().err
    assert slipway_cli(["init", str(repo), "--keep-existing"]) == 0
    assert (repo / "README.md").read_text() == "mine\n"
    assert (repo / ".vscode" / "launch.json").exists()
