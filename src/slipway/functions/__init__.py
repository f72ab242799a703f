"""Azure Functions bindings: the app the host indexes, built from Slipway's services.

``create_function_app`` is all ``function_app.py`` calls. It returns an ``AsgiFunctionApp``
whose catch-all HTTP function serves the FastAPI app, plus native functions registered from
blueprints (the function-key automation entry, GitHub sync, workflow runs, deployments, the task hub's retention).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import azure.functions as func

from slipway.api.app import create_api
from slipway.api.buffered import BufferedAdapter
from slipway.bootstrap import build_services
from slipway.config import load_settings
from slipway.debugging import start_debugging
from slipway.functions.deployments import deployments_blueprint
from slipway.functions.gitsync import gitsync_blueprint
from slipway.functions.http import ASGI_FUNCTION, automation_blueprint
from slipway.functions.retention import retention_blueprint
from slipway.functions.workflows import workflows_blueprint


def create_function_app(env: Mapping[str, str], *, app_root: Path | None = None) -> func.AsgiFunctionApp:
    """Validate settings, build services and register every function. ``app_root`` is the
    folder of ``function_app.py`` (its host.json's ``functionTimeout`` bounds steps and builds)."""
    settings = load_settings(env, app_root=app_root)
    start_debugging(settings.debugging)
    services = build_services(settings)
    services.workflows.seed_example()
    api = create_api(services)
    # Anonymous at the host: the API authenticates every request itself (slipway.auth).
    # BufferedAdapter: the host's ASGI bridge buffers whole responses, so the API never streams.
    app = func.AsgiFunctionApp(
        app=BufferedAdapter(api), http_auth_level=func.AuthLevel.ANONYMOUS, function_name=ASGI_FUNCTION
    )
    app.register_functions(automation_blueprint(api))
    app.register_functions(gitsync_blueprint(services))
    app.register_functions(workflows_blueprint(services))
    app.register_functions(deployments_blueprint(services.deploy_pipeline))
    app.register_functions(retention_blueprint(settings.durable_retention_days))
    return app
