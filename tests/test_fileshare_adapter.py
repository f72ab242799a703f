"""ShareSnapshots against a local fake of the Azure Files REST API, over real HTTP.

The real ``ShareClient`` (shared key credential) does the talking: request signing headers,
metadata headers, the XML listing and the error mapping are the SDK's own. Only the service is
fake (see ``tests/fakes/fileshare.py``); Azurite has no Azure Files.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.fileshare import ShareClient
from fakes.fileshare import ACCOUNT, KEY, FakeFileService

from slipway.adapters.fileshare import FileShareError, ShareSnapshot, ShareSnapshots

SHARE = "workspace"


@pytest.fixture
def service() -> Iterator[FakeFileService]:
    with FakeFileService() as fake:
        fake.add_share(SHARE)
        fake.add_share("workspace-old")  # shares the prefix; never listed as ours
        fake.add_share("temp")
        yield fake


def snapshots(service: FakeFileService, share: str = SHARE) -> ShareSnapshots:
    # retry_total=0: the SDK's default retries 5xx with a back-off of seconds.
    client = ShareClient(service.url, share, credential=AzureNamedKeyCredential(ACCOUNT, KEY), retry_total=0)
    return ShareSnapshots(client)


def test_create_snapshot_with_metadata(service: FakeFileService) -> None:
    before = datetime.now(UTC)
    taken = snapshots(service).create_snapshot(reason="before the first sync of acme/workflows@main")
    assert taken.share == SHARE
    assert before - timedelta(seconds=1) <= taken.created <= datetime.now(UTC)
    assert taken.created.tzinfo is not None
    (stored,) = service.shares[SHARE].snapshots
    assert stored.snapshot == taken.snapshot
    assert stored.metadata == {
        "reason": "before the first sync of acme/workflows@main",
        "created_by": "slipway",
    }
    method, path, status = service.requests[-1]
    assert (method, path.split("?")[0], status) == ("PUT", f"/{ACCOUNT}/{SHARE}", 201)
    assert sorted(path.split("?")[1].split("&")) == ["comp=snapshot", "restype=share"]
    assert service.headers[-1]["authorization"].startswith(f"SharedKey {ACCOUNT}:")


def test_reason_is_made_header_safe(service: FakeFileService) -> None:
    snapshots(service).create_snapshot(reason="sync of branch café\nnow")
    assert service.shares[SHARE].snapshots[0].metadata["reason"] == "sync of branch caf\\xe9\\nnow"
    with pytest.raises(ValueError, match="needs a reason"):
        snapshots(service).create_snapshot(reason="  ")


def test_list_only_slipways_snapshots_newest_first(service: FakeFileService) -> None:
    adapter = snapshots(service)
    now = datetime.now(UTC)
    backup = service.add_snapshot(SHARE, {"AzureBackupProtected": "true"}, at=now - timedelta(hours=3))
    service.add_snapshot(SHARE, {}, at=now - timedelta(hours=2))  # taken in the portal
    service.add_snapshot("workspace-old", {"created_by": "slipway", "reason": "x"}, at=now)
    service.add_snapshot("temp", {"created_by": "slipway", "reason": "x"}, at=now)
    old = service.add_snapshot(SHARE, {"created_by": "slipway", "reason": "old"}, at=now - timedelta(days=1))
    first = adapter.create_snapshot(reason="first")
    second = adapter.create_snapshot(reason="second")
    assert first.snapshot < second.snapshot

    listed = adapter.list_snapshots()
    assert listed == [second, first, ShareSnapshot(SHARE, old, datetime.fromisoformat(old))]
    assert backup not in [s.snapshot for s in listed]
    method, path, status = service.requests[-1]
    query = sorted(path.split("?")[1].split("&"))
    assert (method, status) == ("GET", 200)
    assert query == ["comp=list", "include=metadata,snapshots", f"prefix={SHARE}"]


def test_list_when_there_are_none(service: FakeFileService) -> None:
    assert snapshots(service).list_snapshots() == []


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (
            (
                403,
                "AuthorizationPermissionMismatch",
                "This request is not authorized to perform this operation.",
            ),
            r"cannot snapshot share 'workspace': the app's identity needs a role .* \(403 AuthorizationPermissionMismatch, request id [0-9a-f-]{36}\)",
        ),
        (
            (500, "InternalError", "Server encountered an internal error. Please try again after some time."),
            r"cannot snapshot share 'workspace': Azure Files failed; try again in a few minutes \(500 InternalError",
        ),
        (
            (
                409,
                "ShareSnapshotCountExceeded",
                "The total number of snapshots for the share is over the limit.",
            ),
            r"most snapshots Azure allows \(200\)",
        ),
    ],
)
def test_service_errors_become_file_share_errors(
    service: FakeFileService, failure: tuple[int, str, str], expected: str
) -> None:
    service.failure = failure
    adapter = snapshots(service)
    with pytest.raises(FileShareError, match=expected):
        adapter.create_snapshot(reason="x")
    with pytest.raises(
        FileShareError, match=f"cannot list the snapshots of share 'workspace': .*{failure[1]}"
    ):
        adapter.list_snapshots()
    assert len(service.requests) == 2  # no retries with retry_total=0
    assert service.shares[SHARE].snapshots == []


def test_missing_share_and_bad_credentials(service: FakeFileService) -> None:
    with pytest.raises(FileShareError, match=r"the workspace share does not exist \(404 ShareNotFound"):
        snapshots(service, "nothing").create_snapshot(reason="x")
    wrong_account = ShareClient(
        service.url, SHARE, credential=AzureNamedKeyCredential("someoneelse", KEY), retry_total=0
    )
    with pytest.raises(FileShareError, match=r"key or token was refused \(403 AuthenticationFailed"):
        ShareSnapshots(wrong_account).list_snapshots()


def test_unreachable_service() -> None:
    with FakeFileService() as stopped:
        url = stopped.url
    client = ShareClient(url, SHARE, credential=AzureNamedKeyCredential(ACCOUNT, KEY), retry_total=0)
    with pytest.raises(FileShareError, match="could not be reached"):
        ShareSnapshots(client).create_snapshot(reason="x")
