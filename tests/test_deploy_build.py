"""The build half of the deploy pipeline: detect, install (with the dependency cache), test,
build and package, run for real on the sites in ``tests/fixtures/sites``.

Only one test touches the npm registry (the first install of ``npm-dep``, shared by the module);
every other install either has no dependencies or is pointed at a dead registry, so a download
attempt fails the test instead of passing silently.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from slipway.deploy.build import BuildDeadline, BuildFailed, BuildLimits, BuildResult, run_build
from slipway.deploy.cache import DependencyCache, cache_key, npm_tree_problem
from slipway.deploy.detect import BuildPlan, DetectError, detect_build
from slipway.deploy.package import DEPLOY_FILE, Package, PackageError, create_package

SITES = Path(__file__).parent / "fixtures" / "sites"
DEAD_REGISTRY = {"npm_config_registry": "http://127.0.0.1:9/"}
SECRETS = {
    "AzureWebJobsStorage": "DefaultEndpointsProtocol=https;AccountKey=leaked-storage-key",
    "SLIPWAY_GITHUB_TOKEN": "leaked-github-token",
    "AZURE_CLIENT_SECRET": "leaked-client-secret",
    "IDENTITY_HEADER": "leaked-identity-header",
    "MSI_SECRET": "leaked-msi-secret",
}


class Log:
    """A build's log as the caller sees it."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __call__(self, stream: str, line: str) -> None:
        self.lines.append((stream, line))

    @property
    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


def site(tmp_path: Path, name: str, *, files: dict[str, str] | None = None) -> Path:
    """A fresh copy of a fixture site, with some files replaced."""
    project = tmp_path / "project"
    shutil.copytree(SITES / name, project)
    for relative, content in (files or {}).items():
        (project / relative).parent.mkdir(parents=True, exist_ok=True)
        (project / relative).write_text(content)
    return project


def write_package_json(project: Path, **fields: object) -> None:
    (project / "package.json").write_text(json.dumps({"name": "p", "version": "1.0.0", **fields}))


def build(
    project: Path, tmp_path: Path, *, log: Log | None = None, **options: object
) -> tuple[BuildResult, Log]:
    log = log or Log()
    result = run_build(detect_build(project), build_dir=tmp_path / "scratch", log=log, **options)  # type: ignore[arg-type]
    return result, log


# ------------------------------------------------------------------------------------ detect


def test_folder_without_package_json_is_a_static_site_published_as_it_is() -> None:
    plan = detect_build(SITES / "static")
    assert plan.kind == "static"
    assert plan.output_dir == (SITES / "static").resolve()
    assert plan.install_command is None and plan.build_command is None


def test_static_site_without_root_index_is_published_from_public(tmp_path: Path) -> None:
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "index.html").write_text("<h1>hi</h1>")
    (tmp_path / "README.md").write_text("docs")
    assert detect_build(tmp_path).output_dir == (tmp_path / "public").resolve()


