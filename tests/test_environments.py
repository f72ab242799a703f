"""Packages per workflow: a workflow's `# /// script` block and the shared requirements.txt are
read with their lines, resolved by the real uv to a hashed lock, and built once into an
environment whose python imports them, that no other user can write, across threads and
processes, surviving a build killed midway. Wheels are written by the tests and served from a
folder; one test installs `requests` from PyPI."""

from __future__ import annotations

import base64
import hashlib
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import pytest

from slipway.config import load_settings
from slipway.environments import (
    Environments,
    Lock,
    RequirementsError,
    ResolutionError,
    requirements_of,
)

TIMEOUT = 60.0


def write_wheel(folder: Path, name: str, version: str, *, requires: tuple[str, ...] = ()) -> Path:
    """A minimal pure-Python wheel: a package whose VERSION is ``version``."""
    module = name.replace("-", "_")
    dist = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": f"VERSION = {version!r}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, content in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(content.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(content.encode())}")
    files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    wheel = folder / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, content in files.items():
            archive.writestr(path, content)
    return wheel


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    write_wheel(folder, "sw-alpha", "1.0", requires=("sw-beta>=1.1",))
    write_wheel(folder, "sw-beta", "1.0")
    write_wheel(folder, "sw-beta", "1.2")
    write_wheel(folder, "sw-gamma", "3.0")
    return folder


def make_environments(root: Path, wheels: Path, **options: object) -> Environments:
    empty_index = root.parent / "empty-index"
    empty_index.mkdir(parents=True, exist_ok=True)
    return Environments(root, index_url=empty_index.as_uri(), find_links=str(wheels), **options)  # type: ignore[arg-type]


@pytest.fixture
def environments(tmp_path: Path, wheels: Path) -> Environments:
    return make_environments(tmp_path / "environments", wheels)


def script(*dependencies: str) -> bytes:
    listed = "".join(f'#   "{d}",\n' for d in dependencies)
    return (
        f"# /// script\n# dependencies = [\n{listed}# ]\n# ///\nfrom slipway.sdk import workflow\n".encode()
    )


def lock_of(environments: Environments, *dependencies: str) -> Lock:
    return environments.resolve(
        requirements_of(script(*dependencies), "workflows/w.py", None), timeout=TIMEOUT
    )


def run_python(python: Path, code: str) -> str:
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


# Reading requirements ---------------------------------------------------------------------


def test_script_block_and_shared_requirements_are_read_with_their_files_and_lines() -> None:
    source = textwrap.dedent(
        """\
        '''Fetch the feed.'''
        # /// script
        # requires-python = ">=3.11"
        # dependencies = [
        #   "requests>=2.31",
        #   "Rich[jupyter]; python_version >= '3.11'",
        # ]
        # ///
        import requests
        """
    ).encode()
    shared = b"# shared by every workflow\n\nhttpx==0.28.1  # pinned\n"
    found = requirements_of(source, "workflows/fetch.py", shared)
    assert [(r.text, r.name, r.file, r.line) for r in found] == [
        ("httpx==0.28.1", "httpx", "workflows/requirements.txt", 3),
        ("requests>=2.31", "requests", "workflows/fetch.py", 5),
        ('Rich[jupyter]; python_version >= "3.11"', "rich", "workflows/fetch.py", 6),
    ]


def test_a_workflow_without_a_script_block_asks_for_nothing() -> None:
    assert requirements_of(b"# /// not-script\n# x = 1\n# ///\nimport os\n", "workflows/a.py", None) == []


def test_malformed_toml_in_the_script_block_is_reported_at_its_line() -> None:
    source = b"import os\n# /// script\n# dependencies = [\n#   'requests',\n#   oops\n# ]\n# ///\n"
    with pytest.raises(RequirementsError) as caught:
        requirements_of(source, "workflows/bad.py", None)
    assert (caught.value.file, caught.value.line) == ("workflows/bad.py", 5)
    assert "not valid TOML" in caught.value.message


def test_an_invalid_requirement_string_is_reported_at_its_line() -> None:
    with pytest.raises(RequirementsError) as caught:
        requirements_of(script("requests", "not a requirement!"), "workflows/w.py", None)
    assert (caught.value.file, caught.value.line) == ("workflows/w.py", 4)
    assert "not a requirement!" in caught.value.message


def test_requires_python_that_excludes_this_interpreter_is_refused_at_its_line() -> None:
    source = b"# /// script\n# dependencies = []\n# requires-python = '<3'\n# ///\n"
    with pytest.raises(RequirementsError) as caught:
        requirements_of(source, "workflows/old.py", None)
    assert caught.value.line == 3
    assert "requires Python <3" in caught.value.message


