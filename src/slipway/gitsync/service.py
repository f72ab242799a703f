"""Connecting a repository, disconnecting it, and running a sync pass.

Connect validates everything it can before it changes anything (repository, branch, token,
a real fetch), can answer a dry run with what the first sync would overwrite and delete,
then stores the token and a new webhook secret in the secret store, creates the webhook
(or hands its URL and secret to the user), snapshots the share in Azure when the first sync
would overwrite manual edits, switches the workspace to GitHub mode and runs the first
sync. A first sync that cannot be applied undoes the connection and leaves the files as
they were.
"""

from __future__ import annotations

import logging
import re
import secrets as random_secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from slipway.adapters import github
from slipway.adapters.github import (
    GitHubClient,
    GitHubError,
    PermissionMissing,
    parse_repository,
)
from slipway.adapters.queues import QueueBus
from slipway.adapters.secrets import SecretStore
from slipway.gitsync import engine
from slipway.gitsync.connection import TOKEN_SECRET, WEBHOOK_SECRET, Connection, ConnectionStore
from slipway.gitsync.journal import SyncJournal, SyncRecord
from slipway.gitsync.lease import LeaseBusy, SyncLease
from slipway.gitsync.pending import PendingRequests
from slipway.names import SYNC_QUEUE
from slipway.workspace.mode import WorkspaceModeStore

log = logging.getLogger("slipway.gitsync")

WEBHOOK_PATH = "/api/github/webhook"
_BRANCH = re.compile(r"^(?!/)(?!.*//)(?!.*\.\.)(?!.*@\{)(?!.*\.lock$)[A-Za-z0-9._/-]{1,200}(?<![/.])$")