def test_static_site_without_any_index_html_is_refused(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("docs")
    with pytest.raises(DetectError, match=r"index\.html"):
        detect_build(tmp_path)


@pytest.mark.parametrize(
    ("lockfile", "manager", "install"),
    [
        ("package-lock.json", "npm", ("npm", "ci")),
        ("npm-shrinkwrap.json", "npm", ("npm", "ci")),
        ("yarn.lock", "yarn", ("yarn", "install", "--frozen-lockfile")),
        ("pnpm-lock.yaml", "pnpm", ("pnpm", "install", "--frozen-lockfile")),
        ("bun.lockb", "bun", ("bun", "install", "--frozen-lockfile")),
        ("bun.lock", "bun", ("bun", "install", "--frozen-lockfile")),
    ],
)
def test_lockfile_decides_the_package_manager_and_a_frozen_install(
    tmp_path: Path, lockfile: str, manager: str, install: tuple[str, ...]
) -> None:
    write_package_json(tmp_path, scripts={"build": "vite build"})
    (tmp_path / lockfile).write_text("{}")
    plan = detect_build(tmp_path)
    assert (plan.kind, plan.package_manager, plan.lockfile) == ("node", manager, lockfile)
    assert plan.install_command == install
    assert plan.build_command == (manager, "run", "build")
    assert plan.output_dir is None


def test_project_without_lockfile_uses_npm_install(tmp_path: Path) -> None:
    write_package_json(tmp_path)
    plan = detect_build(tmp_path)
    assert plan.package_manager == "npm"
    assert plan.install_command == ("npm", "install")
    assert plan.build_command is None and plan.test_command is None


def test_lockfiles_of_two_managers_are_an_error_naming_both(tmp_path: Path) -> None:
    write_package_json(tmp_path)
    (tmp_path / "package-lock.json").write_text("{}")
    (tmp_path / "yarn.lock").write_text("")
    with pytest.raises(DetectError, match=r"package-lock\.json, yarn\.lock"):
        detect_build(tmp_path)


def test_configured_package_manager_settles_a_lockfile_conflict(tmp_path: Path) -> None:
    write_package_json(tmp_path)
    (tmp_path / "package-lock.json").write_text("{}")
    (tmp_path / "yarn.lock").write_text("")
    plan = detect_build(tmp_path, package_manager="yarn")
    assert (plan.package_manager, plan.lockfile) == ("yarn", "yarn.lock")
    with pytest.raises(DetectError, match="not one of"):
        detect_build(tmp_path, package_manager="maven")


def test_package_json_package_manager_field_settles_a_lockfile_conflict(tmp_path: Path) -> None:
    write_package_json(tmp_path, packageManager="pnpm@9.1.0")
    (tmp_path / "package-lock.json").write_text("{}")
    (tmp_path / "pnpm-lock.yaml").write_text("")
    assert detect_build(tmp_path).package_manager == "pnpm"


def test_overrides_replace_build_command_and_output_folder(tmp_path: Path) -> None:
    write_package_json(tmp_path, scripts={"build": "vite build"})
    plan = detect_build(tmp_path, build_command="npm run export && cp -r assets site", output_dir="site")
    assert plan.build_command == ("/bin/sh", "-c", "npm run export && cp -r assets site")
    assert plan.output_dir == tmp_path.resolve() / "site"


@pytest.mark.parametrize("output_dir", ["../elsewhere", "site/../../elsewhere", "/etc", "escape"])
def test_output_folder_outside_the_project_is_refused(tmp_path: Path, output_dir: str) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (project / "escape").symlink_to(tmp_path / "elsewhere")
    write_package_json(project)
    with pytest.raises(DetectError, match="output folder"):
        detect_build(project, output_dir=output_dir)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "package.json is not valid JSON"),
        ("[1, 2]", "package.json must hold a JSON object"),
        ('{"scripts": {"build": 1}}', '"scripts" must be an object'),
        ('{"x": "' + "a" * (1024 * 1024) + '"}', "package.json is too big"),
    ],
)
def test_invalid_package_json_is_an_error_naming_it(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "package.json").write_text(content)
    with pytest.raises(DetectError, match=message):
        detect_build(tmp_path)


def test_npm_placeholder_test_script_is_not_a_test(tmp_path: Path) -> None:
    write_package_json(tmp_path, scripts={"test": 'echo "Error: no test specified" && exit 1'})
    assert detect_build(tmp_path).test_command is None
    write_package_json(tmp_path, scripts={"test": "vitest run"})
    assert detect_build(tmp_path).test_command == ("npm", "run", "test")


# ------------------------------------------------------------------------------------ builds


def test_static_fixture_builds_to_itself(tmp_path: Path) -> None:
    project = site(tmp_path, "static")
    result, log = build(project, tmp_path)
    assert result.output_dir == project.resolve()
    assert "static site" in log.text


def test_npm_build_fixture_installs_tests_and_builds(tmp_path: Path) -> None:
    project = site(tmp_path, "npm-build")
    result, log = build(project, tmp_path)
    assert result.output_dir == project.resolve() / "dist"
    assert "Built by Node" in (result.output_dir / "index.html").read_text()
    assert "$ npm ci" in log.text
    assert "tests passed" in log.text
    assert log.text.index("tests passed") < log.text.index("built dist/index.html")


