"""The image workflow (.github/workflows/image.yml): what a maintainer relies on when tagging a release.

Version tags v* build the repository's Dockerfile and push it to Docker Hub with the credentials
from repository secrets; the image tags follow semver ({{version}}, {{major}}.{{minor}}, {{major}}
except for 0.x) and "latest" only for releases, never for pre-releases.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO_ROOT / ".github" / "workflows"
IMAGE_WORKFLOW = WORKFLOWS / "image.yml"

EXPECTED_ACTIONS = {
    "actions/checkout",
    "docker/setup-qemu-action",
    "docker/setup-buildx-action",
    "docker/login-action",
    "docker/metadata-action",
    "docker/build-push-action",
}


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    # YAML 1.1 (PyYAML) reads the key `on` as the boolean True; GitHub reads it as "on".
    if True in data:
        data["on"] = data.pop(True)
    return data


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    return _load(IMAGE_WORKFLOW)


@pytest.fixture(scope="module")
def steps(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The steps of the one job, by the action they use (without its version)."""
    (job,) = workflow["jobs"].values()
    by_action = {}
    for step in job["steps"]:
        if "uses" in step:
            by_action[step["uses"].split("@")[0]] = step
    return by_action


def _lines(block: str) -> list[str]:
    return [line.strip() for line in block.strip().splitlines() if line.strip()]


def test_every_workflow_file_parses() -> None:
    files = sorted(WORKFLOWS.glob("*.yml")) + sorted(WORKFLOWS.glob("*.yaml"))
    assert IMAGE_WORKFLOW in files
    for path in files:
        data = _load(path)
        assert {"on", "jobs"} <= data.keys(), path


def test_triggers_are_version_tags_and_manual_dispatch_only(workflow: dict[str, Any]) -> None:
    on = workflow["on"]
    assert set(on) == {"push", "workflow_dispatch"}
    assert on["push"] == {"tags": ["v*"]}, "only v* tags push images: no branch pushes"
    # Never on pull requests: a pull request's code must not run next to the Docker Hub token.
    assert "pull_request" not in on and "pull_request_target" not in on


def test_permissions_are_read_only(workflow: dict[str, Any]) -> None:
    assert workflow["permissions"] == {"contents": "read"}
    for name, job in workflow["jobs"].items():
        assert "write" not in str(job.get("permissions", "")), name


def test_actions_are_the_expected_ones_pinned_to_a_major_version(steps: dict[str, dict[str, Any]]) -> None:
    assert set(steps) == EXPECTED_ACTIONS
    for action, step in steps.items():
        assert re.fullmatch(rf"{re.escape(action)}@v\d+", step["uses"]), step["uses"]


def test_checkout_keeps_no_token(steps: dict[str, dict[str, Any]]) -> None:
    assert steps["actions/checkout"]["with"]["persist-credentials"] is False


def test_login_to_docker_hub_uses_the_repository_secrets(steps: dict[str, dict[str, Any]]) -> None:
    login = steps["docker/login-action"]
    assert login["with"] == {
        "username": "${{ secrets.DOCKERHUB_USERNAME }}",
        "password": "${{ secrets.DOCKERHUB_TOKEN }}",
    }, "Docker Hub is login-action's default registry: no registry input, credentials from secrets only"
    # Logging in is needed only where something is pushed.
    assert login["if"] == "github.ref_type == 'tag'"


def test_no_credentials_inline_and_secrets_only_in_the_login() -> None:
    text = IMAGE_WORKFLOW.read_text(encoding="utf-8")
    assert re.findall(r"secrets\.\w+", text) == ["secrets.DOCKERHUB_USERNAME", "secrets.DOCKERHUB_TOKEN"]
    # Whatever sits under a credential-like key must be an expression, never a literal value.
    for key, value in re.findall(r"^\s*(password|token|username|api[-_]?key)\s*:\s*(.+)$", text, re.M | re.I):
        assert value.strip().startswith("${{ secrets."), f"{key}: {value}"
    assert "dckr_pat_" not in text  # the prefix of Docker Hub access tokens


def test_image_name_comes_from_a_repository_variable_with_a_default(
    workflow: dict[str, Any], steps: dict[str, dict[str, Any]]
) -> None:
    assert workflow["env"]["IMAGE_NAME"] == "${{ vars.IMAGE_NAME || 'docker.io/slipway/slipway' }}"
    assert steps["docker/metadata-action"]["with"]["images"] == "${{ env.IMAGE_NAME }}"


def test_tag_rules(steps: dict[str, dict[str, Any]]) -> None:
    meta = steps["docker/metadata-action"]
    assert meta["id"] == "meta"
    assert _lines(meta["with"]["tags"]) == [
        "type=semver,pattern={{version}}",
        "type=semver,pattern={{major}}.{{minor}}",
        # metadata-action's advice for major version zero: no "0" tag.
        "type=semver,pattern={{major}},enable=${{ !startsWith(github.ref, 'refs/tags/v0.') }}",
    ]
    # latest=auto: metadata-action adds "latest" for a semver release and never for a pre-release
    # (v1.3.0-rc.1 gets only 1.3.0-rc.1). No raw "latest" entry may bypass that rule.
    assert _lines(meta["with"]["flavor"]) == ["latest=auto"]
    assert "latest" not in meta["with"]["tags"]


def test_build_pushes_the_dockerfile_with_the_metadata_cache_and_attestations(
    workflow: dict[str, Any], steps: dict[str, dict[str, Any]]
) -> None:
    build = steps["docker/build-push-action"]["with"]
    assert (REPO_ROOT / build["file"]).is_file()
    assert build["context"] == "."
    assert build["push"] == "${{ github.ref_type == 'tag' }}"
    assert build["tags"] == "${{ steps.meta.outputs.tags }}"
    assert build["labels"] == "${{ steps.meta.outputs.labels }}"
    assert build["cache-from"] == "type=gha"
    assert build["cache-to"].startswith("type=gha")
    assert build["provenance"] not in (False, "false", "")
    assert build["sbom"] is True
    assert build["platforms"] == "${{ env.PLATFORMS }}"


def test_platforms_follow_the_base_image(workflow: dict[str, Any]) -> None:
    # mcr.microsoft.com/azure-functions/python:4-python3.12 is published for linux/amd64 only (see
    # the comment at PLATFORMS in image.yml); change both together when an arm64 base image exists.
    dockerfile = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "mcr.microsoft.com/azure-functions/python:4-python3.12" in dockerfile
    assert workflow["env"]["PLATFORMS"] == "linux/amd64"


def test_a_tag_that_is_not_a_version_fails_before_building(workflow: dict[str, Any]) -> None:
    (job,) = workflow["jobs"].values()
    names = [step.get("name") for step in job["steps"]]
    check = job["steps"][names.index("Refuse a tag that is not a version")]
    assert names.index("Refuse a tag that is not a version") < names.index("Build and push")
    assert check["if"] == "github.ref_type == 'tag' && steps.meta.outputs.tags == ''"
    assert "${{" not in check["run"], "the tag name reaches the script through env, not inline"
