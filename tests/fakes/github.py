"""A fake of the part of GitHub's REST API that ``slipway.adapters.github`` calls, over real HTTP.

Routes, response fields, status codes and error bodies follow GitHub's REST documentation:
``GET /repos/{owner}/{repo}``, ``GET .../branches/{branch}``, ``GET .../git/trees/{sha}``,
``GET``/``POST .../hooks`` and ``DELETE .../hooks/{id}``. Tokens are configured by the test,
each with fine-grained-style permissions (``contents``: read, ``hooks``: webhooks read and
write), whether its user is a repository admin, and which private repositories it may see.
Rate limiting and server failures can be switched on.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlsplit

from fakes import LoopbackServer, send_json

DOCS = "https://docs.github.com/rest"
_ROUTE = re.compile(r"/repos/(?P<owner>[^/]+)/(?P<name>[^/]+)(?P<rest>/.*)?")


@dataclass
class FakeToken:
    contents: bool = True  # fine-grained "Contents: read"
    hooks: bool = True  # fine-grained "Webhooks: read and write"
    admin: bool = True  # the token's user is an admin of every repository it sees
    repos: set[str] | None = None  # private repositories it may see ("owner/name"); None: all


@dataclass
class FakeRepo:
    full_name: str
    private: bool = True
    default_branch: str = "main"
    branches: dict[str, str] = field(default_factory=dict)  # name -> head commit sha
    hooks: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> hook, secret included


class FakeGitHub(LoopbackServer):
    """Serves ``http://127.0.0.1:<port>`` (use it as ``api_url``) from a background thread."""

    def __init__(self) -> None:
        self.tokens: dict[str, FakeToken] = {}
        self.repos: dict[str, FakeRepo] = {}  # lower-case "owner/name" -> repo
        self.rate_limit: tuple[int, int] | None = None  # (status 403 or 429, reset epoch)
        self.failure: int | None = None  # answer every request with this 5xx status
        self.delay = 0.0  # seconds to wait before answering
        self.requests: list[tuple[str, str, int]] = []  # (method, path with query, status)
        self.headers: list[dict[str, str]] = []  # request headers, in order
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._start_server(_handler(self))

    def add_repo(self, full_name: str, *, branches: dict[str, str] | None = None, **kwargs: Any) -> FakeRepo:
        if branches is None:
            branches = {"main": hashlib.sha1(full_name.encode()).hexdigest()}  # noqa: S324 (a fake sha)
        repo = FakeRepo(full_name, branches=branches, **kwargs)
        self.repos[full_name.lower()] = repo
        return repo

    def remove_hook(self, full_name: str, hook_id: int) -> None:
        """Deletes a hook behind Slipway's back, as a user would on github.com."""
        with self._lock:
            del self.repos[full_name.lower()].hooks[hook_id]

    # --- the REST API; called by the handler with the lock held -------------------------------

    def handle(self, method: str, path: str, token: FakeToken, body: Any) -> tuple[int, Any, dict[str, str]]:
        match = _ROUTE.fullmatch(path)
        repo = self.repos.get(f"{match['owner']}/{match['name']}".lower()) if match else None
        if repo is None or (repo.private and token.repos is not None and repo.full_name not in token.repos):
            return _error(404, "Not Found", "repos/repos#get-a-repository")
        rest, base = match["rest"] or "", f"{self.url}/repos/{repo.full_name}"  # type: ignore[index]
        if method == "GET" and not rest:
            return 200, self._repository(repo, token), {}
        if rest.startswith(("/branches/", "/git/trees/")) and method == "GET":
            if not token.contents:
                return _forbidden("contents=read")
            if rest.startswith("/branches/"):
                branch = unquote(rest.removeprefix("/branches/"))
                if branch not in repo.branches:
                    return _error(404, "Branch not found", "branches/branches#get-a-branch")
                sha = repo.branches[branch]
                commit = {"sha": sha, "url": f"{base}/commits/{sha}"}
                links = {"self": f"{base}/branches/{branch}", "html": f"https://github.com/{repo.full_name}"}
                return 200, {"name": branch, "commit": commit, "_links": links, "protected": False}, {}
            sha = unquote(rest.removeprefix("/git/trees/"))
            if sha not in repo.branches.values():
                return _error(404, "Not Found", "git/trees#get-a-tree")
            entry = {"path": "README.md", "mode": "100644", "type": "blob", "sha": "0" * 40, "size": 6}
            return (
                200,
                {"sha": sha, "url": f"{base}/git/trees/{sha}", "tree": [entry], "truncated": False},
                {},
            )
        hook_match = re.fullmatch(r"/hooks(?:/(\d+))?", rest)
        if hook_match is None or (method, bool(hook_match[1])) not in {
            ("GET", False),
            ("POST", False),
            ("DELETE", True),
        }:
            return _error(404, "Not Found", "")
        if not token.admin:
            return _error(404, "Not Found", "repos/webhooks")  # GitHub hides hooks from non-admins
        if not token.hooks:
            return _forbidden("repository_hooks=write" if method != "GET" else "repository_hooks=read")
        if method == "GET":
            return 200, [self._hook(repo, h) for h in repo.hooks.values()], {}
        if method == "DELETE":
            if repo.hooks.pop(int(hook_match[1]), None) is None:
                return _error(404, "Not Found", "repos/webhooks#delete-a-repository-webhook")
            return 204, None, {}
        config = body.get("config") if isinstance(body, dict) else None
        if not isinstance(config, dict) or not config.get("url"):
            return _invalid("Config must contain a URL")
        if body.get("name", "web") != "web":
            return _invalid("Name must be 'web'")
        if any(h["config"]["url"] == config["url"] for h in repo.hooks.values()):
            return _invalid("Hook already exists on this repository")
        hook_id = next(self._ids)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        repo.hooks[hook_id] = {
            "id": hook_id,
            "name": "web",
            "active": body.get("active", True),
            "events": body.get("events", ["push"]),
            "config": {"content_type": "form", "insecure_ssl": "0", **config},
            "created_at": now,
            "updated_at": now,
        }
        return 201, self._hook(repo, repo.hooks[hook_id]), {"Location": f"{base}/hooks/{hook_id}"}

    def _repository(self, repo: FakeRepo, token: FakeToken) -> dict[str, Any]:
        owner, name = repo.full_name.split("/")
        base = f"{self.url}/repos/{repo.full_name}"
        return {
            "id": int(hashlib.sha1(repo.full_name.encode()).hexdigest()[:8], 16),  # noqa: S324
            "name": name,
            "full_name": repo.full_name,
            "owner": {"login": owner, "type": "User", "url": f"{self.url}/users/{owner}"},
            "private": repo.private,
            "visibility": "private" if repo.private else "public",
            "html_url": f"https://github.com/{repo.full_name}",
            "url": base,
            "hooks_url": f"{base}/hooks",
            "branches_url": f"{base}/branches{{/branch}}",
            "trees_url": f"{base}/git/trees{{/sha}}",
            "clone_url": f"https://github.com/{repo.full_name}.git",
            "ssh_url": f"git@github.com:{repo.full_name}.git",
            "default_branch": repo.default_branch,
            "permissions": {
                "admin": token.admin,
                "maintain": token.admin,
                "push": token.admin,
                "triage": True,
                "pull": True,
            },
        }

    def _hook(self, repo: FakeRepo, hook: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.url}/repos/{repo.full_name}/hooks/{hook['id']}"
        config = {**hook["config"], **({"secret": "********"} if "secret" in hook["config"] else {})}
        return {
            **hook,
            "type": "Repository",
            "config": config,  # GitHub never returns a secret
            "url": url,
            "test_url": f"{url}/test",
            "ping_url": f"{url}/pings",
            "deliveries_url": f"{url}/deliveries",
            "last_response": {"code": None, "status": "unused", "message": None},
        }