class GitSyncError(Exception):
    """A failure the API maps to a status; ``code`` is the stable name."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Snapshots(Protocol):
    def create_snapshot(self, *, reason: str) -> Any: ...


@dataclass(frozen=True)
class GitSyncConfig:
    git_dir: Path
    workspace_dir: Path
    public_base_url: str
    github_api_url: str
    github_web_url: str


class GitSyncService:
    def __init__(
        self,
        config: GitSyncConfig,
        *,
        secrets: SecretStore,
        connections: ConnectionStore,
        journal: SyncJournal,
        pending: PendingRequests,
        lease: SyncLease,
        modes: WorkspaceModeStore,
        queues: QueueBus,
        github: Callable[[str], GitHubClient],
        snapshots: Snapshots | None = None,
    ) -> None:
        self._config = config
        self._secrets = secrets
        self._connections = connections
        self._journal = journal
        self._pending = pending
        self._lease = lease
        self._modes = modes
        self._queues = queues
        self._github = github
        self._snapshots = snapshots

    @property
    def connections(self) -> ConnectionStore:
        """The stored connection (the webhook reads it; tests arrange it)."""
        return self._connections

    @property
    def _mirror(self) -> Path:
        return self._config.git_dir / "workspace.git"

    @property
    def webhook_url(self) -> str:
        base = self._config.public_base_url.rstrip("/")
        return f"{base}{WEBHOOK_PATH}" if base else ""

    def remote_url(self, repository: str) -> str:
        return f"{self._config.github_web_url.rstrip('/')}/{repository}.git"

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, object]:
        connection = self._connections.get()
        if connection is None:
            return {"connected": False}
        last = self._journal.recent(1)
        return {
            "connected": True,
            "repository": connection.repository,
            "branch": connection.branch,
            "webhook": {
                "id": connection.hook_id,
                "url": connection.webhook_url,
                "managed": connection.hook_managed,
            },
            "last_synced_commit": connection.last_synced_commit or None,
            "last_sync": last[0].to_json() if last else None,
            "snapshots": [{"snapshot": s} for s in connection.snapshots],
            "connected_at": connection.connected_at.isoformat().replace("+00:00", "Z"),
            "connected_by": connection.connected_by,
        }

    def syncs(self, limit: int) -> list[SyncRecord]:
        return self._journal.recent(limit)

    # ------------------------------------------------------------------ connect

    def connect(
        self, actor: str, repository: str, branch: str, token: str, *, dry_run: bool
    ) -> dict[str, object]:
        try:
            repository = parse_repository(repository)
        except ValueError as exc:
            raise GitSyncError(422, "invalid_request", str(exc)) from None
        if not _BRANCH.match(branch):
            raise GitSyncError(422, "invalid_request", f"branch {branch[:100]!r} is not a valid branch name")
        if not token.strip():
            raise GitSyncError(422, "invalid_request", "a personal access token is required")
        current = None if dry_run else self._connections.get()
        if current is not None:
            raise GitSyncError(
                409,
                "already_connected",
                f"{current.repository} ({current.branch}) is connected; disconnect it first",
            )
        client = self._github(token)
        info = self._check_github(client, repository, branch)
        remote = self.remote_url(info.full_name)
        head = self._fetch(remote, branch, token)
        preview = engine.preview(self._mirror, head, self._config.workspace_dir)
        if dry_run:
            return {
                "dry_run": True,
                "repository": info.full_name,
                "branch": branch,
                "commit": head,
                "would_add": preview.add,
                "would_overwrite": preview.overwrite,
                "would_delete": preview.delete,
                "unchanged": preview.unchanged,
                "overwrite_paths": preview.overwrite_paths,
                "delete_paths": preview.delete_paths,
            }

        webhook_secret = random_secrets.token_urlsafe(32)
        self._secrets.set_secret(TOKEN_SECRET, token)
        self._secrets.set_secret(WEBHOOK_SECRET, webhook_secret)
        hook_id, webhook = self._create_webhook(client, info.full_name, info.can_admin_hooks, webhook_secret)
        snapshots: tuple[str, ...] = ()
        if self._snapshots is not None and (preview.overwrite or preview.delete):
            snapshots = self._snapshot(info.full_name)
        connection = Connection(
            repository=info.full_name,
            branch=branch,
            remote_url=remote,
            hook_id=hook_id,
            hook_managed=hook_id is not None,
            webhook_url=self.webhook_url,
            connected_at=datetime.now(UTC),
            connected_by=actor,
            snapshots=snapshots,
        )
        self._connections.save(connection)
        # Read-only before the first write, so no manual save can slip in between.
        self._modes.set_github(info.full_name, branch)
        try:
            record, _ = self._sync_locked(connection, token, trigger="connect", deliveries=(), full=True)
        except Exception:
            self._undo_connect(client, connection)
            raise
        if record.result != "succeeded":
            self._undo_connect(client, connection)
            raise GitSyncError(409 if "refused" in record.message else 502, "sync_failed", record.message)
        log.info("github connected", extra={"repository": info.full_name, "branch": branch, "actor": actor})
        return {
            "connected": True,
            "repository": info.full_name,
            "branch": branch,
            "webhook": webhook,
            "sync": record.to_json(),
            "snapshots": [{"snapshot": s} for s in snapshots],
        }

    def _check_github(self, client: GitHubClient, repository: str, branch: str):  # type: ignore[no-untyped-def]
        try:
            info = client.get_repository(repository)
            # Looks the branch up too: BranchNotFound, or PermissionMissing("Contents: read").
            client.check_contents_readable(info.full_name, branch)
        except GitHubError as exc:
            raise _github_failure(exc) from None
        return info

    def _fetch(self, remote: str, branch: str, token: str) -> str:
        try:
            return engine.fetch(self._mirror, remote, branch, token=token)
        except engine.BranchNotFound as exc:
            raise GitSyncError(404, "branch_not_found", str(exc)) from None
        except engine.SyncError as exc:
            raise GitSyncError(502, "fetch_failed", str(exc)) from None

    def _create_webhook(
        self, client: GitHubClient, repository: str, can_admin: bool, secret: str
    ) -> tuple[int | None, dict[str, object]]:
        manual = {"id": None, "url": self.webhook_url, "secret": secret, "managed": False}
        if not self.webhook_url:
            return None, {
                **manual,
                "message": "SLIPWAY_PUBLIC_BASE_URL is not set, so Slipway cannot tell GitHub where to send pushes",
            }
        if not can_admin:
            return None, {**manual, "message": "the token may not manage webhooks; add this one by hand"}
        try:
            existing = client.find_webhook(repository, self.webhook_url)
            if existing is not None:
                client.delete_webhook(repository, existing)
            hook_id = client.create_push_webhook(repository, self.webhook_url, secret)
        except PermissionMissing as exc:
            return None, {**manual, "message": str(exc)}
        except GitHubError as exc:
            raise _github_failure(exc) from None
        return hook_id, {"id": hook_id, "url": self.webhook_url, "managed": True}

    def _snapshot(self, repository: str) -> tuple[str, ...]:
        assert self._snapshots is not None
        try:
            snapshot = self._snapshots.create_snapshot(reason=f"before connecting {repository}")
        except Exception as exc:
            # The zip download was offered before connecting; a failed snapshot is reported, not fatal.
            log.warning("share snapshot failed: %s", exc)
            return ()
        return (str(getattr(snapshot, "snapshot", snapshot)),)

    def _undo_connect(self, client: GitHubClient, connection: Connection) -> None:
        if connection.hook_id is not None:
            try:
                client.delete_webhook(connection.repository, connection.hook_id)
            except GitHubError as exc:
                log.warning("could not remove the webhook while undoing a connect: %s", exc)
        self._secrets.delete_secret(TOKEN_SECRET)
        self._secrets.delete_secret(WEBHOOK_SECRET)
        self._connections.delete()
        self._modes.set_manual()

    # ------------------------------------------------------------------ disconnect

    def disconnect(self, actor: str) -> dict[str, object]:
        connection = self._connections.get()
        if connection is None:
            self._modes.set_manual()
            return {"connected": False, "webhook_removed": False}
        removed = False
        message = ""
        token = self._secrets.get_secret(TOKEN_SECRET)
        if connection.hook_id is not None and token:
            try:
                self._github(token).delete_webhook(connection.repository, connection.hook_id)
                removed = True
            except GitHubError as exc:
                message = f"the webhook could not be removed from GitHub ({exc}); remove it in the repository settings"
        self._secrets.delete_secret(TOKEN_SECRET)
        self._secrets.delete_secret(WEBHOOK_SECRET)
        self._connections.delete()
        self._modes.set_manual()
        log.info("github disconnected", extra={"repository": connection.repository, "actor": actor})
        answer: dict[str, object] = {"connected": False, "webhook_removed": removed}
        if message:
            answer["message"] = message
        return answer

    # ------------------------------------------------------------------ syncing

    def request_sync(self, trigger: str) -> None:
        if self._connections.get() is None:
            raise GitSyncError(409, "not_connected", "no GitHub repository is connected")
        self._queues.send_message(SYNC_QUEUE, {"trigger": trigger, "delivery": ""})

    def poll_remote(self) -> bool:
        """Queue a catch-up sync when the branch moved without a webhook; True when it did.

        GitHub does not redeliver a failed webhook by itself, so a missed push would leave the
        workspace stale until the next one; the reconcile timer asks for the head instead.
        """
        connection = self._connections.get()
        if connection is None:
            return False
        token = self._secrets.get_secret(TOKEN_SECRET)
        try:
            head = engine.remote_head(self._mirror, connection.remote_url, connection.branch, token=token)
        except engine.SyncError as exc:
            log.warning("reconcile could not read the remote head: %s", exc)
            return False
        if head == connection.last_synced_commit:
            return False
        log.info("branch moved without a webhook; queueing a catch-up sync", extra={"head": head})
        self._queues.send_message(SYNC_QUEUE, {"trigger": "reconcile", "delivery": ""})
        return True

    def run_pass(self) -> dict[str, object]:
        """One sync pass over the pending requests (the orchestration's activity).

        Answers ``{"result", "retryable", "more", "message"}``; known failures are answers,
        not exceptions, so the orchestrator decides about retries.
        """
        connection = self._connections.get()
        requests = self._pending.list()
        if connection is None:
            self._pending.remove(requests)
            return {"result": "skipped", "retryable": False, "more": False, "message": "not connected"}
        token = self._secrets.get_secret(TOKEN_SECRET) or ""
        # "Sync now" compares every file (it repairs a workspace changed by hand); a push or
        # a catch-up after a missed webhook applies the change since the last synced commit.
        full = any(r.trigger == "manual" for r in requests)
        trigger = requests[-1].trigger if requests else "push"
        deliveries = tuple(r.delivery for r in requests if r.delivery)
        record, retryable = self._sync_locked(
            connection, token, trigger=trigger, deliveries=deliveries, full=full
        )
        if not retryable:
            self._pending.remove(requests)
        return {
            "result": record.result,
            "retryable": retryable,
            "more": bool(self._pending.list()) if not retryable else False,
            "message": record.message,
            "after": record.after,
        }

    def _sync_locked(
        self, connection: Connection, token: str, *, trigger: str, deliveries: tuple[str, ...], full: bool
    ) -> tuple[SyncRecord, bool]:
        """Fetch and apply under the lease: the journaled record, and whether a retry may help."""
        started = time.monotonic()
        base = None if full else (connection.last_synced_commit or None)
        try:
            with self._lease.hold(wait_seconds=60):
                record, retryable = self._fetch_and_apply(connection, token, trigger, deliveries, base)
        except LeaseBusy:
            message = "another sync held the lease for over a minute"
            record = SyncRecord(trigger, "failed", message, deliveries, before=connection.last_synced_commit)
            retryable = True
        record = _with_duration(record, started)
        self._journal.record(record)
        return record, retryable

    def _fetch_and_apply(
        self, connection: Connection, token: str, trigger: str, deliveries: tuple[str, ...], base: str | None
    ) -> tuple[SyncRecord, bool]:
        before = connection.last_synced_commit
        try:
            head = engine.fetch(self._mirror, connection.remote_url, connection.branch, token=token or None)
            result = engine.apply(self._mirror, head, self._config.workspace_dir, base=base)
        except engine.BranchNotFound as exc:
            message = f"branch not found: {exc}; the workspace was left as it was"
            return SyncRecord(trigger, "failed", message, deliveries, before=before), False
        except engine.TreeRefused as exc:
            message = f"refused: {exc}; the workspace was left as it was"
            return SyncRecord(trigger, "failed", message, deliveries, before=before), False
        except engine.FetchError as exc:
            return SyncRecord(trigger, "failed", f"fetch failed: {exc}", deliveries, before=before), True
        self._connections.record_synced(result.after)
        record = SyncRecord(
            trigger,
            "succeeded",
            f"{result.mode} sync to {result.after[:12]}",
            deliveries,
            before=before,
            after=result.after,
            added=result.added,
            changed=result.changed,
            deleted=result.deleted,
            bytes=result.bytes_written,
            warnings=tuple(result.warnings),
        )
        return record, False


def _with_duration(record: SyncRecord, started: float) -> SyncRecord:
    return replace(record, duration_ms=int((time.monotonic() - started) * 1000))


def _github_failure(exc: GitHubError) -> GitSyncError:
    mapping: dict[type[GitHubError], tuple[int, str]] = {
        github.GitHubAuthFailed: (400, "github_auth_failed"),
        github.RepositoryNotFound: (404, "repository_not_found"),
        github.PermissionMissing: (403, "permission_missing"),
        github.BranchNotFound: (404, "branch_not_found"),
        github.GitHubUnavailable: (502, "github_unavailable"),
    }
    status, code = mapping.get(type(exc), (502, "github_error"))
    return GitSyncError(status, code, str(exc))
