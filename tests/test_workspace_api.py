"""The workspace API over real HTTP against `slipway dev`, with journal rows read from Azurite."""

from __future__ import annotations

import io
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from runner_process import Runner, start_runner

from slipway.api.app import ROUTERS
from slipway.names import WORKSPACE_JOURNAL_TABLE
from slipway.workspace.mode import WorkspaceModeStore


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    started = start_runner(tmp_path_factory.mktemp("workspace-api"))
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def client(runner: Runner) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=runner.url, timeout=30) as http:
        yield http


def url(path: str) -> str:
    return "/api/workspace/files/" + "/".join(quote(part, safe="") for part in path.split("/"))


def create(client: httpx.Client, path: str, body: bytes) -> str:
    response = client.put(url(path), content=body, headers={"If-None-Match": "*"})
    assert response.status_code == 201, response.text
    return response.headers["ETag"]


def test_create_read_update_and_a_stale_save_over_http(client: httpx.Client) -> None:
    etag = create(client, "api/flow.py", b"print(1)\n")
    read = client.get(url("api/flow.py"))
    assert read.content == b"print(1)\n"
    assert read.headers["ETag"] == etag
    assert read.headers["X-Slipway-Text"] == "true"
    assert client.get(url("api/flow.py"), headers={"If-None-Match": etag}).status_code == 304

    saved = client.put(url("api/flow.py"), content=b"print(2)\n", headers={"If-Match": etag})
    assert saved.status_code == 200
    assert saved.json()["etag"] == saved.headers["ETag"] != etag

    stale = client.put(url("api/flow.py"), content=b"print(3)\n", headers={"If-Match": etag})
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "etag_mismatch"
    assert client.get(url("api/flow.py")).content == b"print(2)\n"


