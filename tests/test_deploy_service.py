"""The deployment service as the API and the webhook use it: what a push deploys, what cancel and
rollback refuse, and what happens without a publish target (real storage: Azurite)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from slipway.adapters.queues import decode_wire
from slipway.bootstrap import Services, build_services
from slipway.config import load_settings
from slipway.deploy.errors import DeployRequestInvalid
from slipway.deploy.records import DeploymentRequest, SiteBinding
from slipway.deploy.service import DeploymentConflict, DeployNotConfigured, parse_message, same_repository
from slipway.gitsync.connection import Connection, ConnectionStore
from slipway.names import DEPLOYS_QUEUE

COMMIT = "a" * 40


@pytest.fixture
def services(base_env: dict[str, str], tmp_path: Path) -> Services:
    return build_services(load_settings({**base_env, "SLIPWAY_LOCAL_SITES_DIR": str(tmp_path / "sites")}))


def _site() -> str:
    return f"site-{uuid.uuid4().hex[:8]}"


def _connect(services: Services, url: str = "https://github.com/octo/site.git") -> None:
    ConnectionStore(services.tables).save(
        Connection("octo/site", "main", url, None, False, "", datetime.now(UTC), "test")
    )


def _push(branch: str = "web", *, changed: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "ref": f"refs/heads/{branch}",
        "after": COMMIT,
        "commits": [{"added": [], "modified": changed or ["site/index.html"], "removed": []}],
        "pusher": {"name": "octocat"},
    }
    return {**payload, **extra}


def test_a_push_deploys_each_bound_site_whose_folder_it_changed_once_per_delivery(services: Services) -> None:
    _connect(services)
    service, store = services.deployments, services.deployments.store
    site, docs, other = _site(), _site(), _site()
    store.set_binding(site, SiteBinding(branch="web", folder="site", build_command="npm run build"))
    store.set_binding(docs, SiteBinding(branch="web", folder="docs"))
    store.set_binding(other, SiteBinding(branch="release"))

    [queued] = service.on_push("d-1", _push())
    assert service.on_push("d-1", _push()) == []  # a redelivery queues nothing again

    record = store.get(queued)
    assert (record.site, record.request.trigger, record.request.delivery_id) == (site, "push", "d-1")
    assert (record.request.ref, record.request.folder, record.request.build_command) == (
        COMMIT,
        "site",
        "npm run build",
    )
    assert record.request.repository == "https://github.com/octo/site.git"
    assert record.request.requested_by == "push by octocat"
    assert store.history(docs) == [] and store.history(other) == []
    waiting = [decode_wire(m).decode() for m in services.queues.peek_messages(DEPLOYS_QUEUE, max_messages=32)]
    assert any(queued in message for message in waiting)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"forced": True, "commits": []}, True),  # a forced push lists no files: deploy
        ({"commits": [{"modified": ["x"]}] * 20}, True),  # GitHub lists 20 at most: cannot tell
        ({"commits": [{"added": [], "modified": ["README.md"], "removed": []}]}, False),
        ({"commits": [{"removed": ["site/old.html"]}]}, True),
        ({"deleted": True}, False),  # a deleted branch deploys nothing
        ({"after": "not-a-commit"}, False),
    ],
)
def test_what_a_push_deploys(services: Services, extra: dict[str, Any], expected: bool) -> None:
    _connect(services)
    site = _site()
    services.deployments.store.set_binding(site, SiteBinding(branch="web", folder="site"))
    queued = services.deployments.on_push(f"d-{uuid.uuid4().hex}", _push(**extra))
    assert (site in " ".join(queued)) is expected


def test_nothing_deploys_on_push_without_a_connected_repository(services: Services) -> None:
    site = _site()
    services.deployments.store.set_binding(site, SiteBinding(branch="web"))
    ConnectionStore(services.tables).delete()
    assert services.deployments.on_push("d-x", _push()) == []
    with pytest.raises(DeploymentConflict, match="connect a GitHub repository first"):
        services.deployments.bind(site, {"branch": "web"})


def test_a_binding_is_validated_naming_the_field(services: Services) -> None:
    _connect(services)
    for payload, field in [
        ({}, "branch"),
        ({"branch": "--upload-pack=x"}, "branch"),
        ({"branch": "main", "folder": "../x"}, "folder"),
        ({"branch": "main", "package_manager": "maven"}, "package_manager"),
        ({"branch": "main", "token": "x"}, "token"),
        ("main", ""),
    ]:
        with pytest.raises(DeployRequestInvalid) as refused:
            services.deployments.bind(_site(), payload)
        assert refused.value.field == field


def test_cancel_is_refused_once_publishing_began_and_for_a_finished_deployment(services: Services) -> None:
    store = services.deployments.store
    site = _site()
    record = store.create(DeploymentRequest(site=site, source="workspace", folder="x", requested_by="t"))
    store.transition(record.id, "building")
    store.transition(record.id, "publishing", artifact=_artifact())
    with pytest.raises(DeploymentConflict, match="can no longer be canceled"):
        services.deployments.cancel(record.id, "ada")
    queued = store.create(DeploymentRequest(site=site, source="workspace", folder="y", requested_by="t"))
    assert services.deployments.cancel(queued.id, "ada")["status"] == "canceled"
    with pytest.raises(DeploymentConflict, match="has already canceled"):
        services.deployments.cancel(queued.id, "ada")
    with pytest.raises(DeploymentConflict, match="no earlier good deployment"):
        services.deployments.rollback(site, None, "ada")


def test_without_a_publish_target_a_request_is_refused_naming_the_settings(base_env: dict[str, str]) -> None:
    services = build_services(load_settings(base_env))
    with pytest.raises(DeployNotConfigured, match="SLIPWAY_LOCAL_SITES_DIR") as refused:
        services.deployments.request({"site": _site(), "source": "workspace", "folder": "x"}, "ada")
    assert refused.value.status == 409


def test_queue_messages_and_repository_urls_are_read_strictly() -> None:
    assert parse_message(b'{"action": "start", "deployment_id": "0190f0a1b2c3-9f8e7d6c-blog"}') == {
        "action": "start",
        "deployment_id": "0190f0a1b2c3-9f8e7d6c-blog",
    }
    for garbage in (b"", b"[]", b'{"action": "start"}', b'{"action": "drop", "deployment_id": "x"}', b"\xff"):
        with pytest.raises(ValueError):
            parse_message(garbage)
    assert same_repository("https://github.com/Octo/Site.git", "https://GITHUB.com/octo/site/")
    assert not same_repository("https://github.com/octo/site.git", "https://github.com/octo/site2.git")
    assert not same_repository("https://evil.example/octo/site.git", "https://github.com/octo/site.git")
    assert not same_repository("", "")


def _artifact() -> Any:
    from slipway.deploy.records import Artifact

    return Artifact("x/" + "a" * 64 + ".zip", "a" * 64, "b" * 64)
