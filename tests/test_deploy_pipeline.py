"""The deployment orchestration through the real Durable replay code, with real storage
(Azurite), a real local static host served over HTTP, real builds and a real git remote."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import httpx
import pytest
from azure.storage.blob import BlobServiceClient
from gitrepos import GitHttpServer, Repo
from starlette.applications import Starlette
from starlette.routing import Mount

from slipway.adapters.blobs import BlobStore
from slipway.adapters.local_sites import SITES_PATH, LocalSitesApp, LocalSitesPublisher
from slipway.adapters.staticwebapps import PublishFailed
from slipway.bootstrap import build_services
from slipway.config import load_settings
from slipway.deploy.build import BuildLimits
from slipway.deploy.cache import DependencyCache
from slipway.deploy.pipeline import ARTIFACTS_CONTAINER, DeployPipeline
from slipway.deploy.records import DeploymentRecord, DeploymentRequest, DeploymentStore
from slipway.deploy.slots import BuildSlots
from slipway.functions import deployments
from slipway.functions.deployments import ORCHESTRATOR, deployments_blueprint
from slipway.local.durable import DurableHarness, VirtualClock
from slipway.local.durable_history import HistoryEventType

SITES = Path(__file__).parent / "fixtures" / "sites"
FAILING_TEST = 'console.error("expected 2, got 3"); process.exit(1);\n'


@dataclass
class Deployer:
    store: DeploymentStore
    blobs: BlobStore
    pipeline: DeployPipeline
    harness: DurableHarness
    workspace: Path
    work_root: Path
    url: str
    client: httpx.Client

    def workspace_site(self, fixture: str, files: dict[str, str] | None = None) -> str:
        """A copy of a fixture site in the workspace, some files replaced; its folder name."""
        folder = f"{fixture}-{uuid.uuid4().hex[:6]}"
        shutil.copytree(SITES / fixture, self.workspace / folder)
        for name, content in (files or {}).items():
            (self.workspace / folder / name).write_text(content)
        return folder

    def deploy(self, site: str, **fields: Any) -> DeploymentRecord:
        record = self.store.create(DeploymentRequest(site=site, requested_by="test", **fields))
        self.harness.start_new(ORCHESTRATOR, record.id, {"deployment_id": record.id})
        asyncio.run(self.harness.run_until_idle())
        status = self.harness.get_status(record.id)
        assert status is not None and status["runtimeStatus"] == "Completed", status
        return self.store.get(record.id)

    def served(self, site: str, path: str = "") -> httpx.Response:
        return self.client.get(f"{SITES_PATH}/{site}/{path}")

    def live(self, site: str) -> str | None:
        return self.served(site, ".well-known/slipway-deploy.json").json()["deployment"]


@pytest.fixture
def deployer(base_env: dict[str, str], tmp_path: Path, live_server: type) -> Iterator[Deployer]:
    services = build_services(load_settings(base_env))
    store = DeploymentStore(services.tables)
    blobs = BlobStore(BlobServiceClient.from_connection_string(base_env["AzureWebJobsStorage"]))
    sites_dir = tmp_path / "sites"
    host = Starlette(routes=[Mount(SITES_PATH, LocalSitesApp(sites_dir))])
    with live_server(host) as server, server.client() as client:
        pipeline = DeployPipeline(
            store,
            blobs,
            LocalSitesPublisher(sites_dir, server.url),
            tmp_path / "deploys",
            DependencyCache(tmp_path / "cache"),
            workspace_root=services.settings.workspace_dir,
            limits=BuildLimits(install_timeout=60, test_timeout=60, build_timeout=60),
            verify_timeout=1.0,
            verify_interval=0.1,
            publish_timeout=30,
        )
        app = func.FunctionApp()
        app.register_functions(deployments_blueprint(pipeline))
        yield Deployer(
            store,
            blobs,
            pipeline,
            DurableHarness(app, clock=VirtualClock()),
            services.settings.workspace_dir,
            tmp_path / "deploys",
            server.url,
            client,
        )


def _site() -> str:
    return f"site-{uuid.uuid4().hex[:8]}"


def test_a_static_site_deploys_and_is_served_with_a_deploy_file_naming_the_deployment(
    deployer: Deployer,
) -> None:
    site = _site()
    done = deployer.deploy(site, source="workspace", folder=deployer.workspace_site("static"))

    assert (done.status, done.error) == ("succeeded", None)
    page = deployer.served(site)
    assert page.status_code == 200 and "Hello from a plain static site" in page.text
    assert deployer.live(site) == done.id
    assert set(done.durations_ms) == {"queued", "building", "publishing", "verifying"}
    assert done.artifact is not None and done.artifact.blob_name == f"{site}/{done.artifact.sha256}.zip"
    assert deployer.blobs.get(ARTIFACTS_CONTAINER, done.artifact.blob_name) is not None
    state = deployer.store.get_site(site)
    assert (state.state, state.live_deployment_id, state.publisher) == ("DEPLOYED", done.id, None)
    assert not (deployer.work_root / done.id).exists()  # the work folder is gone
    steps = {step["name"]: step["status"] for step in done.steps}
    assert steps == {
        "checkout": "succeeded",
        "detect": "succeeded",
        "install": "skipped",  # a plain static site has nothing to install, test or build
        "test": "skipped",
        "build": "skipped",
        "package": "succeeded",
        "publish": "succeeded",
        "verify": "succeeded",
    }


def test_an_npm_project_is_tested_built_and_its_output_deployed(deployer: Deployer) -> None:
    site = _site()
    done = deployer.deploy(site, source="workspace", folder=deployer.workspace_site("npm-build"))

    assert (done.status, done.error) == ("succeeded", None)
    assert "<h1>Built by Node</h1>" in deployer.served(site).text
    assert deployer.served(site, "robots.txt").text.startswith("User-agent")
    assert deployer.served(site, "package.json").status_code == 404  # only dist/ is published
    log = "\n".join(deployer.pipeline.logs[done.id])
    assert "tests passed" in log and "built dist/index.html" in log
    assert [(step["name"], step["status"]) for step in done.steps][2:5] == [
        ("install", "succeeded"),
        ("test", "succeeded"),
        ("build", "succeeded"),
    ]
    assert all(step["duration_ms"] is not None for step in done.steps)


def test_a_deployment_whose_tests_fail_ends_failed_and_the_previous_one_stays_live(
    deployer: Deployer,
) -> None:
    site = _site()
    first = deployer.deploy(site, source="workspace", folder=deployer.workspace_site("npm-build"))
    broken = deployer.workspace_site("npm-build", {"test.js": FAILING_TEST, "page.js": "broken"})
    second = deployer.deploy(site, source="workspace", folder=broken)

    assert first.status == "succeeded"
    assert (second.status, second.step) == ("failed", "test")
    assert second.error is not None and "expected 2, got 3" in second.error
    assert second.artifact is None
    statuses = {step["name"]: step["status"] for step in second.steps}
    assert (statuses["install"], statuses["test"], statuses["build"], statuses["publish"]) == (
        "succeeded",
        "failed",
        "skipped",
        "skipped",
    )
    assert deployer.live(site) == first.id
    assert "<h1>Built by Node</h1>" in deployer.served(site).text
    state = deployer.store.get_site(site)
    assert (state.state, state.live_deployment_id) == ("DEPLOYMENT_FAILED", first.id)


def test_a_deployment_that_fails_verification_is_rolled_back_to_the_previous_artifact(
    deployer: Deployer,
) -> None:
    site = _site()
    first = deployer.deploy(site, source="workspace", folder=deployer.workspace_site("static"))
    changed = deployer.workspace_site("static", {"index.html": "<h1>Oops, wrong page</h1>"})
    second = deployer.deploy(
        site, source="workspace", folder=changed, verify_path="/", verify_text="Hello from"
    )

    assert second.status == "rolled_back"
    assert second.error is not None
    assert "does not contain 'Hello from'" in second.error and f"rolled back to {first.id}" in second.error
    assert "Hello from a plain static site" in deployer.served(site).text
    assert deployer.live(site) == first.id
    state = deployer.store.get_site(site)
    assert (state.state, state.live_deployment_id, state.publisher) == ("DEPLOYMENT_FAILED", first.id, None)
    assert state.live_artifact == first.artifact


def test_a_first_deployment_that_fails_verification_has_nothing_to_roll_back_to_and_fails(
    deployer: Deployer,
) -> None:
    site = _site()
    done = deployer.deploy(
        site, source="workspace", folder=deployer.workspace_site("static"), verify_text="not on the page"
    )

    assert done.status == "failed"
    assert done.error is not None and "no earlier good deployment" in done.error


def test_a_git_source_is_cloned_at_its_branch_and_its_commit_recorded(
    deployer: Deployer, tmp_path: Path
) -> None:
    repo = Repo(tmp_path / "repo")
    repo.write_many({path.name: path.read_bytes() for path in (SITES / "static").iterdir()})
    commit = repo.commit_push("site")
    site = _site()
    done = deployer.deploy(site, source="git", repository=repo.url, ref="main")

    assert (done.status, done.commit_sha) == ("succeeded", commit)
    assert "Hello from a plain static site" in deployer.served(site).text
    assert deployer.served(site, ".git/HEAD").status_code == 404
    deploy_file = deployer.served(site, ".well-known/slipway-deploy.json").json()
    assert (deploy_file["deployment"], deploy_file["commit"]) == (done.id, commit)

    repo.write("index.html", "<h1>second</h1>")
    repo.commit_push("second")
    pinned = deployer.deploy(site, source="git", repository=repo.url, ref=commit)
    assert (pinned.status, pinned.commit_sha) == ("succeeded", commit)


def test_a_workspace_folder_outside_the_workspace_is_refused(deployer: Deployer, tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "index.html").write_text("secret")
    site = _site()
    done = deployer.deploy(site, source="workspace", folder="link")  # a link out of the workspace
    assert (done.status, done.error) == ("failed", "the workspace has no folder 'link'")
    (deployer.workspace / "link").symlink_to(tmp_path / "outside")
    done = deployer.deploy(site, source="workspace", folder="link")
    assert (done.status, done.step) == ("failed", "checkout")
    assert done.error == "the folder 'link' is outside the workspace"


def test_a_deployment_canceled_as_it_starts_finishes_canceled_and_publishes_nothing(
    deployer: Deployer,
) -> None:
    site = _site()
    folder = deployer.workspace_site("static")
    record = deployer.store.create(
        DeploymentRequest(site=site, requested_by="test", source="workspace", folder=folder)
    )
    deployer.harness.start_new(ORCHESTRATOR, record.id, {"deployment_id": record.id})
    deployer.harness.raise_event(record.id, "cancel", None)
    asyncio.run(deployer.harness.run_until_idle())

    done = deployer.store.get(record.id)
    assert (done.status, done.error, done.artifact) == ("canceled", "canceled while running", None)
    assert deployer.served(site).status_code == 404


class FailingPublisher:
    """A publish target that refuses every upload, as Azure does when a token was rotated."""

    def publish(self, site: str, folder: Path, *, log: Any, timeout: float) -> Any:
        log("uploading")
        raise PublishFailed("the upload was refused: 401 Unauthorized")


def test_a_failed_publish_fails_the_deployment_and_keeps_the_previous_one_live(deployer: Deployer) -> None:
    site = _site()
    first = deployer.deploy(site, source="workspace", folder=deployer.workspace_site("static"))
    working = deployer.pipeline.publisher
    deployer.pipeline.publisher = FailingPublisher()
    try:
        second = deployer.deploy(site, source="workspace", folder=deployer.workspace_site("static"))
    finally:
        deployer.pipeline.publisher = working

    assert (second.status, second.step) == ("failed", "publish")
    assert second.error == "publish failed: the upload was refused: 401 Unauthorized"
    assert {s["name"]: s["status"] for s in second.steps}["publish"] == "failed"
    assert deployer.live(site) == first.id
    state = deployer.store.get_site(site)
    assert (state.live_deployment_id, state.publisher) == (first.id, None)  # lease given back


def test_a_deployment_waits_for_the_publish_lease_and_takes_over_an_expired_one(deployer: Deployer) -> None:
    site = _site()
    holder = deployer.store.create(
        DeploymentRequest(site=site, requested_by="t", source="workspace", folder="x")
    )
    # Another deployment holds the lease for good (its worker is stuck): the deployment gives up.
    assert deployer.store.acquire_publish(site, holder.id, ttl_seconds=3600)
    blocked = deployer.deploy(site, source="workspace", folder=deployer.workspace_site("static"))
    assert blocked.status == "failed"
    assert blocked.error == "the site stayed locked by another deployment for deployment_publish"
    assert "another deployment is publishing" in "\n".join(deployer.pipeline.logs[blocked.id])
    # A lease that expired (its holder died) is taken over.
    assert deployer.store.acquire_publish(site, holder.id, ttl_seconds=-1)
    done = deployer.deploy(site, source="workspace", folder=deployer.workspace_site("static"))
    assert done.status == "succeeded" and deployer.live(site) == done.id


def test_a_site_builds_one_deployment_at_a_time_and_slots_bound_sites_building_at_once(
    deployer: Deployer,
) -> None:
    pipeline, store = deployer.pipeline, deployer.store
    pipeline.slots = BuildSlots(store._tables, 1, is_finished=lambda i: store.get(i).finished)
    first_site, second_site = _site(), _site()

    def request(site: str) -> str:
        return store.create(DeploymentRequest(site=site, requested_by="t", source="workspace", folder="x")).id

    one = request(first_site)
    assert pipeline.start(one) == {"ok": True, "build": True}
    store.transition(one, "building")
    later = request(first_site)
    assert pipeline.start(later) == {"wait": f"deployment {one} of {first_site} is building"}
    other = request(second_site)
    assert pipeline.start(other) == {"wait": "all 1 build slot(s) are busy"}

    pipeline.finish(one, "failed", "stopped by the test")
    assert pipeline.start(other) == {"ok": True, "build": True}  # the slot is free again
    assert pipeline.start(later) == {"wait": "all 1 build slot(s) are busy"}
    store.transition(other, "canceled")  # a holder that finished without giving its slot back
    assert pipeline.start(later) == {"ok": True, "build": True}
    store.transition(later, "building")
    queued = request(first_site)
    newest = request(first_site)
    assert store.get(queued).status == "superseded"  # a newer request for the site supersedes it
    assert pipeline.start(queued) == {"finished": "superseded"}
    assert "wait" in pipeline.start(newest)
    pipeline.finish(later, "failed", "stopped by the test")
    assert pipeline.start(newest) == {"ok": True, "build": True}
    pipeline.finish(newest, "canceled")
    pipeline.slots = None


def test_the_orchestration_waits_for_its_turn_and_gives_up_in_the_end(
    deployer: Deployer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deployments, "TURN_WAITS", 4)  # two hours of waits in the real thing
    running, waiting = _wait_for_turn_behind_a_building_deployment(deployer)
    site, store = running.site, deployer.store
    deployer.harness.start_new(ORCHESTRATOR, waiting.id, {"deployment_id": waiting.id})
    asyncio.run(deployer.harness.run_until_idle())  # virtual time: the waits pass at once
    status = deployer.harness.get_status(waiting.id)
    assert status is not None and status["runtimeStatus"] == "Completed"
    done = store.get(waiting.id)
    assert done.status == "failed"
    assert (
        done.error
        == f"the deployment gave up waiting for its turn: deployment {running.id} of {site} is building"
    )
    timers = [
        e for e in deployer.harness.history(waiting.id) if e["EventType"] == HistoryEventType.TIMER_CREATED
    ]
    assert [round((_parse(t["FireAt"]) - _parse(t["Timestamp"])).total_seconds()) for t in timers] == [
        1,
        2,
        4,
        8,
    ]


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_the_reaper_fails_deployments_whose_orchestration_is_gone(deployer: Deployer) -> None:
    site = _site()
    store, pipeline = deployer.store, deployer.pipeline
    now = datetime.now(UTC)

    def queued() -> DeploymentRecord:
        return store.create(DeploymentRequest(site=site, requested_by="t", source="workspace", folder="x"))

    waiting = queued()
    assert not pipeline.reap(waiting, None, now)  # its start message may still be on its way
    assert pipeline.reap(waiting, None, now + timedelta(minutes=11))
    assert store.get(waiting.id).error == "the deployment was abandoned: its orchestration does not exist"

    building = queued()
    store.transition(building.id, "building")
    assert not pipeline.reap(store.get(building.id), "Running", now)
    assert pipeline.reap(store.get(building.id), None, now)  # it left the queue: the orchestration existed
    crashed = queued()
    store.transition(crashed.id, "building")
    assert pipeline.reap(store.get(crashed.id), "Failed", now)
    assert store.get(crashed.id).error == "the deployment was abandoned: its orchestration is failed"
    assert not pipeline.reap(store.get(crashed.id), "Failed", now)  # finished: left alone
    assert store.get_site(site).state == "DEPLOYMENT_FAILED"


def test_the_connected_repository_is_cloned_with_its_token_in_the_environment_only(
    deployer: Deployer, tmp_path: Path
) -> None:
    token = "ghp_" + uuid.uuid4().hex
    repo = Repo(tmp_path / "private" / "site")
    repo.write_many({path.name: path.read_bytes() for path in (SITES / "static").iterdir()})
    commit = repo.commit_push("site")
    with GitHttpServer(tmp_path / "private", token) as server:
        url = server.repo_url(repo)
        site = _site()
        deployer.pipeline._git_token = lambda repository: token if repository == url else None
        try:
            done = deployer.deploy(site, source="git", repository=url, ref="main")
            # Any other URL gets no token, and this server refuses it.
            refused = deployer.deploy(site, source="git", repository=url + "/", ref="main")
        finally:
            deployer.pipeline._git_token = lambda repository: None

    assert (done.status, done.commit_sha) == ("succeeded", commit)
    assert "Hello from a plain static site" in deployer.served(site).text
    assert not server.token_in_argv
    assert (refused.status, refused.step) == ("failed", "checkout")
    assert refused.error is not None and "cannot fetch main" in refused.error
    logs = "\n".join(deployer.pipeline.logs[done.id] + deployer.pipeline.logs[refused.id])
    assert token not in logs and token not in refused.error


def test_errors_name_paths_in_the_project_never_the_workers_build_folder(deployer: Deployer) -> None:
    site = _site()
    missing = deployer.deploy(
        site, source="workspace", folder=deployer.workspace_site("static"), output_dir="no-such-folder"
    )
    assert (missing.status, missing.step) == ("failed", "detect")
    assert missing.error == "the output folder 'no-such-folder' does not exist in the project"
    empty = deployer.workspace_site("static")
    (deployer.workspace / empty / "public").mkdir()
    nothing = deployer.deploy(site, source="workspace", folder=empty, output_dir="public")
    assert (nothing.status, nothing.step) == ("failed", "package")
    assert nothing.error == "the output folder public holds no files"


def _wait_for_turn_behind_a_building_deployment(
    deployer: Deployer,
) -> tuple[DeploymentRecord, DeploymentRecord]:
    site = _site()
    store = deployer.store
    running = store.create(DeploymentRequest(site=site, requested_by="t", source="workspace", folder="x"))
    store.transition(running.id, "building")
    waiting = store.create(
        DeploymentRequest(
            site=site, requested_by="t", source="workspace", folder=deployer.workspace_site("static")
        )
    )
    return running, waiting


def test_a_deployment_waiting_two_hours_for_its_turn_keeps_a_bounded_history_and_gives_up(
    deployer: Deployer, monkeypatch: pytest.MonkeyPatch
) -> None:
    running, waiting = _wait_for_turn_behind_a_building_deployment(deployer)
    harness, clock = deployer.harness, deployer.harness.clock
    lengths: list[int] = []
    start = deployer.pipeline.start

    def start_and_measure(deployment_id: str) -> dict[str, Any]:
        lengths.append(len(harness.history(deployment_id)))
        return start(deployment_id)

    monkeypatch.setattr(deployer.pipeline, "start", start_and_measure)
    began = clock.now()
    harness.start_new(ORCHESTRATOR, waiting.id, {"deployment_id": waiting.id})
    asyncio.run(harness.run_until_idle())

    done = deployer.store.get(waiting.id)
    assert done.status == "failed"
    assert done.error == (
        f"the deployment gave up waiting for its turn: deployment {running.id} of {running.site} is building"
    )
    # Every try was made (1, 2, 4, 8 s, then 10 s apart: about two hours of virtual time) ...
    assert len(lengths) == deployments.TURN_WAITS
    waited = clock.now() - began
    assert timedelta(hours=1, minutes=59) < waited < timedelta(hours=2, minutes=1)
    # ... across generations whose histories stay small (one generation would reach ~7,900 events).
    assert max(lengths) <= 8 * deployments.WAITS_PER_GENERATION, max(lengths)
    # Each generation's first try sees a fresh history (its start, the scheduled try).
    fresh = min(lengths)
    assert lengths.count(fresh) == -(-deployments.TURN_WAITS // deployments.WAITS_PER_GENERATION)


def test_a_cancel_raised_while_the_waiting_deployment_continues_as_new_cancels_it(
    deployer: Deployer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, waiting = _wait_for_turn_behind_a_building_deployment(deployer)
    harness = deployer.harness
    continue_as_new = harness._continue_as_new
    generations = []

    def continue_then_cancel(instance: Any, now: datetime, input_text: str | None) -> None:
        continue_as_new(instance, now, input_text)
        generations.append(input_text)
        if len(generations) == 2:  # between two generations: the status says ContinuedAsNew
            assert harness.get_status(waiting.id)["runtimeStatus"] == "ContinuedAsNew"  # type: ignore[index]
            harness.raise_event(waiting.id, "cancel", None)

    monkeypatch.setattr(harness, "_continue_as_new", continue_then_cancel)
    harness.start_new(ORCHESTRATOR, waiting.id, {"deployment_id": waiting.id})
    asyncio.run(harness.run_until_idle())

    done = deployer.store.get(waiting.id)
    assert (done.status, done.error) == ("canceled", "canceled while running")
    assert len(generations) == 2
    resume = json.loads(generations[-1])["resume"]  # where the canceled generation began
    assert (resume["phase"], resume["attempt"]) == ("turn", 2 * deployments.WAITS_PER_GENERATION)
