"""The local static host: sites published as releases to a folder, served at /sites/{site}/.

Everything is read over real HTTP from the API that ``create_api`` builds, as a browser would.
"""

from __future__ import annotations

import http.client
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from slipway.adapters.local_sites import LocalSitesPublisher, SiteNameRejected
from slipway.adapters.staticwebapps import PublishFailed, PublishTimedOut, StaticWebAppsError
from slipway.api.app import create_api
from slipway.bootstrap import build_services
from slipway.config import load_settings
from slipway.local.runner import DevOptions, compose_environment


def build(folder: Path, files: dict[str, str | bytes]) -> Path:
    """A built site: ``files`` by relative path."""
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return folder


def raw_get(url: str, path: str, method: str = "GET") -> int:
    """The status of ``path`` sent exactly as written (httpx would normalise ``..`` away)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


class Host:
    def __init__(self, url: str, publisher: LocalSitesPublisher, client: httpx.Client) -> None:
        self.url = url
        self.publisher = publisher
        self.client = client

    def publish(self, site: str, folder: Path) -> str:
        return self.publisher.publish(site, folder, log=lambda _: None, timeout=30).url


@pytest.fixture
def sites_dir(tmp_path: Path) -> Path:
    return tmp_path / "sites"


@pytest.fixture
def host(base_env: dict[str, str], sites_dir: Path, live_server: type) -> Iterator[Host]:
    api = create_api(build_services(load_settings({**base_env, "SLIPWAY_LOCAL_SITES_DIR": str(sites_dir)})))
    with live_server(api) as server, server.client() as client:
        yield Host(server.url, LocalSitesPublisher(sites_dir, server.url), client)


def test_each_publish_is_served_at_the_url_it_returns(host: Host, tmp_path: Path) -> None:
    first = build(tmp_path / "v1", {"index.html": "<h1>one</h1>", "a/b.css": "h1 { color: red }"})
    second = build(tmp_path / "v2", {"index.html": "<h1>two</h1>", "a/b.css": "h1 { color: blue }"})

    url = host.publish("demo", first)
    assert url == f"{host.url}/sites/demo/"
    assert host.client.get(url).text == "<h1>one</h1>"
    assert host.client.get(url + "a/b.css").text == "h1 { color: red }"
    release_one = host.publisher.get_current_release("demo")

    assert host.publish("demo", second) == url
    assert host.client.get(url).text == "<h1>two</h1>"  # at once: no cache, no restart
    assert host.client.get(url + "a/b.css").text == "h1 { color: blue }"
    assert host.publisher.get_current_release("demo") != release_one
    assert host.publisher.list_releases("demo") == [release_one, host.publisher.get_current_release("demo")]


def test_files_have_their_content_type_and_are_never_cached(host: Host, tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    site = build(
        tmp_path / "site",
        {
            "index.html": "<p>home</p>",
            "assets/app.js": "console.log(1)",
            "assets/app.css": "p {}",
            "logo.svg": "<svg/>",
            "data.json": "{}",
            "img/logo.png": png,
        },
    )
    host.publish("types", site)
    expected = {
        "": "text/html; charset=utf-8",
        "index.html": "text/html; charset=utf-8",
        "assets/app.js": "text/javascript; charset=utf-8",
        "assets/app.css": "text/css; charset=utf-8",
        "logo.svg": "image/svg+xml",
        "data.json": "application/json",
        "img/logo.png": "image/png",
    }
    for path, content_type in expected.items():
        response = host.client.get(f"/sites/types/{path}")
        assert response.status_code == 200, path
        assert response.headers["content-type"] == content_type, path
        assert response.headers["cache-control"] == "no-cache", path
    assert host.client.get("/sites/types/img/logo.png").content == png


def test_a_folder_serves_its_index_and_gets_its_slash(host: Host, tmp_path: Path) -> None:
    host.publish("docs", build(tmp_path / "site", {"index.html": "top", "guide/index.html": "guide"}))
    assert host.client.get("/sites/docs/guide/").text == "guide"
    redirect = host.client.get("/sites/docs/guide?x=1")
    assert redirect.status_code == 307 and redirect.headers["location"] == "/sites/docs/guide/?x=1"
    assert host.client.get("/sites/docs/guide", follow_redirects=True).text == "guide"
    assert host.client.get("/sites/docs", follow_redirects=True).text == "top"


def test_head_answers_the_headers_without_a_body(host: Host, tmp_path: Path) -> None:
    host.publish("demo", build(tmp_path / "site", {"index.html": "x" * 1234}))
    response = host.client.head("/sites/demo/")
    assert response.status_code == 200
    assert response.headers["content-length"] == "1234"
    assert response.headers["cache-control"] == "no-cache"
    assert response.content == b""
    assert host.client.head("/sites/demo/missing.js").status_code == 404
    assert host.client.post("/sites/demo/").status_code == 405


def test_unknown_sites_files_and_folders_without_index_are_404(host: Host, tmp_path: Path) -> None:
    host.publish("demo", build(tmp_path / "site", {"index.html": "x", "empty/.keep": ""}))
    for path in (
        "/sites/nosuch/",
        "/sites/nosuch/index.html",
        "/sites/demo/missing.css",
        "/sites/demo/empty/",
    ):
        assert host.client.get(path).status_code == 404, path
    assert host.client.get("/sites/UPPER/").status_code == 404
    assert host.client.get("/sites/").status_code == 404


def test_paths_out_of_the_release_are_404(host: Host, tmp_path: Path, sites_dir: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    site = build(tmp_path / "site", {"index.html": "x", "inner/page.html": "inner"})
    os.symlink(outside, site / "leak.txt")  # a link in the build that leaves it
    os.symlink(tmp_path, site / "up")
    os.symlink("inner/page.html", site / "alias.html")  # a link that stays inside: fine
    host.publish("demo", site)
    host.publish("other", build(tmp_path / "other", {"index.html": "other"}))
    (sites_dir / "demo" / "notes.txt").write_text("beside the releases")

    attempts = [
        "/sites/demo/../other/",
        "/sites/demo/../../secret.txt",
        "/sites/demo/%2e%2e/%2e%2e/secret.txt",
        "/sites/demo/inner/%2E%2E/%2E%2E/notes.txt",
        "/sites/demo/..%2f..%2fnotes.txt",
        "/sites/demo/%2e%2e%5cnotes.txt",
        "/sites/demo//etc/passwd",
        "/sites/demo/" + str(outside),
        "/sites/demo/leak.txt",
        "/sites/demo/up/secret.txt",
        "/sites/demo/./index.html",
        "/sites/..%2fdemo/notes.txt",
        "/sites/%2e%2e/",
    ]
    for path in attempts:
        assert raw_get(host.url, path) == 404, path
    assert raw_get(host.url, "/sites/demo/alias.html") == 200
    assert host.client.get("/sites/demo/alias.html").text == "inner"


def test_a_reader_never_sees_a_missing_or_half_published_site(host: Host, tmp_path: Path) -> None:
    # Large, many-file releases make a non-atomic switch very likely to be seen mid-copy.
    bodies = {n: f"<!-- release {n} -->" + "x" * 200_000 for n in range(8)}
    folders = [
        build(
            tmp_path / f"v{n}",
            {"index.html": body, **{f"assets/{i}.css": f"/* {n} */" for i in range(150)}},
        )
        for n, body in bodies.items()
    ]
    host.publish("busy", folders[0])
    seen: list[tuple[int, str]] = []
    reading, stop = threading.Event(), threading.Event()

    def read() -> None:
        with httpx.Client(base_url=host.url, timeout=10) as client:
            while not stop.is_set():
                index = client.get("/sites/busy/")
                asset = client.get("/sites/busy/assets/149.css")
                seen.append((index.status_code, index.text))
                seen.append((asset.status_code, asset.text))
                reading.set()

    reader = threading.Thread(target=read)
    reader.start()
    assert reading.wait(timeout=10)
    try:
        for folder in folders[1:]:
            host.publish("busy", folder)
    finally:
        stop.set()
        reader.join(timeout=30)
    assert len(seen) > 2
    assert {status for status, _ in seen} == {200}
    valid = set(bodies.values()) | {f"/* {n} */" for n in bodies}
    assert not [text[:40] for _, text in seen if text not in valid]
    assert host.client.get("/sites/busy/").text == bodies[7]


def test_old_releases_beyond_keep_are_deleted_but_never_the_live_one(tmp_path: Path) -> None:
    root = tmp_path / "sites"
    publisher = LocalSitesPublisher(root, "http://127.0.0.1:7071", keep=3)
    published = []
    for n in range(5):
        publisher.publish("demo", build(tmp_path / f"v{n}", {"index.html": str(n)}), log=print, timeout=30)
        published.append(publisher.get_current_release("demo"))
    assert publisher.list_releases("demo") == published[-3:]
    assert (root / "demo" / "current" / "index.html").read_text() == "4"

    # A rollback (by hand here) makes an older release live; pruning to one keeps it anyway.
    oldest = published[2]
    os.symlink(f"releases/{oldest}", root / "demo" / "rollback")
    os.replace(root / "demo" / "rollback", root / "demo" / "current")
    assert publisher.get_current_release("demo") == oldest
    removed = LocalSitesPublisher(root, "http://x", keep=1).delete_old_releases("demo")
    assert removed == [published[3]]
    assert publisher.list_releases("demo") == [oldest, published[4]]
    assert (root / "demo" / "current" / "index.html").read_text() == "2"


def test_the_log_says_what_was_published_and_what_was_removed(tmp_path: Path) -> None:
    publisher = LocalSitesPublisher(tmp_path / "sites", "http://127.0.0.1:7071/", keep=1)
    lines: list[str] = []
    publisher.publish("demo", build(tmp_path / "a", {"index.html": "a"}), log=lines.append, timeout=30)
    first = publisher.get_current_release("demo")
    result = publisher.publish(
        "demo", build(tmp_path / "b", {"index.html": "b"}), log=lines.append, timeout=30
    )
    assert result.url == "http://127.0.0.1:7071/sites/demo/"
    assert any("as release" in line for line in lines)
    assert any(first in line and "removed 1 old release" in line for line in lines)


@pytest.mark.parametrize(
    "name", ["a", "Demo", "-demo", "demo-", "de_mo", "../etc", "de.mo", "a" * 41, "", "current/x"]
)
def test_a_site_name_outside_the_static_web_apps_rules_is_refused(tmp_path: Path, name: str) -> None:
    publisher = LocalSitesPublisher(tmp_path / "sites", "http://127.0.0.1:7071")
    folder = build(tmp_path / "site", {"index.html": "x"})
    with pytest.raises(SiteNameRejected, match="2-40 lowercase letters, digits and hyphens") as caught:
        publisher.publish(name, folder, log=print, timeout=30)
    assert isinstance(caught.value, StaticWebAppsError)
    assert not (tmp_path / "sites").exists() or not any((tmp_path / "sites").iterdir())


@pytest.mark.parametrize("name", ["ab", "my-site-2", "a" * 40, "0x"])
def test_names_within_the_rules_are_accepted(tmp_path: Path, name: str) -> None:
    publisher = LocalSitesPublisher(tmp_path / "sites", "http://h")
    result = publisher.publish(name, build(tmp_path / "site", {"index.html": "x"}), log=print, timeout=30)
    assert result.url == f"http://h/sites/{name}/"


def test_a_missing_folder_or_a_timeout_fails_and_leaves_the_live_release(tmp_path: Path) -> None:
    publisher = LocalSitesPublisher(tmp_path / "sites", "http://h")
    publisher.publish("demo", build(tmp_path / "v1", {"index.html": "v1"}), log=print, timeout=30)
    live = publisher.get_current_release("demo")
    with pytest.raises(PublishFailed, match="does not exist"):
        publisher.publish("demo", tmp_path / "nothing", log=print, timeout=30)
    with pytest.raises(PublishTimedOut):
        publisher.publish("demo", build(tmp_path / "v2", {"index.html": "v2"}), log=print, timeout=-1)
    assert publisher.get_current_release("demo") == live
    assert publisher.list_releases("demo") == [live]
    assert [p.name for p in (tmp_path / "sites" / "demo" / "releases").iterdir()] == [live]  # no leftovers


def test_no_sites_are_served_when_the_setting_is_empty(
    base_env: dict[str, str], live_server: type, tmp_path: Path
) -> None:
    sites = tmp_path / "sites"
    LocalSitesPublisher(sites, "http://h").publish(
        "demo", build(tmp_path / "site", {"index.html": "x"}), log=print, timeout=30
    )
    api = create_api(build_services(load_settings(base_env)))
    with live_server(api) as server, server.client() as client:
        response = client.get("/sites/demo/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"  # the API's own 404, not a file


def test_sites_win_over_the_web_ui_mounted_at_the_root(
    base_env: dict[str, str], live_server: type, tmp_path: Path
) -> None:
    web = build(tmp_path / "web", {"index.html": "ui", "sites/demo/index.html": "ui's copy"})
    sites = tmp_path / "sites"
    LocalSitesPublisher(sites, "http://h").publish(
        "demo", build(tmp_path / "site", {"index.html": "site"}), log=print, timeout=30
    )
    env = {**base_env, "SLIPWAY_WEB_DIR": str(web), "SLIPWAY_LOCAL_SITES_DIR": str(sites)}
    with live_server(create_api(build_services(load_settings(env)))) as server, server.client() as client:
        assert client.get("/sites/demo/").text == "site"
        assert client.get("/").text == "ui"
        assert client.get("/sites/nosuch/").status_code == 404


def test_slipway_dev_serves_sites_from_its_data_folder(tmp_path: Path) -> None:
    env = compose_environment(
        DevOptions(data=tmp_path / "data", app_root=tmp_path), {}, "UseDevelopmentStorage=true"
    )
    assert env["SLIPWAY_LOCAL_SITES_DIR"] == str((tmp_path / "data" / "sites").resolve())
