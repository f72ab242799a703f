"""Health over real HTTP against Azurite: liveness, readiness that names what failed, details."""

from __future__ import annotations

from pathlib import Path

import httpx

from slipway.api.app import create_api
from slipway.bootstrap import build_services
from slipway.config import load_settings

READER = {"Authorization": "Bearer " + "r" * 40}


def _serve(live_server: type, env: dict[str, str]):  # type: ignore[no-untyped-def]
    env = {**env, "SLIPWAY_API_TOKEN": "r" * 40}
    return live_server(create_api(build_services(load_settings(env))))


def test_liveness_needs_no_credentials_and_no_dependencies(
    base_env: dict[str, str], live_server: type
) -> None:
    # Storage that does not exist: liveness must still answer.
    env = {
        **base_env,
        "AzureWebJobsStorage": "DefaultEndpointsProtocol=http;AccountName=x;AccountKey=eA==;QueueEndpoint=http://127.0.0.1:9/x;TableEndpoint=http://127.0.0.1:9/x;BlobEndpoint=http://127.0.0.1:9/x",
    }
    with _serve(live_server, env) as server, server.client() as client:
        response = client.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_lists_every_check_when_all_pass(base_env: dict[str, str], live_server: type) -> None:
    with _serve(live_server, base_env) as server, server.client() as client:
        response = client.get("/api/health/ready", headers=READER)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert [c["name"] for c in body["checks"]] == ["tables", "queues", "workspace", "temp"]
    assert all(c["ok"] for c in body["checks"])
    assert all(c["latency_ms"] >= 0 for c in body["checks"])


def test_ready_is_503_naming_a_missing_workspace(
    base_env: dict[str, str], live_server: type, tmp_path: Path
) -> None:
    env = {**base_env, "SLIPWAY_WORKSPACE_DIR": str(tmp_path / "not-mounted")}
    with _serve(live_server, env) as server, server.client() as client:
        response = client.get("/api/health/ready", headers=READER)
    assert response.status_code == 503
    body = response.json()
    assert body["error"]["code"] == "not_ready"
    assert f"workspace folder {tmp_path / 'not-mounted'} does not exist" in body["error"]["message"]
    failed = {c["name"] for c in body["checks"] if not c["ok"]}
    assert failed == {"workspace"}


def test_ready_is_503_when_temp_is_a_file_not_a_folder(
    base_env: dict[str, str], live_server: type, tmp_path: Path
) -> None:
    not_a_folder = tmp_path / "tmp-file"
    not_a_folder.write_text("x")
    env = {**base_env, "SLIPWAY_TEMP_DIR": str(not_a_folder)}
    with _serve(live_server, env) as server, server.client() as client:
        body = client.get("/api/health/ready", headers=READER).json()
    assert "temp path" in body["error"]["message"] and "is not a folder" in body["error"]["message"]


def test_ready_is_503_when_free_space_is_below_the_minimum(
    base_env: dict[str, str], live_server: type
) -> None:
    env = {**base_env, "SLIPWAY_MIN_FREE_MB": str(10**12)}
    with _serve(live_server, env) as server, server.client() as client:
        response = client.get("/api/health/ready", headers=READER)
    assert response.status_code == 503
    assert "MiB free, below the" in response.json()["error"]["message"]


def test_ready_is_503_naming_tables_and_queues_when_storage_is_down(
    base_env: dict[str, str], live_server: type
) -> None:
    dead = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=eA==;QueueEndpoint=http://127.0.0.1:9/devstoreaccount1;TableEndpoint=http://127.0.0.1:9/devstoreaccount1;BlobEndpoint=http://127.0.0.1:9/devstoreaccount1"
    with _serve(live_server, {**base_env, "AzureWebJobsStorage": dead}) as server, server.client() as client:
        response = client.get("/api/health/ready", headers=READER)
    assert response.status_code == 503
    body = response.json()
    failed = {c["name"] for c in body["checks"] if not c["ok"]}
    assert failed == {"tables", "queues"}
    assert "tables:" in body["error"]["message"] and "queues:" in body["error"]["message"]
    # Nothing secret leaks into the answer.
    assert "eA==" not in response.text


def test_ready_leaves_no_probe_files_in_the_workspace(base_env: dict[str, str], live_server: type) -> None:
    with _serve(live_server, base_env) as server, server.client() as client:
        for _ in range(3):
            assert client.get("/api/health/ready", headers=READER).status_code == 200
    assert list(Path(base_env["SLIPWAY_WORKSPACE_DIR"]).iterdir()) == []


def test_detailed_reports_latency_and_versions_of_each_dependency(
    base_env: dict[str, str], live_server: type
) -> None:
    with _serve(live_server, base_env) as server, server.client() as client:
        response = client.get("/api/health/detailed", headers=READER)
    assert response.status_code == 200
    body = response.json()
    checks = {c["name"]: c for c in body["checks"]}
    assert set(checks) == {"tables", "queues", "workspace", "temp", "secrets"}
    # Azurite names itself in the Server header; the API version is the one the SDK sent.
    assert checks["tables"]["info"]["server"].startswith("Azurite-Table")
    assert checks["queues"]["info"]["server"].startswith("Azurite-Queue")
    assert checks["tables"]["info"]["api_version"]
    assert checks["workspace"]["info"]["filesystem"] != ""
    assert body["runtime"]["azure-functions-durable"].startswith("1.")
    assert "AccountKey" not in response.text


def test_a_reader_cannot_be_anonymous_on_readiness(base_env: dict[str, str], live_server: type) -> None:
    with _serve(live_server, base_env) as server, httpx.Client(base_url=server.url) as client:
        assert client.get("/api/health/ready").status_code == 401


def test_probes_arriving_together_share_one_run_of_the_checks(
    base_env: dict[str, str], live_server: type
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with _serve(live_server, base_env) as server, ThreadPoolExecutor(8) as pool:
        bodies = list(
            pool.map(lambda _: httpx.get(server.url + "/api/health/ready", headers=READER).json(), range(8))
        )
    assert all(body["status"] == "ready" for body in bodies)
    # One run measured once: every answer carries the very same latencies.
    latencies = {tuple(c["latency_ms"] for c in body["checks"]) for body in bodies}
    assert len(latencies) == 1