def test_failing_test_stops_the_build_with_its_output(tmp_path: Path) -> None:
    project = site(
        tmp_path, "npm-build", files={"test.js": 'console.error("expected 2, got 3"); process.exit(1);\n'}
    )
    log = Log()
    with pytest.raises(BuildFailed) as failed:
        build(project, tmp_path, log=log)
    assert (failed.value.phase, failed.value.reason, failed.value.exit_code) == ("test", "failed", 1)
    assert "expected 2, got 3" in failed.value.output_tail
    assert ("stderr", "expected 2, got 3") in log.lines
    assert not (project / "dist").exists()


HANGING_BUILD = """
const { spawn } = require("node:child_process");
// A grandchild that ignores SIGTERM: only SIGKILL of the whole group ends it.
spawn(process.execPath, ["-e", "process.on('SIGTERM', () => {}); console.log('grandchild up'); setInterval(() => {}, 1000)", "MARKER"],
      { stdio: "inherit" });
process.on("SIGTERM", () => {});
console.log("building forever");
setInterval(() => {}, 1000);
"""


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def wait_until_gone(marker: str, seconds: float = 3.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def test_build_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    marker = f"slipway-timeout-{os.getpid()}-{time.monotonic_ns()}"
    project = site(tmp_path, "npm-build", files={"build.js": HANGING_BUILD.replace("MARKER", marker)})
    log = Log()
    started = time.monotonic()
    with pytest.raises(BuildFailed) as failed:
        build(project, tmp_path, log=log, limits=BuildLimits(build_timeout=1.5, kill_grace=0.3))
    assert (failed.value.phase, failed.value.reason) == ("build", "timed_out")
    assert "building forever" in log.text and "grandchild up" in log.text
    assert time.monotonic() - started < 10
    assert wait_until_gone(marker) == []


def test_a_phase_gets_only_the_time_left_before_the_builds_deadline(tmp_path: Path) -> None:
    marker = f"slipway-deadline-{os.getpid()}-{time.monotonic_ns()}"
    project = site(tmp_path, "npm-build", files={"build.js": HANGING_BUILD.replace("MARKER", marker)})
    log = Log()
    started = time.monotonic()
    deadline = BuildDeadline(started + 8, "host.json's functionTimeout of 00:02:08 less 120 s")
    with pytest.raises(BuildFailed) as failed:
        build(
            project,
            tmp_path,
            log=log,
            limits=BuildLimits(build_timeout=600, kill_grace=0.3),
            deadline=deadline,
        )
    assert (failed.value.phase, failed.value.reason) == ("build", "timed_out")
    assert (
        "not its 600 s: the whole build must end within host.json's functionTimeout of 00:02:08" in log.text
    )
    assert time.monotonic() - started < 12
    assert wait_until_gone(marker) == []


def test_a_phase_is_not_started_once_the_builds_deadline_has_passed(tmp_path: Path) -> None:
    project = site(tmp_path, "npm-build")
    spent = BuildDeadline(time.monotonic(), "host.json's functionTimeout of 01:00:00 less 120 s")
    with pytest.raises(BuildFailed) as failed:
        build(project, tmp_path, deadline=spent)
    assert (failed.value.phase, failed.value.reason) == ("install", "timed_out")
    assert str(failed.value) == (
        "install not started: no time is left for it (host.json's functionTimeout of 01:00:00 less 120 s)"
    )


def test_cancel_through_should_stop_kills_the_build(tmp_path: Path) -> None:
    marker = f"slipway-cancel-{os.getpid()}-{time.monotonic_ns()}"
    project = site(tmp_path, "npm-build", files={"build.js": HANGING_BUILD.replace("MARKER", marker)})
    log = Log()

    def should_stop() -> bool:
        return "grandchild up" in log.text

    started = time.monotonic()
    with pytest.raises(BuildFailed) as failed:
        build(project, tmp_path, log=log, should_stop=should_stop, limits=BuildLimits(kill_grace=0.3))
    assert (failed.value.phase, failed.value.reason) == ("build", "canceled")
    assert time.monotonic() - started < 10
    assert wait_until_gone(marker) == []


PRINT_ENV = """
const fs = require("node:fs");
console.log("ENV " + JSON.stringify(process.env));
fs.mkdirSync("dist", { recursive: true });
fs.writeFileSync("dist/index.html", "ok");
"""


def test_build_runs_in_a_clean_environment_without_the_workers_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    project = site(tmp_path, "npm-build", files={"build.js": PRINT_ENV})
    _, log = build(project, tmp_path, env={"PUBLIC_API_URL": "https://api.example"})
    printed = next(line for _, line in log.lines if line.startswith("ENV "))
    env = json.loads(printed[4:])
    assert not [
        name for name in env if name.startswith(("AzureWebJobs", "SLIPWAY_", "AZURE_", "IDENTITY_", "MSI_"))
    ]
    assert not [value for value in SECRETS.values() if value in log.text]
    assert env["CI"] == "true"
    assert env["NODE_ENV"] == "production"
    assert env["HOME"] == str(tmp_path / "scratch" / "home")
    assert env["npm_config_cache"] == str(tmp_path / "scratch" / "npm-cache")
    assert env["PUBLIC_API_URL"] == "https://api.example"
    with pytest.raises(ValueError, match="AZURE_TENANT_ID"):
        build(project, tmp_path, env={"AZURE_TENANT_ID": "x"})


def test_log_stops_at_its_size_limit_with_a_marker(tmp_path: Path) -> None:
    noisy = 'for (let i = 0; i < 5000; i++) console.log("line " + i);\n' + PRINT_ENV.replace(
        'console.log("ENV " + JSON.stringify(process.env));', ""
    )
    project = site(tmp_path, "npm-build", files={"build.js": noisy})
    result, log = build(project, tmp_path, limits=BuildLimits(max_log_bytes=4096))
    assert result.log_truncated
    markers = [line for stream, line in log.lines if "log limit of 4096 bytes reached" in line]
    assert len(markers) == 1
    assert log.lines[-1][1] == markers[0]
    assert sum(len(line) + 1 for _, line in log.lines[:-1]) <= 4096
    assert (result.output_dir / "index.html").is_file()


# ------------------------------------------------------------------------------------- cache


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BuildResult, Log]:
    """The suite's one networked install: ``npm-dep`` built with an empty cache."""
    root = tmp_path_factory.mktemp("warm")
    project = site(root, "npm-dep")
    log = Log()
    result = run_build(
        detect_build(project), build_dir=root / "scratch", log=log, cache=DependencyCache(root / "cache")
    )
    return root / "cache", result, log


