"""Publishing a built folder with the official Static Web Apps CLI (``@azure/static-web-apps-cli``).

The command is ``swa deploy <folder> --app-location <folder> --env production``: the positional
argument is the output location (the built files, deployed as they are; ``swa deploy`` never
builds), ``--app-location`` makes the CLI look for ``staticwebapp.config.json`` and resolve paths
inside that folder rather than in our working directory, and ``--env production`` is needed
because the CLI's default environment is ``preview``. The deployment token goes only in
``SWA_CLI_DEPLOYMENT_TOKEN`` (the variable the CLI documents as the alternative to
``--deployment-token``), never in argv, where every process on the machine could read it.

The CLI runs in a clean environment (through :mod:`slipway.childenv`: ``PATH``, ``HOME``, proxy
settings and the token), so none of Slipway's or the Functions host's secrets
(``AzureWebJobsStorage``, ``SLIPWAY_*``, identity endpoints) reach it or the ``StaticSitesClient``
uploader it starts; it finds that uploader under ``$HOME/.swa/deploy``, where the image build
puts it. It runs in its own process group, which is killed as a whole at the timeout. CLI versions before 2.0.9 exit 0 when the upload fails; pin a
newer one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from slipway.adapters.staticwebapps import (
    PublishFailed,
    PublishResult,
    PublishTimedOut,
    SiteNotFound,
    Sku,
    StaticWebAppsManager,
)
from slipway.childenv import PROXIES, child_environment
from slipway.processes import run_command

TOKEN_VARIABLE = "SWA_CLI_DEPLOYMENT_TOKEN"  # noqa: S105 (the name of the variable, not a token)
ENVIRONMENT = "production"
_MASK = "***"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# What the CLI inherits from the worker: the search path and the proxy settings.
_INHERITED = ("PATH", *PROXIES)


def deploy_command(swa_executable: str, folder: Path) -> list[str]:
    """The argv of ``swa deploy`` for ``folder``; it holds no secret."""
    location = str(folder)
    return [swa_executable, "deploy", location, "--app-location", location, "--env", ENVIRONMENT]


def deploy_environment(token: str) -> dict[str, str]:
    """The whole environment of the CLI: a search path, a home for its uploader, the proxy
    settings an outbound proxy needs, and the token. The update notifier is off: it would start a
    detached ``node`` in its own session that outlives the CLI's process group."""
    own = {"HOME": str(Path.home()), "NO_UPDATE_NOTIFIER": "1", TOKEN_VARIABLE: token}
    return child_environment(own, inherit=_INHERITED)


class SwaCliPublisher:
    """``Publisher`` that runs ``swa deploy`` with the site's deployment token."""

    def __init__(
        self,
        manager: StaticWebAppsManager,
        swa_executable: str = "swa",
        *,
        location: str = "westeurope",
        sku: Sku = "Free",
    ) -> None:
        self._manager = manager
        self._swa = swa_executable
        self._location = location  # where a missing site is created, when the manager may
        self._sku: Sku = sku

    def publish(
        self, site: str, folder: Path, *, log: Callable[[str], None], timeout: float
    ) -> PublishResult:
        deadline = time.monotonic() + timeout
        info = self._manager.get_site(site)
        if info is None and self._manager.allow_create:
            log(f"creating static web app {site} ({self._sku}, {self._location})")
            info = self._manager.create_site(site, self._location, sku=self._sku)
        if info is None:
            raise SiteNotFound(
                f"static web app {site} does not exist in resource group {self._manager.resource_group}, "
                "and Slipway may not create sites (SLIPWAY_SWA_CREATE_SITES)"
            )
        folder = Path(folder).resolve()
        if not folder.is_dir():
            raise PublishFailed(f"the folder to publish, {folder}, does not exist")
        token = self._manager.get_deployment_token(site)
        log(f"deploying {folder} to {site} ({ENVIRONMENT}) with the Static Web Apps CLI")
        _run(
            deploy_command(self._swa, folder),
            cwd=folder,
            env=deploy_environment(token),
            secret=token,
            log=log,
            deadline=deadline,
            timeout=timeout,
        )
        log(f"deployed to {info.url}")
        return PublishResult(url=info.url)


def _run(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    secret: str,
    log: Callable[[str], None],
    deadline: float,
    timeout: float,
) -> tuple[str, ...]:
    """Runs ``argv``, passing its output lines (secret masked) to ``log``; the tail."""
    try:
        result = run_command(
            argv,
            cwd=cwd,
            env=env,
            log=lambda _stream, line: log(line),
            timeout=max(0.0, deadline - time.monotonic()),
            kill_grace=0.0,
            clean=lambda line: _ANSI.sub("", line).replace(secret, _MASK),
        )
    except OSError as exc:
        raise PublishFailed(
            f"cannot run the Static Web Apps CLI {argv[0]!r}: {exc.strerror or exc}"
        ) from None
    tail = tuple(result.tail.splitlines())
    if result.stopped is not None:
        raise PublishTimedOut(
            f"swa deploy did not finish within {timeout:g} s and was stopped; last output:\n"
            + "\n".join(tail),
            output_tail=tail,
        )
    if result.exit_code != 0:
        raise PublishFailed(
            f"swa deploy failed with exit code {result.exit_code}; last output:\n" + "\n".join(tail),
            output_tail=tail,
        )
    return tail