def test_two_saves_with_the_same_etag_one_wins_one_gets_412(client: httpx.Client, runner: Runner) -> None:
    etag = create(client, "api/race.py", b"base")
    barrier = threading.Barrier(2)
    statuses: dict[str, int] = {}

    def save(who: str) -> None:
        with httpx.Client(base_url=runner.url, timeout=30) as own:
            barrier.wait()
            statuses[who] = own.put(
                url("api/race.py"), content=who.encode(), headers={"If-Match": etag}
            ).status_code

    threads = [threading.Thread(target=save, args=(who,)) for who in ("alice", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses.values()) == [200, 412]
    winner = next(who for who, status in statuses.items() if status == 200)
    assert client.get(url("api/race.py")).content == winner.encode()


@pytest.mark.parametrize(
    ("raw_path", "reason"),
    [
        ("/api/workspace/files/%2e%2e/outside.txt", "'..' segments are not allowed"),
        ("/api/workspace/files/a%5Cb.txt", "backslashes"),
        ("/api/workspace/files/a%00b.txt", "control character"),
        ("/api/workspace/files/CON", "reserved device name"),
    ],
)
def test_hostile_paths_are_400_path_rejected_with_the_reason(
    client: httpx.Client, raw_path: str, reason: str
) -> None:
    response = client.put(raw_path, content=b"x", headers={"If-None-Match": "*"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "path_rejected"
    assert reason in response.json()["error"]["message"]


def test_preconditions_size_limit_and_case_conflicts(client: httpx.Client) -> None:
    missing = client.put(url("api/no-precondition.py"), content=b"x")
    assert missing.status_code == 428
    assert missing.json()["error"]["code"] == "precondition_required"

    too_big = client.put(
        url("api/huge.bin"), content=b"x" * (10 * 1024 * 1024 + 1), headers={"If-None-Match": "*"}
    )
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "file_too_large"

    create(client, "api/Build.py", b"x")
    clash = client.put(url("api/build.py"), content=b"y", headers={"If-None-Match": "*"})
    assert clash.status_code == 409
    assert clash.json()["error"]["code"] == "name_conflict"


def test_folders_move_and_delete(client: httpx.Client, runner: Runner) -> None:
    assert client.post("/api/workspace/folders", json={"path": "api/lib/deep"}).status_code == 201
    create(client, "api/lib/deep/x.py", b"x")
    moved = client.post("/api/workspace/move", json={"from": "api/lib", "to": "api/vendor/lib"})
    assert moved.status_code == 200 and moved.json()["type"] == "folder"
    assert (runner.workspace / "api/vendor/lib/deep/x.py").read_bytes() == b"x"
    refuse = client.delete(url("api/vendor"))
    assert refuse.status_code == 409 and refuse.json()["error"]["code"] == "folder_not_empty"
    assert client.delete(url("api/vendor") + "?recursive=true").status_code == 204
    assert not (runner.workspace / "api/vendor").exists()
    assert client.get(url("api/vendor/lib/deep/x.py")).status_code == 404


def test_binary_files_round_trip_untouched(client: httpx.Client) -> None:
    blob = bytes(range(256)) * 100
    create(client, "api/logo.png", blob)
    read = client.get(url("api/logo.png"))
    assert read.content == blob
    assert read.headers["X-Slipway-Text"] == "false"
    assert read.headers["Content-Type"] == "application/octet-stream"
    # Workspace files are never served as active content of the app's origin.
    assert read.headers["Content-Security-Policy"] == "sandbox"


def test_tree_lists_entries_with_etags_and_the_mode(client: httpx.Client) -> None:
    etag = create(client, "api/tree/one.py", b"1")
    tree = client.get("/api/workspace/tree").json()
    assert tree["mode"] == "manual" and tree["github"] is None
    assert tree["max_file_bytes"] == 10 * 1024 * 1024
    entries = {e["path"]: e for e in tree["entries"]}
    assert entries["api/tree"]["type"] == "folder"
    assert entries["api/tree/one.py"] == {**entries["api/tree/one.py"], "etag": etag, "size": 1, "text": True}


def test_archive_streams_every_file_with_nested_and_non_ascii_names(client: httpx.Client) -> None:
    files = {"zip/a.py": b"a", "zip/deep/ü/日本.txt": "héllo".encode(), "zip/bin.dat": bytes(range(256))}
    for path, body in files.items():
        create(client, path, body)
    response = client.get("/api/workspace/archive")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/zip"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="workspace-')
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None
    for path, body in files.items():
        assert archive.read(path) == body
    assert "zip/deep/ü/" in archive.namelist()


def test_every_change_is_journaled_with_who_and_the_etags(client: httpx.Client, runner: Runner) -> None:
    first = create(client, "api/journal/j.py", b"v1")
    second = client.put(url("api/journal/j.py"), content=b"v2", headers={"If-Match": first}).headers["ETag"]
    client.post("/api/workspace/move", json={"from": "api/journal/j.py", "to": "api/journal/k.py"})
    client.delete(url("api/journal/k.py"))

    rows = [
        row
        for row in runner.table_store().query_entities(WORKSPACE_JOURNAL_TABLE, "PartitionKey eq 'workspace'")
        if row["path"].startswith("api/journal/")
    ]
    # Newest first, as the row keys are written.
    assert [r["action"] for r in rows] == ["delete", "move", "update", "create"]
    assert {r["actor"] for r in rows} == {"developer"}
    update = rows[2]
    assert (update["old_etag"], update["new_etag"]) == (first, second)
    assert rows[1]["to_path"] == "api/journal/k.py"
    assert rows[0]["old_etag"] == second
    listed = client.get("/api/workspace/journal?limit=4").json()["entries"]
    assert [e["action"] for e in listed] == ["delete", "move", "update", "create"]


MUTATIONS = {
    ("PUT", "/api/workspace/files/{path}"): lambda c: c.put(
        url("api/ro.py"), content=b"x", headers={"If-Match": "*"}
    ),
    ("DELETE", "/api/workspace/files/{path}"): lambda c: c.delete(url("api/ro.py")),
    ("POST", "/api/workspace/folders"): lambda c: c.post(
        "/api/workspace/folders", json={"path": "api/ro-folder"}
    ),
    ("POST", "/api/workspace/move"): lambda c: c.post(
        "/api/workspace/move", json={"from": "api/ro.py", "to": "api/ro2.py"}
    ),
}


def test_every_mutating_route_is_refused_while_github_manages_the_workspace(
    client: httpx.Client, runner: Runner
) -> None:
    create(client, "api/ro.py", b"original")
    mutating = {
        (method, route.path_format)
        for router in ROUTERS
        for route in router.routes
        for method in getattr(route, "methods", ())
        if method in ("PUT", "POST", "DELETE", "PATCH") and route.path_format.startswith("/api/workspace")
    }
    assert mutating == set(MUTATIONS), "a new workspace mutation route needs a read-only check here"
    modes = WorkspaceModeStore(runner.table_store())
    modes.set_github("octo/flows", "main")
    try:
        for (method, path), call in MUTATIONS.items():
            response = call(client)
            assert response.status_code == 409, (method, path, response.text)
            error = response.json()["error"]
            assert error["code"] == "read_only"
            assert "octo/flows" in error["message"] and "main" in error["message"]
        assert (runner.workspace / "api/ro.py").read_bytes() == b"original"
        tree = client.get("/api/workspace/tree").json()
        assert tree["mode"] == "github" and tree["github"] == {"repository": "octo/flows", "branch": "main"}
        # Reading still works.
        assert client.get(url("api/ro.py")).status_code == 200
    finally:
        modes.set_manual()
    # Disconnecting re-enables editing at once.
    assert client.put(url("api/ro.py"), content=b"edited", headers={"If-Match": "*"}).status_code == 200


def test_workspace_files_land_in_the_workspace_folder(runner: Runner, client: httpx.Client) -> None:
    create(client, "api/where.txt", b"here")
    assert (Path(runner.workspace) / "api" / "where.txt").read_bytes() == b"here"