def test_first_install_saves_node_modules_to_the_cache(warm_cache: tuple[Path, BuildResult, Log]) -> None:
    cache_root, result, log = warm_cache
    assert not result.cache_restored and result.cache_saved
    assert "$ npm ci" in log.text
    assert DependencyCache(cache_root).list_keys() == [result.cache_key]
    assert (cache_root / str(result.cache_key) / "node_modules" / "escape-html" / "index.js").is_file()


def test_second_install_restores_from_the_cache_without_the_network(
    tmp_path: Path, warm_cache: tuple[Path, BuildResult, Log]
) -> None:
    cache_root, first, _ = warm_cache
    cache = DependencyCache(tmp_path / "cache")
    shutil.copytree(cache_root, cache.root, symlinks=True)
    project = site(tmp_path, "npm-dep")
    # A dead registry: any download would fail the install.
    result, log = build(project, tmp_path, cache=cache, env=DEAD_REGISTRY)
    assert result.cache_restored and result.cache_key == first.cache_key
    assert "$ npm ci" not in log.text and "$ npm install" not in log.text  # no npm process at all
    assert "[the restored dependencies match the lockfile: nothing to install]" in log.text
    assert "Fish &amp; &lt;Chips&gt;" in (result.output_dir / "index.html").read_text()


