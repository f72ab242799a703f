"""The environment of every command Slipway starts for a user: the boundary between the platform
and user commands.

A workflow step's ``shell()``, a deployment's install, test and build commands, git and the Static
Web Apps CLI all get their environment from :func:`child_environment`: the variables named in
:data:`INHERITED` that the worker has, plus what the caller passes explicitly (a step's ``env=``,
a build's own folders and settings, git's configuration, the CLI's deployment token). Nothing else
of the worker's environment passes, whatever its name. This is an allow-list on purpose: under the
Functions host the worker's environment holds the storage account key
(``AzureWebJobsStorage``, and ``WEBSITE_CONTENTAZUREFILECONNECTIONSTRING`` on Elastic Premium),
an ``APPSETTING_<name>`` copy of every app setting (``APPSETTING_SLIPWAY_API_TOKEN``), the managed
identity endpoint and its secret (``IDENTITY_*``, ``MSI_*``), and the worker's own ``PYTHONPATH``;
the platform adds new ones over time, and a deny-list would let each new one through.

What is inherited, and why:

- ``PATH``, so that ``node``, ``npm``, ``git`` and ``python`` are found: without the worker's
  folders (the Functions host's ``/azure-functions-host/`` and every folder on the worker's
  ``PYTHONPATH``) and without empty entries (the current folder), so a command finds the
  system's tools and not the worker's.
- ``HOME``, ``USER``, ``LOGNAME``, ``SHELL``: who and where the user is; ``echo $HOME`` and
  tools that keep files under ``~`` work.
- ``LANG``, ``LANGUAGE``, ``LC_*``, ``TZ``, ``TERM``: how text and time are shown.
- ``TMPDIR``, ``TMP``, ``TEMP``: where temporary files go (a share is no place for them).
- ``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``, ``ALL_PROXY``, in capitals and in lower case:
  without them nothing reaches the network behind an outbound proxy. A proxy URL may hold the
  proxy's own credentials; they are the network's, needed by any command that downloads.
- ``NODE_EXTRA_CA_CERTS``, ``SSL_CERT_FILE``, ``SSL_CERT_DIR``, ``REQUESTS_CA_BUNDLE``,
  ``CURL_CA_BUNDLE``, ``GIT_SSL_CAINFO``: the certificate authorities a TLS-inspecting proxy
  needs trusted. They name files, not secrets.

What is not, though a command might use it:

- ``PYTHONPATH``, ``PYTHONHOME``: the worker's, pointing at its protobuf and grpc; a step's
  ``python`` must import its own packages.
- Package index settings (``PIP_INDEX_URL``, ``PIP_EXTRA_INDEX_URL``, ``npm_config_registry``
  and other ``npm_config_*``): a private index's URL usually carries its token. A step passes
  them with ``env=`` (from ``ctx.secrets``); a site sets them among its build variables.
- Everything else: ``AzureWebJobs*``, ``WEBSITE_*``, ``APPSETTING_*``, ``MSI_*``, ``IDENTITY_*``,
  ``SLIPWAY_*``, ``FUNCTIONS_*``, ``AZURE_*``, ``APPLICATIONINSIGHTS_*``, connection strings.

A caller that needs less names the subset it inherits (a build, for one, sets its own ``HOME``
and locale). A workflow's own process (its loads and steps) starts from the same allow-list;
:mod:`slipway.isolation.boundary` adds what that process needs and says what else it can reach.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import PurePosixPath

__all__ = ["CERTIFICATES", "INHERITED", "PROXIES", "child_environment"]

PROXIES = (
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
)
CERTIFICATES = (
    "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
)
# Every name a child may inherit from the worker; ``LC_*`` stands for each locale category.
INHERITED = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    "TERM",
    "TMPDIR",
    "TMP",
    "TEMP",
    *PROXIES,
    *CERTIFICATES,
)
# Where the Functions host installs itself and its language workers (in the official images).
_HOST_FOLDER = PurePosixPath("/azure-functions-host")
_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def child_environment(
    explicit: Mapping[str, str] | None = None,
    *,
    inherit: Collection[str] = INHERITED,
    source: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The whole environment of a child: the names in ``inherit`` (a subset of
    :data:`INHERITED`) that ``source`` (the worker's environment) has, ``PATH`` always, without
    the worker's folders; then ``explicit`` on top."""
    unknown = sorted(set(inherit) - set(INHERITED))
    if unknown:
        raise ValueError(f"not inheritable by a child process: {', '.join(unknown)}")
    source = os.environ if source is None else source
    locale = "LC_*" in inherit
    env = {
        name: value
        for name, value in source.items()
        if name in inherit or (locale and name.startswith("LC_"))
    }
    env["PATH"] = _search_path(source)
    env.update(explicit or {})
    return env


def _search_path(source: Mapping[str, str]) -> str:
    """The worker's ``PATH`` without the host's folder and the folders on the worker's
    ``PYTHONPATH``."""
    worker = [_HOST_FOLDER]
    worker += [
        PurePosixPath(entry) for entry in source.get("PYTHONPATH", "").split(":") if entry.startswith("/")
    ]
    kept = [
        entry
        for entry in source.get("PATH", "").split(":")
        if entry and not any(PurePosixPath(entry).is_relative_to(folder) for folder in worker)
    ]
    return ":".join(kept) or _DEFAULT_PATH
