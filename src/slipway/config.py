"""Every setting Slipway reads, typed and validated once at start-up.

Settings come from the environment: Functions app settings in Azure, ``local.settings.json``
under the Functions host, ``environment:`` in compose files, or what ``slipway dev`` sets.
Each one is declared once in ``SETTINGS`` below with its documentation; the README table and
``local.settings.json.example`` are checked against this list by the tests, and nothing else
in Slipway reads ``os.environ``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from slipway.auth import RoleAssignments
from slipway.hostlimits import HostLimitError, HostLimits, read_host_limits


class SettingsError(ValueError):
    """One or more settings are missing or malformed; the message names each of them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("Slipway cannot start, fix these settings:\n  - " + "\n  - ".join(problems))


class SecretStoreKind(StrEnum):
    KEY_VAULT = "keyvault"
    FILE = "file"


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name, what it means and how to read it."""

    env: str
    description: str
    example: str
    default: str | None = None
    secret: bool = False
    # Settings the Functions host itself reads; Slipway documents them but does not parse them.
    host_only: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "FUNCTIONS_WORKER_RUNTIME",
        "Language worker the Functions host starts. Always `python`.",
        "python",
        host_only=True,
    ),
    Setting(
        "PYTHON_THREADPOOL_THREAD_COUNT",
        "Threads of the Python worker's one pool for every synchronous function: orchestrator "
        "episodes, the webhook, queue and timer functions, short activities. Steps and builds "
        "run on Slipway's own pools (16 and 8 threads), never on these.",
        "16",
        host_only=True,
    ),
    Setting(
        "PYTHON_ISOLATE_WORKER_DEPENDENCIES",
        "`1`: the Python worker imports the app's own packages (the pinned `azure-functions`) "
        "before the copies bundled with the worker, which otherwise win. The image, the template and "
        "the dev compose file set it.",
        "1",
        host_only=True,
    ),
    Setting(
        "AzureWebJobsStorage",
        "Connection string of the storage account that holds the Durable task hub, Slipway's "
        "tables and queues. Leave empty in Azure, where the identity-based "
        "`AzureWebJobsStorage__accountName` is used instead.",
        "UseDevelopmentStorage=true",
        default="",
        secret=True,
    ),
    Setting(
        "AzureWebJobsStorage__accountName",
        "Storage account name for identity-based access (managed identity). Used when "
        "`AzureWebJobsStorage` is empty.",
        "",
        default="",
    ),
    Setting(
        "AzureWebJobsStorage__clientId",
        "Client id of a user-assigned managed identity for storage; empty for the system-assigned identity.",
        "",
        default="",
    ),
    Setting(
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "Application Insights connection string; the host sends logs and traces there.",
        "",
        host_only=True,
    ),
    Setting(
        "SLIPWAY_TASK_HUB",
        "Durable Functions task hub name (host.json reads it). Letters and digits, 3-45 "
        "characters, starting with a letter.",
        "SlipwayDev",
        default="Slipway",
    ),
    Setting(
        "SLIPWAY_WORKSPACE_DIR",
        "Folder holding the workflow scripts: the Azure Files share mount in Azure, a bind "
        "mount or local folder in development.",
        "./workspace",
        default="/workspace",
    ),
    Setting(
        "SLIPWAY_TEMP_DIR",
        "Folder for workflow artifacts that outlive one step (the temp share in Azure, which "
        "is never mounted at /tmp).",
        "./.dev/tmp",
        default="/tmp",  # noqa: S108 - a documented default, checked for writability at start-up
    ),
    Setting(
        "SLIPWAY_MAX_FILE_MB",
        "Largest file the workspace editor accepts, in MiB (413 above it).",
        "10",
        default="10",
    ),
    Setting(
        "SLIPWAY_MIN_FREE_MB",
        "Readiness fails when the workspace or temp folder has less free space than this (MiB).",
        "256",
        default="256",
    ),
    Setting(
        "SLIPWAY_PUBLIC_BASE_URL",
        "The address GitHub reaches this app at (https://<app>.azurewebsites.net); the webhook "
        "URL is built from it. Empty: connecting asks you to add the webhook by hand.",
        "",
        default="",
    ),
    Setting(
        "SLIPWAY_GIT_DIR",
        "Local-disk folder for the bare git mirror of the connected repository (never the share).",
        "./.dev/git",
        default="/tmp/slipway/git",  # noqa: S108 - the container's own local disk, not the share
    ),
    Setting(
        "SLIPWAY_STEPS_DIR",
        "Local-disk folder for what workflow processes run from: snapshots of `workflows/` pinned by "
        "runs and the copy of the SDK they import (never the share). Every folder on the way must "
        "be enterable by the step user.",
        "./.dev/steps",
        default="/tmp/slipway/steps",  # noqa: S108 - the container's own local disk, not the share
    ),
    Setting(
        "SLIPWAY_STEP_USER",
        "The user workflow code (loads and steps) runs as when Slipway runs as root: empty for "
        "`slipway-step` (the image creates it), else `nobody`; a user name; or `self` to run "
        "steps as the platform's own user (no isolation: only for a machine where no other user "
        "can run the interpreter).",
        "",
        default="",
    ),
    Setting(
        "SLIPWAY_LOAD_TIMEOUT_SECONDS",
        "How long loading a workflow file (importing it in its own process to list, validate or plan "
        "it) may take before it is stopped and reported as a load error at the line it hung.",
        "10",
        default="10",
    ),
    Setting(
        "SLIPWAY_ENVIRONMENTS_DIR",
        "Local-disk folder of the Python environments built for workflows' packages (one per "
        "resolved set) and of uv's cache (never the share). Every folder on the way must be "
        "enterable by the step user.",
        "./.dev/environments",
        default="/tmp/slipway/environments",  # noqa: S108 - the container's own local disk
    ),
    Setting(
        "SLIPWAY_PACKAGE_INDEX_URL",
        "Package index workflows' packages are installed from (a PEP 503 simple index URL, which "
        "may hold its credentials); empty for PyPI.",
        "",
        default="",
        secret=True,
    ),
    Setting(
        "SLIPWAY_PACKAGE_FIND_LINKS",
        "A folder (or URL of a page) of wheels to install workflows' packages from as well as the "
        "index: for air-gapped installs. Empty: none.",
        "",
        default="",
    ),
    Setting(
        "SLIPWAY_ENVIRONMENT_BUILD_TIMEOUT_SECONDS",
        "Time limit of resolving a workflow's packages and of building their environment.",
        "600",
        default="600",
    ),
    Setting(
        "SLIPWAY_GITHUB_API_URL",
        "GitHub REST API base URL.",
        "https://api.github.com",
        default="https://api.github.com",
    ),
    Setting(
        "SLIPWAY_GITHUB_WEB_URL",
        "Base of repository clone URLs: `owner/name` is fetched from `<this>/owner/name.git`.",
        "https://github.com",
        default="https://github.com",
    ),
    Setting(
        "SLIPWAY_WORKSPACE_SHARE",
        "Name of the Azure Files share mounted at the workspace, in the storage account of "
        "`AzureWebJobsStorage`; when set, Slipway snapshots it before a first GitHub sync "
        "overwrites manual edits. Empty: no snapshots (local folders).",
        "",
        default="",
    ),
    Setting(
        "SLIPWAY_SECRET_STORE",
        "Where secrets (GitHub token, webhook secret) live: `keyvault` in Azure, `file` for a "
        "local 0600 file.",
        "file",
    ),
    Setting(
        "SLIPWAY_KEY_VAULT_URL",
        "Key Vault URL, required when `SLIPWAY_SECRET_STORE=keyvault`.",
        "",
        default="",
    ),
    Setting(
        "SLIPWAY_SECRETS_FILE",
        "Path of the local secrets file, required when `SLIPWAY_SECRET_STORE=file`.",
        "./.dev/secrets.json",
        default="",
    ),
    Setting(
        "SLIPWAY_TRUST_CLIENT_PRINCIPAL",
        "Trust the `x-ms-client-principal` header. Only true where the platform guarantees "
        "that the linked Static Web App is the only way in (see README, Authentication).",
        "false",
        default="false",
    ),
    Setting(
        "SLIPWAY_API_TOKEN",
        "Bearer token that grants the admin role (automation, or `slipway dev` on a "
        "non-loopback address). At least 32 characters; empty disables it.",
        "",
        default="",
        secret=True,
    ),
    Setting(
        "SLIPWAY_ADMINS",
        "Comma-separated addresses of Static Web App users who are admins, or `*@domain` for a "
        "whole domain; adds to the roles Static Web Apps assigns. The first admin needs no "
        "invitation.",
        "",
        default="",
    ),
    Setting(
        "SLIPWAY_EDITORS",
        "Like `SLIPWAY_ADMINS`, for the editor role.",
        "",
        default="",
    ),
    Setting(
        "SLIPWAY_READERS",
        "Like `SLIPWAY_ADMINS`, for the reader role.",
        "",
        default="",
    ),
    Setting(
        "SLIPWAY_DEV_PRINCIPAL",
        "Grant every request an admin development principal. Only for a port reachable from "
        "this machine alone; refused when running in Azure App Service.",
        "true",
        default="false",
    ),
    Setting(
        "SLIPWAY_WEB_DIR",
        "Folder of the built web UI to serve at `/`; empty serves no UI (in Azure the Static "
        "Web App serves it).",
        "./web/dist",
        default="",
    ),
    Setting(
        "SLIPWAY_LOCAL_SITES_DIR",
        "Folder the local static host publishes sites to and serves them from at "
        "`/sites/<site>/` (`slipway dev`, compose); empty serves no sites (in Azure the Static "
        "Web Apps serve them).",
        "./.dev/sites",
        default="",
    ),
    Setting(
        "SLIPWAY_RUN_LOG_LIMIT_MB",
        "Most log output stored per workflow run; beyond it a marker line says how much was "
        "dropped. Lines longer than 8000 characters are cut with a marker.",
        "20",
        default="20",
    ),
    Setting(
        "SLIPWAY_ARCHIVE_MAX_MB",
        "Largest workspace zip (GET /api/workspace/archive) served under the Functions host, "
        "whose ASGI bridge holds a whole response in memory; a larger one is refused with 413. "
        "Served directly (uvicorn) the zip streams without a limit.",
        "100",
        default="100",
    ),
    Setting(
        "SLIPWAY_DURABLE_RETENTION_DAYS",
        "Days the Durable task hub keeps finished orchestrations (completed, failed, terminated); "
        "an hourly timer purges older ones. Run and deployment pages read Slipway's own tables, "
        "not this history.",
        "30",
        default="30",
    ),
    Setting(
        "SLIPWAY_LOCAL_SITES_URL",
        "Base URL at which this process serves the local static host, used to verify a "
        "deployment over HTTP; empty means `http://127.0.0.1:7071`. Only with "
        "`SLIPWAY_LOCAL_SITES_DIR`.",
        "http://127.0.0.1:7071",
        default="",
    ),
    Setting(
        "SLIPWAY_SWA_SUBSCRIPTION_ID",
        "Azure subscription of the Static Web Apps that deployments publish to. With "
        "`SLIPWAY_SWA_RESOURCE_GROUP` it makes Azure Static Web Apps the publish target (unless "
        "`SLIPWAY_LOCAL_SITES_DIR` is set).",
        "",
        default="",
    ),
    Setting(
        "SLIPWAY_SWA_RESOURCE_GROUP",
        "Resource group of those Static Web Apps; the app's identity needs "
        "`Microsoft.Web/staticSites/*` on it.",
        "",
        default="",
    ),
    Setting(
        "SLIPWAY_SWA_CREATE_SITES",
        "Create a Static Web App for a site that has none yet (else the deployment fails and says so).",
        "false",
        default="false",
    ),
    Setting(
        "SLIPWAY_SWA_LOCATION",
        "Region of the Static Web Apps Slipway creates (westus2, centralus, eastus2, westeurope "
        "or eastasia).",
        "westeurope",
        default="westeurope",
    ),
    Setting(
        "SLIPWAY_SWA_SKU",
        "Plan of the Static Web Apps Slipway creates: `Free` or `Standard`.",
        "Free",
        default="Free",
    ),
    Setting(
        "SLIPWAY_SWA_CLI",
        "The Static Web Apps CLI executable (`@azure/static-web-apps-cli` 2.0.9 or later) "
        "that uploads builds.",
        "swa",
        default="swa",
    ),
    Setting(
        "SLIPWAY_DEPLOY_DIR",
        "Local-disk folder for deployment checkouts and builds (never the share: builds on SMB are slow).",
        "./.dev/deploy",
        default="/tmp/slipway/deploy",  # noqa: S108 - the container's own local disk
    ),
    Setting(
        "SLIPWAY_DEPLOY_CACHE_DIR",
        "Local-disk folder of the dependency cache (node_modules keyed on the lockfile hash), "
        "kept between builds.",
        "./.dev/deploy-cache",
        default="/tmp/slipway/deploy-cache",  # noqa: S108 - the container's own local disk
    ),
    Setting(
        "SLIPWAY_DEPLOY_CACHE_ENTRIES",
        "How many dependency sets the cache keeps (least recently used go first).",
        "5",
        default="5",
    ),
    Setting(
        "SLIPWAY_DEPLOY_CONCURRENCY",
        "How many deployments build at once (different sites; one site always builds and "
        "publishes one at a time).",
        "2",
        default="2",
    ),
    Setting(
        "SLIPWAY_BUILD_TIMEOUT_MINUTES",
        "Time limit of each of a build's install, test and build commands.",
        "15",
        default="15",
    ),
    Setting(
        "SLIPWAY_VERIFY_TIMEOUT_SECONDS",
        "How long a published deployment may take to be served (its deploy file and verify "
        "path) before it is rolled back.",
        "120",
        default="120",
    ),
    Setting(
        "SLIPWAY_DEPLOY_KEEP",
        "Artifacts kept per site for rollback (the live and last good one are always kept).",
        "10",
        default="10",
    ),
    Setting(
        "ENABLE_DEBUGGING",
        "Start debugpy in the worker process at start-up so a debugger (VS Code) can attach "
        "and stop at breakpoints in workspace code. Development only, never in Azure.",
        "false",
        default="false",
    ),
    Setting(
        "DEBUG_HOST",
        "Address debugpy listens on when `ENABLE_DEBUGGING=true`: `127.0.0.1` on a "
        "developer's machine, `0.0.0.0` inside a container whose port is published.",
        "127.0.0.1",
        default="127.0.0.1",
    ),
    Setting(
        "DEBUG_PORT",
        "Port debugpy listens on when `ENABLE_DEBUGGING=true`.",
        "5678",
        default="5678",
    ),
    Setting(
        "DEBUG_WAIT_FOR_CLIENT",
        "With `ENABLE_DEBUGGING=true`, hold start-up until a debugger attaches.",
        "false",
        default="false",
    ),
    Setting(
        "SLIPWAY_LOG_LEVEL",
        "Log level of Slipway's own loggers: DEBUG, INFO, WARNING or ERROR.",
        "INFO",
        default="INFO",
    ),
)

SETTING_NAMES: frozenset[str] = frozenset(s.env for s in SETTINGS)

_TASK_HUB = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,44}$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_MIN_TOKEN_LENGTH = 32
# App Service sets these in every site it runs; their presence means "not a developer laptop".
_APP_SERVICE_MARKERS = ("WEBSITE_INSTANCE_ID", "WEBSITE_SITE_NAME")


@dataclass(frozen=True)
class DebugSettings:
    """Where debugpy listens, and whether start-up waits for a debugger."""

    host: str
    port: int
    wait_for_client: bool


@dataclass(frozen=True)
class AzureSitesSettings:
    """Where deployments publish in Azure: Static Web Apps in one resource group."""

    subscription_id: str
    resource_group: str
    create_sites: bool
    location: str
    sku: str
    cli: str


@dataclass(frozen=True)
class DeploySettings:
    """The deploy pipeline's folders, limits and publish target (local sites or Azure)."""

    work_dir: Path
    cache_dir: Path
    cache_entries: int = 5
    concurrency: int = 2
    build_timeout_seconds: float = 900.0
    verify_timeout_seconds: float = 120.0
    keep_artifacts: int = 10
    local_sites_url: str = "http://127.0.0.1:7071"
    azure: AzureSitesSettings | None = None