def test_restored_tree_missing_a_package_is_caught_offline(
    tmp_path: Path, warm_cache: tuple[Path, BuildResult, Log]
) -> None:
    cache_root, first, _ = warm_cache
    cache = DependencyCache(tmp_path / "cache")
    shutil.copytree(cache_root, cache.root, symlinks=True)
    shutil.rmtree(cache.root / str(first.cache_key) / "node_modules" / "escape-html")
    project = site(tmp_path, "npm-dep")
    log = Log()
    with pytest.raises(BuildFailed) as failed:
        # No retries: npm's default backoff spends about 70 s on a refused connection.
        build(project, tmp_path, cache=cache, env={**DEAD_REGISTRY, "npm_config_fetch_retries": "0"}, log=log)
    # The check refused the bad tree; the fresh install then needed the (dead) registry.
    assert "do not match the lockfile (node_modules/escape-html is missing)" in log.text
    assert "$ npm ci" in log.text
    assert failed.value.phase == "install"


def test_cache_key_rotates_with_lockfile_manager_and_node_version(tmp_path: Path) -> None:
    project = site(tmp_path, "npm-dep")
    plan = detect_build(project)
    key = cache_key(plan, node_major=20)
    assert key == cache_key(detect_build(project), node_major=20)
    assert key != cache_key(plan, node_major=22)
    yarn = BuildPlan(
        kind="node", project_dir=plan.project_dir, package_manager="yarn", lockfile=plan.lockfile
    )
    assert key != cache_key(yarn, node_major=20)
    (project / "package-lock.json").write_text((project / "package-lock.json").read_text() + "\n")
    assert key != cache_key(detect_build(project), node_major=20)
    assert cache_key(detect_build(SITES / "static"), node_major=20) is None


def modules(project: Path, content: str) -> Path:
    (project / "node_modules" / "dep").mkdir(parents=True, exist_ok=True)
    (project / "node_modules" / "dep" / "index.js").write_text(content)
    return project


def test_cache_keeps_only_the_most_recent_keys(tmp_path: Path) -> None:
    cache = DependencyCache(tmp_path / "cache", keep=2)
    project = modules(tmp_path / "p", "x")
    for key in ("a", "b", "c"):
        assert cache.save(key, project)
        time.sleep(0.01)
    assert cache.list_keys() == ["c", "b"]
    os.utime(cache.root / "b", (time.time() + 5, time.time() + 5))  # b used last
    assert cache.save("d", project)
    assert cache.list_keys() == ["b", "d"]
    assert not [p for p in cache.root.iterdir() if p.name.startswith(".")]


def test_two_builds_saving_the_same_key_at_once_leave_one_intact_entry(tmp_path: Path) -> None:
    cache = DependencyCache(tmp_path / "cache")
    projects = [modules(tmp_path / f"p{i}", "same\n" * 20000) for i in range(4)]
    results: list[bool] = []
    barrier = threading.Barrier(len(projects))

    def save(project: Path) -> None:
        barrier.wait()
        results.append(cache.save("k", project))

    threads = [threading.Thread(target=save, args=(p,)) for p in projects]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1
    assert cache.list_keys() == ["k"]
    restored = tmp_path / "restored"
    restored.mkdir()
    assert cache.restore("k", restored)
    assert (restored / "node_modules" / "dep" / "index.js").read_text() == "same\n" * 20000
    assert not [p for p in cache.root.iterdir() if p.name.startswith(".")]


def test_restore_misses_on_unknown_key(tmp_path: Path) -> None:
    assert not DependencyCache(tmp_path / "cache").restore("nope", tmp_path)
    assert not (tmp_path / "node_modules").exists()


# ----------------------------------------------------------------------------------- package


def package(output: Path, tmp_path: Path, name: str, **deploy: object) -> Package:
    fields = {
        "deployment_id": "dep-1",
        "site": "docs",
        "commit": "0123abcd",
        "built_at": datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
    }
    fields.update(deploy)
    return create_package(output, tmp_path / name, **fields)  # type: ignore[arg-type]


def test_same_output_gives_the_same_zip_and_content_address(tmp_path: Path) -> None:
    output = site(tmp_path, "static")
    first = package(output, tmp_path, "a.zip")
    for path in output.rglob("*"):
        os.utime(path, (1_000_000, 1_000_000))  # timestamps do not matter
    again = package(output, tmp_path, "b.zip")
    other = package(output, tmp_path, "c.zip", deployment_id="dep-2")
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    assert first.sha256 == again.sha256
    assert other.sha256 != first.sha256
    assert other.content_sha256 == first.content_sha256
    (output / "style.css").write_text("body { color: red; }")
    changed = package(output, tmp_path, "d.zip")
    assert changed.content_sha256 != first.content_sha256


