"""Snapshots of the workspace's Azure Files share, taken before GitHub overwrites it.

A share snapshot is a read-only copy of the whole share at a point in time, named by its
``x-ms-snapshot`` timestamp; it can be browsed and restored from the portal. Slipway marks its
own with metadata (``created_by: slipway`` and the reason), so that listing shows only those
and never, say, Azure Backup's.

Listing snapshots is a call on the account (List Shares with ``include=snapshots``), so the
adapter derives a service client from the share client the way the SDK's own
``ShareServiceClient.get_share_client`` does the reverse: same credential, policies and
transport, hence the same retry settings the composition root chose.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from azure.core.exceptions import AzureError, HttpResponseError
from azure.core.pipeline import Pipeline
from azure.storage.fileshare import ShareClient, ShareServiceClient
from azure.storage.fileshare._shared.base_client import TransportWrapper

CREATED_BY = "slipway"
_MAX_REASON = 1024  # of the 8 KiB Azure allows for all of a share's metadata

_HINTS = {
    "AuthenticationFailed": "the storage account key or token was refused",
    "AuthorizationFailure": "the storage account's network rules or the identity's roles refuse this request",
    "AuthorizationPermissionMismatch": "the app's identity needs a role that may manage file shares "
    "(e.g. Storage File Data Privileged Contributor)",
    "ShareNotFound": "the workspace share does not exist",
    "ShareSnapshotCountExceeded": "the share has the most snapshots Azure allows (200); delete old ones",
    "ShareBeingDeleted": "the share is being deleted",
}


@dataclass(frozen=True)
class ShareSnapshot:
    share: str
    snapshot: str  # the x-ms-snapshot timestamp, which names the snapshot
    created: datetime  # UTC


class FileShareError(Exception):
    """Azure Files refused or failed a snapshot call; the message says which and why."""


class ShareSnapshots:
    """Create and list Slipway's snapshots of one share."""

    def __init__(self, share_client: ShareClient) -> None:
        if share_client.credential is None:
            raise ValueError("ShareSnapshots needs a share client with a key or token credential, not a SAS")
        self._share = share_client
        self.share = share_client.share_name
        pipeline = Pipeline(
            transport=TransportWrapper(share_client._pipeline._transport),
            policies=share_client._pipeline._impl_policies,
        )
        self._service = ShareServiceClient(
            f"{share_client.scheme}://{share_client.primary_hostname}",
            credential=share_client.credential,
            api_version=share_client.api_version,
            token_intent=share_client.file_request_intent,
            _hosts=share_client._hosts,
            _configuration=share_client._config,
            _pipeline=pipeline,
        )

    def create_snapshot(self, *, reason: str) -> ShareSnapshot:
        """Snapshot Share, with metadata ``{"reason": reason, "created_by": "slipway"}``."""
        metadata = {"reason": _header_safe(reason), "created_by": CREATED_BY}
        try:
            result = self._share.create_snapshot(metadata=metadata)
        except AzureError as exc:
            raise FileShareError(_describe(exc, f"cannot snapshot share {self.share!r}")) from exc
        snapshot = str(result["snapshot"])
        return ShareSnapshot(self.share, snapshot, _parse_snapshot(snapshot))

    def list_snapshots(self) -> list[ShareSnapshot]:
        """Slipway's snapshots of the share (by metadata), newest first."""
        try:
            listed = list(
                self._service.list_shares(
                    name_starts_with=self.share, include_metadata=True, include_snapshots=True
                )
            )
        except AzureError as exc:
            raise FileShareError(
                _describe(exc, f"cannot list the snapshots of share {self.share!r}")
            ) from exc
        found = []
        for item in listed:
            metadata = {k.lower(): v for k, v in (item.metadata or {}).items()}
            if item.name == self.share and item.snapshot and metadata.get("created_by") == CREATED_BY:
                found.append(ShareSnapshot(self.share, item.snapshot, _parse_snapshot(item.snapshot)))
        return sorted(found, key=lambda s: s.created, reverse=True)


def _header_safe(reason: str) -> str:
    """Metadata travels in HTTP headers: printable ASCII, other characters escaped."""
    text = "".join(
        c if " " <= c <= "~" else c.encode("unicode_escape").decode("ascii") for c in reason.strip()
    )
    if not text:
        raise ValueError("a snapshot needs a reason")
    return text[:_MAX_REASON]


def _parse_snapshot(snapshot: str) -> datetime:
    """``2024-05-01T10:00:00.1234567Z`` (seven fractional digits) as an aware UTC datetime."""
    try:
        return datetime.fromisoformat(snapshot).astimezone(UTC)
    except ValueError:
        raise FileShareError(f"Azure Files returned a malformed snapshot time {snapshot!r}") from None


def _describe(exc: AzureError, what: str) -> str:
    if not isinstance(exc, HttpResponseError) or exc.status_code is None:
        return f"{what}: Azure Files could not be reached ({type(exc).__name__}); try again later"
    code = exc.error_code or (exc.response.headers.get("x-ms-error-code") if exc.response else None) or ""
    code = str(getattr(code, "value", code))  # the SDK gives a StorageErrorCode enum when it knows it
    hint = _HINTS.get(code) or (
        "Azure Files failed; try again in a few minutes"
        if exc.status_code >= 500
        else "Azure Files refused it"
    )
    request_id = exc.response.headers.get("x-ms-request-id") if exc.response else None
    return (
        f"{what}: {hint} ({exc.status_code}{f' {code}' if code else ''}"
        f"{f', request id {request_id}' if request_id else ''})"
    )
