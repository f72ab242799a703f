"""The ``slipway`` command: ``slipway dev`` (the local runner) and ``slipway with-azurite``."""

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

    args = parser.parse_args(argv)
    if args.name == "with-azurite":
        return _with_azurite(args)
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