def test_zip_holds_sorted_files_with_fixed_timestamps_and_the_deploy_file(tmp_path: Path) -> None:
    output = site(
        tmp_path, "static", files={"assets/app.js": "1", ".well-known/slipway-deploy.json": "forged"}
    )
    package(output, tmp_path, "a.zip")
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        names = archive.namelist()
        assert names == sorted(names) == [DEPLOY_FILE, "assets/app.js", "index.html", "style.css"]
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        deploy = json.loads(archive.read(DEPLOY_FILE))
    assert deploy == {
        "deployment": "dep-1",
        "site": "docs",
        "commit": "0123abcd",
        "built_at": "2026-11-23T12:00:00Z",
    }


def test_links_inside_the_output_are_followed_and_links_outside_refused(tmp_path: Path) -> None:
    output = site(tmp_path, "static")
    (output / "home.html").symlink_to("index.html")
    package(output, tmp_path, "a.zip")
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        assert archive.read("home.html") == (output / "index.html").read_bytes()
    (tmp_path / "secret.txt").write_text("key")
    (output / "leak.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(PackageError, match=r"leak\.txt is a link to .*outside the output folder"):
        package(output, tmp_path, "b.zip")
    (output / "leak.txt").unlink()
    (output / "loop").symlink_to(".")
    with pytest.raises(PackageError, match="loop"):
        package(output, tmp_path, "c.zip")


def test_built_site_packages_end_to_end(tmp_path: Path) -> None:
    project = site(tmp_path, "npm-build")
    result, _ = build(project, tmp_path)
    made = package(result.output_dir, tmp_path, "site.zip")
    with zipfile.ZipFile(made.path) as archive:
        assert archive.namelist() == [DEPLOY_FILE, "index.html", "robots.txt"]


def test_plan_is_frozen() -> None:
    plan = detect_build(SITES / "static")
    with pytest.raises(AttributeError):
        plan.kind = "node"  # type: ignore[misc]
    assert isinstance(plan, BuildPlan)


def test_a_restored_npm_tree_is_checked_against_the_lockfile_without_npm(tmp_path: Path) -> None:
    project = site(tmp_path, "npm-dep")
    lock = json.loads((project / "package-lock.json").read_text())
    lock["packages"]["node_modules/fsevents"] = {"version": "2.3.3", "optional": True}  # another platform's
    (project / "package-lock.json").write_text(json.dumps(lock))
    assert npm_tree_problem(project) == "node_modules/escape-html is missing"
    installed = project / "node_modules" / "escape-html"
    installed.mkdir(parents=True)
    (installed / "package.json").write_text('{"name": "escape-html", "version": "1.0.2"}')
    assert npm_tree_problem(project) == "node_modules/escape-html is 1.0.2, the lockfile wants 1.0.3"
    (installed / "package.json").write_text('{"name": "escape-html", "version": "1.0.3"}')
    assert npm_tree_problem(project) is None
    (project / "package-lock.json").write_text('{"lockfileVersion": 1, "dependencies": {}}')
    assert npm_tree_problem(project) is not None  # an old lockfile is never taken as matching


def test_cache_key_follows_the_declared_dependencies_not_the_scripts(tmp_path: Path) -> None:
    project = site(tmp_path, "npm-dep")
    key = cache_key(detect_build(project), node_major=20)
    manifest = json.loads((project / "package.json").read_text())
    manifest.setdefault("scripts", {})["lint"] = "echo lint"
    (project / "package.json").write_text(json.dumps(manifest))
    assert cache_key(detect_build(project), node_major=20) == key
    manifest["dependencies"]["left-pad"] = "1.3.0"  # package.json no longer matches the lockfile
    (project / "package.json").write_text(json.dumps(manifest))
    assert cache_key(detect_build(project), node_major=20) != key
