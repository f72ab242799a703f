"""Deployments as the API and the webhook see them: request, follow, cancel, retry, roll back,
bind a site to a branch.

A request is validated, written ``queued`` and put on the deploys queue as ``{"action":
"start", "deployment_id"}``; the queue trigger starts the ``deployment_run`` orchestration with
the deployment id as its instance id. Cancel is written to the deployment at once (so a build
sees it within a second and kills its commands) and a ``cancel`` message wakes the
orchestration. A push to a bound branch creates deployments the same way, at most one per site
and webhook delivery.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from slipway.adapters.queues import QueueBus
from slipway.deploy.errors import DeployError, DeployRequestInvalid
from slipway.deploy.records import (
    BUILDING,
    CANCELED,
    FAILED,
    PUBLISHING,
    QUEUED,
    SUCCEEDED,
    VERIFYING,
    DeploymentRecord,
    DeploymentRequest,
    DeploymentStore,
    SiteBinding,
    SiteRecord,
    deployment_site,
)
from slipway.engine.logs import RunLogStore, RunLogWriter
from slipway.names import DEPLOYS_QUEUE

log = logging.getLogger("slipway.deploy.service")

START, CANCEL = "start", "cancel"
MAX_REQUEST_BYTES = 64 * 1024
# What a caller may set; trigger, delivery, rollback target and who asked are Slipway's to say.
REQUEST_FIELDS = frozenset(
    {
        "site",
        "source",
        "repository",
        "ref",
        "folder",
        "package_manager",
        "build_command",
        "output_dir",
        "verify_path",
        "verify_text",
    }
)
# GitHub lists at most 20 commits (with their files) in a push; beyond that the files are unknown.
_PUSH_COMMITS_LISTED = 20


class DeployNotConfigured(DeployError):
    code = "not_configured"
    status = 409


class DeploymentConflict(DeployError):
    code = "conflict"
    status = 409


class DeployQueueUnavailable(DeployError):
    code = "queue_unavailable"
    status = 503


def parse_message(body: bytes) -> dict[str, str]:
    """A deploys-queue message; ValueError when it is not one."""
    try:
        message = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(message, dict) or message.get("action") not in (START, CANCEL):
        raise ValueError("not a deployment message")
    deployment_id = message.get("deployment_id")
    try:
        deployment_site(deployment_id)
    except DeployError:
        raise ValueError("the message names no deployment") from None
    return {"action": message["action"], "deployment_id": deployment_id}


def same_repository(a: str, b: str) -> bool:
    """Whether two clone URLs name one repository (scheme, case of the host, ``.git`` and a
    trailing slash aside)."""

    def key(url: str) -> tuple[str, str]:
        parts = urlsplit(url.strip())
        path = parts.path.rstrip("/")
        path = path[:-4] if path.endswith(".git") else path
        return parts.netloc.lower(), path.lower()

    return bool(a and b) and key(a) == key(b)


class DeploymentService:
    def __init__(
        self,
        store: DeploymentStore,
        queues: QueueBus,
        log_store: RunLogStore,
        log_writer: RunLogWriter,
        *,
        target: str | None,
        connected_repository: Callable[[], tuple[str, str] | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``target`` describes where deployments publish (None: nowhere configured);
        ``connected_repository()`` gives the connected GitHub repository's (clone URL, branch)."""
        self.store = store
        self._queues = queues
        self._log_store = log_store
        self._log_writer = log_writer
        self.target = target
        self._connected = connected_repository
        self._clock = clock

    # ------------------------------------------------------------------ requests

    def request(self, payload: Any, requested_by: str) -> dict[str, Any]:
        """Validate and queue a deployment asked for through the API."""
        if not isinstance(payload, Mapping):
            raise DeployRequestInvalid("", "the body must be a JSON object")
        for key in payload:
            if key not in REQUEST_FIELDS:
                raise DeployRequestInvalid(str(key), "is not a deployment request field")
        request = DeploymentRequest.from_json({**payload, "requested_by": requested_by})
        return self.view(self._queue(request))

    def retry(self, deployment_id: str, requested_by: str) -> dict[str, Any]:
        """A new deployment with the same inputs as a finished one."""
        record = self.store.get(deployment_id)
        if not record.finished:
            raise DeploymentConflict(
                f"deployment {deployment_id} is {record.status}; retry it once it has finished"
            )
        return self.view(self._queue(record.request.as_retry(requested_by=requested_by)))

    def rollback(self, site: str, payload: Any, requested_by: str) -> dict[str, Any]:
        """Republish an earlier deployment's artifact (by default the last good one before the
        live one) without building."""
        if payload is not None and not isinstance(payload, Mapping):
            raise DeployRequestInvalid("", 'the body must be {"deployment_id": "..."} or empty')
        for key in payload or {}:
            if key != "deployment_id":
                raise DeployRequestInvalid(str(key), "is not a rollback field (only deployment_id)")
        state = self.store.get_site(site)
        chosen = (payload or {}).get("deployment_id")
        if chosen is not None:
            if not isinstance(chosen, str):
                raise DeployRequestInvalid("deployment_id", "must be a string")
            if deployment_site(chosen) != site:
                raise DeployRequestInvalid("deployment_id", f"must be a deployment of {site}")
            target = self.store.get(chosen)
            if target.status != SUCCEEDED or target.artifact is None:
                raise DeploymentConflict(
                    f"deployment {chosen} is {target.status}; only a succeeded deployment can be rolled back to"
                )
        else:
            before = state.live_deployment_id
            found = self.store.last_good(site, before=before) if before else None
            if found is None:
                raise DeploymentConflict(f"{site} has no earlier good deployment to roll back to")
            target = found
        if target.id == state.live_deployment_id:
            raise DeploymentConflict(f"deployment {target.id} is already live on {site}")
        # A rollback deployment republished another's artifact: go back to that one.
        origin = target.request.rollback_to if target.request.trigger == "rollback" else target.id
        assert origin is not None
        return self.view(self._queue(target.request.as_rollback(origin, requested_by=requested_by)))

    def cancel(self, deployment_id: str, requested_by: str) -> dict[str, Any]:
        record = self.store.get(deployment_id)
        if record.finished:
            raise DeploymentConflict(
                f"deployment {deployment_id} has already {record.status.replace('_', ' ')}"
            )
        if record.status in (PUBLISHING, VERIFYING):
            raise DeploymentConflict(
                f"deployment {deployment_id} is {record.status}; it can no longer be canceled "
                "(roll the site back instead)"
            )
        self._log_writer.line(deployment_id, "", "system", f"■ cancel requested by {requested_by}")
        self._log_writer.flush(deployment_id)
        record = self.store.transition(deployment_id, CANCELED, error=f"canceled by {requested_by}")
        try:
            self._queues.send_message(DEPLOYS_QUEUE, {"action": CANCEL, "deployment_id": deployment_id})
        except Exception:
            # The status is written: the build stops by itself; the orchestration ends at its next step.
            log.warning("could not queue the cancel event", extra={"deployment": deployment_id})
        return self.view(record)

    def _queue(self, request: DeploymentRequest) -> DeploymentRecord:
        if self.target is None:
            raise DeployNotConfigured(
                "no publish target is configured: set SLIPWAY_LOCAL_SITES_DIR (local static host) "
                "or SLIPWAY_SWA_SUBSCRIPTION_ID and SLIPWAY_SWA_RESOURCE_GROUP (Azure Static Web Apps)"
            )
        record = self.store.create(request)
        what = request.folder if request.source == "workspace" else (request.repository or "")
        if request.trigger == "rollback":
            what = f"rollback to {request.rollback_to}"
        self._log_writer.line(
            record.id,
            "",
            "system",
            f"queued by {request.requested_by} ({request.trigger}): {what} → {self.target}",
        )
        self._log_writer.flush(record.id)
        try:
            self._queues.send_message(DEPLOYS_QUEUE, {"action": START, "deployment_id": record.id})
        except Exception as exc:
            log.exception("could not queue a deployment", extra={"deployment": record.id})
            if not record.finished:
                self.store.transition(record.id, FAILED, error="the deployment could not be queued")
            raise DeployQueueUnavailable("the deployment could not be queued; try again") from exc
        log.info("deployment queued", extra={"deployment": record.id, "trigger": request.trigger})
        return self.store.get(record.id)

    # ---------------------------------------------------------------------- push

    def on_push(self, delivery_id: str, payload: Mapping[str, Any]) -> list[str]:
        """Deployments for the sites bound to the pushed branch whose folder the push changed;
        the ids of those it queued (a delivery seen before queues nothing again)."""
        connected = self._connected()
        ref = str(payload.get("ref", ""))
        if connected is None or self.target is None or not ref.startswith("refs/heads/"):
            return []
        if payload.get("deleted") is True:
            return []
        commit = str(payload.get("after", ""))
        if len(commit) not in (40, 64) or any(c not in "0123456789abcdef" for c in commit):
            return []
        branch = ref.removeprefix("refs/heads/")
        changed = _changed_paths(payload)
        pusher = payload.get("pusher") if isinstance(payload.get("pusher"), Mapping) else {}
        who = f"push by {str(pusher.get('name') or 'GitHub')[:100]}"
        queued: list[str] = []
        for site in self.store.list_sites():
            binding = site.binding
            if binding is None or binding.branch != branch:
                continue
            if changed is not None and not binding.watches(changed):
                continue
            if self.store.by_delivery(site.site, delivery_id) is not None:
                continue
            request = binding.request(
                site.site, repository=connected[0], commit=commit, delivery_id=delivery_id, requested_by=who
            )
            try:
                queued.append(self._queue(request).id)
            except DeployError:
                log.exception("a push deployment could not be queued", extra={"site": site.site})
        return queued

    # ------------------------------------------------------------------ bindings

    def bind(self, site: str, payload: Any) -> dict[str, Any]:
        if self._connected() is None:
            raise DeploymentConflict("connect a GitHub repository first: a site binds to one of its branches")
        binding = SiteBinding.from_json(payload)
        return self.site_view(self.store.set_binding(site, binding))

    def unbind(self, site: str) -> dict[str, Any]:
        self.store.get_site(site)
        return self.site_view(self.store.set_binding(site, None))

    # --------------------------------------------------------------------- views

    def get(self, deployment_id: str) -> dict[str, Any]:
        return self.view(self.store.get(deployment_id))

    def list(self, site: str | None, limit: int) -> list[dict[str, Any]]:
        records = self.store.history(site, limit=limit) if site else self.store.recent(limit=limit)
        sites: dict[str, SiteRecord | None] = {}
        return [self.view(record, sites) for record in records]

    def sites(self) -> list[dict[str, Any]]:
        return [self.site_view(site) for site in sorted(self.store.list_sites(), key=lambda s: s.site)]

    def site(self, site: str) -> dict[str, Any]:
        return self.site_view(self.store.get_site(site))

    def site_view(self, site: SiteRecord) -> dict[str, Any]:
        view = site.to_json()
        last = self.store.history(site.site, limit=1)
        view["last_deployment"] = self.view(last[0], {site.site: site}) if last else None
        return view

    def view(
        self, record: DeploymentRecord, sites: dict[str, SiteRecord | None] | None = None
    ) -> dict[str, Any]:
        sites = {} if sites is None else sites
        if record.site not in sites:
            try:
                sites[record.site] = self.store.get_site(record.site)
            except DeployError:
                sites[record.site] = None
        site = sites[record.site]
        view = record.to_json()
        reached_publish = "publishing_at" in record.timestamps or "verifying_at" in record.timestamps
        view["url"] = site.live_url if site is not None and reached_publish else None
        view["live"] = site is not None and site.live_deployment_id == record.id
        view["can_cancel"] = record.status in (QUEUED, BUILDING)
        view["estimate"] = self._estimate(record)
        return view

    def _estimate(self, record: DeploymentRecord) -> dict[str, int] | None:
        """From the site's recent successful deployments: how long one takes, and what is left."""
        if record.finished:
            return None
        typical_runs = self.store.recent_durations(record.site, 5)
        if not typical_runs:
            return None
        typical = int(statistics.median(typical_runs))
        started = record.timestamps.get("building_at") or record.timestamps.get("publishing_at")
        elapsed = 0 if started is None else int((self._clock() - _epoch(started)) * 1000)
        return {"typical_ms": typical, "remaining_ms": max(typical - elapsed, 0)}

    def logs(self, deployment_id: str, after: int, limit: int) -> dict[str, Any]:
        record = self.store.get(deployment_id)
        return self._log_store.page(
            deployment_id, after=after, limit=limit, status=record.status, finished=record.finished
        )


def _changed_paths(payload: Mapping[str, Any]) -> list[str] | None:
    """Every path the push's commits added, modified or removed; None when GitHub did not list
    them all (a forced push, too many commits), so the push must be taken to change anything."""
    commits = payload.get("commits")
    if payload.get("forced") is True or not isinstance(commits, list) or not commits:
        return None
    if len(commits) >= _PUSH_COMMITS_LISTED:
        return None
    paths: list[str] = []
    for commit in commits:
        if not isinstance(commit, Mapping):
            return None
        for kind in ("added", "modified", "removed"):
            listed = commit.get(kind, [])
            if not isinstance(listed, list):
                return None
            paths.extend(str(path) for path in listed)
    return paths


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
