"""Builds the FastAPI app from the services of the composition root."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles

import slipway
from slipway.adapters.local_sites import SITES_PATH, LocalSitesApp
from slipway.api import (
    routes_deployments,
    routes_github,
    routes_health,
    routes_me,
    routes_secrets,
    routes_workflows,
    routes_workspace,
)
from slipway.api.errors import install_error_handlers
from slipway.api.security import Reader
from slipway.bootstrap import Services

OPENAPI_PATH = "/api/openapi.json"

# Every router of the API, in one list: the route-coverage tests walk these.
ROUTERS = (
    routes_health.router,
    routes_me.router,
    routes_workspace.router,
    routes_github.router,
    routes_workflows.router,
    routes_deployments.router,
    routes_secrets.router,
)


def create_api(services: Services) -> FastAPI:
    app = FastAPI(
        title="Slipway",
        version=slipway.__version__,
        # The built-in docs pages load scripts from a CDN; the schema is served below, guarded.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    app.state.tree_json = routes_workspace.TreeJson()
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)

    @app.get(OPENAPI_PATH, include_in_schema=False)
    def openapi(request: Request, _: Reader) -> dict[str, Any]:
        return request.app.openapi()

    sites_dir = services.settings.local_sites_dir
    if sites_dir is not None:
        # Published sites are public: anonymous, GET and HEAD only. A mount is not an APIRoute,
        # so the auth matrix (tests/test_api_auth.py walks ROUTERS) does not cover it;
        # tests/test_local_sites.py does. Before the UI at / so that / cannot shadow it.
        app.mount(SITES_PATH, LocalSitesApp(sites_dir), name="sites")

    web_dir = services.settings.web_dir
    if web_dir is not None and web_dir.is_dir():
        # Mounted last so that /api routes always win over files of the same name.
        app.mount("/", StaticFiles(directory=web_dir, html=True), name="web")
    return app
