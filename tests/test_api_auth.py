"""Every API route against every kind of caller, over real HTTP: 401, 403 or success."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.routing import APIRoute

from slipway.api.app import ROUTERS, create_api
from slipway.api.security import RoleGuard
from slipway.auth import Role
from slipway.bootstrap import build_services
from slipway.config import load_settings

TOKEN = "t" * 40
PUBLIC_ROUTES = {("GET", "/api/health")}
# No principal: GitHub signs these with the webhook secret (tested in test_github_webhook.py).
SIGNED_ROUTES = {("POST", "/api/github/webhook")}


def swa_principal(*roles: str, name: str = "ada@example.com") -> dict[str, str]:
    payload = {
        "identityProvider": "aad",
        "userId": "0f3c",
        "userDetails": name,
        "userRoles": ["anonymous", "authenticated", *roles],
    }
    return {"x-ms-client-principal": base64.b64encode(json.dumps(payload).encode()).decode()}


# Each caller: the headers it sends and the role it should be granted (None: authenticated, no
# role, so 403 everywhere; "reject": credentials refused, so 401 everywhere).
CALLERS: dict[str, tuple[dict[str, str], Role | str | None]] = {
    "anonymous": ({}, "reject"),
    "wrong token": ({"Authorization": "Bearer " + "x" * 40}, "reject"),
    "malformed authorization": ({"Authorization": "Basic abc"}, "reject"),
    "garbage principal header": ({"x-ms-client-principal": "%%%not-base64"}, "reject"),
    "signed-in user without role": (swa_principal(), None),
    "reader": (swa_principal("reader"), Role.READER),
    "editor": (swa_principal("editor"), Role.EDITOR),
    "admin": (swa_principal("admin"), Role.ADMIN),
    "api token": ({"Authorization": f"Bearer {TOKEN}"}, Role.ADMIN),
}


@pytest.fixture
def api_url(base_env: dict[str, str], live_server: type) -> Iterator[tuple[str, list[APIRoute]]]:
    env = {**base_env, "SLIPWAY_API_TOKEN": TOKEN, "SLIPWAY_TRUST_CLIENT_PRINCIPAL": "true"}
    api = create_api(build_services(load_settings(env)))
    routes = [r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute)]
    routes += [r for r in api.routes if isinstance(r, APIRoute)]
    # The walk must cover everything the API documents, or a route could escape the matrix.
    documented = {(m.upper(), path) for path, ops in api.openapi()["paths"].items() for m in ops}
    walked = {(m, r.path_format) for r in routes for m in r.methods}
    assert documented <= walked
    workspace = Path(env["SLIPWAY_WORKSPACE_DIR"])
    (workspace / "matrix").mkdir()
    (workspace / "matrix" / "readme.txt").write_text("hello")
    (workspace / "workflows").mkdir()
    (workspace / "workflows" / "matrix.py").write_text(
        "from slipway.sdk import Workflow\nworkflow = Workflow()\n\n@workflow.step()\ndef only(ctx):\n    return 1\n"
    )
    with live_server(api) as server:
        yield server.url, routes


class Recipes:
    """A request that succeeds for each route, given the right role (fresh names each call)."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.count = itertools.count()

    def request(self, method: str, path_format: str) -> tuple[str, dict[str, object]]:
        """The request; ``expect`` in the kwargs lists answers that mean "allowed" when not < 400."""
        n = next(self.count)
        files = "/api/workspace/files/{path}"
        if (method, path_format) == ("GET", files):
            return "/api/workspace/files/matrix/readme.txt", {}
        if (method, path_format) == ("PUT", files):
            return f"/api/workspace/files/matrix/new-{n}.txt", {
                "content": b"x",
                "headers": {"If-None-Match": "*"},
            }
        if (method, path_format) == ("DELETE", files):
            (self.workspace / "matrix" / f"doomed-{n}.txt").write_text("x")
            return f"/api/workspace/files/matrix/doomed-{n}.txt", {}
        if (method, path_format) == ("POST", "/api/workspace/folders"):
            return path_format, {"json": {"path": f"matrix/folder-{n}"}}
        if (method, path_format) == ("POST", "/api/workspace/move"):
            (self.workspace / "matrix" / f"from-{n}.txt").write_text("x")
            return path_format, {"json": {"from": f"matrix/from-{n}.txt", "to": f"matrix/to-{n}.txt"}}
        if (method, path_format) == ("POST", "/api/github/connect"):
            # Allowed callers get past the guard to validation, which refuses the repository.
            body = {"repository": "not a repository!", "branch": "main", "token": "t", "dry_run": True}
            return path_format, {"json": body, "expect": {422}}
        if (method, path_format) == ("POST", "/api/github/sync"):
            return path_format, {"expect": {409}}  # nothing is connected
        if (method, path_format) == ("GET", "/api/workflows/{name}"):
            return "/api/workflows/matrix", {}
        if (method, path_format) == ("POST", "/api/workflows/{name}/runs"):
            return "/api/workflows/matrix/runs", {"json": {"params": {}}}
        if path_format.startswith("/api/runs/{run_id}"):
            # A well-formed id of no run: allowed callers get past the guard to the lookup.
            return path_format.replace("{run_id}", "0000000000ff-00000000"), {"expect": {404}}
        if (method, path_format) == ("POST", "/api/deployments"):
            # Queued where a publish target is configured; 409 names the missing setting where not.
            body = {"site": f"matrix-{n}", "source": "workspace", "folder": "matrix"}
            return path_format, {"json": body, "expect": {409}}
        if path_format.startswith("/api/deployments/{deployment_id}"):
            return path_format.replace("{deployment_id}", "0000000000ff-00000000-matrix"), {"expect": {404}}
        if path_format.startswith("/api/sites/{site}"):
            # No such site (404); binding one needs a connected repository (409).
            body = {"branch": "main"} if path_format.endswith("/binding") else {}
            return path_format.replace("{site}", "no-such-site"), {"json": body, "expect": {404, 409}}
        if (method, path_format) == ("PUT", "/api/secrets/{name}"):
            return f"/api/secrets/MATRIX_{n}", {"json": {"value": "matrix-value"}}
        if (method, path_format) == ("DELETE", "/api/secrets/{name}"):
            return f"/api/secrets/NEVER_SET_{n}", {"expect": {404}}
        assert "{" not in path_format, f"add a recipe for {method} {path_format} to the role matrix"
        return path_format, {}


