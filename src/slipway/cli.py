"""The ``slipway`` command: ``slipway dev`` (the local runner), ``with-azurite``, ``sync``, ``init`` and ``fetch-worker``."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from slipway.local.azurite import Azurite, AzuriteError, find_azurite

# The environment variable through which `with-azurite` hands the emulator to its command.
TEST_STORAGE_ENV = "SLIPWAY_TEST_STORAGE"


def _with_azurite(args: argparse.Namespace) -> int:
    command = [part for part in args.command if part != "--"]
    if not command:
        print(
            "slipway with-azurite: give a command to run, e.g. `slipway with-azurite -- pytest`",
            file=sys.stderr,
        )
        return 2
    try:
        azurite = Azurite(launcher=find_azurite(Path.cwd())).start()
    except AzuriteError as exc:
        print(f"slipway with-azurite: {exc}", file=sys.stderr)
        return 1
    try:
        env = {**os.environ, TEST_STORAGE_ENV: azurite.connection_string}
        return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        return 130
    finally:
        # Stopped on every way out, failures and Ctrl-C included.
        azurite.stop()


def _fetch_worker(args: argparse.Namespace) -> int:
    import subprocess

    from slipway.local.worker import WorkerLibraryError, fetch_library

    try:
        folder = fetch_library(args.folder.resolve())
    except (WorkerLibraryError, subprocess.CalledProcessError, OSError) as exc:
        print(f"slipway fetch-worker: {exc}", file=sys.stderr)
        return 1
    print(f"slipway fetch-worker: the worker library is in {folder}")
    return 0


# `slipway sync` exits with this when the fetch failed and a later try may work (EX_TEMPFAIL).
SYNC_RETRYABLE_EXIT = 75


def _default_mirror(repo: str) -> Path:
    import hashlib

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "slipway" / "mirrors" / f"{hashlib.sha256(repo.encode()).hexdigest()[:16]}.git"


def _sync(args: argparse.Namespace) -> int:
    from slipway.gitsync import engine
    from slipway.gitsync.mirror import safe_url

    token = os.environ.get(args.token_env) or None
    mirror = args.mirror or _default_mirror(args.repo)
    try:
        args.dest.mkdir(parents=True, exist_ok=True)
        base = engine.last_synced(mirror, args.dest)
        result = engine.sync(mirror, args.repo, args.branch, args.dest, token=token, base=base)
    except engine.SyncError as exc:
        print(f"slipway sync: {exc}", file=sys.stderr)
        return SYNC_RETRYABLE_EXIT if isinstance(exc, engine.FetchError) else 1
    except OSError as exc:
        print(f"slipway sync: {args.dest}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    was = result.before[:12] if result.before else "a full compare"
    print(
        f"slipway sync: {safe_url(args.repo)} {args.branch} -> {args.dest}: {result.mode} sync to "
        f"{result.after[:12]} (from {was}): {result.added} added, {result.changed} changed, "
        f"{result.deleted} deleted, {result.renamed} renamed, {result.bytes_written} bytes written, "
        f"{result.fs_operations} file-system operations, {result.duration_ms} ms"
    )
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _init(args: argparse.Namespace) -> int:
    from slipway.scaffold import InitRefused, init_repository

    try:
        result = init_repository(args.folder, force=args.force, keep_existing=args.keep_existing)
    except InitRefused as exc:
        print(f"slipway init: {exc}", file=sys.stderr)
        return 1
    for name in result.written:
        print(f"wrote {args.folder / name}")
    for name in result.kept:
        print(f"kept  {args.folder / name}")
    print(f"next: cd {args.folder} && docker compose up, then open http://localhost:7071")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slipway", description=__doc__)
    commands = parser.add_subparsers(dest="name", required=True)

    dev = commands.add_parser("dev", help="run the whole product on this machine (no Docker)")
    dev.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    dev.add_argument("--port", type=int, default=7071, help="port for the API and UI (default 7071)")
    dev.add_argument(
        "--workspace", type=Path, default=Path("workspace"), help="workspace folder (default ./workspace)"
    )
    dev.add_argument(
        "--data", type=Path, default=Path(".dev"), help="folder for Azurite data, temp files, secrets"
    )
    dev.add_argument(
        "--app-root",
        type=Path,
        default=Path("."),
        help="folder holding function_app.py and host.json (default: the current folder)",
    )

    run = commands.add_parser("with-azurite", help="run a command with a fresh Azurite on free ports")
    run.add_argument("command", nargs=argparse.REMAINDER)

    sync = commands.add_parser(
        "sync",
        help="mirror a branch of a git repository into a folder (full compare first, then incremental)",
    )
    sync.add_argument(
        "--repo", required=True, help="repository URL (https://..., file://...), without credentials"
    )
    sync.add_argument("--branch", required=True, help="branch to mirror")
    sync.add_argument("--dest", type=Path, required=True, help="folder to make equal to the branch head")
    sync.add_argument(
        "--mirror",
        type=Path,
        default=None,
        help="bare mirror on local disk; it also remembers the last commit synced into --dest "
        "(default: ~/.cache/slipway/mirrors/<hash of the URL>.git)",
    )
    sync.add_argument(
        "--token-env",
        default="GITHUB_TOKEN",
        help="environment variable holding the access token (default GITHUB_TOKEN); never pass a token as an argument",
    )

    init = commands.add_parser(
        "init", help="make a folder a workflow repository: docker-compose.yml, VS Code attach, an example"
    )
    init.add_argument("folder", type=Path, help="the repository's folder (created if missing)")
    existing = init.add_mutually_exclusive_group()
    existing.add_argument("--force", action="store_true", help="overwrite files that exist")
    existing.add_argument(
        "--keep-existing", action="store_true", help="write only the files that are missing"
    )

    fetch = commands.add_parser(
        "fetch-worker",
        help="download the Azure Functions Python worker library (pinned) that `slipway dev` runs functions with",
    )
    fetch.add_argument(
        "folder", type=Path, help="where to unpack it (default for `slipway dev`: <app root>/.worker/lib)"
    )

    args = parser.parse_args(argv)
    if args.name == "fetch-worker":
        return _fetch_worker(args)
    if args.name == "init":
        return _init(args)
    if args.name == "with-azurite":
        return _with_azurite(args)
    if args.name == "sync":
        return _sync(args)
    from slipway.local.runner import DevOptions, run_dev

    return run_dev(
        DevOptions(
            host=args.host,
            port=args.port,
            workspace=args.workspace,
            data=args.data,
            app_root=args.app_root,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
