"""The deploy pipeline's steps, one method per orchestration activity.

Every method takes a deployment id (and a few small values) and returns a small JSON-ready dict,
so nothing big enters an orchestration history: sources and builds live in a folder of the
worker's local disk for the length of one activity, packages in Blob storage, statuses and
step progress in the :class:`DeploymentStore`. Methods can be repeated (an activity retried or
delivered twice): each starts from a fresh folder and writes only what its status allows, and a
deployment that finished (canceled, superseded) is never moved again.

* ``start`` lets a deployment leave the queue when it is its site's oldest unfinished one and a
  build slot is free (``{"wait": why}`` otherwise);
* ``build`` is checkout, detect, install, test, build and package in one activity (they share
  a local folder, and an activity may run on any worker), ending with the artifact uploaded as
  ``<site>/<sha256>.zip``;
* ``publish`` republishes that zip (a rollback deployment: the chosen earlier one) under the
  site's publish lease and records it live; ``verify`` reads the site's deploy file (and the
  configured check) over HTTP; ``rollback`` republishes the last good artifact;
* ``finish`` writes the final status, gives the build slot back and deletes artifacts beyond
  the kept history.
"""

from __future__ import annotations

import json
import shutil
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from slipway.adapters.blobs import BlobStore
from slipway.adapters.staticwebapps import Publisher, PublishTimedOut, StaticWebAppsError
from slipway.deploy.build import BuildDeadline, BuildFailed, BuildLimits, run_build
from slipway.deploy.cache import DependencyCache
from slipway.deploy.detect import DetectError, detect_build
from slipway.deploy.errors import DeploymentNotFound, TransitionRefused
from slipway.deploy.package import DEPLOY_FILE, PackageError, create_package
from slipway.deploy.records import (
    BUILDING,
    CANCELED,
    FAILED,
    FINAL,
    PUBLISHING,
    QUEUED,
    ROLLED_BACK,
    SUCCEEDED,
    TRANSITIONS,
    VERIFYING,
    Artifact,
    DeploymentRecord,
    DeploymentStore,
    deployment_site,
)
from slipway.deploy.slots import BuildSlots
from slipway.gitsync.mirror import Git
from slipway.hostlimits import HostLimits
from slipway.names import ARTIFACTS_CONTAINER

__all__ = ["ARTIFACTS_CONTAINER", "DeployLog", "DeployPipeline", "HttpGet", "SourceRejected"]

HttpGet = Callable[[str, float], tuple[int, str]]  # (url, timeout) -> (status, body)
# (deployment id, step, stream, text): stream is "stdout", "stderr" or "system".
DeployLog = Callable[[str, str, str, str], None]
_GIT_TIMEOUT = 300.0
_SKIPPED_IN_WORKSPACE = shutil.ignore_patterns(".git", "node_modules")
_STOP_CHECK_SECONDS = 1.0
_STREAMS = {"stdout": "stdout", "stderr": "stderr"}
# A queued deployment may wait this long for its orchestration to appear before it is failed.
START_GRACE = timedelta(minutes=10)


class SourceRejected(Exception):
    """The source cannot be fetched as asked (a folder outside the workspace, a missing ref)."""


class _Stopped(Exception):
    """The deployment finished (canceled) while a step ran."""


def _http_get(url: str, timeout: float) -> tuple[int, str]:
    response = httpx.get(url, timeout=timeout, follow_redirects=True, headers={"Cache-Control": "no-cache"})
    return response.status_code, response.text


def _memory_log() -> tuple[dict[str, list[str]], DeployLog]:
    kept: dict[str, list[str]] = {}
    return kept, lambda deployment_id, _step, _stream, text: kept.setdefault(deployment_id, []).append(text)


