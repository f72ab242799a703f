"""Connecting a repository, disconnecting it, and the state of sync (passes: slipway.gitsync.passes).

Connect validates everything it can before it changes anything (repository, branch, token,
a real fetch), can answer a dry run with what the first sync would overwrite and delete,
then, holding the sync lease throughout, records the connection as "connecting", switches
the workspace to GitHub mode, stores the token and a new webhook secret, creates the webhook
(or hands its URL and secret to the user), snapshots the share in Azure when the first sync
would overwrite manual edits, and runs the first sync. A first sync that cannot be applied
undoes all of it. A connect killed half-way is found by ``recover`` (status, "Sync now",
connect and the reconcile timer call it): the lease it held runs out, and its first sync is
resumed, or, when it never stored its secrets, the connect is undone.

Disconnect asks a running pass to stop and takes the lease before it enables editing, so
no sync writes after the editor is open again.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets as random_secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

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
from slipway.gitsync.lease import Held, LeaseBusy, SyncLease
from slipway.gitsync.passes import SyncPasses
from slipway.gitsync.pending import PendingRequests
from slipway.names import SYNC_QUEUE
from slipway.workspace.mode import WorkspaceModeStore

log = logging.getLogger("slipway.gitsync")

WEBHOOK_PATH = "/api/github/webhook"
# How long a disconnect waits for a running pass to stop (it answers within an HTTP request).
DISCONNECT_WAIT_SECONDS = 20
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
        self._passes = SyncPasses(
            mirror=self._mirror,
            workspace=config.workspace_dir,
            secrets=secrets,
            connections=connections,
            journal=journal,
            pending=pending,
            lease=lease,
            queues=queues,
        )

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
        connection = self.recover()
        if connection is None:
            return {"connected": False, "sync": self._passes.state()}
        last = self._journal.recent(1)
        webhook: dict[str, object] = {
            "id": connection.hook_id,
            "url": connection.webhook_url,
            "managed": connection.hook_managed,
        }
        unreachable = webhook_unreachable(connection.webhook_url)
        webhook["reachable"] = unreachable is None
        if unreachable is not None:
            webhook["message"] = unreachable
        return {
            "connected": True,
            "state": connection.state,
            "repository": connection.repository,
            "branch": connection.branch,
            "webhook": webhook,
            "last_synced_commit": connection.last_synced_commit or None,
            "last_sync": last[0].to_json() if last else None,
            "sync": self._passes.state(),
            "snapshots": [{"snapshot": s} for s in connection.snapshots],
            "connected_at": connection.connected_at.isoformat().replace("+00:00", "Z"),
            "connected_by": connection.connected_by,
        }

    def syncs(self, limit: int) -> list[SyncRecord]:
        return self._journal.recent(limit)

    def sync_page(self, limit: int, after: str | None = None) -> tuple[list[SyncRecord], str | None]:
        """A page of the journal, and the cursor of the next one (None at the end)."""
        return self._journal.page(limit, after=after)

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
        self._refuse_if_connected(dry_run)
        client = self._github(token)
        info = self._check_github(client, repository, branch)
        remote = self.remote_url(info.full_name)
        if dry_run:
            head = self._fetch(remote, branch, token)
            preview = self._preview(head)
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
        try:
            # The whole connect holds the sync lease (renewed), so no pass runs meanwhile and a
            # connect killed half-way is told from one still working by the lease alone.
            with self._lease.hold(wait_seconds=10, trigger="connect", phase="connecting") as held:
                self._refuse_if_connected(dry_run)
                return self._connect_held(held, client, info, actor, branch, remote, token)
        except LeaseBusy as exc:
            raise GitSyncError(409, "sync_running", str(exc)) from None

    def _refuse_if_connected(self, dry_run: bool) -> None:
        current = None if dry_run else self.recover()
        if current is not None:
            raise GitSyncError(
                409,
                "already_connected",
                f"{current.repository} ({current.branch}) is connected; disconnect it first",
            )

    def _connect_held(  # type: ignore[no-untyped-def]
        self, held: Held, client: GitHubClient, info, actor: str, branch: str, remote: str, token: str
    ) -> dict[str, object]:
        head = self._fetch(remote, branch, token)
        preview = self._preview(head)
        connection = Connection(
            repository=info.full_name,
            branch=branch,
            remote_url=remote,
            hook_id=None,
            hook_managed=False,
            webhook_url=self.webhook_url,
            connected_at=datetime.now(UTC),
            connected_by=actor,
            state="connecting",
        )
        # Recorded before the first side effect: whatever a crash leaves, recover() finds it.
        self._connections.save(connection)
        # Read-only before the first write, so no manual save can slip in between.
        self._modes.set_github(info.full_name, branch)
        try:
            webhook_secret = random_secrets.token_urlsafe(32)
            self._secrets.set_secret(TOKEN_SECRET, token)
            self._secrets.set_secret(WEBHOOK_SECRET, webhook_secret)
            hook_id, webhook = self._create_webhook(
                client, info.full_name, info.can_admin_hooks, webhook_secret
            )
            connection = replace(connection, hook_id=hook_id, hook_managed=hook_id is not None)
            self._connections.save(connection)
            if self._snapshots is not None and (preview.overwrite or preview.delete):
                connection = replace(connection, snapshots=self._snapshot(info.full_name))
                self._connections.save(connection)
            record, _ = self._passes.sync(
                held, connection, token, trigger="connect", deliveries=(), full=True
            )
        except BaseException:
            self._undo_connect(client, connection)
            raise
        if record.result != "succeeded":
            self._undo_connect(client, connection)
            raise GitSyncError(409 if "refused" in record.message else 502, "sync_failed", record.message)
        connection = replace(connection, state="connected", last_synced_commit=record.after)
        self._connections.save(connection)
        log.info("github connected", extra={"repository": info.full_name, "branch": branch, "actor": actor})
        return {
            "connected": True,
            "repository": info.full_name,
            "branch": branch,
            "webhook": webhook,
            "sync": record.to_json(),
            "snapshots": [{"snapshot": s} for s in connection.snapshots],
        }

    def _preview(self, head: str) -> engine.SyncPreview:
        try:
            return engine.preview(self._mirror, head, self._config.workspace_dir)
        except engine.TreeRefused as exc:
            raise GitSyncError(409, "tree_refused", f"the repository cannot be synced: {exc}") from None

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
                "reachable": False,
                "message": "SLIPWAY_PUBLIC_BASE_URL is not set, so Slipway cannot tell GitHub where to send pushes",
            }
        unreachable = webhook_unreachable(self.webhook_url)
        if unreachable is not None:
            # GitHub would accept the hook and fail every delivery: none is made.
            return None, {**manual, "reachable": False, "message": unreachable}
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

    def _undo_connect(self, client: GitHubClient | None, connection: Connection) -> None:
        """Take back every side effect of a connect; each step is tried even when one fails."""
        if client is not None:
            try:
                hook = connection.hook_id
                if hook is None and connection.webhook_url:
                    # Killed between GitHub creating the hook and the id being stored.
                    hook = client.find_webhook(connection.repository, connection.webhook_url)
                if hook is not None:
                    client.delete_webhook(connection.repository, hook)
            except GitHubError as exc:
                log.warning("could not remove the webhook while undoing a connect: %s", exc)
        self._secrets.delete_secret(TOKEN_SECRET)
        self._secrets.delete_secret(WEBHOOK_SECRET)
        self._connections.delete()
        self._discard_debris()  # before editing opens (see _disconnect_held)
        self._modes.set_manual()

    def _discard_debris(self) -> None:
        try:
            removed = engine.discard_debris(self._config.workspace_dir)
        except OSError as exc:
            log.warning("could not clear an interrupted sync's temp files: %s", exc)
            return
        if removed:
            log.info("cleared an interrupted sync's temp files", extra={"removed": removed})

    def recover(self) -> Connection | None:
        """The connection, after finishing a connect that was killed half-way.

        A "connecting" connection whose lease nobody holds was left by a connect that died.
        With its token stored, its first sync is queued again (full: it repairs whatever the
        killed one wrote); without, the connect never got far enough and is undone.
        """
        connection = self._connections.get()
        if connection is None or connection.state != "connecting" or self._lease.current() is not None:
            return connection
        try:
            with self._lease.hold(trigger="connect", phase="recovering"):
                connection = self._connections.get()
                if connection is None or connection.state != "connecting":
                    return connection
                token = self._secrets.get_secret(TOKEN_SECRET)
                if token and self._secrets.get_secret(WEBHOOK_SECRET):
                    log.warning("resuming the first sync of a connect that was interrupted")
                    self._pending.add("connect", "")
                    self._queues.send_message(SYNC_QUEUE, {"trigger": "connect", "delivery": ""})
                    return connection
                log.warning("undoing a connect that was interrupted before it stored its secrets")
                self._undo_connect(self._github(token) if token else None, connection)
                return None
        except LeaseBusy:
            return self._connections.get()

    # ------------------------------------------------------------------ disconnect

    def disconnect(self, actor: str) -> dict[str, object]:
        # A running pass is told to stop and the waiting ones are dropped; editing resumes
        # only once no pass can write any more (this holds the lease while it switches).
        self._passes.cancel(actor)
        try:
            with self._lease.hold(
                wait_seconds=DISCONNECT_WAIT_SECONDS, trigger="disconnect", phase="disconnecting"
            ):
                return self._disconnect_held(actor)
        except LeaseBusy as exc:
            raise GitSyncError(
                409,
                "sync_running",
                f"{exc}; it was asked to stop and the repository stays connected: disconnect again in a moment",
            ) from None

    def _disconnect_held(self, actor: str) -> dict[str, object]:
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
        self._pending.remove(self._pending.list())
        # Before editing opens: the editor's own saves stage temp files of the same prefix.
        self._discard_debris()
        self._modes.set_manual()
        log.info("github disconnected", extra={"repository": connection.repository, "actor": actor})
        answer: dict[str, object] = {"connected": False, "webhook_removed": removed}
        if message:
            answer["message"] = message
        return answer

    # ------------------------------------------------------------------ syncing

    def request_sync(self, trigger: str) -> dict[str, object]:
        if self.recover() is None:
            raise GitSyncError(409, "not_connected", "no GitHub repository is connected")
        return self._passes.request(trigger)

    def cancel_sync(self, actor: str) -> dict[str, object]:
        return self._passes.cancel(actor)

    def run_pass(self) -> dict[str, object]:
        outcome = self._passes.run_pass()
        connection = self._connections.get()
        if connection is not None and connection.state == "connecting":
            if outcome["result"] == "succeeded":
                self._connections.save(replace(connection, state="connected"))
            elif outcome["result"] in ("failed", "cancelled") and not outcome["retryable"]:
                # A resumed first sync that cannot be applied undoes the connect, as connect does.
                token = self._secrets.get_secret(TOKEN_SECRET)
                self._undo_connect(self._github(token) if token else None, connection)
        return outcome

    def poll_remote(self) -> bool:
        """Queue a catch-up sync when the branch moved without a webhook; True when it did.

        GitHub does not redeliver a failed webhook by itself, so a missed push would leave the
        workspace stale until the next one; the reconcile timer asks for the head instead. It
        also finishes an interrupted connect and re-queues requests whose wake-up was lost.
        """
        connection = self.recover()
        if connection is None:
            return False
        if self._passes.requeue_orphans():
            return True
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


def webhook_unreachable(url: str) -> str | None:
    """Why GitHub cannot deliver to ``url`` (a loopback, private or single-label host), or None."""
    if not url:
        return "no webhook URL: SLIPWAY_PUBLIC_BASE_URL is not set"
    parsed = urlsplit(url)
    host = (parsed.hostname or "").rstrip(".").lower()
    why = ""
    if parsed.scheme not in ("http", "https") or not host:
        why = "it is not an http(s) URL with a host"
    else:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            if host == "localhost" or host.endswith((".localhost", ".local", ".internal")) or "." not in host:
                why = f"{host} is a local name"
        else:
            if not address.is_global:
                why = f"{host} is not a public address"
    if not why:
        return None
    return (
        f"GitHub cannot deliver pushes to {url} ({why}); the workspace catches up by asking GitHub every"
        " five minutes instead. Set SLIPWAY_PUBLIC_BASE_URL to a URL GitHub can reach (a tunnel, in"
        " development) for a sync on every push."
    )


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
