"""GitHub: the repository a workspace syncs from, its branch, and the push webhook.

PyGithub does the talking. Its client is lazy, so every method makes the one request it names
(a repository object costs nothing until it is completed); a 404 on a sub-resource is then
followed by ``GET /repos/{owner}/{repo}`` to tell a missing repository from a missing branch or
a missing permission. Retries are off and PyGithub's request throttling is off: these calls
run while an admin waits for an answer, and a rate limit is reported, not slept through.

Every failure a caller can act on has its own exception; messages are meant for the admin who
entered the token and never contain it. PyGithub masks the ``Authorization`` header in its
DEBUG log; a filter on its logger also masks webhook secrets, which it would log in the body
of ``POST /hooks``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NoReturn, TypeVar

import github
import requests
from github.GithubException import GithubException, RateLimitExceededException
from github.Repository import Repository

# The REST API version Slipway was written against; GitHub keeps a version for 24 months.
API_VERSION = "2022-11-28"

_OWNER = r"[A-Za-z0-9][A-Za-z0-9-]{0,38}"
_NAME = r"[A-Za-z0-9._-]{1,100}"
_REPOSITORY_FORMS = (
    re.compile(rf"(?P<owner>{_OWNER})/(?P<name>{_NAME})"),
    re.compile(rf"https://github\.com/(?P<owner>{_OWNER})/(?P<name>{_NAME})/?", re.IGNORECASE),
    re.compile(rf"git@github\.com:(?P<owner>{_OWNER})/(?P<name>{_NAME})", re.IGNORECASE),
)
_EXPECTED_FORMS = "owner/name, https://github.com/owner/name(.git) or git@github.com:owner/name.git"
# git check-ref-format, in short: no control characters, spaces, ~ ^ : ? * [ \ or "..".
_BAD_BRANCH = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|^[-/]|/$|\.lock$|^@$|@\{")

T = TypeVar("T")


@dataclass(frozen=True)
class RepositoryInfo:
    full_name: str  # "owner/name" as GitHub spells it
    default_branch: str
    clone_url: str  # https clone URL
    private: bool
    can_admin_hooks: bool  # the token's user is a repository admin (needed to create webhooks)


class GitHubError(Exception):
    """GitHub refused or failed a request; the message says why and never contains the token."""


class GitHubAuthFailed(GitHubError):
    """The token is invalid, expired or revoked (401)."""


class RepositoryNotFound(GitHubError):
    """404: the repository does not exist, or the token cannot see it."""


class PermissionMissing(GitHubError):
    """The token lacks a permission; ``permission`` names it as fine-grained tokens spell it."""

    def __init__(self, message: str, *, permission: str, classic_scope: str) -> None:
        super().__init__(message)
        self.permission = permission
        self.classic_scope = classic_scope


class BranchNotFound(GitHubError):
    """The branch does not exist (or the repository has no commits yet)."""


class GitHubUnavailable(GitHubError):
    """GitHub cannot be reached, fails (5xx) or rate-limits the token; ``retry_at`` when known."""

    def __init__(self, message: str, *, retry_at: datetime | None = None) -> None:
        super().__init__(message)
        self.retry_at = retry_at


@dataclass(frozen=True)
class _Need:
    permission: str  # fine-grained token permission
    classic_scope: str  # classic token scope
    purpose: str  # what Slipway needs it for
    admin: bool = False  # the token's user must also be a repository admin


_CONTENTS = _Need("Contents: read", "repo", "read the repository's branches and files")
_HOOKS = _Need("Webhooks: read and write", "admin:repo_hook", "manage the push webhook", admin=True)


def parse_repository(text: str) -> str:
    """``owner/name`` from ``owner/name``, an https GitHub URL or an ssh ``git@github.com:`` one."""
    candidate = text.strip() if isinstance(text, str) else ""
    for form in _REPOSITORY_FORMS:
        match = form.fullmatch(candidate)
        if match is None:
            continue
        owner, name = match["owner"], match["name"]
        if name.lower().endswith(".git"):
            name = name[:-4]
        if name and name not in (".", ".."):
            return f"{owner}/{name}"
    raise ValueError(
        f"{text!r} is not a GitHub repository; expected {_EXPECTED_FORMS} "
        "(owner: letters, digits and dashes; name: letters, digits, '.', '-' and '_')"
    )


def _check_branch_name(branch: str) -> None:
    if not isinstance(branch, str) or not branch or len(branch) > 255 or _BAD_BRANCH.search(branch):
        raise ValueError(f"{branch!r} is not a valid git branch name")


class _MaskSecrets(logging.Filter):
    """Masks credentials in PyGithub's DEBUG request log (it logs request headers and bodies)."""

    _PATTERNS = (
        (re.compile(r'("secret"\s*:\s*")(?:[^"\\]|\\.)*(")'), r"\1(secret removed)\2"),
        (re.compile(r"('Authorization'\s*:\s*')[^']*(')"), r"\1(removed)\2"),
    )

    def filter(self, record: logging.LogRecord) -> bool:
        message = original = record.getMessage()
        for pattern, replacement in self._PATTERNS:
            message = pattern.sub(replacement, message)
        if message != original:
            record.msg, record.args = message, ()
        return True


