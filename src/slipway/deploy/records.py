"""Deployments and sites in Table storage: what was asked, where each deployment is, what is live.

**Ids and rows.** A deployment id is ``<12 hex ms>-<8 hex random>-<site>``, e.g.
``0190f0a1b2c3-9f8e7d6c-my-blog``: time-ordered like run ids, and carrying its site, so
:meth:`DeploymentStore.get` is one point read with no index row to keep in step. Rows live in
``SlipwayDeployments`` with partition = site and row key = ``<inverted ms>-<random>``, so a
partition query lists a site's history newest first. "Newer" means "sorts first by row key"
everywhere (two ids of the same millisecond are ordered by their random part).

**Statuses.** ``queued → building → publishing → verifying → succeeded``; a deployment that
republishes an earlier artifact (a rollback) skips ``building``. :data:`TRANSITIONS` lists every
legal move; ``succeeded``, ``failed``, ``canceled``, ``superseded`` and ``rolled_back`` are
final. Entering ``publishing`` needs an artifact. Repeating the status a deployment is at is
not an error (an activity replayed by the orchestrator): a finished deployment is returned
unchanged, an unfinished one takes the new fields (the step it is at, the commit). Each status
reached is stamped (``<status>_at``, ``finished_at`` for the final one), so
:attr:`DeploymentRecord.durations_ms` gives the time spent in each phase.

**Superseding.** A newer request supersedes the site's queued older ones. After writing its row,
:meth:`DeploymentStore.create` marks every queued deployment older than the site's newest
unfinished one ``superseded`` (``superseded_by`` = that newest one), each a conditional write.
Whichever of two concurrent creates writes its row last sees the other's row when it looks, so
exactly one of them stays queued. "Older" is by id, so by the creating worker's clock: two
requests a few milliseconds apart on workers whose clocks disagree by more may be ordered
either way.

**Site state** is derived, never set by hand, and rewritten (conditionally) after every create,
final transition and publish:

* ``DEPLOYING`` while any deployment of the site is unfinished (queued ones included);
* otherwise from the newest deployment that reached an outcome (canceled and superseded ones
  are skipped): ``succeeded`` → ``DEPLOYED``; ``failed`` or ``rolled_back`` →
  ``DEPLOYMENT_FAILED``;
* with no outcome yet: ``DEPLOYED`` when something is live, else ``UNDEPLOYED``.

So a failed deployment in front of an older live one shows ``DEPLOYMENT_FAILED`` *with* the
older one as ``live_deployment_id``: "your last deployment failed; the site still serves X".

**Publish lease.** At most one deployment publishes to a site at a time: the holder's id and an
expiry on the site row, taken with a conditional write. An expired lease may be taken over; only
the holder releases it, and only the holder may :meth:`~DeploymentStore.set_live`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from slipway.adapters.tables import EntityNotFound, TableStore
from slipway.deploy.detect import PACKAGE_MANAGERS
from slipway.deploy.errors import (
    DeploymentNotFound,
    DeployRequestInvalid,
    PublishLeaseLost,
    SiteNotFound,
    TransitionRefused,
)
from slipway.names import DEPLOYMENTS_TABLE, SITES_TABLE

__all__ = [
    "FINAL",
    "TRANSITIONS",
    "Artifact",
    "DeploymentRecord",
    "DeploymentRequest",
    "DeploymentStore",
    "SiteBinding",
    "SiteRecord",
    "deployment_site",
    "new_deployment_id",
    "valid_site_name",
]

# Deployment statuses.
QUEUED, BUILDING, PUBLISHING, VERIFYING = "queued", "building", "publishing", "verifying"
SUCCEEDED, FAILED, CANCELED, SUPERSEDED, ROLLED_BACK = (
    "succeeded",
    "failed",
    "canceled",
    "superseded",
    "rolled_back",
)
PHASES = (QUEUED, BUILDING, PUBLISHING, VERIFYING)
FINAL = frozenset({SUCCEEDED, FAILED, CANCELED, SUPERSEDED, ROLLED_BACK})
OUTCOMES = (SUCCEEDED, FAILED, ROLLED_BACK)  # what a site's state follows
TRANSITIONS: dict[str, frozenset[str]] = {
    # publishing straight from queued: a rollback republishes an artifact without building.
    QUEUED: frozenset({BUILDING, PUBLISHING, FAILED, CANCELED, SUPERSEDED}),
    BUILDING: frozenset({PUBLISHING, FAILED, CANCELED}),
    # rolled_back: publish or verify failed and the last good artifact was republished.
    PUBLISHING: frozenset({VERIFYING, FAILED, ROLLED_BACK}),
    VERIFYING: frozenset({SUCCEEDED, FAILED, ROLLED_BACK}),
    **{status: frozenset() for status in FINAL},
}

# Site states.
UNDEPLOYED, DEPLOYING, DEPLOYED, DEPLOYMENT_FAILED = (
    "UNDEPLOYED",
    "DEPLOYING",
    "DEPLOYED",
    "DEPLOYMENT_FAILED",
)

# The steps a deployment shows, in order; a rollback deployment has only publish and verify,
# and "rollback" appears when a failed verify republished the last good artifact.
BUILD_STEPS = ("checkout", "detect", "install", "test", "build", "package")
STEPS = (*BUILD_STEPS, "publish", "verify", "rollback")
STEP_STATUSES = ("running", "succeeded", "failed", "skipped", "canceled")

SOURCES = ("git", "workspace")
TRIGGERS = ("manual", "push", "retry", "rollback")
SITE_PARTITION = "site"
MAX_ERROR_CHARS = 4000
_MAX_TIME = 0xFFFFFFFFFFFF
_SITE = r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])"
SITE_PATTERN = re.compile(rf"^{_SITE}$")
DEPLOYMENT_ID_PATTERN = re.compile(rf"^([0-9a-f]{{12}})-([0-9a-f]{{8}})-({_SITE})$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_URL = re.compile(r"^(?:(?:https?|ssh|git|file)://[^\s]+|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+)$")
_REF_FORBIDDEN = re.compile(r"[\s~^:?*\[\\]|\.\.|@\{|//")
_COMMIT = re.compile(r"^[0-9a-f]{7,64}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


# ------------------------------------------------------------------------------ ids


def valid_site_name(site: str) -> bool:
    """Lowercase letters, digits and hyphens, 2-40 characters, no hyphen at either end."""
    return isinstance(site, str) and bool(SITE_PATTERN.match(site))


def new_deployment_id(site: str, *, now: float | None = None) -> str:
    """Time-ordered and unique, with the site it belongs to at the end."""
    stamp = int((time.time() if now is None else now) * 1000)
    return f"{stamp:012x}-{secrets.token_hex(4)}-{site}"


def deployment_site(deployment_id: str) -> str:
    """The site a deployment id belongs to; :class:`DeploymentNotFound` for a malformed id."""
    return _parse_id(deployment_id)[1]


def _parse_id(deployment_id: str) -> tuple[str, str]:
    """(row key, site)."""
    match = DEPLOYMENT_ID_PATTERN.match(deployment_id) if isinstance(deployment_id, str) else None
    if match is None:
        raise DeploymentNotFound(f"no deployment has the id {deployment_id!r}")
    stamp, tail, site = match.groups()
    return f"{_MAX_TIME - int(stamp, 16):012x}-{tail}", site


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _ms_between(start: str | None, end: str | None) -> int | None:
    if not start or not end:
        return None
    return round((_seconds(end) - _seconds(start)) * 1000)


# -------------------------------------------------------------------------- request


def _text(field: str, value: str, *, max_chars: int, single_line: bool = True) -> None:
    if not value:
        raise DeployRequestInvalid(field, "must not be empty")
    if len(value) > max_chars:
        raise DeployRequestInvalid(field, f"must be at most {max_chars} characters")
    if single_line and _CONTROL.search(value):
        raise DeployRequestInvalid(field, "must be one line without control characters")


def _relative(field: str, value: str, *, max_chars: int = 512) -> None:
    _text(field, value, max_chars=max_chars)
    path = PurePosixPath(value)
    if "\\" in value or path.is_absolute() or value.startswith("~"):
        raise DeployRequestInvalid(field, "must be a relative path inside the project (forward slashes)")
    if ".." in path.parts:
        raise DeployRequestInvalid(field, "must not leave its folder ('..')")


def _ref(field: str, value: str) -> None:
    _text(field, value, max_chars=255)
    if value.startswith(("-", "/")) or value.endswith(("/", ".", ".lock")) or _REF_FORBIDDEN.search(value):
        raise DeployRequestInvalid(field, "is not a valid branch, tag or commit name")


def _check_build_options(options: Any) -> None:
    """The overrides a request and a site binding share."""
    if options.package_manager is not None and options.package_manager not in PACKAGE_MANAGERS:
        raise DeployRequestInvalid("package_manager", f"must be one of {', '.join(PACKAGE_MANAGERS)}")
    if options.build_command is not None:
        _text("build_command", options.build_command, max_chars=2000)
    if options.output_dir is not None:
        _relative("output_dir", options.output_dir, max_chars=255)
    if options.verify_path is not None:
        _text("verify_path", options.verify_path, max_chars=1024)
        if not options.verify_path.startswith("/") or options.verify_path.startswith("//"):
            raise DeployRequestInvalid("verify_path", "must start with a single '/' (a path on the site)")
        if " " in options.verify_path:
            raise DeployRequestInvalid("verify_path", "must not contain spaces (encode them as %20)")
    if options.verify_text is not None:
        _text("verify_text", options.verify_text, max_chars=1000)


def _strings_only(obj: Any) -> None:
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if value is not None and not isinstance(value, str):
            raise DeployRequestInvalid(field.name, "must be a string")


def _from_mapping(cls: Any, data: Any, required: tuple[str, ...], what: str) -> Any:
    if not isinstance(data, Mapping):
        raise DeployRequestInvalid("", f"{what} must be a JSON object")
    known = {field.name for field in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            raise DeployRequestInvalid(str(key), f"is not a {what} field")
    for name in required:
        if data.get(name) is None:
            raise DeployRequestInvalid(name, "is required")
    return cls(**{key: value for key, value in data.items() if value is not None})


@dataclass(frozen=True)
class SiteBinding:
    """Continuous deployment: a push to ``branch`` of the connected repository that changes
    ``folder`` (anything, when None) deploys that folder of the pushed commit."""

    branch: str
    folder: str | None = None
    package_manager: str | None = None
    build_command: str | None = None
    output_dir: str | None = None
    verify_path: str | None = None
    verify_text: str | None = None

    def __post_init__(self) -> None:
        _strings_only(self)
        _ref("branch", self.branch)
        if self.folder is not None:
            _relative("folder", self.folder)
        _check_build_options(self)

    def watches(self, changed: list[str]) -> bool:
        """Whether a push that changed these paths concerns the bound folder."""
        if self.folder is None:
            return True
        prefix = self.folder.strip("/") + "/"
        return any(path == prefix[:-1] or path.startswith(prefix) for path in changed)

    def request(
        self, site: str, *, repository: str, commit: str, delivery_id: str, requested_by: str
    ) -> DeploymentRequest:
        options = {k: v for k, v in dataclasses.asdict(self).items() if k != "branch"}
        return DeploymentRequest(
            site=site,
            source="git",
            repository=repository,
            ref=commit,
            trigger="push",
            delivery_id=delivery_id,
            requested_by=requested_by,
            **options,
        )

    def to_json(self) -> dict[str, Any]:
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}

    @classmethod
    def from_json(cls, data: Any) -> SiteBinding:
        return _from_mapping(cls, data, ("branch",), "site binding")


@dataclass(frozen=True)
class DeploymentRequest:
    """What to deploy and how, as the API, a push or a retry asks for it. Checked on creation:
    an invalid request cannot exist (:class:`DeployRequestInvalid` names the field)."""

    site: str
    source: str  # "git" | "workspace"
    requested_by: str
    repository: str | None = None  # git: the repository URL
    ref: str | None = None  # git: branch, tag or commit; None = the default branch
    # workspace: the folder, relative to the workspace; git: the project's folder in the
    # repository (None = its root)
    folder: str | None = None
    package_manager: str | None = None
    build_command: str | None = None
    output_dir: str | None = None
    verify_path: str | None = None
    verify_text: str | None = None
    trigger: str = "manual"  # "manual" | "push" | "retry" | "rollback"
    delivery_id: str | None = None  # the webhook delivery that asked, for a push
    rollback_to: str | None = None  # rollback: the deployment whose artifact is republished

    def __post_init__(self) -> None:
        _strings_only(self)
        if not valid_site_name(self.site):
            raise DeployRequestInvalid(
                "site",
                "must be 2-40 lowercase letters, digits and hyphens, not starting or ending with a hyphen",
            )
        if self.source not in SOURCES:
            raise DeployRequestInvalid("source", f"must be one of {', '.join(SOURCES)}")
        if self.source == "git":
            if self.repository is None:
                raise DeployRequestInvalid("repository", "is required for a git source")
            _text("repository", self.repository, max_chars=2048)
            if not _URL.match(self.repository):
                raise DeployRequestInvalid(
                    "repository",
                    "must be an https://, http://, ssh://, git:// or file:// URL, or user@host:path",
                )
            if self.ref is not None:
                _ref("ref", self.ref)
            if self.folder is not None:
                _relative("folder", self.folder)
        else:
            if self.folder is None:
                raise DeployRequestInvalid("folder", "is required for a workspace source")
            _relative("folder", self.folder)
            for field_name in ("repository", "ref"):
                if getattr(self, field_name) is not None:
                    raise DeployRequestInvalid(field_name, "is only for a git source")
        _check_build_options(self)
        if self.trigger not in TRIGGERS:
            raise DeployRequestInvalid("trigger", f"must be one of {', '.join(TRIGGERS)}")
        if self.delivery_id is not None:
            _text("delivery_id", self.delivery_id, max_chars=200)
        _text("requested_by", self.requested_by, max_chars=256)
        if self.trigger == "rollback":
            if self.rollback_to is None:
                raise DeployRequestInvalid("rollback_to", "is required for a rollback")
            match = DEPLOYMENT_ID_PATTERN.match(self.rollback_to)
            if match is None or match.group(3) != self.site:
                raise DeployRequestInvalid("rollback_to", f"must be the id of a deployment of {self.site}")
        elif self.rollback_to is not None:
            raise DeployRequestInvalid("rollback_to", "is only for a rollback")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the stored request, a queue message), without unset fields."""
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}

    @classmethod
    def from_json(cls, data: Any) -> DeploymentRequest:
        return _from_mapping(cls, data, ("site", "source", "requested_by"), "deployment request")

    def as_retry(self, *, requested_by: str) -> DeploymentRequest:
        """The same inputs again, asked for by ``requested_by``."""
        return dataclasses.replace(self, trigger="retry", delivery_id=None, requested_by=requested_by)

    def as_rollback(self, deployment_id: str, *, requested_by: str) -> DeploymentRequest:
        """A deployment that republishes ``deployment_id``'s artifact (no build)."""
        return dataclasses.replace(
            self, trigger="rollback", rollback_to=deployment_id, delivery_id=None, requested_by=requested_by
        )