@dataclass(frozen=True)
class EnvironmentSettings:
    """Where workflows' package environments are built and where their packages come from."""

    root: Path = Path("/tmp/slipway/environments")  # noqa: S108
    index_url: str = field(default="", repr=False)
    find_links: str = ""
    build_timeout_seconds: float = 600.0


@dataclass(frozen=True)
class StorageConnection:
    """How to reach the storage account: a connection string, or an account and identity."""

    connection_string: str = field(default="", repr=False)
    account_name: str = ""
    client_id: str = ""

    @property
    def uses_identity(self) -> bool:
        return not self.connection_string

    def service_url(self, service: str) -> str:
        """The endpoint of ``blob``, ``queue`` or ``table`` for identity-based access."""
        return f"https://{self.account_name}.{service}.core.windows.net"

    def describe(self) -> str:
        """Where the storage is, without any key: safe for logs and health output."""
        if self.uses_identity:
            return f"account {self.account_name} (managed identity)"
        parts = dict(p.split("=", 1) for p in self.connection_string.split(";") if "=" in p and p.strip())
        if parts.get("UseDevelopmentStorage", "").lower() == "true":
            return "Azurite (UseDevelopmentStorage)"
        return f"account {parts.get('AccountName', '?')} (connection string)"


@dataclass(frozen=True)
class Settings:
    """Slipway's configuration: build it with ``load_settings``."""

    storage: StorageConnection
    task_hub: str
    workspace_dir: Path
    temp_dir: Path
    max_file_bytes: int
    min_free_mb: int
    public_base_url: str
    git_dir: Path
    github_api_url: str
    github_web_url: str
    workspace_share: str
    secret_store: SecretStoreKind
    key_vault_url: str
    secrets_file: Path | None
    trust_client_principal: bool
    api_token: str = field(repr=False)
    dev_principal: bool
    web_dir: Path | None
    local_sites_dir: Path | None
    log_level: str
    role_assignments: RoleAssignments = field(default_factory=RoleAssignments)
    run_log_limit_bytes: int = 20 * 1024 * 1024
    archive_max_bytes: int = 100 * 1024 * 1024
    durable_retention_days: int = 30
    steps_dir: Path = Path("/tmp/slipway/steps")  # noqa: S108
    step_user: str = ""
    load_timeout_seconds: int = 10
    debugging: DebugSettings | None = None
    host_limits: HostLimits = field(default_factory=HostLimits)
    deploy: DeploySettings = field(
        default_factory=lambda: DeploySettings(Path("/tmp/slipway/deploy"), Path("/tmp/slipway/deploy-cache"))  # noqa: S108
    )
    environments: EnvironmentSettings = field(default_factory=EnvironmentSettings)


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no", ""):
        return False
    raise ValueError("expected true or false")


