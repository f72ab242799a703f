"""Deployment and site records against a real Azurite: requests checked field by field, newer
requests superseding queued older ones (also when they race), the legal status moves, history
with durations, the last good artifact, the publish lease and the site's state."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from typing import Any

import pytest

from slipway.adapters.tables import TableStore
from slipway.bootstrap import build_services
from slipway.config import load_settings
from slipway.deploy.errors import (
    DeploymentNotFound,
    DeployRequestInvalid,
    PublishLeaseLost,
    SiteNotFound,
    TransitionRefused,
)
from slipway.deploy.records import (
    FINAL,
    TRANSITIONS,
    Artifact,
    DeploymentRequest,
    DeploymentStore,
    deployment_site,
)


class Clock:
    """A clock the test moves by hand (seconds since the epoch)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def tables(base_env: dict[str, str]) -> TableStore:
    return build_services(load_settings(base_env)).tables


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tables: TableStore, clock: Clock) -> DeploymentStore:
    return DeploymentStore(tables, clock=clock)


@pytest.fixture
def site() -> str:
    return f"site-{uuid.uuid4().hex[:10]}"


def git_request(site: Any, **changes: Any) -> DeploymentRequest:
    data = {
        "site": site,
        "source": "git",
        "repository": "https://github.com/acme/blog.git",
        "ref": "main",
        "requested_by": "ada@example.com",
        **changes,
    }
    return DeploymentRequest.from_json(data)


def artifact(name: str) -> Artifact:
    digest = hashlib.sha256(name.encode()).hexdigest()
    return Artifact(f"artifacts/{name}.zip", digest, hashlib.sha256(digest.encode()).hexdigest())


def deploy(store: DeploymentStore, clock: Clock, site: str, name: str, *, verify_fails: bool = False) -> str:
    """One deployment through the whole pipeline, as the orchestrator will drive it."""
    clock.advance(1)
    deployment = store.create(git_request(site))
    clock.advance(1)
    store.transition(deployment.id, "building", step="install")
    clock.advance(10)
    store.transition(deployment.id, "publishing", commit_sha="a" * 40, artifact=artifact(name))
    assert store.acquire_publish(site, deployment.id, ttl_seconds=60)
    store.set_live(site, deployment.id, artifact(name))
    clock.advance(2)
    store.transition(deployment.id, "verifying")
    clock.advance(1)
    if verify_fails:
        good = store.last_good(site, before=deployment.id)
        if good is not None:
            assert good.artifact is not None
            store.set_live(site, good.id, good.artifact, publisher=deployment.id)
        store.transition(deployment.id, "rolled_back", error="verify: / did not answer 200")
    else:
        store.transition(deployment.id, "succeeded")
    assert store.release_publish(site, deployment.id)
    clock.advance(1)
    return deployment.id


# ---------------------------------------------------------------------------- requests