@pytest.mark.parametrize("option", ["-r other.txt", "-e .", "--index-url https://evil.example/simple"])
def test_option_lines_of_the_shared_requirements_are_refused_naming_the_line(option: str) -> None:
    shared = f"requests\n# a comment\n{option}\n".encode()
    with pytest.raises(RequirementsError) as caught:
        requirements_of(b"", "workflows/w.py", shared)
    assert (caught.value.file, caught.value.line) == ("workflows/requirements.txt", 3)
    assert option.split()[0] in caught.value.message


@pytest.mark.parametrize(
    "url", ["pkg @ file:///etc/passwd", "pkg @ git+https://github.com/a/b", "pkg @ http://x.example/p.whl"]
)
def test_requirements_by_local_git_or_plain_http_url_are_refused(url: str) -> None:
    with pytest.raises(RequirementsError) as caught:
        requirements_of(b"", "workflows/w.py", f"{url}\n".encode())
    assert caught.value.line == 1


# Resolving and building -------------------------------------------------------------------


def test_resolved_environment_has_a_python_that_imports_the_packages_and_nothing_of_the_platform(
    environments: Environments,
) -> None:
    lock = lock_of(environments, "sw-alpha")
    assert lock.packages == ("sw-alpha==1.0", "sw-beta==1.2")
    assert "--hash=sha256:" in lock.text
    assert lock.key == hashlib.sha256(lock.text.encode()).hexdigest()
    lines: list[str] = []
    python = environments.ensure(lock, log=lines.append, timeout=TIMEOUT)
    assert environments.is_ready(lock)
    assert (
        run_python(python, "import sw_alpha, sw_beta; print(sw_alpha.VERSION, sw_beta.VERSION)") == "1.0 1.2"
    )
    assert run_python(python, "import importlib.util as u; print(u.find_spec('fastapi'))") == "None"
    assert any("sw-alpha==1.0" in line for line in lines), lines


def test_no_requirements_give_the_empty_lock_without_uv_and_an_environment_without_packages(
    tmp_path: Path, wheels: Path
) -> None:
    environments = make_environments(tmp_path / "environments", wheels)
    never = make_environments(tmp_path / "environments", wheels, uv=Path("/nonexistent/uv"))
    lock = never.resolve([], timeout=TIMEOUT)
    assert lock == environments.empty_lock
    assert lock.packages == ()
    python = environments.ensure(lock, log=lambda _line: None, timeout=TIMEOUT)
    assert run_python(python, "import sys; print(sys.prefix != sys.base_prefix)") == "True"


def test_a_second_resolve_of_the_same_inputs_does_not_run_uv(tmp_path: Path, wheels: Path) -> None:
    first = make_environments(tmp_path / "environments", wheels)
    lock = lock_of(first, "sw-gamma", "sw-beta")
    started = time.perf_counter()
    assert lock_of(first, "sw-beta", "sw-gamma") == lock
    assert time.perf_counter() - started < 0.05
    # Another process of the platform (a new instance on the same folder) reads the cached file.
    restarted = make_environments(tmp_path / "environments", wheels, uv=Path("/nonexistent/uv"))
    assert lock_of(restarted, "sw-gamma", "sw-beta") == lock


def test_warm_ensure_is_fast_and_does_not_rebuild(tmp_path: Path, wheels: Path) -> None:
    environments = make_environments(tmp_path / "environments", wheels)
    lock = lock_of(environments, "sw-gamma")
    python = environments.ensure(lock, log=lambda _line: None, timeout=TIMEOUT)
    marker = environments.path_of(lock) / ".slipway-ready"
    built = marker.stat().st_mtime_ns
    for instance in (environments, make_environments(tmp_path / "environments", wheels)):
        lines: list[str] = []
        started = time.perf_counter()
        assert instance.ensure(lock, log=lines.append, timeout=TIMEOUT) == python
        assert time.perf_counter() - started < 0.05
        assert lines == []
    assert marker.stat().st_mtime_ns == built


CHILD = """
import os, signal, sys, time
from pathlib import Path
from slipway.environments import Environments, Lock
root, wheels, lock_file, mode = sys.argv[1:5]
environments = Environments(Path(root), index_url=(Path(root).parent / "empty-index").as_uri(), find_links=wheels)
lock = Lock.of(Path(lock_file).read_text())

def log(line):
    print(line, flush=True)
    if mode == "die" and line.startswith("Creating virtual environment"):
        os.kill(os.getpid(), signal.SIGKILL)

if mode == "wait":
    Path(root, "ready-%d" % os.getpid()).touch()
    while not Path(root, "go").exists():
        time.sleep(0.005)
print(environments.ensure(lock, log=log, timeout=60), flush=True)
"""