def _parse_positive_int(raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError("expected a whole number") from None
    if value < 0:
        raise ValueError("expected a number of 0 or more")
    return value


def _parse_url(raw: str) -> str:
    parsed = urlparse(raw.strip())
    if parsed.scheme != "https" or not parsed.netloc:
        raise ValueError("expected an https:// URL such as https://myvault.vault.azure.net/")
    return raw.strip()


def _parse_http_url(raw: str) -> str:
    parsed = urlparse(raw.strip())
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError("expected an http(s):// URL")
    return raw.strip().rstrip("/")


def _parse_remote_base(raw: str) -> str:
    parsed = urlparse(raw.strip())
    if parsed.scheme not in ("http", "https", "file") or (parsed.scheme != "file" and not parsed.netloc):
        raise ValueError("expected an https:// URL (or file:// for a local mirror of repositories)")
    return raw.strip().rstrip("/")


def load_settings(env: Mapping[str, str], *, app_root: Path | None = None) -> Settings:
    """Read and validate every setting; raise ``SettingsError`` naming all that are wrong.

    ``app_root`` is the folder of ``function_app.py``, whose host.json bounds every invocation
    (see ``slipway.hostlimits``); without it, the host's ``AzureWebJobsScriptRoot``, else the
    current folder (where ``func start`` runs)."""
    problems: list[str] = []
    spec = {s.env: s for s in SETTINGS}

    for setting in SETTINGS:
        # App Service passes a Key Vault reference it could not resolve through as its literal
        # text; taken as a value (a token, say) that text would be a secret anyone can guess.
        if env.get(setting.env, "").startswith("@Microsoft.KeyVault("):
            problems.append(
                f"{setting.env} is an unresolved Key Vault reference: check that the app's identity "
                "may read the secret (Key Vault Secrets User or Officer) and that the secret exists"
            )

    def raw(name: str) -> str:
        value = env.get(name)
        if value is not None and value.startswith("@Microsoft.KeyVault("):
            return spec[name].default or ""
        if value is None or value == "":
            default = spec[name].default
            if default is None:
                problems.append(f"{name} is missing: {spec[name].description}")
                return ""
            return default
        return value

    def parsed(name: str, parse: Callable[[str], Any], fallback: Any) -> Any:
        value = raw(name)
        try:
            return parse(value)
        except ValueError as exc:
            shown = "<hidden>" if spec[name].secret else repr(value)
            problems.append(f"{name}={shown} is malformed: {exc}")
            return fallback

    connection_string = raw("AzureWebJobsStorage").strip()
    account_name = raw("AzureWebJobsStorage__accountName").strip()
    if not connection_string and not account_name:
        problems.append(
            "AzureWebJobsStorage is missing: set a storage connection string, or "
            "AzureWebJobsStorage__accountName for identity-based access"
        )
    if account_name and not re.fullmatch(r"[a-z0-9]{3,24}", account_name):
        problems.append(
            f"AzureWebJobsStorage__accountName={account_name!r} is malformed: expected 3-24 "
            "lowercase letters and digits"
        )
    storage = StorageConnection(connection_string, account_name, raw("AzureWebJobsStorage__clientId"))

    task_hub = raw("SLIPWAY_TASK_HUB")
    if not _TASK_HUB.match(task_hub):
        problems.append(
            f"SLIPWAY_TASK_HUB={task_hub!r} is malformed: expected 3-45 letters and digits, "
            "starting with a letter"
        )

    store_raw = raw("SLIPWAY_SECRET_STORE").strip().lower()
    secret_store = SecretStoreKind.FILE
    if store_raw:
        try:
            secret_store = SecretStoreKind(store_raw)
        except ValueError:
            problems.append(f"SLIPWAY_SECRET_STORE={store_raw!r} is malformed: expected keyvault or file")

    key_vault_url = ""
    secrets_file: Path | None = None
    if secret_store is SecretStoreKind.KEY_VAULT and store_raw:
        if not raw("SLIPWAY_KEY_VAULT_URL"):
            problems.append("SLIPWAY_KEY_VAULT_URL is missing: required when SLIPWAY_SECRET_STORE=keyvault")
        else:
            key_vault_url = parsed("SLIPWAY_KEY_VAULT_URL", _parse_url, "")
    elif secret_store is SecretStoreKind.FILE and store_raw:
        if not raw("SLIPWAY_SECRETS_FILE"):
            problems.append("SLIPWAY_SECRETS_FILE is missing: required when SLIPWAY_SECRET_STORE=file")
        else:
            secrets_file = Path(raw("SLIPWAY_SECRETS_FILE"))

    api_token = raw("SLIPWAY_API_TOKEN")
    if api_token and len(api_token) < _MIN_TOKEN_LENGTH:
        problems.append(
            f"SLIPWAY_API_TOKEN is too short: expected at least {_MIN_TOKEN_LENGTH} characters "
            '(generate one with `python -c "import secrets; print(secrets.token_urlsafe(32))"`)'
        )

    dev_principal = parsed("SLIPWAY_DEV_PRINCIPAL", _parse_bool, False)
    if dev_principal and any(env.get(marker) for marker in _APP_SERVICE_MARKERS):
        problems.append(
            "SLIPWAY_DEV_PRINCIPAL=true is refused: this process runs in Azure App Service, where "
            "it would make every visitor an admin"
        )

    log_level = raw("SLIPWAY_LOG_LEVEL").strip().upper()
    if log_level not in _LOG_LEVELS:
        problems.append(
            f"SLIPWAY_LOG_LEVEL={log_level!r} is malformed: expected one of {', '.join(_LOG_LEVELS)}"
        )

    public_base_url = raw("SLIPWAY_PUBLIC_BASE_URL").strip().rstrip("/")
    if public_base_url:
        public_base_url = parsed("SLIPWAY_PUBLIC_BASE_URL", _parse_http_url, "")

    web_dir_raw = raw("SLIPWAY_WEB_DIR")
    local_sites_dir_raw = raw("SLIPWAY_LOCAL_SITES_DIR").strip()
    role_assignments = RoleAssignments(
        admins=parsed("SLIPWAY_ADMINS", RoleAssignments.parse, ()),
        editors=parsed("SLIPWAY_EDITORS", RoleAssignments.parse, ()),
        readers=parsed("SLIPWAY_READERS", RoleAssignments.parse, ()),
    )
    run_log_limit_mb = parsed("SLIPWAY_RUN_LOG_LIMIT_MB", _parse_positive_int, 20)
    durable_retention_days = parsed("SLIPWAY_DURABLE_RETENTION_DAYS", _parse_positive_int, 30)
    if durable_retention_days < 1:
        problems.append("SLIPWAY_DURABLE_RETENTION_DAYS=0 is malformed: expected at least 1")
    load_timeout = parsed("SLIPWAY_LOAD_TIMEOUT_SECONDS", _parse_positive_int, 10)
    if load_timeout < 1:
        problems.append("SLIPWAY_LOAD_TIMEOUT_SECONDS=0 is malformed: expected at least 1")
    if run_log_limit_mb < 1:
        problems.append("SLIPWAY_RUN_LOG_LIMIT_MB=0 is malformed: expected at least 1")
    debugging: DebugSettings | None = None
    debug_port = parsed("DEBUG_PORT", _parse_positive_int, 5678)
    if not 1 <= debug_port <= 65535:
        problems.append(f"DEBUG_PORT={debug_port} is malformed: expected a port from 1 to 65535")
    debug_wait = parsed("DEBUG_WAIT_FOR_CLIENT", _parse_bool, False)
    if parsed("ENABLE_DEBUGGING", _parse_bool, False):
        if any(env.get(marker) for marker in _APP_SERVICE_MARKERS):
            problems.append("ENABLE_DEBUGGING=true is refused: this process runs in Azure App Service")
        debugging = DebugSettings(raw("DEBUG_HOST").strip(), debug_port, debug_wait)
    deploy = _deploy_settings(raw, parsed, problems)
    environments = _environment_settings(raw, parsed, problems)
    host_limits = HostLimits()
    try:
        host_limits = read_host_limits(app_root or Path(env.get("AzureWebJobsScriptRoot") or "."))
    except HostLimitError as exc:
        problems.append(str(exc))
    settings = Settings(
        storage=storage,
        task_hub=task_hub,
        workspace_dir=Path(raw("SLIPWAY_WORKSPACE_DIR")),
        temp_dir=Path(raw("SLIPWAY_TEMP_DIR")),
        max_file_bytes=parsed("SLIPWAY_MAX_FILE_MB", _parse_positive_int, 0) * 1024 * 1024,
        min_free_mb=parsed("SLIPWAY_MIN_FREE_MB", _parse_positive_int, 0),
        public_base_url=public_base_url,
        git_dir=Path(raw("SLIPWAY_GIT_DIR")),
        github_api_url=parsed("SLIPWAY_GITHUB_API_URL", _parse_http_url, ""),
        github_web_url=parsed("SLIPWAY_GITHUB_WEB_URL", _parse_remote_base, ""),
        workspace_share=raw("SLIPWAY_WORKSPACE_SHARE").strip(),
        secret_store=secret_store,
        key_vault_url=key_vault_url,
        secrets_file=secrets_file,
        trust_client_principal=parsed("SLIPWAY_TRUST_CLIENT_PRINCIPAL", _parse_bool, False),
        api_token=api_token,
        dev_principal=dev_principal,
        web_dir=Path(web_dir_raw) if web_dir_raw else None,
        local_sites_dir=Path(local_sites_dir_raw) if local_sites_dir_raw else None,
        log_level=log_level,
        role_assignments=role_assignments,
        run_log_limit_bytes=run_log_limit_mb * 1024 * 1024,
        archive_max_bytes=parsed("SLIPWAY_ARCHIVE_MAX_MB", _parse_positive_int, 100) * 1024 * 1024,
        durable_retention_days=durable_retention_days,
        steps_dir=Path(raw("SLIPWAY_STEPS_DIR")),
        step_user=raw("SLIPWAY_STEP_USER").strip(),
        load_timeout_seconds=load_timeout,
        debugging=debugging,
        host_limits=host_limits,
        deploy=deploy,
        environments=environments,
    )
    if problems:
        raise SettingsError(problems)
    return settings


_SWA_LOCATIONS = ("westus2", "centralus", "eastus2", "westeurope", "eastasia")
_SUBSCRIPTION = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_RESOURCE_GROUP = re.compile(r"^[-\w._()]{1,90}$")


def _deploy_settings(
    raw: Callable[[str], str], parsed: Callable[[str, Callable[[str], Any], Any], Any], problems: list[str]
) -> DeploySettings:
    def at_least_one(name: str, fallback: int) -> int:
        value = int(parsed(name, _parse_positive_int, fallback))
        if value < 1:
            problems.append(f"{name}=0 is malformed: expected at least 1")
            return fallback
        return value

    sites_url = "http://127.0.0.1:7071"
    if raw("SLIPWAY_LOCAL_SITES_URL").strip():
        sites_url = parsed("SLIPWAY_LOCAL_SITES_URL", _parse_http_url, sites_url)
    subscription = raw("SLIPWAY_SWA_SUBSCRIPTION_ID").strip()
    group = raw("SLIPWAY_SWA_RESOURCE_GROUP").strip()
    create_sites = bool(parsed("SLIPWAY_SWA_CREATE_SITES", _parse_bool, False))
    location = raw("SLIPWAY_SWA_LOCATION").strip().lower()
    sku = raw("SLIPWAY_SWA_SKU").strip()
    azure: AzureSitesSettings | None = None
    if subscription or group:
        if not _SUBSCRIPTION.match(subscription):
            problems.append(
                f"SLIPWAY_SWA_SUBSCRIPTION_ID={subscription!r} is malformed: expected a subscription id "
                "(a GUID) when SLIPWAY_SWA_RESOURCE_GROUP is set"
            )
        if not _RESOURCE_GROUP.match(group):
            problems.append(
                f"SLIPWAY_SWA_RESOURCE_GROUP={group!r} is malformed: expected a resource group name "
                "when SLIPWAY_SWA_SUBSCRIPTION_ID is set"
            )
        if location not in _SWA_LOCATIONS:
            problems.append(
                f"SLIPWAY_SWA_LOCATION={location!r} is malformed: Static Web Apps exist in "
                f"{', '.join(_SWA_LOCATIONS)}"
            )
        if sku not in ("Free", "Standard"):
            problems.append(f"SLIPWAY_SWA_SKU={sku!r} is malformed: expected Free or Standard")
        azure = AzureSitesSettings(
            subscription, group, create_sites, location, sku, raw("SLIPWAY_SWA_CLI").strip() or "swa"
        )
    return DeploySettings(
        work_dir=Path(raw("SLIPWAY_DEPLOY_DIR")),
        cache_dir=Path(raw("SLIPWAY_DEPLOY_CACHE_DIR")),
        cache_entries=at_least_one("SLIPWAY_DEPLOY_CACHE_ENTRIES", 5),
        concurrency=at_least_one("SLIPWAY_DEPLOY_CONCURRENCY", 2),
        build_timeout_seconds=at_least_one("SLIPWAY_BUILD_TIMEOUT_MINUTES", 15) * 60.0,
        verify_timeout_seconds=float(at_least_one("SLIPWAY_VERIFY_TIMEOUT_SECONDS", 120)),
        keep_artifacts=at_least_one("SLIPWAY_DEPLOY_KEEP", 10),
        local_sites_url=sites_url,
        azure=azure,
    )


def _environment_settings(
    raw: Callable[[str], str], parsed: Callable[[str, Callable[[str], Any], Any], Any], problems: list[str]
) -> EnvironmentSettings:
    index_url = ""
    if raw("SLIPWAY_PACKAGE_INDEX_URL").strip():
        index_url = parsed("SLIPWAY_PACKAGE_INDEX_URL", _parse_http_url, "")
    timeout = parsed("SLIPWAY_ENVIRONMENT_BUILD_TIMEOUT_SECONDS", _parse_positive_int, 600)
    if timeout < 1:
        problems.append("SLIPWAY_ENVIRONMENT_BUILD_TIMEOUT_SECONDS=0 is malformed: expected at least 1")
        timeout = 600
    return EnvironmentSettings(
        root=Path(raw("SLIPWAY_ENVIRONMENTS_DIR")),
        index_url=index_url,
        find_links=raw("SLIPWAY_PACKAGE_FIND_LINKS").strip(),
        build_timeout_seconds=float(timeout),
    )