def test_a_request_survives_json_and_leaves_out_what_was_not_given(site: str) -> None:
    request = git_request(site, output_dir="dist", verify_path="/healthz", verify_text="ok", trigger="push")
    data = request.to_json()
    assert "folder" not in data and "package_manager" not in data
    assert DeploymentRequest.from_json(data) == request
    workspace = DeploymentRequest.from_json(
        {"site": site, "source": "workspace", "folder": "sites/blog", "requested_by": "ada"}
    )
    assert workspace.trigger == "manual"
    retry = request.as_retry(requested_by="bob")
    assert (retry.trigger, retry.requested_by, retry.delivery_id, retry.ref) == ("retry", "bob", None, "main")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"site": "My_Site"}, "site"),
        ({"site": "a"}, "site"),
        ({"site": "-blog"}, "site"),
        ({"site": "b" * 41}, "site"),
        ({"site": 42}, "site"),
        ({"source": "svn"}, "source"),
        ({"repository": None}, "repository"),
        ({"repository": "not a url"}, "repository"),
        ({"repository": "https://example.com/" + "x" * 2048}, "repository"),
        ({"ref": "--upload-pack=evil"}, "ref"),
        ({"ref": "main..dev"}, "ref"),
        ({"ref": "r" * 256}, "ref"),
        ({"folder": "../outside"}, "folder"),
        ({"package_manager": "maven"}, "package_manager"),
        ({"build_command": "npm run build\nrm -rf /"}, "build_command"),
        ({"output_dir": "/var/www"}, "output_dir"),
        ({"output_dir": "dist/../../etc"}, "output_dir"),
        ({"verify_path": "healthz"}, "verify_path"),
        ({"verify_path": "//evil.example/"}, "verify_path"),
        ({"verify_text": ""}, "verify_text"),
        ({"trigger": "cron"}, "trigger"),
        ({"trigger": "rollback"}, "rollback_to"),
        ({"rollback_to": "0190f0a1b2c3-9f8e7d6c-blog"}, "rollback_to"),
        ({"requested_by": None}, "requested_by"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_an_invalid_request_is_refused_naming_its_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(DeployRequestInvalid) as refused:
        git_request(**{"site": "blog", **changes})
    assert refused.value.field == field
    assert refused.value.status == 422
    assert refused.value.message.startswith(f"{field}:")


def test_a_workspace_request_needs_a_folder_inside_the_workspace_and_no_repository() -> None:
    base = {"site": "blog", "source": "workspace", "requested_by": "ada"}
    for extra, field in [
        ({}, "folder"),
        ({"folder": "../elsewhere"}, "folder"),
        ({"folder": "/abs"}, "folder"),
    ]:
        with pytest.raises(DeployRequestInvalid) as refused:
            DeploymentRequest.from_json({**base, **extra})
        assert refused.value.field == field
    with pytest.raises(DeployRequestInvalid) as refused:
        DeploymentRequest.from_json({**base, "folder": "blog", "repository": "https://x.example/r.git"})
    assert refused.value.field == "repository"


def test_a_rollback_must_name_a_deployment_of_the_same_site(site: str) -> None:
    other = f"0190f0a1b2c3-9f8e7d6c-{site}x"
    with pytest.raises(DeployRequestInvalid) as refused:
        git_request(site, trigger="rollback", rollback_to=other)
    assert refused.value.field == "rollback_to"
    same = git_request(site).as_rollback(f"0190f0a1b2c3-9f8e7d6c-{site}", requested_by="bob")
    assert same.trigger == "rollback"


# ---------------------------------------------------------------- create and supersede


def test_a_deployment_is_found_from_its_id_alone(store: DeploymentStore, site: str) -> None:
    created = store.create(git_request(site))
    assert created.status == "queued"
    assert deployment_site(created.id) == site and created.id.endswith(f"-{site}")
    found = store.get(created.id)
    assert found == created
    assert found.request == git_request(site)
    with pytest.raises(DeploymentNotFound):
        store.get("not-an-id")
    with pytest.raises(DeploymentNotFound):
        store.get(created.id.replace(site, f"{site}-gone"))


def test_a_newer_request_supersedes_queued_older_ones_but_not_a_running_one(
    store: DeploymentStore, clock: Clock, site: str
) -> None:
    first = store.create(git_request(site))
    clock.advance(1)
    second = store.create(git_request(site))
    clock.advance(1)
    third = store.create(git_request(site))
    assert store.get(first.id).status == "superseded"
    assert store.get(second.id).superseded_by == third.id
    assert store.get(third.id).status == "queued"

    store.transition(third.id, "building")
    clock.advance(1)
    fourth = store.create(git_request(site))
    assert store.get(third.id).status == "building"
    assert fourth.status == "queued"
    # Other sites are not touched.
    elsewhere = store.create(git_request(f"{site}-b"))
    assert store.get(fourth.id).status == "queued" and elsewhere.status == "queued"


def test_a_request_in_the_same_millisecond_as_a_finished_one_stays_queued(
    store: DeploymentStore, site: str
) -> None:
    # The clock does not move: ids differ only in their random part, so either may sort first.
    for _ in range(6):
        finished = store.create(git_request(site))
        store.transition(finished.id, "canceled")
        later = store.create(git_request(site))
        assert later.status == "queued"
        store.transition(later.id, "canceled")


def test_an_older_request_whose_row_lands_late_is_superseded_on_arrival(
    store: DeploymentStore, clock: Clock, site: str
) -> None:
    newer = store.create(git_request(site))
    clock.advance(-1)  # a request stamped earlier (another worker) whose write lands after
    late = store.create(git_request(site))
    assert (late.status, late.superseded_by) == ("superseded", newer.id)
    assert store.get(newer.id).status == "queued"


def test_requests_racing_for_one_site_leave_exactly_one_queued(tables: TableStore, site: str) -> None:
    store = DeploymentStore(tables)  # the real clock: the racers pick their own ids
    racers = 5
    barrier = threading.Barrier(racers)
    created: list[str] = []
    failures: list[BaseException] = []

    def request() -> None:
        try:
            barrier.wait()
            created.append(store.create(git_request(site)).id)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=request) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    records = store.history(site)
    assert sorted(record.id for record in records) == sorted(created)
    queued = [record for record in records if record.status == "queued"]
    assert [record.id for record in queued] == [records[0].id]  # the newest one
    for record in records[1:]:
        assert record.status == "superseded"
        assert record.superseded_by is not None
        assert store.history(site).index(store.get(record.superseded_by)) < records.index(record)


# ---------------------------------------------------------------------- transitions