# -------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Artifact:
    """A packaged build: the blob it is stored in, the zip's SHA-256 and its content address."""

    blob_name: str
    sha256: str
    content_sha256: str

    def __post_init__(self) -> None:
        if not self.blob_name or len(self.blob_name) > 1024:
            raise ValueError("an artifact needs a blob name of at most 1024 characters")
        for name in ("sha256", "content_sha256"):
            if not _SHA256.match(getattr(self, name)):
                raise ValueError(f"artifact {name} must be 64 lowercase hex digits")

    def to_json(self) -> dict[str, str]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Artifact:
        return cls(data["blob_name"], data["sha256"], data["content_sha256"])


def _artifact(raw: str | None) -> Artifact | None:
    return Artifact.from_json(json.loads(raw)) if raw else None


@dataclass(frozen=True)
class DeploymentRecord:
    id: str
    site: str
    status: str
    request: DeploymentRequest
    timestamps: dict[str, str]  # "queued_at", "building_at", ..., "finished_at"
    commit_sha: str | None = None
    artifact: Artifact | None = None
    error: str | None = None
    step: str | None = None
    superseded_by: str | None = None
    step_marks: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in FINAL

    @property
    def steps(self) -> list[dict[str, Any]]:
        """Every step the deployment shows, in order, with its status: ``pending`` until it
        starts, ``skipped`` when a later one started (or the deployment ended) without it."""
        names = STEPS[-3:-1] if self.request.trigger == "rollback" else STEPS[:-1]
        if "rollback" in self.step_marks:
            names = (*names, "rollback")
        view: list[dict[str, Any]] = []
        later_started = self.finished
        for name in reversed(names):
            mark = self.step_marks.get(name)
            if mark is None:
                status = "skipped" if later_started else "pending"
                view.append(
                    {
                        "name": name,
                        "status": status,
                        "started_at": None,
                        "finished_at": None,
                        "duration_ms": None,
                    }
                )
                continue
            later_started = True
            # A step still running when the deployment finished was closed with it (_close_steps).
            status = mark["status"]
            view.append(
                {
                    "name": name,
                    "status": status,
                    "started_at": mark.get("started_at"),
                    "finished_at": mark.get("finished_at"),
                    "duration_ms": _ms_between(mark.get("started_at"), mark.get("finished_at")),
                }
            )
        return view[::-1]

    @property
    def durations_ms(self) -> dict[str, int | None]:
        """Time spent in each phase reached: up to the next phase reached, or to the end. A phase
        still going is None."""
        reached = [phase for phase in PHASES if f"{phase}_at" in self.timestamps]
        durations: dict[str, int | None] = {}
        for index, phase in enumerate(reached):
            following = reached[index + 1] if index + 1 < len(reached) else None
            end = self.timestamps.get(f"{following}_at") if following else self.timestamps.get("finished_at")
            durations[phase] = _ms_between(self.timestamps[f"{phase}_at"], end)
        return durations

    @property
    def total_ms(self) -> int | None:
        """From the request to the end (waiting included)."""
        return _ms_between(self.timestamps.get("queued_at"), self.timestamps.get("finished_at"))

    @property
    def run_ms(self) -> int | None:
        """From leaving the queue to the end: what an ETA for the next one is based on."""
        started = self.timestamps.get("building_at") or self.timestamps.get("publishing_at")
        return _ms_between(started, self.timestamps.get("finished_at"))

    def to_json(self) -> dict[str, Any]:
        """As the API shows it in a site's history."""
        return {
            "id": self.id,
            "site": self.site,
            "status": self.status,
            "trigger": self.request.trigger,
            "requested_by": self.request.requested_by,
            "request": self.request.to_json(),
            "commit_sha": self.commit_sha,
            "artifact": self.artifact.to_json() if self.artifact else None,
            "error": self.error,
            "step": self.step,
            "superseded_by": self.superseded_by,
            "delivery_id": self.request.delivery_id,
            **self.timestamps,
            "durations_ms": self.durations_ms,
            "total_ms": self.total_ms,
            "steps": self.steps,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> DeploymentRecord:
        stamps = [*(f"{phase}_at" for phase in PHASES), "finished_at"]
        return cls(
            id=row["deployment_id"],
            site=row["PartitionKey"],
            status=row["status"],
            request=DeploymentRequest.from_json(json.loads(row["request"])),
            timestamps={name: row[name] for name in stamps if row.get(name)},
            commit_sha=row.get("commit_sha"),
            artifact=_artifact(row.get("artifact")),
            error=row.get("error"),
            step=row.get("step"),
            superseded_by=row.get("superseded_by"),
            step_marks=json.loads(row["steps"]) if row.get("steps") else {},
        )


@dataclass(frozen=True)
class SiteRecord:
    site: str
    state: str
    live_deployment_id: str | None
    live_artifact: Artifact | None
    live_since: str | None
    publisher: str | None  # the deployment holding the publish lease, if any (may be expired)
    publish_expires_at: str | None
    updated_at: str | None
    live_url: str | None = None
    live_commit_sha: str | None = None
    binding: SiteBinding | None = None

    def to_json(self) -> dict[str, Any]:
        view = dataclasses.asdict(self)
        view["live_artifact"] = self.live_artifact.to_json() if self.live_artifact else None
        view["binding"] = self.binding.to_json() if self.binding else None
        return view

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> SiteRecord:
        return cls(
            site=row["RowKey"],
            state=row.get("state", UNDEPLOYED),
            live_deployment_id=row.get("live_deployment_id"),
            live_artifact=_artifact(row.get("live_artifact")),
            live_since=row.get("live_since"),
            publisher=row.get("publisher"),
            publish_expires_at=row.get("publish_expires_at"),
            updated_at=row.get("updated_at"),
            live_url=row.get("live_url"),
            live_commit_sha=row.get("live_commit_sha"),
            binding=SiteBinding.from_json(json.loads(row["binding"])) if row.get("binding") else None,
        )


# ---------------------------------------------------------------------------- store


def _either(field: str, values: tuple[str, ...], prefix: str = "s") -> tuple[str, dict[str, str]]:
    # Spaces around parameters: the SDK finds them by splitting the filter on spaces.
    clause = "( " + " or ".join(f"{field} eq @{prefix}{i}" for i in range(len(values))) + " )"
    return clause, {f"{prefix}{i}": value for i, value in enumerate(values)}


class DeploymentStore:
    """Deployments (``SlipwayDeployments``) and sites (``SlipwaySites``). ``clock`` gives
    seconds since the epoch (ids, timestamps and lease expiry all use it)."""

    def __init__(self, tables: TableStore, *, clock: Callable[[], float] = time.time) -> None:
        self._tables = tables
        self._clock = clock

    # ----------------------------------------------------------------- deployments

    def create(self, request: DeploymentRequest) -> DeploymentRecord:
        """Queue a deployment, supersede the site's queued older ones, and return it (already
        ``superseded`` in the rare case a newer request landed first)."""
        now = self._clock()
        row: dict[str, Any] = {}
        for _ in range(5):
            deployment_id = new_deployment_id(request.site, now=now)
            row_key, _site = _parse_id(deployment_id)
            row = {
                "PartitionKey": request.site,
                "RowKey": row_key,
                "deployment_id": deployment_id,
                "status": QUEUED,
                "trigger": request.trigger,
                "requested_by": request.requested_by,
                "request": json.dumps(request.to_json()),
                "queued_at": _iso(now),
                "delivery_id": request.delivery_id,
            }
            row = {key: value for key, value in row.items() if value is not None}
            if self._tables.create_entity(DEPLOYMENTS_TABLE, row):
                break
        else:
            raise RuntimeError("could not find a free deployment id")
        self._supersede_queued(request.site)
        self._refresh_site(request.site)
        return self.get(row["deployment_id"])

    def get(self, deployment_id: str) -> DeploymentRecord:
        row_key, site = _parse_id(deployment_id)
        row = self._tables.get_entity(DEPLOYMENTS_TABLE, site, row_key)
        if row is None:
            raise DeploymentNotFound(f"no deployment has the id {deployment_id!r}")
        return DeploymentRecord.from_row(row)

    def transition(
        self,
        deployment_id: str,
        to_status: str,
        *,
        commit_sha: str | None = None,
        artifact: Artifact | None = None,
        error: str | None = None,
        step: str | None = None,
    ) -> DeploymentRecord:
        """Move a deployment to ``to_status`` with what is known by then. Raises
        :class:`TransitionRefused` for a move :data:`TRANSITIONS` does not allow."""
        if to_status == SUPERSEDED:
            current = self.get(deployment_id).status
            raise TransitionRefused(deployment_id, current, to_status, "only a newer deployment supersedes")
        if commit_sha is not None and not _COMMIT.match(commit_sha):
            raise ValueError("commit_sha must be 7-64 lowercase hex digits")
        if step is not None and not 0 < len(step) <= 100:
            raise ValueError("step must be 1-100 characters")
        fields: dict[str, Any] = {"commit_sha": commit_sha, "step": step}
        if artifact is not None:
            fields["artifact"] = json.dumps(artifact.to_json())
        if error is not None:
            fields["error"] = error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 1] + "…"
        row = self._change(deployment_id, to_status, {k: v for k, v in fields.items() if v is not None})
        if to_status in FINAL:
            self._refresh_site(row["PartitionKey"])
        return DeploymentRecord.from_row(row)

    def history(self, site: str, *, limit: int = 50) -> list[DeploymentRecord]:
        """The site's deployments, newest first."""
        return [DeploymentRecord.from_row(row) for row in self._rows(site, limit=limit)]

    def last_good(self, site: str, *, before: str | None = None) -> DeploymentRecord | None:
        """The newest succeeded deployment with an artifact (older than ``before`` if given):
        what an automatic rollback republishes. A rollback deployment that succeeded counts, so
        this is the artifact that was live last when everything worked."""
        query, parameters = "status eq @good", {"good": SUCCEEDED}
        if before is not None:
            row_key, before_site = _parse_id(before)
            if before_site != site:
                raise DeploymentNotFound(f"deployment {before} is not one of {site}")
            query += " and RowKey gt @before"
            parameters["before"] = row_key
        for row in self._rows(site, query, parameters):
            if row.get("artifact"):
                return DeploymentRecord.from_row(row)
        return None

    def recent_durations(self, site: str, n: int = 5) -> list[int]:
        """How long the site's last ``n`` succeeded deployments ran (queue wait excluded), newest
        first, in milliseconds."""
        found: list[int] = []
        for row in self._rows(site, "status eq @good", {"good": SUCCEEDED}, limit=n):
            run_ms = DeploymentRecord.from_row(row).run_ms
            if run_ms is not None:
                found.append(run_ms)
        return found

    def mark_step(self, deployment_id: str, name: str, status: str) -> bool:
        """Record that a step started (``running``) or ended; False (nothing written) once the
        deployment has finished, so a build that outlives its cancel cannot rewrite its steps."""
        if name not in STEPS or status not in STEP_STATUSES:
            raise ValueError(f"unknown step {name!r} or step status {status!r}")
        row_key, site = _parse_id(deployment_id)

        def mark(row: dict[str, Any]) -> dict[str, Any] | None:
            if row["status"] in FINAL:
                return None
            steps = json.loads(row.get("steps") or "{}")
            now = _iso(self._clock())
            if status == "running":
                steps[name] = {"status": status, "started_at": now}
            else:
                steps[name] = {"started_at": now, **steps.get(name, {}), "status": status, "finished_at": now}
            row.update(steps=json.dumps(steps), step=name)
            return row

        try:
            return self._tables.update_entity_with(DEPLOYMENTS_TABLE, site, row_key, mark) is not None
        except EntityNotFound:
            raise DeploymentNotFound(f"no deployment has the id {deployment_id!r}") from None

    def by_delivery(self, site: str, delivery_id: str) -> DeploymentRecord | None:
        """The site's deployment a webhook delivery started, if any."""
        row = next(self._rows(site, "delivery_id eq @delivery", {"delivery": delivery_id}, limit=1), None)
        return DeploymentRecord.from_row(row) if row is not None else None

    def recent(self, *, limit: int = 50) -> list[DeploymentRecord]:
        """The newest deployments of every site, newest first."""
        found: list[DeploymentRecord] = []
        for site in self.list_sites():
            found.extend(self.history(site.site, limit=limit))
        found.sort(key=lambda record: _parse_id(record.id)[0])
        return found[:limit]

    def unfinished(self) -> list[DeploymentRecord]:
        """Every deployment not yet finished, of every site (what a reaper looks at)."""
        query, parameters = _either("status", PHASES)
        rows = self._tables.query_entities(DEPLOYMENTS_TABLE, query, parameters=parameters)
        return [DeploymentRecord.from_row(row) for row in rows]

    def running(self) -> list[DeploymentRecord]:
        """Deployments that left the queue and have not finished, of every site."""
        query, parameters = _either("status", (BUILDING, PUBLISHING, VERIFYING))
        rows = self._tables.query_entities(DEPLOYMENTS_TABLE, query, parameters=parameters)
        return [DeploymentRecord.from_row(row) for row in rows]

    def oldest_unfinished(self, site: str) -> DeploymentRecord | None:
        """The site's oldest deployment that has not finished: the one allowed to go next."""
        query, parameters = _either("status", PHASES)
        rows = list(self._rows(site, query, parameters))
        return DeploymentRecord.from_row(rows[-1]) if rows else None

    # ----------------------------------------------------------------------- sites

    def set_binding(self, site: str, binding: SiteBinding | None) -> SiteRecord:
        """Bind the site to a branch of the connected repository (None: unbind)."""
        _check_site(site)

        def bind(row: dict[str, Any]) -> dict[str, Any]:
            row["binding"] = json.dumps(binding.to_json()) if binding is not None else None
            return row

        self._update_site(site, bind)
        return self.get_site(site)

    def get_site(self, site: str) -> SiteRecord:
        _check_site(site)
        row = self._tables.get_entity(SITES_TABLE, SITE_PARTITION, site)
        if row is None:
            raise SiteNotFound(f"no deployment was ever requested for the site {site!r}")
        return SiteRecord.from_row(row)

    def list_sites(self) -> list[SiteRecord]:
        rows = self._tables.query_entities(
            SITES_TABLE, "PartitionKey eq @pk", parameters={"pk": SITE_PARTITION}
        )
        return [SiteRecord.from_row(row) for row in rows]

    def acquire_publish(self, site: str, deployment_id: str, *, ttl_seconds: float) -> bool:
        """Take (or renew) the site's publish lease for ``ttl_seconds``. False while another
        deployment holds an unexpired one; an expired one is taken over."""
        self._check_owner(site, deployment_id)

        def take(row: dict[str, Any]) -> dict[str, Any] | None:
            holder, expires = row.get("publisher"), row.get("publish_expires_at")
            now = self._clock()
            if holder and holder != deployment_id and expires and _seconds(expires) > now:
                return None
            row.update(publisher=deployment_id, publish_expires_at=_iso(now + ttl_seconds))
            return row

        return self._update_site(site, take) is not None

    def release_publish(self, site: str, deployment_id: str) -> bool:
        """Give the lease back; False (and nothing changes) when ``deployment_id`` does not hold it."""
        self._check_owner(site, deployment_id)

        def release(row: dict[str, Any]) -> dict[str, Any] | None:
            if row.get("publisher") != deployment_id:
                return None
            row.update(publisher=None, publish_expires_at=None)
            return row

        return self._update_site(site, release) is not None

    def set_live(
        self,
        site: str,
        deployment_id: str,
        artifact: Artifact,
        *,
        publisher: str | None = None,
        url: str | None = None,
        commit_sha: str | None = None,
    ) -> SiteRecord:
        """Record that the site now serves ``artifact`` of ``deployment_id``. ``publisher`` (the
        deployment that published it; ``deployment_id`` unless an automatic rollback republished
        an older one's artifact) must hold the publish lease, else :class:`PublishLeaseLost`."""
        self._check_owner(site, deployment_id)
        holder = publisher or deployment_id
        self._check_owner(site, holder)
        refused: list[str | None] = []

        def go_live(row: dict[str, Any]) -> dict[str, Any] | None:
            if row.get("publisher") != holder:
                refused.append(row.get("publisher"))
                return None
            row.update(
                live_deployment_id=deployment_id,
                live_artifact=json.dumps(artifact.to_json()),
                live_since=_iso(self._clock()),
                live_url=url,
                live_commit_sha=commit_sha,
            )
            return row

        if self._update_site(site, go_live) is None:
            raise PublishLeaseLost(
                f"deployment {holder} does not hold the publish lease of {site} (held by {refused[-1]})"
            )
        self._refresh_site(site)
        return self.get_site(site)

    # ------------------------------------------------------------------- internals

    def _rows(
        self,
        site: str,
        query: str = "",
        parameters: Mapping[str, Any] | None = None,
        *,
        limit: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        _check_site(site)
        full = "PartitionKey eq @pk" + (f" and {query}" if query else "")
        found = self._tables.query_entities(
            DEPLOYMENTS_TABLE, full, parameters={"pk": site, **(parameters or {})}, page_size=limit
        )
        for count, row in enumerate(found, start=1):
            yield row
            if limit is not None and count >= limit:
                return

    def _change(
        self, deployment_id: str, to_status: str, fields: Mapping[str, Any], *, only_from: str | None = None
    ) -> dict[str, Any]:
        """Conditionally move the row to ``to_status`` (see the module docstring for the rules)."""
        row_key, site = _parse_id(deployment_id)
        if to_status not in TRANSITIONS:
            raise ValueError(f"unknown deployment status {to_status!r}")
        unchanged: dict[str, Any] = {}

        def move(row: dict[str, Any]) -> dict[str, Any] | None:
            current = row["status"]
            if (only_from is not None and current != only_from) or (
                current == to_status and current in FINAL
            ):
                unchanged.update(row)  # not ours to move, or a replayed final write
                return None
            if current != to_status and to_status not in TRANSITIONS[current]:
                reason = "it has finished" if current in FINAL else ""
                raise TransitionRefused(deployment_id, current, to_status, reason)
            if to_status == PUBLISHING and not (fields.get("artifact") or row.get("artifact")):
                raise TransitionRefused(deployment_id, current, to_status, "publishing needs an artifact")
            row.update(fields)
            if to_status in FINAL and row.get("steps"):
                row["steps"] = _close_steps(row["steps"], to_status, _iso(self._clock()))
            if current != to_status:
                row["status"] = to_status
                row["finished_at" if to_status in FINAL else f"{to_status}_at"] = _iso(self._clock())
            return row

        try:
            written = self._tables.update_entity_with(DEPLOYMENTS_TABLE, site, row_key, move)
        except EntityNotFound:
            raise DeploymentNotFound(f"no deployment has the id {deployment_id!r}") from None
        return written if written is not None else unchanged

    def _supersede_queued(self, site: str) -> None:
        # The newest *unfinished* deployment supersedes: a request that lands just after (or,
        # with a worker's clock slightly behind, just "before") a finished one is not dropped.
        unfinished, parameters = _either("status", PHASES)
        newest = next(self._rows(site, unfinished, parameters, limit=1), None)
        if newest is None:
            return
        older_queued = self._rows(
            site, "status eq @queued and RowKey gt @newest", {"queued": QUEUED, "newest": newest["RowKey"]}
        )
        for row in list(older_queued):
            self._change(
                row["deployment_id"],
                SUPERSEDED,
                {"superseded_by": newest["deployment_id"]},
                only_from=QUEUED,
            )

    def _state(self, site: str, live: bool) -> str:
        unfinished, parameters = _either("status", PHASES)
        if next(self._rows(site, unfinished, parameters, limit=1), None) is not None:
            return DEPLOYING
        outcomes, parameters = _either("status", OUTCOMES)
        newest = next(self._rows(site, outcomes, parameters, limit=1), None)
        if newest is None:
            return DEPLOYED if live else UNDEPLOYED
        return DEPLOYED if newest["status"] == SUCCEEDED else DEPLOYMENT_FAILED

    def _refresh_site(self, site: str) -> None:
        # The site row's ETag is read before the deployments are, so a state computed from an
        # older look at the deployments cannot overwrite one computed from a newer look.
        def restate(row: dict[str, Any]) -> dict[str, Any] | None:
            state = self._state(site, bool(row.get("live_deployment_id")))
            if row.get("state") == state:
                return None
            row["state"] = state
            return row

        self._update_site(site, restate)

    def _update_site(
        self, site: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> dict[str, Any] | None:
        """Apply ``change`` to the site row (created UNDEPLOYED when missing) until it lands;
        None when ``change`` left it alone."""

        def stamped(row: dict[str, Any]) -> dict[str, Any] | None:
            updated = change(row)
            if updated is None:
                return None
            updated["updated_at"] = _iso(self._clock())
            # Table storage cannot store None: a property set to None is dropped from the row.
            return {key: value for key, value in updated.items() if value is not None}

        for _ in range(2):
            try:
                return self._tables.update_entity_with(SITES_TABLE, SITE_PARTITION, site, stamped)
            except EntityNotFound:
                self._tables.create_entity(
                    SITES_TABLE, {"PartitionKey": SITE_PARTITION, "RowKey": site, "state": UNDEPLOYED}
                )
        raise RuntimeError(f"site {site} kept disappearing while it was updated")

    @staticmethod
    def _check_owner(site: str, deployment_id: str) -> None:
        _check_site(site)
        if deployment_site(deployment_id) != site:
            raise DeploymentNotFound(f"deployment {deployment_id} is not one of {site}")


def _close_steps(raw: str, final: str, now: str) -> str:
    """A finished deployment's running step ends with it (canceled, or failed)."""
    steps = json.loads(raw)
    for mark in steps.values():
        if mark.get("status") == "running":
            mark.update(status="canceled" if final in (CANCELED, SUPERSEDED) else "failed", finished_at=now)
    return json.dumps(steps)


def _check_site(site: str) -> None:
    if not valid_site_name(site):
        raise DeployRequestInvalid("site", "must be 2-40 lowercase letters, digits and hyphens")