def _required_role(route: APIRoute) -> Role | None:
    guards = [d.call for d in route.dependant.dependencies if isinstance(d.call, RoleGuard)]
    assert len(guards) <= 1, f"{route.path} has more than one role guard"
    return guards[0].role if guards else None


def test_every_route_but_liveness_declares_a_role(api_url: tuple[str, list[APIRoute]]) -> None:
    _, routes = api_url
    for route in routes:
        for method in route.methods:
            if (method, route.path) in PUBLIC_ROUTES | SIGNED_ROUTES:
                assert _required_role(route) is None
            else:
                assert _required_role(route) is not None, f"{method} {route.path} has no role guard"


def test_every_route_answers_each_caller_with_401_403_or_success(
    api_url: tuple[str, list[APIRoute]], base_env: dict[str, str]
) -> None:
    import httpx

    url, routes = api_url
    recipes = Recipes(Path(base_env["SLIPWAY_WORKSPACE_DIR"]))
    checked = 0
    with httpx.Client(base_url=url, timeout=30) as client:
        for route in routes:
            required = _required_role(route)
            for method in route.methods:
                for caller, (headers, granted) in CALLERS.items():
                    if (method, route.path_format) in SIGNED_ROUTES:
                        continue
                    target, extra = recipes.request(method, route.path_format)
                    extra_headers = dict(extra.pop("headers", {}))  # type: ignore[call-overload]
                    expect = set(extra.pop("expect", set()))  # type: ignore[call-overload]
                    response = client.request(method, target, headers={**headers, **extra_headers}, **extra)  # type: ignore[arg-type]
                    where = f"{caller}: {method} {target}"
                    if required is None:
                        assert response.status_code < 400, where
                    elif granted == "reject":
                        assert response.status_code == 401, where
                        assert response.json()["error"]["code"] == "unauthenticated", where
                        assert response.headers["www-authenticate"].startswith("Bearer"), where
                    elif granted is None or granted < required:
                        assert response.status_code == 403, where
                        error = response.json()["error"]
                        assert error["code"] == "forbidden", where
                        assert required.label in error["message"], where
                    else:
                        assert response.status_code < 400 or response.status_code in expect, (
                            where,
                            response.text,
                        )
                    checked += 1
    assert checked >= len(CALLERS) * 4


def test_client_principal_is_ignored_unless_the_platform_is_trusted(
    base_env: dict[str, str], live_server: type
) -> None:
    api = create_api(build_services(load_settings(base_env)))
    with live_server(api) as server, server.client() as client:
        response = client.get("/api/me", headers=swa_principal("admin"))
        assert response.status_code == 401


def test_me_reports_the_principal_and_the_roles_it_includes(api_url: tuple[str, list[APIRoute]]) -> None:
    import httpx

    url, _ = api_url
    with httpx.Client(base_url=url) as client:
        me = client.get("/api/me", headers=swa_principal("editor", name="grace")).json()
    assert me == {"name": "grace", "provider": "aad", "roles": ["reader", "editor"]}


def test_development_principal_is_admin(base_env: dict[str, str], live_server: type) -> None:
    api = create_api(build_services(load_settings({**base_env, "SLIPWAY_DEV_PRINCIPAL": "true"})))
    with live_server(api) as server, server.client() as client:
        assert client.get("/api/me").json()["roles"] == ["reader", "editor", "admin"]
        # Presenting a wrong token is still an error, even where no token is needed.
        assert client.get("/api/me", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_unknown_route_and_wrong_method_answer_in_the_json_error_shape(
    api_url: tuple[str, list[APIRoute]],
) -> None:
    import httpx

    url, _ = api_url
    with httpx.Client(base_url=url) as client:
        missing = client.get("/api/nothing-here", headers=swa_principal("reader"))
        assert missing.status_code == 404
        assert missing.json()["error"] == {"code": "not_found", "message": "no route GET /api/nothing-here"}
        wrong = client.post("/api/health")
        assert wrong.status_code == 405
        assert wrong.json()["error"]["code"] == "method_not_allowed"


def test_openapi_document_lists_the_routes(api_url: tuple[str, list[APIRoute]]) -> None:
    import httpx

    url, _ = api_url
    with httpx.Client(base_url=url) as client:
        document = client.get("/api/openapi.json", headers=swa_principal("reader")).json()
    assert "/api/health/ready" in document["paths"]
    assert "/api/me" in document["paths"]