def test_a_deployment_moves_through_its_phases_with_a_duration_for_each(
    store: DeploymentStore, clock: Clock, site: str
) -> None:
    deployment = store.create(git_request(site))
    clock.advance(2)
    store.transition(deployment.id, "building", step="install")
    clock.advance(20)
    at_test = store.transition(deployment.id, "building", step="test", commit_sha="b" * 40)
    assert (at_test.step, at_test.commit_sha) == ("test", "b" * 40)
    assert at_test.durations_ms["building"] is None  # still going
    clock.advance(10)
    store.transition(deployment.id, "publishing", artifact=artifact("one"), step="publish")
    clock.advance(5)
    store.transition(deployment.id, "verifying")
    clock.advance(3)
    done = store.transition(deployment.id, "succeeded")
    assert done.durations_ms == {"queued": 2000, "building": 30000, "publishing": 5000, "verifying": 3000}
    assert (done.total_ms, done.run_ms) == (40000, 38000)
    assert done.artifact == artifact("one") and done.commit_sha == "b" * 40
    view = done.to_json()
    assert view["requested_by"] == "ada@example.com" and view["artifact"]["blob_name"] == "artifacts/one.zip"


@pytest.mark.parametrize(
    ("path", "refused"),
    [
        ([], "verifying"),
        ([], "succeeded"),
        (["building"], "succeeded"),
        (["building"], "queued"),
        (["building", "publishing"], "building"),
        (["building", "publishing"], "canceled"),
        (["building", "publishing", "verifying"], "publishing"),
    ],
)
def test_an_illegal_move_is_refused_and_changes_nothing(
    store: DeploymentStore, site: str, path: list[str], refused: str
) -> None:
    deployment = store.create(git_request(site))
    for status in path:
        store.transition(deployment.id, status, artifact=artifact("x"))
    before = store.get(deployment.id)
    with pytest.raises(TransitionRefused) as error:
        store.transition(deployment.id, refused)
    assert (error.value.from_status, error.value.to_status, error.value.status) == (
        before.status,
        refused,
        409,
    )
    assert store.get(deployment.id) == before


def test_publishing_needs_an_artifact_and_a_rollback_skips_the_build(
    store: DeploymentStore, site: str
) -> None:
    built = store.create(git_request(site))
    store.transition(built.id, "building")
    with pytest.raises(TransitionRefused, match="needs an artifact"):
        store.transition(built.id, "publishing")
    store.transition(built.id, "canceled")

    rollback = store.create(git_request(site).as_rollback(built.id, requested_by="bob"))
    published = store.transition(rollback.id, "publishing", artifact=artifact("old"))
    assert "building_at" not in published.timestamps and published.request.rollback_to == built.id


@pytest.mark.parametrize("final", sorted(FINAL - {"superseded"}))
def test_a_finished_deployment_never_changes(store: DeploymentStore, site: str, final: str) -> None:
    deployment = store.create(git_request(site))
    path = {
        "succeeded": ["building", "publishing", "verifying"],
        "rolled_back": ["building", "publishing", "verifying"],
        "failed": ["building"],
        "canceled": [],
    }[final]
    for status in path:
        store.transition(deployment.id, status, artifact=artifact("x"))
    ended = store.transition(deployment.id, final, error="first")
    assert TRANSITIONS[final] == frozenset()
    for status in TRANSITIONS:
        if status == final:
            # A replayed final write is accepted and changes nothing.
            assert store.transition(deployment.id, status, error="second") == ended
            continue
        with pytest.raises(TransitionRefused, match=r"finished|supersedes"):
            store.transition(deployment.id, status)
    assert store.get(deployment.id) == ended


def test_only_a_newer_request_supersedes_and_errors_are_capped(store: DeploymentStore, site: str) -> None:
    deployment = store.create(git_request(site))
    with pytest.raises(TransitionRefused, match="only a newer deployment supersedes"):
        store.transition(deployment.id, "superseded")
    failed = store.transition(deployment.id, "failed", error="x" * 100_000)
    assert failed.error is not None and len(failed.error) == 4000 and failed.error.endswith("…")


# -------------------------------------------------------------------------- history


def test_history_is_newest_first_and_last_good_skips_failures(
    store: DeploymentStore, clock: Clock, site: str
) -> None:
    assert store.last_good(site) is None
    one = deploy(store, clock, site, "one")
    two = deploy(store, clock, site, "two")
    three = deploy(store, clock, site, "three", verify_fails=True)
    failed = store.create(git_request(site))
    store.transition(failed.id, "building")
    store.transition(failed.id, "failed", error="build: exit 1")

    history = store.history(site)
    assert [record.id for record in history] == [failed.id, three, two, one]
    assert [record.status for record in history] == ["failed", "rolled_back", "succeeded", "succeeded"]
    assert [record.id for record in store.history(site, limit=2)] == [failed.id, three]
    assert history[1].durations_ms == {
        "queued": 1000,
        "building": 10000,
        "publishing": 2000,
        "verifying": 1000,
    }

    good = store.last_good(site)
    assert good is not None and (good.id, good.artifact) == (two, artifact("two"))
    older = store.last_good(site, before=two)
    assert older is not None and older.id == one
    assert store.last_good(site, before=one) is None
    assert store.recent_durations(site, 5) == [13000, 13000]
    assert store.recent_durations(site, 1) == [13000]