def start_child(environments: Environments, wheels: Path, lock: Lock, mode: str) -> subprocess.Popen[str]:
    lock_file = environments.root.parent / f"lock-{lock.key[:8]}.txt"
    lock_file.write_text(lock.text, encoding="utf-8")
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(environments.root), str(wheels), str(lock_file), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_build_killed_midway_is_cleaned_up_and_rebuilt(environments: Environments, wheels: Path) -> None:
    lock = lock_of(environments, "sw-alpha")
    child = start_child(environments, wheels, lock, "die")
    child.communicate(timeout=TIMEOUT)
    assert child.returncode == -signal.SIGKILL
    envs = environments.root / "envs"
    assert [p.name.startswith(".build-") for p in envs.iterdir()] == [True]
    assert not environments.is_ready(lock)

    lines: list[str] = []
    python = environments.ensure(lock, log=lines.append, timeout=TIMEOUT)
    assert any("leftovers of an interrupted build" in line for line in lines)
    assert run_python(python, "import sw_alpha; print(sw_alpha.VERSION)") == "1.0"
    # The killed build's uv may outlive it a moment, writing only into its own abandoned folder,
    # which the next sweep removes.
    deadline = time.monotonic() + 10
    while [p.name for p in envs.iterdir()] != [lock.key]:
        assert time.monotonic() < deadline, list(envs.iterdir())
        environments.sweep({lock.key}, idle_seconds=0)
        time.sleep(0.1)
    assert environments.is_ready(lock)


def test_an_environment_folder_never_marked_ready_is_replaced(environments: Environments) -> None:
    lock = lock_of(environments, "sw-gamma")
    broken = environments.path_of(lock)
    (broken / "bin").mkdir(parents=True)
    (broken / "bin" / "python").write_text("#!/bin/sh\nexit 3\n")
    python = environments.ensure(lock, log=lambda _line: None, timeout=TIMEOUT)
    assert run_python(python, "import sw_gamma; print(sw_gamma.VERSION)") == "3.0"


def test_two_threads_and_two_processes_ensuring_one_environment_build_it_once(
    environments: Environments, wheels: Path
) -> None:
    lock = lock_of(environments, "sw-alpha")
    children = [start_child(environments, wheels, lock, "wait") for _ in range(2)]
    deadline = time.monotonic() + TIMEOUT
    while len(list(environments.root.glob("ready-*"))) < 2:
        assert time.monotonic() < deadline, "the child processes did not start"
        time.sleep(0.01)
    logs: list[list[str]] = [[], []]
    results: list[Path] = []

    def in_thread(lines: list[str]) -> None:
        while not (environments.root / "go").exists():
            time.sleep(0.001)
        results.append(environments.ensure(lock, log=lines.append, timeout=TIMEOUT))

    threads = [threading.Thread(target=in_thread, args=(lines,)) for lines in logs]
    for thread in threads:
        thread.start()
    (environments.root / "go").touch()
    for thread in threads:
        thread.join(TIMEOUT)
    outputs = [child.communicate(timeout=TIMEOUT)[0] for child in children]
    assert [child.returncode for child in children] == [0, 0], outputs
    everything = [line for lines in logs for line in lines] + "\n".join(outputs).splitlines()
    assert sum(line.startswith("[building environment") for line in everything) == 1, everything
    assert {str(p) for p in results} | {o.strip().splitlines()[-1] for o in outputs} == {
        str(environments.python_of(lock))
    }


def test_an_unresolvable_package_is_named_with_its_file_and_line(environments: Environments) -> None:
    requirements = requirements_of(script("sw-alpha", "sw-nosuch==1.0"), "workflows/w.py", b"sw-gamma\n")
    with pytest.raises(ResolutionError) as caught:
        environments.resolve(requirements, timeout=TIMEOUT)
    assert (caught.value.file, caught.value.line) == ("workflows/w.py", 4)
    assert "sw-nosuch" in caught.value.message
    with pytest.raises(ResolutionError) as caught:
        environments.resolve(requirements_of(script("sw-beta>=5"), "workflows/w.py", None), timeout=TIMEOUT)
    assert (caught.value.file, caught.value.line) == ("workflows/w.py", 3)


