"""The local static host: sites published to a folder and served at ``/sites/{site}/``.

In Azure, Static Web Apps serve the sites Slipway publishes; ``slipway dev`` has no Static Web
Apps, so ``LocalSitesPublisher`` stands in for ``SwaCliPublisher`` behind the same ``Publisher``
interface and ``LocalSitesApp`` serves what it published. One folder per site::

    <root>/<site>/releases/<release-id>/   one folder per publish, never changed once complete
    <root>/<site>/current -> releases/<release-id>   the live release

A publish copies into a hidden temporary folder, renames it into ``releases/`` and then replaces
``current`` with ``os.replace`` of a new symlink, so a reader sees the old release or the new
one and never a half-copied folder. The server resolves ``current`` at every request, so a
publish is visible at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response

from slipway.adapters.staticwebapps import PublishFailed, PublishResult, PublishTimedOut, StaticWebAppsError

SITES_PATH = "/sites"  # where LocalSitesApp is mounted; part of every published URL
DEFAULT_KEEP = 5
CURRENT = "current"
RELEASES = "releases"
_LOCK = ".lock"
_TEMP_PREFIX = "."  # temporary folders and links: never a site name, never a release id
# The rules of Static Web Apps names, lowercase only: 2-40 letters, digits and hyphens, starting
# and ending with a letter or digit.
_SITE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,38}[a-z0-9]")
_RELEASE_ID = re.compile(r"\d{8}T\d{12}Z-[0-9a-f]{6}")
_NO_CACHE = {"Cache-Control": "no-cache"}


class SiteNameRejected(StaticWebAppsError, ValueError):
    """The site name is not 2-40 lowercase letters, digits and hyphens."""


def check_local_site_name(name: str) -> str:
    if not isinstance(name, str) or not _SITE_NAME.fullmatch(name):
        raise SiteNameRejected(
            f"{name!r} is not a site name: use 2-40 lowercase letters, digits and hyphens, "
            "starting and ending with a letter or digit"
        )
    return name


class LocalSitesPublisher:
    """Publishes a built folder as a new release of a site under ``root`` (``Publisher``)."""

    def __init__(self, root: Path, base_url: str, *, keep: int = DEFAULT_KEEP) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1 (the live release)")
        self.root = root
        self.base_url = base_url.rstrip("/")
        # With keep=1 the release a reader is in the middle of may be deleted under it.
        self.keep = keep

    def url(self, site: str) -> str:
        return f"{self.base_url}{SITES_PATH}/{check_local_site_name(site)}/"

    def publish(
        self, site: str, folder: Path, *, log: Callable[[str], None], timeout: float
    ) -> PublishResult:
        site_dir = self._site_dir(site)
        if not folder.is_dir():
            raise PublishFailed(f"the folder to publish, {folder}, does not exist")
        deadline = time.monotonic() + timeout
        releases = site_dir / RELEASES
        releases.mkdir(parents=True, exist_ok=True)
        release_id = _new_release_id()
        staging = releases / f"{_TEMP_PREFIX}{release_id}"
        try:
            # Links are copied as links: a link out of the build is never followed while copying
            # (the server refuses to follow one that leaves the release).
            shutil.copytree(folder, staging, symlinks=True, copy_function=_copy_until(deadline, timeout))
            with _site_lock(site_dir):
                staging.rename(releases / release_id)
                _switch_current(site_dir, release_id)
                removed = self.delete_old_releases(site)
        except PublishFailed:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise PublishFailed(f"cannot publish {folder} to site {site}: {exc}") from None
        log(f"published {folder} to site {site} as release {release_id}")
        if removed:
            log(f"removed {len(removed)} old release(s) of {site}: {', '.join(removed)}")
        return PublishResult(url=self.url(site))

    def get_current_release(self, site: str) -> str | None:
        """The id of the live release of ``site``, or None when it was never published."""
        try:
            target = os.readlink(self._site_dir(site) / CURRENT)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return Path(target).name

    def list_releases(self, site: str) -> list[str]:
        """The ids of ``site``'s complete releases, oldest first."""
        releases = self._site_dir(site) / RELEASES
        if not releases.is_dir():
            return []
        return sorted(p.name for p in releases.iterdir() if _RELEASE_ID.fullmatch(p.name) and p.is_dir())

    def delete_old_releases(self, site: str) -> list[str]:
        """Deletes all but the newest ``keep`` releases, never the live one; returns their ids."""
        current = self.get_current_release(site)
        old = [r for r in self.list_releases(site)[: -self.keep] if r != current]
        for release in old:
            shutil.rmtree(self._site_dir(site) / RELEASES / release, ignore_errors=True)
        return old

    def _site_dir(self, site: str) -> Path:
        return self.root / check_local_site_name(site)