# ------------------------------------------------------------------------ the lease


def test_one_deployment_at_a_time_holds_the_publish_lease(
    store: DeploymentStore, clock: Clock, site: str
) -> None:
    first = store.create(git_request(site)).id
    second = store.create(git_request(site)).id
    assert store.acquire_publish(site, first, ttl_seconds=30)
    assert not store.acquire_publish(site, second, ttl_seconds=30)
    assert store.acquire_publish(site, first, ttl_seconds=30)  # the holder renews
    assert not store.release_publish(site, second)  # not the holder
    assert store.get_site(site).publisher == first
    with pytest.raises(PublishLeaseLost):
        store.set_live(site, second, artifact("second"))
    assert store.get_site(site).live_deployment_id is None

    clock.advance(29)
    assert not store.acquire_publish(site, second, ttl_seconds=30)
    clock.advance(2)  # the first holder vanished: its lease expired
    assert store.acquire_publish(site, second, ttl_seconds=30)
    assert not store.release_publish(site, first)
    with pytest.raises(PublishLeaseLost):
        store.set_live(site, first, artifact("first"))
    assert store.release_publish(site, second)
    assert store.get_site(site).publisher is None
    assert store.acquire_publish(site, first, ttl_seconds=30)

    with pytest.raises(DeploymentNotFound):
        store.acquire_publish(f"{site}-b", first, ttl_seconds=30)  # a deployment of another site


# ----------------------------------------------------------------------- site state


def test_the_site_state_follows_its_newest_outcome_and_keeps_showing_what_is_live(
    store: DeploymentStore, clock: Clock, site: str
) -> None:
    with pytest.raises(SiteNotFound):
        store.get_site(site)

    canceled = store.create(git_request(site))
    assert store.get_site(site).state == "DEPLOYING"
    store.transition(canceled.id, "canceled")
    assert store.get_site(site).state == "UNDEPLOYED"
    clock.advance(1)

    broken = store.create(git_request(site))
    store.transition(broken.id, "failed", error="clone: repository not found")
    assert (store.get_site(site).state, store.get_site(site).live_deployment_id) == (
        "DEPLOYMENT_FAILED",
        None,
    )

    good = deploy(store, clock, site, "good")
    live = store.get_site(site)
    assert (live.state, live.live_deployment_id, live.live_artifact) == ("DEPLOYED", good, artifact("good"))

    # A deployment whose verify fails is rolled back: the site says so and still serves "good".
    pending = store.create(git_request(site))
    assert store.get_site(site).state == "DEPLOYING"
    store.transition(pending.id, "canceled")
    assert store.get_site(site).state == "DEPLOYED"  # a cancel is not an outcome
    bad = deploy(store, clock, site, "bad", verify_fails=True)
    after = store.get_site(site)
    assert (after.state, after.live_deployment_id, after.live_artifact) == (
        "DEPLOYMENT_FAILED",
        good,
        artifact("good"),
    )
    assert store.get(bad).status == "rolled_back"

    fixed = deploy(store, clock, site, "fixed")
    assert (store.get_site(site).state, store.get_site(site).live_deployment_id) == ("DEPLOYED", fixed)
    listed = {record.site: record for record in store.list_sites()}
    assert listed[site].state == "DEPLOYED" and listed[site].to_json()["live_artifact"]["blob_name"]


def test_an_older_deployment_failing_does_not_hide_a_newer_one_in_progress(
    store: DeploymentStore, clock: Clock, site: str
) -> None:
    older = store.create(git_request(site))
    store.transition(older.id, "building")
    clock.advance(1)
    newer = store.create(git_request(site))
    store.transition(older.id, "failed", error="build: exit 2")
    assert store.get_site(site).state == "DEPLOYING"
    store.transition(newer.id, "building")
    store.transition(newer.id, "publishing", artifact=artifact("newer"))
    assert store.acquire_publish(site, newer.id, ttl_seconds=30)
    store.set_live(site, newer.id, artifact("newer"))
    assert store.get_site(site).state == "DEPLOYING"  # live, but not verified yet
    store.transition(newer.id, "verifying")
    store.transition(newer.id, "succeeded")
    assert store.get_site(site).state == "DEPLOYED"