def _error(status: int, message: str, doc: str) -> tuple[int, Any, dict[str, str]]:
    return status, {"message": message, "documentation_url": f"{DOCS}/{doc}", "status": str(status)}, {}


def _forbidden(accepted: str) -> tuple[int, Any, dict[str, str]]:
    status, body, _ = _error(403, "Resource not accessible by personal access token", "")
    return status, body, {"X-Accepted-GitHub-Permissions": accepted}


def _invalid(message: str) -> tuple[int, Any, dict[str, str]]:
    status, body, headers = _error(422, "Validation Failed", "repos/webhooks#create-a-repository-webhook")
    return status, {**body, "errors": [{"resource": "Hook", "code": "custom", "message": message}]}, headers


def _handler(fake: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            path = urlsplit(self.path).path
            time.sleep(fake.delay)
            scheme, _, given = (self.headers.get("Authorization") or "").partition(" ")
            with fake._lock:
                fake.headers.append(dict(self.headers.items()))
                token = fake.tokens.get(given) if scheme.lower() in ("token", "bearer") else None
                reset = int(time.time()) + 3600
                headers = {"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "4999"}
                if token is None:
                    status, payload, extra = _error(401, "Bad credentials", "")
                elif fake.rate_limit is not None:
                    status, reset = fake.rate_limit
                    headers["X-RateLimit-Remaining"] = "0"
                    message = (
                        "API rate limit exceeded for user ID 1."
                        if status == 403
                        else "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
                    )
                    payload, extra = _error(status, message, "overview/rate-limits-for-the-rest-api")[1:]
                elif fake.failure is not None:
                    status, payload, extra = fake.failure, {"message": "Server Error"}, {}
                else:
                    status, payload, extra = fake.handle(
                        self.command, path, token, json.loads(raw or b"null")
                    )
                headers.update({"X-RateLimit-Reset": str(reset), "X-GitHub-Request-Id": "F4KE:1", **extra})
                fake.requests.append((self.command, self.path, status))
            send_json(self, status, payload, headers)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