class DeployPipeline:
    """The steps of one deployment. ``log`` receives every line (by default they are kept in
    :attr:`logs`, in memory); ``flush(deployment_id)`` makes them durable before a status that
    readers take as "the log is complete" is written."""

    def __init__(
        self,
        store: DeploymentStore,
        blobs: BlobStore,
        publisher: Publisher | None,
        work_root: Path,
        cache: DependencyCache | None,
        *,
        workspace_root: Path,
        limits: BuildLimits | None = None,
        verify_timeout: float = 120.0,
        verify_interval: float = 2.0,
        publish_timeout: float = 600.0,
        http_get: HttpGet = _http_get,
        log: DeployLog | None = None,
        flush: Callable[[str], None] | None = None,
        slots: BuildSlots | None = None,
        git_token: Callable[[str], str | None] | None = None,
        keep_artifacts: int = 10,
        host_limits: HostLimits | None = None,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.publisher = publisher
        self.work_root = Path(work_root)
        self.cache = cache
        self.workspace_root = Path(workspace_root)
        self.limits = limits or BuildLimits()
        self.verify_timeout = verify_timeout
        self.verify_interval = verify_interval
        self.publish_timeout = publish_timeout
        self.http_get = http_get
        self.logs, default_log = _memory_log()
        self._log = log or default_log
        self._flush = flush or (lambda _deployment_id: None)
        self.slots = slots
        self._git_token = git_token or (lambda _repository: None)
        self.keep_artifacts = keep_artifacts
        self.host_limits = host_limits or HostLimits()

    # ------------------------------------------------------------------------ steps

    def start(self, deployment_id: str) -> dict[str, Any]:
        """``{"ok": True, "build": bool}`` when the deployment may leave the queue now;
        ``{"wait": why}`` while an older deployment of its site runs or every build slot is
        taken; ``{"finished": status}`` when it ended while queued (superseded, canceled)."""
        record = self.store.get(deployment_id)
        if record.finished:
            return {"finished": record.status}
        build = record.request.trigger != "rollback"
        if record.status != "queued":
            return {"ok": True, "build": build}  # a repeated start: it left the queue already
        oldest = self.store.oldest_unfinished(record.site)
        if oldest is not None and oldest.id != deployment_id:
            return {"wait": f"deployment {oldest.id} of {record.site} is {oldest.status}"}
        # A rollback only republishes: it needs no build slot.
        if build and self.slots is not None and not self.slots.acquire(deployment_id):
            return {"wait": f"all {self.slots.size} build slot(s) are busy"}
        return {"ok": True, "build": build}

    def build(self, deployment_id: str) -> dict[str, Any]:
        """Checkout, detect, install, test, build and package; a failure fails the deployment.

        All of it is one activity, so it must end within the host's functionTimeout: a phase
        gets at most the time left of that (see ``slipway.hostlimits``)."""
        limit = self.host_limits.step_seconds
        deadline = BuildDeadline(time.monotonic() + limit, f"{limit:g} s, {self.host_limits.explain()}")
        record = self.store.get(deployment_id)
        if record.finished:
            return {"ok": False, "error": f"the deployment is {record.status}"}
        folder = self._fresh(deployment_id, "")
        try:
            self.store.transition(deployment_id, BUILDING, step="checkout")
            with self._step(deployment_id, "checkout"):
                source, commit = self._checkout(record, folder)
            if commit is not None:
                self.store.transition(deployment_id, BUILDING, commit_sha=commit)
            with self._step(deployment_id, "detect"):
                plan = detect_build(
                    source,
                    package_manager=record.request.package_manager,
                    build_command=record.request.build_command,
                    output_dir=record.request.output_dir,
                )
                self._say(deployment_id, "detect", _describe(plan))
            result = self._run_build(deployment_id, plan, folder / "scratch", deadline)
            with self._step(deployment_id, "package"):
                artifact = self._package(deployment_id, record, result.output_dir, folder, commit)
            self.store.transition(deployment_id, BUILDING, artifact=artifact, step="package")
            return {"ok": True, "blob_name": artifact.blob_name}
        except _Stopped:
            return {"ok": False, "error": "the deployment was canceled"}
        except SourceRejected as exc:
            return self._fail(deployment_id, "checkout", str(exc))
        except DetectError as exc:
            return self._fail(deployment_id, "detect", _project_relative(str(exc), folder))
        except BuildFailed as exc:
            if exc.reason == "canceled":
                return {"ok": False, "error": "the deployment was canceled"}
            tail = f"\n{exc.output_tail}" if exc.output_tail else ""
            return self._fail(deployment_id, exc.phase, f"{exc}{tail}", logged=True)
        except PackageError as exc:
            return self._fail(deployment_id, "package", _project_relative(str(exc), folder))
        except TransitionRefused as exc:
            return {"ok": False, "error": str(exc)}  # it finished (canceled) meanwhile
        finally:
            self._flush(deployment_id)
            shutil.rmtree(folder, ignore_errors=True)

    def publish(self, deployment_id: str) -> dict[str, Any]:
        """Publish the deployment's artifact (a rollback deployment: the artifact of the one it
        names) under the site's lease and record it live; the deployment moves to
        ``verifying``. ``retry`` when another deployment holds the lease."""
        record = self.store.get(deployment_id)
        if record.finished:
            return {"ok": False, "error": f"the deployment is {record.status}"}
        try:
            artifact = record.artifact or self._rollback_artifact(record)
        except DeploymentNotFound as exc:
            return self._fail(deployment_id, "publish", str(exc))
        if artifact is None:
            return self._fail(deployment_id, "publish", "there is no artifact to publish")
        self.store.transition(deployment_id, PUBLISHING, artifact=artifact, step="publish")
        self.store.mark_step(deployment_id, "publish", "running")
        published = self._republish(record, artifact, deployment_id)
        if published.get("ok"):
            self.store.mark_step(deployment_id, "publish", "succeeded")
            self.store.transition(deployment_id, VERIFYING, step="verify")
        elif not published.get("retry"):
            self.store.mark_step(deployment_id, "publish", "failed")
        self._flush(deployment_id)
        return published

    def verify(self, deployment_id: str, url: str) -> dict[str, Any]:
        """Read ``<url>/.well-known/slipway-deploy.json`` until it names the deployment whose
        artifact was published, then the request's ``verify_path`` (and ``verify_text``), until
        ``verify_timeout``."""
        record = self.store.get(deployment_id)
        if record.finished:
            return {"ok": False, "error": f"the deployment is {record.status}"}
        request = record.request
        expected = request.rollback_to if request.trigger == "rollback" else deployment_id
        base = url.rstrip("/")
        deadline = time.monotonic() + self.verify_timeout
        checks = [("deploy file", f"{base}/{DEPLOY_FILE}", expected, None)]
        if request.verify_path or request.verify_text:
            checks.append(("verify check", f"{base}{request.verify_path or '/'}", None, request.verify_text))
        self.store.mark_step(deployment_id, "verify", "running")
        try:
            for name, check_url, names, text in checks:
                while True:
                    problem = self._check(check_url, names, text)
                    if problem is None:
                        self._say(deployment_id, "verify", f"{name} passed: {check_url}")
                        break
                    if time.monotonic() + self.verify_interval > deadline:
                        error = f"verification failed after {self.verify_timeout:g} s: {problem}"
                        self._say(deployment_id, "verify", error)
                        self.store.mark_step(deployment_id, "verify", "failed")
                        return {"ok": False, "error": error}
                    time.sleep(self.verify_interval)
            self.store.mark_step(deployment_id, "verify", "succeeded")
            return {"ok": True}
        finally:
            self._flush(deployment_id)

    def rollback(self, deployment_id: str, reason: str) -> dict[str, Any]:
        """Republish the site's last good artifact and mark this deployment ``rolled_back``; with
        no earlier good deployment, mark it ``failed``. ``retry`` while the lease is taken."""
        record = self.store.get(deployment_id)
        if record.finished:
            return {"ok": False, "error": f"the deployment is {record.status}"}
        self.store.mark_step(deployment_id, "rollback", "running")
        previous = self.store.last_good(record.site, before=deployment_id)
        if previous is None or previous.artifact is None:
            error = f"{reason}; no earlier good deployment to roll back to"
            self._say(deployment_id, "rollback", error)
            self._flush(deployment_id)
            self.store.transition(deployment_id, FAILED, error=error, step="rollback")
            return {"ok": False, "error": error}
        self._say(deployment_id, "rollback", f"rolling back to deployment {previous.id}")
        published = self._republish(previous, previous.artifact, deployment_id)
        if not published.get("ok"):
            return published
        self.store.mark_step(deployment_id, "rollback", "succeeded")
        self._flush(deployment_id)
        error = f"{reason}; rolled back to {previous.id}"
        self.store.transition(deployment_id, ROLLED_BACK, error=error, step="rollback")
        return {"ok": True, "restored": previous.id}

    def finish(self, deployment_id: str, status: str, error: str | None = None) -> dict[str, Any]:
        """Write the final status unless one was written already (a status the current one
        cannot move to becomes ``failed``), give the build slot back, and prune old artifacts."""
        try:
            record = self.store.get(deployment_id)
            if not record.finished:
                if status not in TRANSITIONS[record.status]:
                    error = f"{status} while {record.status}" + (f": {error}" if error else "")
                    status = FAILED
                ending = {SUCCEEDED: "deployment succeeded", CANCELED: "deployment canceled"}.get(status)
                self._say(
                    deployment_id, "", ending or f"deployment {status}" + (f": {error}" if error else "")
                )
                self._flush(deployment_id)
                record = self.store.transition(deployment_id, status, error=error, step=None)
            if record.status == SUCCEEDED:
                self._prune_artifacts(record.site, deployment_id)
            return {"status": record.status, "error": record.error}
        finally:
            if self.slots is not None:
                self.slots.release(deployment_id)
            shutil.rmtree(self._folder(deployment_id), ignore_errors=True)

    def reap(self, record: DeploymentRecord, orchestration: str | None, now: datetime) -> bool:
        """Fail an unfinished deployment whose orchestration is gone (``orchestration`` is its
        runtime status, None when there is none): it ended without finishing the deployment, or
        never started though the deployment left the queue (a runner restarted, a host
        recycled), or a queued one has waited :data:`START_GRACE` for it. Whether it was failed."""
        if record.finished:
            return False
        queued_at = record.timestamps.get("queued_at")
        waited = now - datetime.fromisoformat(queued_at.replace("Z", "+00:00")) if queued_at else START_GRACE
        gone = orchestration in ("Failed", "Terminated", "Completed", "Canceled")
        missing = orchestration is None and (record.status != QUEUED or waited >= START_GRACE)
        if not (gone or missing):
            return False
        reason = (
            f"its orchestration is {orchestration.lower()}"
            if orchestration
            else "its orchestration does not exist"
        )
        self.finish(record.id, FAILED, f"the deployment was abandoned: {reason}")
        return True

    # -------------------------------------------------------------------- internals

    def _folder(self, deployment_id: str) -> Path:
        deployment_site(deployment_id)  # a well-formed id: a safe folder name
        return self.work_root / deployment_id

    def _fresh(self, deployment_id: str, name: str) -> Path:
        path = self._folder(deployment_id) / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def _say(self, deployment_id: str, step: str, text: str, stream: str = "system") -> None:
        self._log(deployment_id, step, stream, text)

    @contextmanager
    def _step(self, deployment_id: str, name: str) -> Iterator[None]:
        """Mark the step running, then succeeded; a failure is marked by :meth:`_fail`."""
        if not self.store.mark_step(deployment_id, name, "running"):
            raise _Stopped
        yield
        if not self.store.mark_step(deployment_id, name, "succeeded"):
            raise _Stopped

    def _fail(self, deployment_id: str, step: str, error: str, *, logged: bool = False) -> dict[str, Any]:
        if not logged:
            self._say(deployment_id, step, f"{step} failed: {error}")
        self.store.mark_step(deployment_id, step, "failed")
        self._flush(deployment_id)
        self.store.transition(deployment_id, FAILED, error=error, step=step)
        return {"ok": False, "error": error}

    def _stop_check(self, deployment_id: str) -> Callable[[], object]:
        """Stop the build once the deployment has finished (canceled)."""
        last = [0.0, False]

        def should_stop() -> object:
            now = time.monotonic()
            if not last[1] and now - last[0] >= _STOP_CHECK_SECONDS:
                last[0] = now
                last[1] = self.store.get(deployment_id).status in FINAL
            return last[1]

        return should_stop

    def _run_build(self, deployment_id: str, plan: Any, scratch: Path, deadline: BuildDeadline) -> Any:
        """Install, test and build, each shown as its own step."""
        current: list[str] = []

        def log(stream: str, line: str) -> None:
            step = current[-1] if current else "install"
            self._say(deployment_id, step, line, _STREAMS.get(stream, "system"))

        def on_phase(phase: str) -> None:
            if current:
                self.store.mark_step(deployment_id, current[-1], "succeeded")
            current.append(phase)
            if not self.store.mark_step(deployment_id, phase, "running"):
                raise BuildFailed(phase, f"{phase} canceled before it started", reason="canceled")

        result = run_build(
            plan,
            build_dir=scratch,
            log=log,
            should_stop=self._stop_check(deployment_id),
            cache=self.cache,
            limits=self.limits,
            on_phase=on_phase,
            deadline=deadline,
        )
        if current:
            self.store.mark_step(deployment_id, current[-1], "succeeded")
        return result

    def _checkout(self, record: DeploymentRecord, folder: Path) -> tuple[Path, str | None]:
        """The project's folder, fetched into ``folder``, and the commit (git sources)."""
        request = record.request
        source = folder / "src"
        if request.source == "workspace":
            assert request.folder is not None
            self._copy_workspace(request.folder, source)
            self._say(record.id, "checkout", f"copied workspace folder {request.folder}")
            return source, None
        assert request.repository is not None
        commit = self._clone(record.id, request.repository, request.ref, folder)
        project = source / request.folder if request.folder else source
        if not project.resolve().is_relative_to(source.resolve()) or not project.is_dir():
            raise SourceRejected(f"the repository has no folder {request.folder!r} at {commit[:12]}")
        return project, commit

    def _copy_workspace(self, folder: str, target: Path) -> None:
        root = self.workspace_root.resolve()
        source = (root / folder).resolve()
        if not source.is_relative_to(root):
            raise SourceRejected(f"the folder {folder!r} is outside the workspace")
        if not source.is_dir():
            raise SourceRejected(f"the workspace has no folder {folder!r}")
        # Links are copied as links; the package refuses one that leaves the output folder.
        shutil.copytree(source, target, symlinks=True, ignore=_SKIPPED_IN_WORKSPACE)

    def _clone(self, deployment_id: str, repository: str, ref: str | None, folder: Path) -> str:
        """A shallow clone of ``ref`` (the default branch when None) into ``folder/src``;
        returns the commit. The connected repository's token travels in git's environment."""
        git = Git(folder, token=self._git_token(repository))
        shown = git.scrub(repository)
        branch = ["--branch", ref] if ref else []
        self._say(
            deployment_id, "checkout", f"$ git clone --depth 1 {' '.join(branch)} {shown}".replace("  ", " ")
        )
        done = self._git(git, ["clone", "--quiet", "--depth", "1", *branch, "--", repository, "src"], folder)
        if done[0] != 0 and ref and all(c in "0123456789abcdef" for c in ref):
            # Not a branch or tag: a commit, fetched by itself (GitHub serves reachable commits).
            shutil.rmtree(folder / "src", ignore_errors=True)
            (folder / "src").mkdir()
            self._say(deployment_id, "checkout", f"$ git fetch --depth 1 {shown} {ref}")
            for args in (
                ["init", "--quiet"],
                ["fetch", "--quiet", "--depth", "1", "--", repository, ref],
                ["checkout", "--quiet", "--detach", "FETCH_HEAD"],
            ):
                done = self._git(git, args, folder / "src")
                if done[0] != 0:
                    break
        if done[0] != 0:
            raise SourceRejected(f"cannot fetch {ref or 'the default branch'} of {shown}: {done[1]}")
        code, commit = self._git(git, ["rev-parse", "HEAD"], folder / "src")
        if code != 0:
            raise SourceRejected(f"cannot read the commit of {shown}: {commit}")
        shutil.rmtree(folder / "src" / ".git", ignore_errors=True)  # never published with a site
        self._say(deployment_id, "checkout", f"commit {commit}")
        return commit

    @staticmethod
    def _git(git: Git, args: list[str], cwd: Path) -> tuple[int, str]:
        """(exit code, last line of stderr, or stdout), secrets scrubbed."""
        try:
            done = git.run(args, timeout=_GIT_TIMEOUT, bare=False, cwd=cwd)
        except TimeoutError as exc:
            return 1, str(exc)
        if done.returncode != 0:
            lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
            return done.returncode, git.scrub(lines[-1] if lines else f"git {args[0]} failed")
        return 0, done.stdout.decode("utf-8", "replace").strip()

    def _package(
        self, deployment_id: str, record: DeploymentRecord, output: Path, folder: Path, commit: str | None
    ) -> Artifact:
        package = create_package(
            output,
            folder / "artifact.zip",
            deployment_id=deployment_id,
            site=record.site,
            commit=commit or "",
            built_at=datetime.now(UTC),
        )
        blob_name = f"{record.site}/{package.sha256}.zip"
        self.blobs.put_if_absent(ARTIFACTS_CONTAINER, blob_name, package.path.read_bytes())
        self._say(
            deployment_id,
            "package",
            f"packaged {package.files} file(s), {package.size} bytes, as {blob_name}",
        )
        return Artifact(blob_name, package.sha256, package.content_sha256)

    def _rollback_artifact(self, record: DeploymentRecord) -> Artifact | None:
        target = record.request.rollback_to
        if record.request.trigger != "rollback" or target is None:
            return None
        source = self.store.get(target)
        if source.artifact is None:
            raise DeploymentNotFound(f"deployment {target} has no artifact to roll back to")
        return source.artifact

    def _check(self, url: str, deployment_id: str | None, text: str | None) -> str | None:
        """None when ``url`` answers as expected, else what is wrong."""
        try:
            status, body = self.http_get(url, 10.0)
        except httpx.HTTPError as exc:
            return f"GET {url}: {type(exc).__name__}: {exc}"
        if status != 200:
            return f"GET {url} answered {status}"
        if deployment_id is not None:
            try:
                named = json.loads(body).get("deployment")
            except (ValueError, AttributeError):
                return f"GET {url} is not a deploy file"
            if named != deployment_id:
                return f"GET {url} names deployment {named}, not {deployment_id}"
        if text is not None and text not in body:
            return f"GET {url} does not contain {text!r}"
        return None

    def _republish(self, owner: DeploymentRecord, artifact: Artifact, publisher_id: str) -> dict[str, Any]:
        """Publish ``artifact`` (of ``owner``) as ``publisher_id`` under the site's lease."""
        site = owner.site
        step = "rollback" if owner.id != publisher_id and owner.request.trigger != "rollback" else "publish"

        def log(line: str) -> None:
            self._say(publisher_id, step, line)

        if not self.store.acquire_publish(site, publisher_id, ttl_seconds=self.publish_timeout + 60):
            log(f"another deployment is publishing {site}; waiting")
            return {"ok": False, "retry": True}
        try:
            data = self.blobs.get(ARTIFACTS_CONTAINER, artifact.blob_name)
            if data is None:
                error = f"the artifact {artifact.blob_name} is no longer in Blob storage"
                log(error)
                return {"ok": False, "error": error}
            folder = self._fresh(publisher_id, "publish")
            archive = self._folder(publisher_id) / "publish.zip"
            archive.write_bytes(data)
            with zipfile.ZipFile(archive) as opened:
                opened.extractall(folder)
            if self.publisher is None:
                return {"ok": False, "error": "no publish target is configured"}
            try:
                result = self.publisher.publish(site, folder, log=log, timeout=self.publish_timeout)
            except PublishTimedOut:
                raise  # worth another attempt
            except StaticWebAppsError as exc:
                error = f"publish failed: {exc}"
                log(error)
                return {"ok": False, "error": error}
            self.store.set_live(
                site, owner.id, artifact, publisher=publisher_id, url=result.url, commit_sha=owner.commit_sha
            )
            log(f"{site} now serves deployment {owner.id} at {result.url}")
            return {"ok": True, "url": result.url}
        finally:
            self.store.release_publish(site, publisher_id)
            shutil.rmtree(self._folder(publisher_id), ignore_errors=True)

    def _prune_artifacts(self, site: str, deployment_id: str) -> None:
        """Delete the site's artifacts that neither the newest ``keep_artifacts`` deployments
        with one, nor the live one, nor the last good one use."""
        try:
            kept: set[str] = set()
            for record in self.store.history(site, limit=200):
                if record.artifact is not None and len(kept) < self.keep_artifacts:
                    kept.add(record.artifact.blob_name)
            live = self.store.get_site(site).live_artifact
            good = self.store.last_good(site)
            kept |= {a.blob_name for a in (live, good.artifact if good else None) if a is not None}
            removed = [
                name
                for name in self.blobs.names(ARTIFACTS_CONTAINER, f"{site}/")
                if name not in kept and self.blobs.delete(ARTIFACTS_CONTAINER, name)
            ]
            if removed:
                self._say(deployment_id, "", f"removed {len(removed)} old artifact(s) of {site}")
                self._flush(deployment_id)
        except Exception as exc:  # cleanup never fails a deployment that succeeded
            self._say(deployment_id, "", f"old artifacts were not cleaned up: {type(exc).__name__}: {exc}")


def _project_relative(message: str, folder: Path) -> str:
    """``message`` without this worker's build folder in its paths: users know their project."""
    for prefix in (folder.resolve() / "src", folder / "src"):
        message = message.replace(f"{prefix}/", "").replace(str(prefix), ".")
    return message


def _describe(plan: Any) -> str:
    if plan.kind == "static":
        return f"a static site: {plan.output_dir.name if plan.output_dir else '.'} is published as it is"
    parts = [f"package manager {plan.package_manager}"]
    if plan.lockfile:
        parts.append(f"lockfile {plan.lockfile}")
    parts.append("tests: " + ("yes" if plan.test_command else "none"))
    parts.append("build: " + ("yes" if plan.build_command else "none"))
    return "; ".join(parts)
