"""The Static Web App's routing rules: who reaches the UI, and how they sign in."""

from __future__ import annotations

import json
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[1] / "web" / "staticwebapp.config.json"


def test_signed_in_users_reach_the_ui_and_the_api_decides_their_role() -> None:
    routes = {rule["route"]: rule for rule in json.loads(CONFIG.read_text())["routes"]}
    # Slipway's own assignments (SLIPWAY_ADMINS, ...) give roles Static Web Apps does not know,
    # so the Static Web App lets every signed-in user through and the API enforces roles.
    assert routes["/*"]["allowedRoles"] == ["authenticated"]
    assert routes["/.auth/*"]["allowedRoles"] == ["anonymous"]


def test_only_microsoft_entra_sign_in_is_offered() -> None:
    config = json.loads(CONFIG.read_text())
    routes = {rule["route"]: rule for rule in config["routes"]}
    for provider in ("github", "twitter"):
        assert routes[f"/.auth/login/{provider}"]["statusCode"] == 404
    assert config["responseOverrides"]["401"]["redirect"] == "/.auth/login/aad"
    # Rules are matched in order: the provider blocks must come before the /.auth/* allowance.
    order = [rule["route"] for rule in config["routes"]]
    assert order.index("/.auth/login/github") < order.index("/.auth/*") < order.index("/*")
