"""Deployments through the product as a user runs it: `slipway dev` as a child process, the API,
the deploys queue, the `deployment_run` orchestration on the real clock, real builds (npm, one
package from the npm registry), the local static host checked over HTTP, and real processes."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from gitrepos import Repo
from runner_process import Runner, start_runner

from slipway.adapters.queues import encode_wire
from slipway.adapters.secrets import FileSecretStore
from slipway.deploy.records import DeploymentRequest, DeploymentStore
from slipway.gitsync.connection import WEBHOOK_SECRET, Connection, ConnectionStore
from slipway.names import DEPLOYS_QUEUE, poison_queue

SITES = Path(__file__).parent / "fixtures" / "sites"
FAILING_TEST = 'console.error("expected 2, got 3"); process.exit(1);\n'


def install_script_project(node_code: str) -> dict[str, str]:
    """Files of an npm project whose install runs ``node_code`` (npm runs a root package's
    install script during `npm ci`): an install that takes a while and says who it is."""
    package = {"name": "slow", "version": "1.0.0", "scripts": {"install": f"node -e {json.dumps(node_code)}"}}
    lock = {
        "name": "slow",
        "version": "1.0.0",
        "lockfileVersion": 3,
        "requires": True,
        "packages": {"": {"name": "slow", "version": "1.0.0"}},
    }
    return {"package.json": json.dumps(package), "package-lock.json": json.dumps(lock)}


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    started = start_runner(
        tmp_path_factory.mktemp("deploys"),
        extra_env={"SLIPWAY_VERIFY_TIMEOUT_SECONDS": "3", "SLIPWAY_DEPLOY_CONCURRENCY": "2"},
    )
    try:
        yield started
    finally:
        started.stop()


def site_name() -> str:
    return f"site-{uuid.uuid4().hex[:8]}"


def workspace_copy(runner: Runner, fixture: str, files: dict[str, str] | None = None) -> str:
    folder = f"sites/{fixture}-{uuid.uuid4().hex[:6]}"
    shutil.copytree(SITES / fixture, runner.workspace / folder, ignore=shutil.ignore_patterns("node_modules"))
    for name, content in (files or {}).items():
        (runner.workspace / folder / name).write_text(content)
    return folder


def deploy(runner: Runner, site: str, **fields: Any) -> str:
    answer = runner.api("POST", "/api/deployments", json={"site": site, **fields})
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert answer.headers["location"] == body["status_url"] == f"/api/deployments/{body['deployment']['id']}"
    return str(body["deployment"]["id"])


def get(runner: Runner, deployment_id: str) -> dict[str, Any]:
    return dict(runner.api("GET", f"/api/deployments/{deployment_id}").json())


def finished(runner: Runner, deployment_id: str, timeout: float = 60) -> dict[str, Any]:
    return runner.wait(
        lambda: (
            (d := get(runner, deployment_id))["status"]
            in ("succeeded", "failed", "canceled", "superseded", "rolled_back")
            and d
        ),
        f"deployment {deployment_id} to finish",
        timeout=timeout,
    )


def log_text(runner: Runner, deployment_id: str) -> str:
    page = runner.api("GET", f"/api/deployments/{deployment_id}/logs").json()
    assert page["complete"] is True
    return "\n".join(line["text"] for line in page["lines"])


def served(runner: Runner, site: str, path: str = "") -> httpx.Response:
    return httpx.get(f"{runner.url}/sites/{site}/{path}", timeout=10)


def live(runner: Runner, site: str) -> str:
    return str(served(runner, site, ".well-known/slipway-deploy.json").json()["deployment"])


def test_a_static_site_deploys_from_the_workspace_and_is_served(runner: Runner) -> None:
    site = site_name()
    deployment_id = deploy(runner, site, source="workspace", folder=workspace_copy(runner, "static"))
    done = finished(runner, deployment_id)

    assert (done["status"], done["error"]) == ("succeeded", None), done
    assert "Hello from a plain static site" in served(runner, site).text
    assert live(runner, site) == deployment_id
    assert done["live"] is True and done["url"] == f"{runner.url}/sites/{site}/"
    assert [s["status"] for s in done["steps"]] == [
        "succeeded", "succeeded", "skipped", "skipped", "skipped", "succeeded", "succeeded", "succeeded",
    ]  # fmt: skip
    log = log_text(runner, deployment_id)
    assert (
        "queued by" in log and "deploy file passed" in log and log.rstrip().endswith("deployment succeeded")
    )
    sites = {s["site"]: s for s in runner.api("GET", "/api/sites").json()["sites"]}
    assert (sites[site]["state"], sites[site]["live_deployment_id"]) == ("DEPLOYED", deployment_id)
    history = runner.api("GET", "/api/deployments", params={"site": site}).json()["deployments"]
    assert [d["id"] for d in history] == [deployment_id]
    assert history[0]["requested_by"] and history[0]["artifact"]["blob_name"].startswith(f"{site}/")


def test_an_npm_project_with_a_registry_dependency_deploys_and_the_second_install_comes_from_the_cache(
    runner: Runner,
) -> None:
    site = site_name()
    folder = workspace_copy(runner, "npm-dep")
    first = finished(runner, deploy(runner, site, source="workspace", folder=folder), timeout=180)
    assert first["status"] == "succeeded", (first, log_text(runner, first["id"]))
    page = served(runner, site).text
    second = finished(runner, deploy(runner, site, source="workspace", folder=folder), timeout=120)

    assert second["status"] == "succeeded"
    assert served(runner, site).text == page and live(runner, site) == second["id"]
    assert "[dependencies saved to the cache" in log_text(runner, first["id"])
    assert "[dependencies restored from the cache" in log_text(runner, second["id"])
    # The estimate for a third comes from the site's recent deployments.
    third = get(runner, deploy(runner, site, source="workspace", folder=folder))
    assert third["estimate"] is None or third["estimate"]["typical_ms"] > 0
    finished(runner, third["id"], timeout=120)


def test_a_failing_test_step_fails_with_its_output_and_the_previous_version_stays_live(
    runner: Runner,
) -> None:
    site = site_name()
    good = finished(
        runner, deploy(runner, site, source="workspace", folder=workspace_copy(runner, "npm-build"))
    )
    broken = workspace_copy(runner, "npm-build", {"test.js": FAILING_TEST})
    bad = finished(runner, deploy(runner, site, source="workspace", folder=broken))

    assert good["status"] == "succeeded"
    assert (bad["status"], bad["step"]) == ("failed", "test")
    assert "expected 2, got 3" in bad["error"] and "expected 2, got 3" in log_text(runner, bad["id"])
    assert live(runner, site) == good["id"]
    assert "<h1>Built by Node</h1>" in served(runner, site).text
    state = runner.api("GET", f"/api/sites/{site}").json()
    assert (state["state"], state["live_deployment_id"]) == ("DEPLOYMENT_FAILED", good["id"])

    # Retry: the same inputs again, as a new deployment.
    again = runner.api("POST", f"/api/deployments/{bad['id']}/retry")
    assert again.status_code == 202
    retried = finished(runner, again.json()["deployment"]["id"])
    assert (retried["status"], retried["trigger"], retried["request"]["folder"]) == (
        "failed",
        "retry",
        broken,
    )


def test_a_failing_verify_rolls_back_and_the_old_content_is_served_then_a_manual_rollback(
    runner: Runner,
) -> None:
    site = site_name()
    first = finished(
        runner, deploy(runner, site, source="workspace", folder=workspace_copy(runner, "static"))
    )
    wrong = workspace_copy(runner, "static", {"index.html": "<h1>Oops</h1>"})
    second = finished(
        runner,
        deploy(runner, site, source="workspace", folder=wrong, verify_path="/", verify_text="Hello from"),
    )
    assert second["status"] == "rolled_back", second
    assert f"rolled back to {first['id']}" in second["error"]
    assert "Hello from a plain static site" in served(runner, site).text
    assert [s["name"] for s in second["steps"]][-1] == "rollback"

    third_folder = workspace_copy(runner, "static", {"index.html": "<h1>Third</h1>"})
    third = finished(runner, deploy(runner, site, source="workspace", folder=third_folder))
    assert "Third" in served(runner, site).text

    answer = runner.api("POST", f"/api/sites/{site}/rollback", json={"deployment_id": first["id"]})
    assert answer.status_code == 202, answer.text
    rollback = finished(runner, answer.json()["deployment"]["id"])
    assert (rollback["status"], rollback["trigger"]) == ("succeeded", "rollback")
    assert [s["name"] for s in rollback["steps"]] == ["publish", "verify"]
    assert "Hello from a plain static site" in served(runner, site).text
    assert rollback["artifact"] == first["artifact"]
    # The default target is the last good deployment before the live one.
    default = runner.api("POST", f"/api/sites/{site}/rollback")
    assert default.status_code == 202
    assert default.json()["deployment"]["request"]["rollback_to"] == third["id"]
    finished(runner, default.json()["deployment"]["id"])
    assert "Third" in served(runner, site).text
    refused = runner.api("POST", f"/api/sites/{site}/rollback", json={"deployment_id": second["id"]})
    assert refused.status_code == 409 and "only a succeeded deployment" in refused.json()["error"]["message"]


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes() + (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return [pid for pid in found if pid != os.getpid()]


def test_cancel_in_the_middle_of_install_leaves_no_process_behind(runner: Runner) -> None:
    site = site_name()
    marker = f"slow-install-{uuid.uuid4().hex[:8]}"
    files = install_script_project(f"setInterval(() => console.log('{marker}'), 200)")
    folder = workspace_copy(runner, "static", files)
    deployment_id = deploy(runner, site, source="workspace", folder=folder)
    runner.wait(lambda: marker in log_text_partial(runner, deployment_id), "the install to print", timeout=60)
    assert _processes_with(marker)

    answer = runner.api("POST", f"/api/deployments/{deployment_id}/cancel")
    assert answer.status_code == 202, answer.text
    done = finished(runner, deployment_id, timeout=15)
    assert done["status"] == "canceled"
    assert {s["name"]: s["status"] for s in done["steps"]}["install"] == "canceled"
    runner.wait(lambda: not _processes_with(marker), "the install's processes to be gone", timeout=10)
    assert served(runner, site).status_code == 404
    again = runner.api("POST", f"/api/deployments/{deployment_id}/cancel")
    assert again.status_code == 409


def log_text_partial(runner: Runner, deployment_id: str) -> str:
    page = runner.api("GET", f"/api/deployments/{deployment_id}/logs").json()
    return "\n".join(line["text"] for line in page["lines"])


def test_a_newer_request_supersedes_a_queued_older_one_for_the_same_site(runner: Runner) -> None:
    site = site_name()
    marker = f"slow-{uuid.uuid4().hex[:8]}"
    slow = install_script_project(f"console.log('{marker}'); setTimeout(() => 0, 3000)")
    running = deploy(runner, site, source="workspace", folder=workspace_copy(runner, "static", slow))
    runner.wait(lambda: get(runner, running)["status"] == "building", "the first to build")
    older = deploy(runner, site, source="workspace", folder=workspace_copy(runner, "static"))
    newer = deploy(runner, site, source="workspace", folder=workspace_copy(runner, "static"))

    assert get(runner, older)["status"] == "superseded"
    assert get(runner, older)["superseded_by"] == newer
    assert finished(runner, running)["status"] == "succeeded"
    assert finished(runner, newer)["status"] == "succeeded"
    assert live(runner, site) == newer
    assert finished(runner, older)["steps"][0]["status"] == "skipped"


def test_garbage_is_dropped_and_a_poisoned_start_message_shows_as_a_failed_deployment(runner: Runner) -> None:
    queues = runner.queue_bus()
    for queue in (DEPLOYS_QUEUE, poison_queue(DEPLOYS_QUEUE)):
        for garbage in (b"not json", b'{"action": "start", "deployment_id": "../../etc"}', b"\xff\xfe"):
            queues.send_wire(queue, encode_wire(garbage))
    runner.wait(
        lambda: (
            queues.approximate_count(DEPLOYS_QUEUE) == 0
            and queues.approximate_count(poison_queue(DEPLOYS_QUEUE)) == 0
        ),
        "the garbage to be read and dropped",
    )
    site = site_name()
    store = DeploymentStore(runner.table_store())
    record = store.create(
        DeploymentRequest(site=site, source="workspace", folder="nowhere", requested_by="t")
    )
    runner.queue_bus().send_message(
        poison_queue(DEPLOYS_QUEUE), {"action": "start", "deployment_id": record.id}
    )
    done = finished(runner, record.id)
    assert done["status"] == "failed"
    assert "start message failed 5 times" in done["error"]
    assert runner.api("GET", f"/api/sites/{site}").json()["state"] == "DEPLOYMENT_FAILED"


def test_bad_requests_are_refused_naming_the_field_and_create_nothing(runner: Runner) -> None:
    site = site_name()
    for body, field in [
        ({"site": "Not A Site", "source": "workspace", "folder": "x"}, "site"),
        ({"site": site, "source": "ftp"}, "source"),
        ({"site": site, "source": "workspace"}, "folder"),
        ({"site": site, "source": "workspace", "folder": "../etc"}, "folder"),
        (
            {
                "site": site,
                "source": "git",
                "repository": "https://x.example/r.git",
                "ref": "--upload-pack=x",
            },
            "ref",
        ),
        ({"site": site, "source": "workspace", "folder": "x", "trigger": "push"}, "trigger"),
        ({"site": site, "source": "workspace", "folder": "x", "requested_by": "mallory"}, "requested_by"),
    ]:
        answer = runner.api("POST", "/api/deployments", json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["error"]["message"].startswith(f"{field}:"), answer.text
    assert runner.api("POST", "/api/deployments", content=b"[1, 2").status_code == 422
    huge = {"site": site, "source": "workspace", "folder": "x", "build_command": "x" * 100_000}
    assert runner.api("POST", "/api/deployments", json=huge).status_code == 413
    assert runner.api("GET", "/api/deployments", params={"site": site}).json()["deployments"] == []
    assert runner.api("GET", "/api/deployments/not-an-id").status_code == 404


def test_a_push_to_a_bound_branch_deploys_its_folder_and_records_the_commit_and_delivery(
    runner: Runner, tmp_path: Path
) -> None:

    repo = Repo(tmp_path / "repo")
    repo.write_many({f"web/{p.name}": p.read_bytes() for p in (SITES / "static").iterdir()})
    repo.write("README.md", "docs")
    commit = repo.commit_push("site")
    _connect(runner, repo.url)
    site = site_name()
    bound = runner.api("PUT", f"/api/sites/{site}/binding", json={"branch": "feature", "folder": "web"})
    assert bound.status_code == 200, bound.text
    assert bound.json()["binding"] == {"branch": "feature", "folder": "web"}

    answer = _push(runner, "delivery-" + uuid.uuid4().hex, commit, ["README.md"])
    assert "deployments" not in answer  # the push changed nothing under web/
    delivery = "delivery-" + uuid.uuid4().hex
    answer = _push(runner, delivery, commit, ["web/index.html"])
    assert "deployments" in answer, answer
    [deployment_id] = answer["deployments"]
    again = _push(runner, delivery, commit, ["web/index.html"])  # GitHub redelivers
    assert "deployments" not in again

    done = finished(runner, deployment_id)
    assert (done["status"], done["trigger"], done["commit_sha"], done["delivery_id"]) == (
        "succeeded",
        "push",
        commit,
        delivery,
    )
    assert "Hello from a plain static site" in served(runner, site).text
    assert runner.api("DELETE", f"/api/sites/{site}/binding").json()["binding"] is None


def _connect(runner: Runner, url: str) -> None:
    """Record a connection to ``url`` the way connect does (GitHub's API is not reachable here)."""
    FileSecretStore(runner.temp.parent / "secrets.json").set_secret(WEBHOOK_SECRET, "s3cret-for-tests")
    ConnectionStore(runner.table_store()).save(
        Connection("octo/site", "main", url, None, False, "", datetime.now(UTC), "test")
    )


def _push(runner: Runner, delivery: str, commit: str, changed: list[str]) -> dict[str, Any]:
    body = json.dumps(
        {
            "ref": "refs/heads/feature",  # not the synced branch: only deployments react
            "before": "0" * 40,
            "after": commit,
            "commits": [{"id": commit, "added": [], "modified": changed, "removed": []}],
            "pusher": {"name": "octocat"},
        }
    ).encode()
    signature = "sha256=" + hmac.new(b"s3cret-for-tests", body, hashlib.sha256).hexdigest()
    answer = httpx.post(
        f"{runner.url}/api/github/webhook",
        content=body,
        headers={
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": signature,
            "Content-Type": "application/json",
        },
        timeout=10,
    )
    assert answer.status_code in (200, 202), answer.text
    return dict(answer.json())
