"""Workflow code runs in processes of its own, as a user an editor would be: it cannot read the
platform's settings, keys or memory, cannot write the workspace, cannot hang the API, and
leaves no process behind. Driven through `slipway dev` with real processes, checked in /proc."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from runner_process import Runner, start_runner
from workflow_files import line_of, write_workflow

from slipway.bootstrap import build_services
from slipway.childenv import INHERITED
from slipway.config import SETTINGS, load_settings
from slipway.isolation.boundary import IsolationUnavailable
from slipway.local.azurite import connection_string

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="steps run as another user only under root")

TERMINAL = {"succeeded", "failed", "canceled"}
LOAD_TIMEOUT = 3
API_TOKEN = "platform-api-token-7f3a9c-0123456789abcdef"


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    started = start_runner(
        tmp_path_factory.mktemp("isolation"),
        extra_env={"SLIPWAY_LOAD_TIMEOUT_SECONDS": str(LOAD_TIMEOUT), "SLIPWAY_API_TOKEN": API_TOKEN},
    )
    try:
        yield started
    finally:
        started.stop()


def drop_box(tmp_path: Path) -> Path:
    folder = tmp_path / "drop"
    folder.mkdir(exist_ok=True)
    folder.chmod(0o777)
    return folder


def run_to_end(runner: Runner, name: str, timeout: float = 40) -> dict[str, Any]:
    answer = runner.api(
        "POST",
        f"/api/workflows/{name}/runs",
        json={"params": {}},
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    )
    assert answer.status_code == 202, answer.text
    run_id = answer.json()["run"]["id"]
    return finished(runner, run_id, timeout)


def finished(runner: Runner, run_id: str, timeout: float = 40) -> dict[str, Any]:
    return runner.wait(
        lambda: (run := runner.api("GET", f"/api/runs/{run_id}").json())["status"] in TERMINAL and run,
        f"run {run_id} to end",
        timeout,
    )


def log_text(runner: Runner, run_id: str) -> str:
    lines = runner.api("GET", f"/api/runs/{run_id}/logs", params={"after": 0}).json()["lines"]
    return "\n".join(line["text"] for line in lines)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def runner_environment(runner: Runner) -> dict[str, str]:
    raw = Path(f"/proc/{runner.process.pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, queue = [], list(children.get(pid, []))
    while queue:
        current = queue.pop()
        found.append(current)
        queue.extend(children.get(current, []))
    return found


def cpu_ticks(pids: list[int]) -> dict[int, int]:
    ticks = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks[pid] = int(fields[11]) + int(fields[12])
    return ticks


def test_a_step_reads_none_of_the_platforms_settings_keys_files_or_memory(
    runner: Runner, tmp_path: Path
) -> None:
    drop = drop_box(tmp_path)
    admin = {"Authorization": f"Bearer {API_TOKEN}"}
    assert (
        runner.api(
            "PUT", "/api/secrets/DECLARED", json={"value": "declared-value-1234"}, headers=admin
        ).status_code
        == 200
    )
    assert (
        runner.api(
            "PUT", "/api/secrets/OTHER", json={"value": "undeclared-value-5678"}, headers=admin
        ).status_code
        == 200
    )
    secrets_file = runner.workspace.parent / "data" / "secrets.json"
    write_workflow(
        runner.workspace,
        "snoop",
        f"""
        import gc, json, os
        from pathlib import Path
        from slipway.sdk import Workflow

        workflow = Workflow(secrets=["DECLARED"])

        def attempt(path, size=1 << 20):
            try:
                with open(path, "rb") as handle:
                    return handle.read(size).decode("utf-8", "replace")
            except OSError as exc:
                return type(exc).__name__

        @workflow.step()
        def snoop(ctx):
            found = {{"env": dict(os.environ), "proc": {{}}, "uid": os.getuid()}}
            for entry in os.listdir("/proc"):
                if entry.isdigit() and int(entry) != os.getpid():
                    for part in ("environ", "cmdline", "mem"):
                        found["proc"][f"{{entry}}/{{part}}"] = attempt(f"/proc/{{entry}}/{{part}}", 1 << 16)
            found["secrets_file"] = attempt({str(secrets_file)!r})
            found["objects"] = sorted({{type(o).__name__ for o in gc.get_objects()}})
            found["declared"] = ctx.secrets["DECLARED"]
            try:
                ctx.secrets["OTHER"]
            except KeyError as exc:
                found["other"] = str(exc)
            print("the secret is", ctx.secrets["DECLARED"])
            Path({str(drop / "dump.json")!r}).write_text(json.dumps(found))
            return "looked"
        """,
    )
    run = run_to_end(runner, "snoop")
    assert run["status"] == "succeeded", run
    dump = json.loads((drop / "dump.json").read_text())
    assert dump["uid"] != 0
    readable = json.dumps({"env": dump["env"], "proc": dump["proc"], "file": dump["secrets_file"]})
    # Every setting of the app's that the platform's process was given (the allow-listed basics
    # excepted: search path, locale, temp folder...), and those it derives (its storage connection
    # string, with the account key).
    platform = runner_environment(runner)
    held = {
        setting.env: platform[setting.env]
        for setting in SETTINGS
        if len(platform.get(setting.env, "")) >= 8 and setting.env not in INHERITED
    }
    held["AzureWebJobsStorage"] = connection_string(runner.azurite_ports())
    assert held["SLIPWAY_API_TOKEN"] == API_TOKEN
    leaked = sorted(name for name, value in held.items() if value in readable)
    assert leaked == [], f"a step could read the platform's {leaked}"
    account_key = next(p for p in held["AzureWebJobsStorage"].split(";") if p.startswith("AccountKey="))
    assert account_key.split("=", 1)[1] not in readable
    assert dump["secrets_file"] == "PermissionError"
    assert "undeclared-value-5678" not in readable and "declared-value-1234" not in json.dumps(dump["proc"])
    assert "Services" not in dump["objects"] and "WorkflowService" not in dump["objects"]
    # The declared secret reaches the step, masked in the log; the other one does not.
    assert dump["declared"] == "declared-value-1234"
    assert "not declared" in dump["other"]
    text = log_text(runner, run["id"])
    assert "the secret is ***" in text and "declared-value-1234" not in text


def test_a_step_cannot_write_the_workspace(runner: Runner) -> None:
    write_workflow(
        runner.workspace,
        "scribble",
        f"""
        from pathlib import Path
        from slipway.sdk import Workflow

        workflow = Workflow()

        @workflow.step()
        def scribble(ctx):
            refused = []
            for target in ("workflows/scribble.py", "workflows/new.py", "notes.txt"):
                try:
                    Path({str(runner.workspace)!r}, target).write_text("SCRIB" + "BLED")
                except OSError as exc:
                    refused.append(type(exc).__name__)
            (ctx.workdir / "scratch.txt").write_text("a run's files go here")
            return refused
        """,
    )
    run = run_to_end(runner, "scribble")
    assert run["status"] == "succeeded", run
    assert run["steps"][0]["output"] == ["PermissionError"] * 3
    assert "SCRIBBLED" not in (runner.workspace / "workflows" / "scribble.py").read_text()
    assert not (runner.workspace / "notes.txt").exists()


def test_a_hung_import_is_a_load_error_within_the_bound_while_health_answers(runner: Runner) -> None:
    path = write_workflow(
        runner.workspace,
        "spinner",
        """
        import time
        from slipway.sdk import Workflow

        while True:  # hangs
            pass

        workflow = Workflow()
        """,
    )
    health: list[float] = []

    def probe() -> None:
        while len(health) < 5:
            began = time.monotonic()
            assert httpx.get(runner.url + "/api/health", timeout=10).status_code == 200
            health.append(time.monotonic() - began)
            time.sleep(0.3)

    prober = threading.Thread(target=probe)
    prober.start()
    began = time.monotonic()
    listed = runner.api("GET", "/api/workflows")
    waited = time.monotonic() - began
    prober.join()
    assert listed.status_code == 200
    assert waited < LOAD_TIMEOUT + 5, waited
    [entry] = [w for w in listed.json()["workflows"] if w["name"] == "spinner"]
    assert entry["error"]["file"] == "workflows/spinner.py"
    assert entry["error"]["line"] in (line_of(path, "while True"), line_of(path, "pass"))
    assert "longer than" in entry["error"]["message"]
    assert max(health) < 2, health
    # Many listings at once share one bounded load, and nothing keeps spinning afterwards.
    answers: list[int] = []
    threads = [
        threading.Thread(
            target=lambda: answers.append(runner.api("GET", "/api/workflows/spinner").status_code)
        )
        for _ in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [200] * 20
    path.unlink()
    time.sleep(1)
    before = cpu_ticks(descendants(runner.process.pid))
    time.sleep(1.5)
    after = cpu_ticks(descendants(runner.process.pid))
    spinning = [pid for pid, ticks in after.items() if ticks - before.get(pid, ticks) > 100]
    assert spinning == [], "a load kept running after it was stopped"


def test_processes_a_step_leaves_behind_are_killed_and_named_in_its_log(
    runner: Runner, tmp_path: Path
) -> None:
    drop = drop_box(tmp_path)
    write_workflow(
        runner.workspace,
        "leaver",
        f"""
        import subprocess
        from slipway.sdk import Workflow, shell

        workflow = Workflow()

        @workflow.step()
        def leave(ctx):
            shell("sleep 600 & echo $! > {drop}/background")
            shell("setsid sleep 601 & echo $! > {drop}/setsid")
            daemon = subprocess.Popen(["sleep", "602"], start_new_session=True)
            open("{drop}/popen", "w").write(str(daemon.pid))
            return "done, with three processes still running"
        """,
    )
    run = run_to_end(runner, "leaver")
    assert run["status"] == "succeeded", run
    pids = [int((drop / name).read_text()) for name in ("background", "setsid", "popen")]
    assert not any(alive(pid) for pid in pids)
    text = log_text(runner, run["id"])
    assert "stopped 3 process(es) the step left running" in text
    assert "sleep 600" in text and "sleep 601" in text and "sleep 602" in text


def test_cancel_kills_plain_python_and_a_setsid_grandchild(runner: Runner, tmp_path: Path) -> None:
    drop = drop_box(tmp_path)
    write_workflow(
        runner.workspace,
        "stubborn",
        f"""
        import os, signal, subprocess, time
        from slipway.sdk import Workflow

        workflow = Workflow()

        @workflow.step()
        def spin(ctx):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # it will not stop when asked
            grandchild = subprocess.Popen(["setsid", "sh", "-c", "sleep 700"])
            open("{drop}/grandchild", "w").write(str(grandchild.pid))
            open("{drop}/step", "w").write(str(os.getpid()))
            while True:
                pass
        """,
    )
    answer = runner.api(
        "POST",
        "/api/workflows/stubborn/runs",
        json={"params": {}},
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    )
    run_id = answer.json()["run"]["id"]
    runner.wait(lambda: (drop / "step").exists() and (drop / "grandchild").exists(), "the step to start")
    time.sleep(0.3)
    step_pid, grandchild = int((drop / "step").read_text()), int((drop / "grandchild").read_text())
    assert alive(step_pid) and alive(grandchild)
    began = time.monotonic()
    runner.api("POST", f"/api/runs/{run_id}/cancel", headers={"Authorization": f"Bearer {API_TOKEN}"})
    run = finished(runner, run_id, timeout=20)
    assert run["status"] == "canceled"
    assert time.monotonic() - began < 10
    runner.wait(
        lambda: not alive(step_pid) and not alive(grandchild), "the step's processes to be gone", timeout=5
    )


def test_os_exit_in_a_step_fails_that_step_only(runner: Runner) -> None:
    write_workflow(
        runner.workspace,
        "quitter",
        """
        import os
        from slipway.sdk import Workflow

        workflow = Workflow()

        @workflow.step()
        def quit(ctx):
            os._exit(3)

        @workflow.on_failure
        def report(ctx):
            return "reported " + ctx.failure["error"]
        """,
    )
    run = run_to_end(runner, "quitter")
    steps = {step["name"]: step for step in run["steps"]}
    assert run["status"] == "failed"
    assert "exited with code 3" in steps["quit"]["error"]
    assert steps["report"]["status"] == "succeeded"
    assert runner.api("GET", "/api/health").status_code == 200


def test_a_multi_file_workflow_is_pinned_across_an_edit_made_mid_run(runner: Runner, tmp_path: Path) -> None:
    drop = drop_box(tmp_path)
    helper = runner.workspace / "workflows" / "shared_words.py"
    helper.parent.mkdir(parents=True, exist_ok=True)
    helper.write_text('WORD = "old"\n')
    package = runner.workspace / "workflows" / "toolkit"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("from toolkit.shout import shout\n")
    (package / "shout.py").write_text("def shout(text):\n    return text.upper()\n")
    write_workflow(
        runner.workspace,
        "pinned",
        f"""
        import time
        from pathlib import Path
        import shared_words
        from toolkit import shout
        from slipway.sdk import Workflow

        workflow = Workflow()

        @workflow.step()
        def wait(ctx):
            Path("{drop}/waiting").touch()
            while not Path("{drop}/gate").exists():
                time.sleep(0.05)
            return shared_words.WORD

        @workflow.step(after=[wait])
        def answer(ctx, wait):
            import shared_words as again
            return [wait, shout(again.WORD), again.__file__]
        """,
    )
    first_answer = runner.api(
        "POST",
        "/api/workflows/pinned/runs",
        json={"params": {}},
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    )
    first = first_answer.json()["run"]["id"]
    runner.wait(lambda: (drop / "waiting").exists(), "the first run in flight")
    helper.write_text('WORD = "new"\n')
    (package / "shout.py").write_text("def shout(text):\n    return text.lower() + '!'\n")
    second_answer = runner.api(
        "POST",
        "/api/workflows/pinned/runs",
        json={"params": {}},
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    )
    (drop / "gate").touch()
    old = finished(runner, first)
    new = finished(runner, second_answer.json()["run"]["id"])
    assert old["status"] == new["status"] == "succeeded", (old, new)
    assert old["steps"][1]["output"] == ["old", "OLD", str(helper)]
    assert new["steps"][1]["output"] == ["new", "new!", str(helper)]


def test_a_steps_folder_the_step_user_cannot_enter_stops_start_up_naming_it(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    hidden.chmod(0o700)
    settings = load_settings({**base_env, "SLIPWAY_STEPS_DIR": str(hidden / "steps")})
    with pytest.raises(IsolationUnavailable, match=f"cannot enter {hidden}"):
        build_services(settings)
