"""The deploy pipeline's steps, one method each: what the deployment orchestration's activities call.

Every step takes a deployment id (and a few small values) and returns a small JSON-ready dict,
so nothing big enters an orchestration history: sources, builds and packages live in
``<work_root>/<deployment id>/`` and in Blob storage, statuses in the :class:`DeploymentStore`.
Steps can be repeated (an activity retried or delivered twice): each starts from a fresh folder
and writes only what repeating a status allows.

``prepare`` fetches the source (a copy of a workspace folder, or a shallow git clone whose commit
is recorded) and moves the deployment to ``building``; ``build`` runs detect and the build;
``package`` zips the output and uploads it as ``<site>/<sha256>.zip``; ``publish`` republishes
that zip under the site's publish lease and records it live; ``verify`` reads the site's deploy
file (and the configured check) over HTTP; ``rollback`` republishes the last good artifact;
``finish`` writes the final status and deletes the work folder.

The source, build and package steps share ``<work_root>/<deployment id>/`` on the local disk,
so they must run on the same worker.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from slipway.adapters.blobs import BlobStore
from slipway.adapters.staticwebapps import Publisher, PublishTimedOut, StaticWebAppsError
from slipway.deploy.build import BuildFailed, BuildLimits, run_build
from slipway.deploy.cache import DependencyCache
from slipway.deploy.detect import DetectError, detect_build
from slipway.deploy.package import DEPLOY_FILE, PackageError, create_package
from slipway.deploy.records import (
    BUILDING,
    FAILED,
    FINAL,
    PUBLISHING,
    ROLLED_BACK,
    TRANSITIONS,
    VERIFYING,
    Artifact,
    DeploymentRecord,
    DeploymentStore,
    deployment_site,
)
from slipway.names import ARTIFACTS_CONTAINER

__all__ = ["ARTIFACTS_CONTAINER", "DeployPipeline", "HttpGet", "SourceRejected"]

HttpGet = Callable[[str, float], tuple[int, str]]  # (url, timeout) -> (status, body)
_GIT_TIMEOUT = 300.0
_OUTPUT_FILE = "output.json"  # the build's output folder, for the package step
_SKIPPED_IN_WORKSPACE = shutil.ignore_patterns(".git", "node_modules")
_STOP_CHECK_SECONDS = 2.0


class SourceRejected(Exception):
    """The source cannot be fetched as asked (a folder outside the workspace, a missing ref)."""


def _http_get(url: str, timeout: float) -> tuple[int, str]:
    response = httpx.get(url, timeout=timeout, follow_redirects=True, headers={"Cache-Control": "no-cache"})
    return response.status_code, response.text


class DeployPipeline:
    """The steps of one deployment; ``log(deployment_id, line)`` receives every log line (by
    default they are kept in :attr:`logs`, in memory)."""

    def __init__(
        self,
        store: DeploymentStore,
        blobs: BlobStore,
        publisher: Publisher,
        work_root: Path,
        cache: DependencyCache | None,
        *,
        workspace_root: Path,
        limits: BuildLimits | None = None,
        verify_timeout: float = 120.0,
        verify_interval: float = 2.0,
        publish_timeout: float = 600.0,
        http_get: HttpGet = _http_get,
        log: Callable[[str, str], None] | None = None,
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
        self.logs: dict[str, list[str]] = {}
        self._log = log or (lambda deployment_id, line: self.logs.setdefault(deployment_id, []).append(line))

    # ------------------------------------------------------------------------ steps

    def prepare(self, deployment_id: str) -> dict[str, Any]:
        """Fetch the source into a fresh folder and move the deployment to ``building``."""
        record = self.store.get(deployment_id)
        if record.finished:
            return {"ok": False, "error": f"the deployment is {record.status}"}
        source = self._fresh(deployment_id, "src")
        request = record.request
        try:
            if request.source == "workspace":
                assert request.folder is not None
                self._copy_workspace(request.folder, source)
                commit = None
            else:
                assert request.repository is not None
                commit = self._clone(request.repository, request.ref, source, deployment_id)
        except SourceRejected as exc:
            self.store.transition(deployment_id, FAILED, error=str(exc), step="prepare")
            return {"ok": False, "error": str(exc)}
        self.store.transition(deployment_id, BUILDING, commit_sha=commit, step="build")
        return {"ok": True, "commit_sha": commit}

    def build(self, deployment_id: str) -> dict[str, Any]:
        """Detect and build the prepared source; a failure fails the deployment."""
        record = self.store.get(deployment_id)
        request = record.request
        project = self._folder(deployment_id) / "src"
        log = self._logger(deployment_id)
        try:
            plan = detect_build(
                project,
                package_manager=request.package_manager,
                build_command=request.build_command,
                output_dir=request.output_dir,
            )
            result = run_build(
                plan,
                build_dir=self._fresh(deployment_id, "build"),
                log=lambda _stream, line: log(line),
                should_stop=self._stop_check(deployment_id),
                cache=self.cache,
                limits=self.limits,
            )
        except DetectError as exc:
            return self._fail(deployment_id, "detect", str(exc))
        except BuildFailed as exc:
            tail = f"\n{exc.output_tail}" if exc.output_tail else ""
            return self._fail(deployment_id, exc.phase, f"{exc}{tail}")
        output = result.output_dir.relative_to(plan.project_dir).as_posix()
        (self._folder(deployment_id) / _OUTPUT_FILE).write_text(json.dumps({"output_dir": output}))
        return {"ok": True, "output_dir": output}

    def package(self, deployment_id: str) -> dict[str, Any]:
        """Zip the build's output, upload it (write-once, content-addressed) and record it."""
        record = self.store.get(deployment_id)
        folder = self._folder(deployment_id)
        output = json.loads((folder / _OUTPUT_FILE).read_text())["output_dir"]
        try:
            package = create_package(
                folder / "src" / output,
                folder / "artifact.zip",
                deployment_id=deployment_id,
                site=record.site,
                commit=record.commit_sha or "",
                built_at=datetime.now(UTC),
            )
        except PackageError as exc:
            return self._fail(deployment_id, "package", str(exc))
        blob_name = f"{record.site}/{package.sha256}.zip"
        self.blobs.put_if_absent(ARTIFACTS_CONTAINER, blob_name, package.path.read_bytes())
        artifact = Artifact(blob_name, package.sha256, package.content_sha256)
        self.store.transition(deployment_id, BUILDING, artifact=artifact, step="publish")
        self._logger(deployment_id)(f"packaged {package.files} file(s), {package.size} bytes, as {blob_name}")
        return {"ok": True, "blob_name": blob_name}

    def publish(self, deployment_id: str) -> dict[str, Any]:
        """Publish the deployment's artifact under the site's lease and record it live; the
        deployment moves to ``verifying``. ``retry`` when another deployment holds the lease."""
        record = self.store.get(deployment_id)
        if record.finished:
            return {"ok": False, "error": f"the deployment is {record.status}"}
        assert record.artifact is not None
        self.store.transition(deployment_id, PUBLISHING, step="publish")
        published = self._republish(record, record.artifact, deployment_id)
        if published.get("ok"):
            self.store.transition(deployment_id, VERIFYING, step="verify")
        return published

    def verify(self, deployment_id: str, url: str) -> dict[str, Any]:
        """Read ``<url>/.well-known/slipway-deploy.json`` until it names this deployment, then
        the request's ``verify_path`` (and ``verify_text``), until ``verify_timeout``."""
        request = self.store.get(deployment_id).request
        log = self._logger(deployment_id)
        base = url.rstrip("/")
        deadline = time.monotonic() + self.verify_timeout
        problem = "the site was not checked"
        checks = [("deploy file", f"{base}/{DEPLOY_FILE}", None)]
        if request.verify_path or request.verify_text:
            checks.append(("verify check", f"{base}{request.verify_path or '/'}", request.verify_text))
        for name, check_url, text in checks:
            while True:
                problem = self._check(check_url, deployment_id if name == "deploy file" else None, text)
                if problem is None:
                    log(f"{name} passed: {check_url}")
                    break
                if time.monotonic() + self.verify_interval > deadline:
                    error = f"verification failed after {self.verify_timeout:g} s: {problem}"
                    log(error)
                    return {"ok": False, "error": error}
                time.sleep(self.verify_interval)
        return {"ok": True}

    def rollback(self, deployment_id: str, reason: str) -> dict[str, Any]:
        """Republish the site's last good artifact and mark this deployment ``rolled_back``; with
        no earlier good deployment, mark it ``failed``. ``retry`` while the lease is taken."""
        record = self.store.get(deployment_id)
        if record.finished:
            return {"ok": False, "error": f"the deployment is {record.status}"}
        previous = self.store.last_good(record.site, before=deployment_id)
        if previous is None or previous.artifact is None:
            error = f"{reason}; no earlier good deployment to roll back to"
            self.store.transition(deployment_id, FAILED, error=error, step="rollback")
            return {"ok": False, "error": error}
        published = self._republish(previous, previous.artifact, deployment_id)
        if not published.get("ok"):
            return published
        error = f"{reason}; rolled back to {previous.id}"
        self.store.transition(deployment_id, ROLLED_BACK, error=error, step="rollback")
        return {"ok": True, "restored": previous.id}

    def finish(self, deployment_id: str, status: str, error: str | None = None) -> dict[str, Any]:
        """Write the final status unless one was written already (a status the current one
        cannot move to becomes ``failed``, e.g. a cancel once publishing began), and delete the
        work folder."""
        try:
            record = self.store.get(deployment_id)
            if not record.finished:
                if status not in TRANSITIONS[record.status]:
                    error = f"{status} while {record.status}" + (f": {error}" if error else "")
                    status = FAILED
                record = self.store.transition(deployment_id, status, error=error, step=None)
            return {"status": record.status, "error": record.error}
        finally:
            shutil.rmtree(self._folder(deployment_id), ignore_errors=True)

    # -------------------------------------------------------------------- internals

    def _folder(self, deployment_id: str) -> Path:
        deployment_site(deployment_id)  # a well-formed id: a safe folder name
        return self.work_root / deployment_id

    def _fresh(self, deployment_id: str, name: str) -> Path:
        path = self._folder(deployment_id) / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def _logger(self, deployment_id: str) -> Callable[[str], None]:
        return lambda line: self._log(deployment_id, line)

    def _fail(self, deployment_id: str, step: str, error: str) -> dict[str, Any]:
        self._logger(deployment_id)(f"{step} failed: {error}")
        self.store.transition(deployment_id, FAILED, error=error, step=step)
        return {"ok": False, "error": error}

    def _stop_check(self, deployment_id: str) -> Callable[[], object]:
        """Stop the build once the deployment has finished (canceled by the orchestration)."""
        last = [0.0, False]

        def should_stop() -> object:
            now = time.monotonic()
            if not last[1] and now - last[0] >= _STOP_CHECK_SECONDS:
                last[0] = now
                last[1] = self.store.get(deployment_id).status in FINAL
            return last[1]

        return should_stop

    def _copy_workspace(self, folder: str, target: Path) -> None:
        root = self.workspace_root.resolve()
        source = (root / folder).resolve()
        if not source.is_relative_to(root):
            raise SourceRejected(f"the folder {folder!r} is outside the workspace")
        if not source.is_dir():
            raise SourceRejected(f"the workspace has no folder {folder!r}")
        # Links are copied as links; the package refuses one that leaves the output folder.
        shutil.copytree(source, target, symlinks=True, ignore=_SKIPPED_IN_WORKSPACE, dirs_exist_ok=True)

    def _clone(self, repository: str, ref: str | None, target: Path, deployment_id: str) -> str:
        """A shallow clone of ``ref`` (the default branch when None); returns the commit."""
        log = self._logger(deployment_id)
        branch = ["--branch", ref] if ref else []
        log(f"$ git clone --depth 1 {' '.join(branch)} {repository}")
        done = _git(["clone", "--quiet", "--depth", "1", *branch, "--", repository, str(target)], None)
        if done.returncode != 0 and ref and all(c in "0123456789abcdef" for c in ref):
            # Not a branch or tag: a commit, fetched by itself.
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            log(f"$ git fetch --depth 1 {repository} {ref}")
            steps = [
                ["init", "--quiet"],
                ["fetch", "--quiet", "--depth", "1", "--", repository, ref],
                ["checkout", "--quiet", "--detach", "FETCH_HEAD"],
            ]
            for args in steps:
                done = _git(args, target)
                if done.returncode != 0:
                    break
        if done.returncode != 0:
            detail = done.stderr.strip().splitlines()[-1:] or ["git failed"]
            raise SourceRejected(f"cannot fetch {ref or 'the default branch'} of {repository}: {detail[0]}")
        commit = _git(["rev-parse", "HEAD"], target).stdout.strip()
        shutil.rmtree(target / ".git", ignore_errors=True)  # never published with a static site
        log(f"commit {commit}")
        return commit

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
        log = self._logger(publisher_id)
        if not self.store.acquire_publish(site, publisher_id, ttl_seconds=self.publish_timeout + 60):
            log(f"another deployment is publishing {site}; waiting")
            return {"ok": False, "retry": True}
        try:
            data = self.blobs.get(ARTIFACTS_CONTAINER, artifact.blob_name)
            if data is None:
                raise FileNotFoundError(f"the artifact {artifact.blob_name} is missing from Blob storage")
            folder = self._fresh(publisher_id, "publish")
            archive = self._folder(publisher_id) / "publish.zip"
            archive.write_bytes(data)
            with zipfile.ZipFile(archive) as opened:
                opened.extractall(folder)
            try:
                result = self.publisher.publish(site, folder, log=log, timeout=self.publish_timeout)
            except PublishTimedOut:
                raise  # worth another attempt
            except StaticWebAppsError as exc:
                error = f"publish failed: {exc}"
                log(error)
                return {"ok": False, "error": error}
            self.store.set_live(site, owner.id, artifact, publisher=publisher_id)
            log(f"{site} now serves deployment {owner.id} at {result.url}")
            return {"ok": True, "url": result.url}
        finally:
            self.store.release_publish(site, publisher_id)


def _git(args: list[str], cwd: Path | None) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "LC_ALL": "C",
    }
    try:
        return subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, 1, "", f"git {args[0]} timed out after {_GIT_TIMEOUT:g} s")