_requester_log = logging.getLogger("github.Requester")
if not any(isinstance(f, _MaskSecrets) for f in _requester_log.filters):
    _requester_log.addFilter(_MaskSecrets())


class GitHubClient:
    """The GitHub REST calls Slipway makes with an admin's token."""

    def __init__(self, token: str, *, api_url: str = "https://api.github.com", timeout: float = 15) -> None:
        if not isinstance(token, str) or not token.strip():
            raise ValueError("a GitHub token is required")
        self.api_url = api_url.rstrip("/")
        self._timeout = max(1, math.ceil(timeout))  # PyGithub takes whole seconds
        self._github = github.Github(
            auth=github.Auth.Token(token.strip()),
            base_url=self.api_url,
            timeout=self._timeout,
            user_agent="Slipway",
            retry=None,
            seconds_between_requests=None,
            seconds_between_writes=None,
            lazy=True,
            api_version=API_VERSION,
        )

    def close(self) -> None:
        self._github.close()

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- the calls ------------------------------------------------------------------------------

    def get_repository(self, repository: str) -> RepositoryInfo:
        """``GET /repos/{owner}/{repo}``."""
        name = parse_repository(repository)
        data = self._call(name, None, lambda: self._repo(name).complete().raw_data)
        permissions = data.get("permissions") or {}
        return RepositoryInfo(
            full_name=str(data["full_name"]),
            default_branch=str(data["default_branch"]),
            clone_url=str(data["clone_url"]),
            private=bool(data["private"]),
            can_admin_hooks=bool(permissions.get("admin", False)),
        )

    def check_branch(self, repository: str, branch: str) -> str:
        """The branch's head commit sha (``GET /repos/{owner}/{repo}/branches/{branch}``)."""
        name = parse_repository(repository)
        _check_branch_name(branch)
        try:
            return self._call(name, _CONTENTS, lambda: self._repo(name).get_branch(branch).commit.sha)
        except RepositoryNotFound as exc:
            self._raise_not_found(name, BranchNotFound(f"branch {branch!r} does not exist in {name}"), exc)

    def check_contents_readable(self, repository: str, branch: str) -> None:
        """Proves the token can read the branch's files: its head commit, then the root tree."""
        name = parse_repository(repository)
        sha = self.check_branch(name, branch)
        try:
            self._call(name, _CONTENTS, lambda: self._repo(name).get_git_tree(sha))
        except RepositoryNotFound as exc:
            self._raise_not_found(
                name, BranchNotFound(f"branch {branch!r} of {name} has no readable tree"), exc
            )

    def create_push_webhook(self, repository: str, url: str, secret: str) -> int:
        """A JSON webhook for push events only, active, signed with ``secret``; its id."""
        name = parse_repository(repository)
        if not url.startswith(("https://", "http://")):
            raise ValueError(f"webhook URL {url!r} must be an http(s) URL")
        if not secret:
            raise ValueError("a webhook secret is required (GitHub signs deliveries with it)")
        config = {"url": url, "content_type": "json", "secret": secret, "insecure_ssl": "0"}
        try:
            hook = self._call(
                name,
                _HOOKS,
                lambda: self._repo(name).create_hook("web", config, events=["push"], active=True),
            )
        except RepositoryNotFound as exc:
            self._raise_not_found(name, self._permission_missing(name, _HOOKS, None), exc)
        return int(hook.id)

    def find_webhook(self, repository: str, url: str) -> int | None:
        """The id of a webhook of this repository that delivers to ``url``, if there is one."""
        name = parse_repository(repository)

        def find() -> int | None:
            for hook in self._repo(name).get_hooks():
                if (hook.config or {}).get("url") == url:
                    return int(hook.id)
            return None

        try:
            return self._call(name, _HOOKS, find)
        except RepositoryNotFound as exc:
            self._raise_not_found(name, self._permission_missing(name, _HOOKS, None), exc)

    def delete_webhook(self, repository: str, hook_id: int) -> bool:
        """True when deleted, False when it was already gone."""
        name = parse_repository(repository)
        try:
            self._call(name, _HOOKS, lambda: self._repo(name).get_hook(int(hook_id)).delete())
            return True
        except RepositoryNotFound:
            pass
        # GitHub answers 404 for a deleted hook, but also to a user who is not an admin: only
        # when the hooks can be listed was this one really gone.
        try:
            self._call(name, _HOOKS, lambda: next(iter(self._repo(name).get_hooks()), None))
        except RepositoryNotFound as exc:
            self._raise_not_found(name, self._permission_missing(name, _HOOKS, None), exc)
        return False

    # --- plumbing ------------------------------------------------------------------------------

    def _repo(self, name: str) -> Repository:
        return self._github.get_repo(name)  # lazy: no request until completed or used

    def _raise_not_found(self, name: str, instead: GitHubError, not_found: RepositoryNotFound) -> NoReturn:
        """A sub-resource answered 404: raise ``instead`` unless the repository itself is missing."""
        self._call(name, None, lambda: self._repo(name).complete())
        raise instead from not_found.__cause__

    def _call(self, name: str, need: _Need | None, call: Callable[[], T]) -> T:
        """Runs one PyGithub call, turning its failures into Slipway's exceptions."""
        try:
            return call()
        except GithubException as exc:
            raise self._from_response(exc, name, need) from exc
        except requests.exceptions.Timeout:
            # ``from None``: a requests exception holds the request, Authorization header included.
            raise GitHubUnavailable(
                f"GitHub ({self.api_url}) did not answer within {self._timeout} s; try again later"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise GitHubUnavailable(
                f"cannot reach GitHub at {self.api_url} ({_network_reason(exc)}); "
                "check the network and try again"
            ) from None
        except json.JSONDecodeError:
            raise GitHubUnavailable(f"GitHub ({self.api_url}) answered with malformed JSON") from None

    def _from_response(self, exc: GithubException, name: str, need: _Need | None) -> GitHubError:
        status = exc.status
        headers = {k.lower(): str(v) for k, v in (exc.headers or {}).items()}
        data = exc.data if isinstance(exc.data, dict) else {}
        said = str(data.get("message") or "").strip()
        rate_limited = (
            isinstance(exc, RateLimitExceededException)
            or status == 429
            or (status == 403 and (headers.get("x-ratelimit-remaining") == "0" or "retry-after" in headers))
        )
        if rate_limited:
            return _rate_limited(headers, said)
        if status == 401:
            return GitHubAuthFailed(
                f"GitHub rejected the token ({said or 'Bad credentials'}): it is invalid, expired "
                "or revoked; create a new token and connect again"
            )
        if status >= 500:
            return GitHubUnavailable(
                f"GitHub failed with {status}{f' ({said})' if said else ''}; try again in a few minutes"
            )
        if status == 403 and need is not None:
            return self._permission_missing(name, need, said, headers.get("x-accepted-github-permissions"))
        if status == 404:
            return RepositoryNotFound(
                f"GitHub repository {name} was not found, or the token cannot see it (GitHub answers "
                "404 for a private repository the token has no access to); check the name, and "
                "that the token was granted access to this repository"
            )
        details = "; ".join(
            str(e.get("message") or e.get("code"))
            for e in data.get("errors") or []
            if isinstance(e, dict) and (e.get("message") or e.get("code"))
        )
        return GitHubError(
            f"GitHub refused the request for {name} with {status}"
            f"{f': {said}' if said else ''}{f' ({details})' if details else ''}"
        )

    @staticmethod
    def _permission_missing(
        name: str, need: _Need, said: str | None, accepted: str | None = None
    ) -> PermissionMissing:
        admin = " and its user must be an admin of the repository" if need.admin else ""
        github_says = f" (GitHub: {said}" if said else ""
        if accepted:
            github_says += f"{'; ' if said else ' (GitHub: '}accepted permissions: {accepted}"
        return PermissionMissing(
            f"the GitHub token cannot {need.purpose} in {name}{github_says}{')' if github_says else ''}: "
            f'a fine-grained token needs the repository permission "{need.permission}"; '
            f'a classic token needs the "{need.classic_scope}" scope{admin}',
            permission=need.permission,
            classic_scope=need.classic_scope,
        )


def _rate_limited(headers: dict[str, str], said: str) -> GitHubUnavailable:
    now = datetime.now(UTC)
    retry_at: datetime | None = None
    with contextlib.suppress(ValueError, OverflowError):
        if "retry-after" in headers:
            retry_at = datetime.fromtimestamp(now.timestamp() + float(headers["retry-after"]), UTC)
        elif "x-ratelimit-reset" in headers:
            retry_at = datetime.fromtimestamp(float(headers["x-ratelimit-reset"]), UTC)
    when = "try again later"
    if retry_at is not None:
        minutes = max(0, math.ceil((retry_at - now).total_seconds() / 60))
        when = f"it resets at {retry_at:%H:%M:%S} UTC, in about {minutes} min"
    return GitHubUnavailable(
        f"GitHub's API rate limit for this token is exhausted{f' ({said})' if said else ''}; {when}",
        retry_at=retry_at,
    )


def _network_reason(exc: requests.exceptions.RequestException) -> str:
    """A short cause of a requests/urllib3 error, without URLs or request objects."""
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake or certificate verification failed"
    text = str(exc).lower()
    for reason in (
        "connection refused",
        "connection reset",
        "name or service not known",
        "temporary failure in name resolution",
        "no route to host",
    ):
        if reason in text:
            return reason
    return type(exc).__name__