def test_sweep_removes_only_idle_environments_not_kept_and_never_one_being_built(
    environments: Environments,
) -> None:
    import fcntl

    idle_unkept = lock_of(environments, "sw-gamma")
    idle_kept = lock_of(environments, "sw-beta")
    recent = lock_of(environments, "sw-alpha")
    for lock in (idle_unkept, idle_kept, recent):
        environments.ensure(lock, log=lambda _line: None, timeout=TIMEOUT)
    long_ago = time.time() - 3600
    for lock in (idle_unkept, idle_kept):
        os.utime(environments.path_of(lock) / ".last-used", (long_ago, long_ago))
    building = environments.root / "envs" / f".build-{'0' * 64}-abcd1234"
    building.mkdir()
    os.utime(building, (long_ago, long_ago))
    with open(environments.root / "locks" / f"{'0' * 64}.lock", "a+b") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert environments.sweep({idle_kept.key}, idle_seconds=600) == [idle_unkept.key]
        assert building.exists()
        fcntl.flock(held, fcntl.LOCK_UN)
    environments.sweep({idle_kept.key}, idle_seconds=600)
    assert not building.exists()
    assert not environments.is_ready(idle_unkept)
    assert environments.is_ready(idle_kept) and environments.is_ready(recent)
    # Swept, it is built again on demand.
    python = environments.ensure(idle_unkept, log=lambda _line: None, timeout=TIMEOUT)
    assert run_python(python, "import sw_gamma; print(sw_gamma.VERSION)") == "3.0"


def test_no_file_of_a_built_environment_is_writable_by_other_users(environments: Environments) -> None:
    lock = lock_of(environments, "sw-alpha")
    old = os.umask(0)  # a builder with a careless umask still seals what it built
    try:
        environments.ensure(lock, log=lambda _line: None, timeout=TIMEOUT)
    finally:
        os.umask(old)
    checked = 0
    for path in [environments.path_of(lock), *environments.path_of(lock).rglob("*")]:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            continue
        checked += 1
        assert info.st_mode & 0o022 == 0, f"{path} is {oct(info.st_mode)}"
        assert info.st_uid == os.getuid(), path
    assert checked > 10
    for folder in (environments.root, environments.root / "envs"):
        assert folder.stat().st_mode & 0o777 == 0o755


@pytest.mark.skipif(os.getuid() != 0, reason="runs the environment as another user only under root")
def test_the_step_user_can_import_from_an_environment_but_not_change_it(environments: Environments) -> None:
    lock = lock_of(environments, "sw-gamma")
    python = environments.ensure(lock, log=lambda _line: None, timeout=TIMEOUT)
    poison = (
        "import pathlib, sw_gamma\n"
        "print(sw_gamma.VERSION)\n"
        "target = pathlib.Path(sw_gamma.__file__)\n"
        "for attempt in (lambda: target.write_text('x'), lambda: (target.parent / 'evil.py').write_text('x')):\n"
        "    try:\n"
        "        attempt()\n"
        "        print('written')\n"
        "    except PermissionError:\n"
        "        print('refused')\n"
    )
    done = subprocess.run(
        [str(python), "-c", poison],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        user="nobody",
        group=pwd.getpwnam("nobody").pw_gid,
        extra_groups=[],
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3.0", "refused", "refused"]


def test_settings_say_where_environments_are_built_and_where_packages_come_from(
    base_env: dict[str, str],
) -> None:
    settings = load_settings(
        {
            **base_env,
            "SLIPWAY_ENVIRONMENTS_DIR": "/srv/envs",
            "SLIPWAY_PACKAGE_INDEX_URL": "https://user:token@pkgs.example/simple",
            "SLIPWAY_ENVIRONMENT_BUILD_TIMEOUT_SECONDS": "120",
        }
    )
    assert settings.environments.root == Path("/srv/envs")
    assert settings.environments.index_url == "https://user:token@pkgs.example/simple"
    assert "token" not in repr(settings.environments)
    assert settings.environments.build_timeout_seconds == 120.0
    assert load_settings(base_env).environments.root == Path("/tmp/slipway/environments")


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _pypi_reachable(), reason="needs the network: PyPI is unreachable")
def test_requests_from_pypi_is_resolved_installed_and_imported(tmp_path: Path) -> None:
    environments = Environments(tmp_path / "environments")
    requirements = requirements_of(script("requests>=2.31"), "workflows/fetch.py", None)
    lock = environments.resolve(requirements, timeout=TIMEOUT)
    assert {p.split("==")[0] for p in lock.packages} >= {"requests", "urllib3", "idna", "certifi"}
    python = environments.ensure(lock, log=lambda _line: None, timeout=TIMEOUT)
    assert run_python(python, "import requests; print(requests.__version__)") == next(
        p.split("==")[1] for p in lock.packages if p.startswith("requests==")
    )
