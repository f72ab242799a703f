"""How the runner reads host.json, routes, and app settings, matched to the host's rules."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from slipway.local.hostconfig import HostConfigError, load_host_config, parse_timespan, resolve_app_settings
from slipway.local.http_dispatch import route_pattern
from slipway.local.runner import DevOptions, compose_environment, is_loopback

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00:00:30", timedelta(seconds=30)),
        ("01:00:00", timedelta(hours=1)),
        ("1.02:03:04", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("00:00:00.5", timedelta(milliseconds=500)),
    ],
)
def test_timespans_read_as_dotnet_writes_them(text: str, expected: timedelta) -> None:
    assert parse_timespan(text) == expected


def test_a_malformed_timespan_is_named() -> None:
    with pytest.raises(HostConfigError, match="'30s' is not a TimeSpan"):
        parse_timespan("30s")


def test_project_host_json_queue_settings_are_what_the_runner_uses() -> None:
    config = load_host_config(REPO_ROOT, {"SLIPWAY_TASK_HUB": "HubFromSettings"})
    assert config.task_hub == "HubFromSettings"
    assert config.queues.max_dequeue_count == 5
    assert config.queues.visibility_timeout == timedelta(seconds=30)
    assert config.queues.message_encoding == "base64"
    assert config.function_timeout == timedelta(hours=1)
    # Empty: the catch-all serves the UI at / and sites at /sites in a container as `slipway dev`
    # does; the native functions carry /api in their own routes.
    assert config.route_prefix == ""


def test_an_unset_app_setting_in_host_json_is_named() -> None:
    with pytest.raises(HostConfigError, match="app setting SLIPWAY_TASK_HUB is referenced"):
        load_host_config(REPO_ROOT, {})


def test_app_setting_expressions_resolve_like_binding_expressions() -> None:
    assert resolve_app_settings("%PREFIX%-runs", {"PREFIX": "dev"}) == "dev-runs"
    assert resolve_app_settings("plain", {}) == "plain"


@pytest.mark.parametrize(
    ("template", "path", "params"),
    [
        ("automation/{*path}", "/api/automation/health/ready", {"path": "health/ready"}),
        ("automation/{*path}", "/api/automation", {"path": None}),
        ("github/webhook", "/api/GitHub/Webhook", {}),
        ("runs/{id}", "/api/runs/abc", {"id": "abc"}),
        ("runs/{id:guid}/logs", "/api/runs/1f/logs", {"id": "1f"}),
        ("items/{name?}", "/api/items", {"name": None}),
    ],
)
def test_route_templates_match_like_the_host(template: str, path: str, params: dict[str, str | None]) -> None:
    match = route_pattern("api", template).match(path)
    assert match is not None
    assert match.groupdict() == params


def test_route_templates_do_not_match_other_paths() -> None:
    assert route_pattern("api", "runs/{id}").match("/api/runs/abc/extra") is None
    assert route_pattern("api", "automation/{*path}").match("/api/automations/x") is None


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.10")


def test_local_settings_cannot_turn_on_the_development_principal_on_a_public_address(tmp_path: Path) -> None:
    (tmp_path / "local.settings.json").write_text(
        json.dumps({"Values": {"SLIPWAY_DEV_PRINCIPAL": "true", "SLIPWAY_TASK_HUB": "FromFile"}})
    )
    options = DevOptions(host="0.0.0.0", app_root=tmp_path, data=tmp_path / "data", workspace=tmp_path / "ws")
    env = compose_environment(options, {}, "UseDevelopmentStorage=true")
    assert env["SLIPWAY_DEV_PRINCIPAL"] == "false"
    assert env["SLIPWAY_TASK_HUB"] == "FromFile"
    assert env["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    loopback = compose_environment(DevOptions(app_root=tmp_path), {}, "x")
    assert loopback["SLIPWAY_DEV_PRINCIPAL"] == "true"


def test_the_environment_wins_over_local_settings(tmp_path: Path) -> None:
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": {"SLIPWAY_TASK_HUB": "FromFile"}}))
    env = compose_environment(DevOptions(app_root=tmp_path), {"SLIPWAY_TASK_HUB": "FromEnv"}, "x")
    assert env["SLIPWAY_TASK_HUB"] == "FromEnv"


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 */5 * * * *", "2026-11-23T18:02:30", "2026-11-23T18:05:00"),
        ("0 */5 * * * *", "2026-11-23T18:55:00", "2026-11-23T19:00:00"),
        ("*/10 * * * * *", "2026-11-23T18:02:31", "2026-11-23T18:02:40"),
        ("0 30 9 * * 1-5", "2026-11-27T10:00:00", "2026-11-30T09:30:00"),  # Friday after 9:30 -> Monday
        ("0 0 0 1 1 *", "2026-11-23T00:00:00", "2027-01-01T00:00:00"),
        ("15,45 0 12 * * *", "2026-11-23T12:00:15", "2026-11-23T12:00:45"),
    ],
)
def test_ncrontab_schedules_fire_when_the_host_would(expression: str, after: str, expected: str) -> None:
    from datetime import UTC, datetime

    from slipway.local.timers import Schedule

    moment = datetime.fromisoformat(after).replace(tzinfo=UTC)
    assert Schedule.parse(expression).next_after(moment) == datetime.fromisoformat(expected).replace(
        tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("0 */5 * * *", "needs 6"),
        ("0 61 * * * *", "minute field"),
        ("0 * * * * MON", "weekday field"),
        ("0 5-1 * * * *", "minute field"),
    ],
)
def test_unreadable_schedules_are_named(expression: str, problem: str) -> None:
    from slipway.local.timers import Schedule, ScheduleError

    with pytest.raises(ScheduleError, match=problem):
        Schedule.parse(expression)