def _new_release_id() -> str:
    """Sorts in publish order: UTC time to the microsecond, then a random tie-breaker."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(3)}"


def _copy_until(deadline: float, timeout: float) -> Callable[[str, str], object]:
    def copy(source: str, destination: str) -> object:
        if time.monotonic() > deadline:
            raise PublishTimedOut(f"copying the site did not finish within {timeout:g} s")
        return shutil.copy2(source, destination)

    return copy


def _switch_current(site_dir: Path, release_id: str) -> None:
    """Points ``current`` at the release in one rename: readers see the old one or the new one."""
    link = site_dir / f"{_TEMP_PREFIX}{CURRENT}-{secrets.token_hex(4)}"
    os.symlink(Path(RELEASES) / release_id, link, target_is_directory=True)
    try:
        os.replace(link, site_dir / CURRENT)
    except OSError:
        link.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _site_lock(site_dir: Path) -> Iterator[None]:
    """One publisher at a time switches and prunes a site (other processes included)."""
    with open(site_dir / _LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- serving -----------------------------------------------------------------------------------


class LocalSitesApp:
    """ASGI app serving ``<root>/<site>/current/`` at ``/{site}/`` (mounted at ``SITES_PATH``).

    GET and HEAD only, anonymous (published sites are public), ``Cache-Control: no-cache`` so a
    new release shows at once. A folder serves its ``index.html``. Anything that is not a file
    inside the live release (unknown site or file, ``..``, a link that leaves the release) is 404.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        response = self._respond(scope)
        await response(scope, receive, send)

    def _respond(self, scope: dict[str, Any]) -> Response:
        if scope["method"] not in ("GET", "HEAD"):
            return PlainTextResponse("Method Not Allowed", 405, headers={"Allow": "GET, HEAD"})
        path = _route_path(scope)
        site, _, rest = path.lstrip("/").partition("/")
        parts = [p for p in rest.split("/") if p]
        if not _SITE_NAME.fullmatch(site) or any(p in (".", "..") or "\\" in p or "\0" in p for p in parts):
            return _not_found()
        try:
            release = (self.root / site / CURRENT).resolve(strict=True)
            target = release.joinpath(*parts).resolve(strict=True)
            if target.is_dir():
                if not path.endswith("/"):
                    return _add_slash(scope)
                target = (target / "index.html").resolve(strict=True)
        except (OSError, RuntimeError):  # missing, or a loop of links
            return _not_found()
        if not target.is_relative_to(release) or not target.is_file():
            return _not_found()
        return FileResponse(target, headers=_NO_CACHE)


def _route_path(scope: dict[str, Any]) -> str:
    """The path below the mount (Starlette keeps the full path and adds the mount to root_path)."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path + "/"):
        return path[len(root_path) :]
    return "" if path == root_path else path


def _add_slash(scope: dict[str, Any]) -> Response:
    location = quote(scope["path"]) + "/"
    if scope.get("query_string"):
        location += "?" + scope["query_string"].decode("latin-1")
    return RedirectResponse(location, status_code=307, headers=_NO_CACHE)


def _not_found() -> Response:
    return PlainTextResponse("Not Found", 404, headers=_NO_CACHE)
