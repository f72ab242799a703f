"""The composition root: the one place that turns settings into adapters and services.

Azure or local is decided here and nowhere else: storage comes from a connection string
(Azurite locally) or from the account name and a managed identity (Azure); secrets from Key
Vault or from a local 0600 file; the workspace and temp folders are plain paths (an Azure
Files share is mounted, so it is a folder too). Tests build ``Services`` the same way, from
settings that point at Azurite and temporary folders.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from azure.core.credentials import TokenCredential
from azure.data.tables import TableServiceClient
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient
from azure.storage.blob import BlobServiceClient
from azure.storage.fileshare import ExponentialRetry as ShareRetry
from azure.storage.fileshare import ShareClient
from azure.storage.queue import ExponentialRetry, QueueServiceClient

from slipway.adapters.blobs import BlobStore
from slipway.adapters.fileshare import ShareSnapshots
from slipway.adapters.github import GitHubClient
from slipway.adapters.local_sites import SITES_PATH, LocalSitesPublisher
from slipway.adapters.queues import QueueBus
from slipway.adapters.secrets import FileSecretStore, KeyVaultSecretStore, SecretStore
from slipway.adapters.staticwebapps import Publisher, Sku, StaticWebAppsManager
from slipway.adapters.swa_cli import SwaCliPublisher
from slipway.adapters.tables import TableStore
from slipway.auth import AuthPolicy
from slipway.config import SecretStoreKind, Settings
from slipway.deploy.build import BuildLimits
from slipway.deploy.cache import DependencyCache
from slipway.deploy.errors import DeployError
from slipway.deploy.pipeline import DeployPipeline
from slipway.deploy.records import DeploymentStore
from slipway.deploy.service import DeploymentService, same_repository
from slipway.deploy.slots import BuildSlots
from slipway.engine.execution import CancelWatch, StepExecutor
from slipway.engine.interpreters import WorkflowInterpreters
from slipway.engine.loader import WorkflowLoader
from slipway.engine.logs import RunLogStore, RunLogWriter
from slipway.engine.runs import RunStore
from slipway.engine.service import WorkflowService
from slipway.engine.snapshots import Snapshots
from slipway.environments.store import Environments
from slipway.gitsync.connection import TOKEN_SECRET, ConnectionStore
from slipway.gitsync.journal import SyncJournal
from slipway.gitsync.lease import SyncLease
from slipway.gitsync.pending import PendingRequests
from slipway.gitsync.service import GitSyncConfig, GitSyncService
from slipway.gitsync.webhook import WebhookHandler
from slipway.health import HealthService
from slipway.isolation.boundary import (
    check_reachable,
    install_sdk,
    interpreter,
    protect_platform,
    resolve_identity,
)
from slipway.isolation.launcher import Launcher
from slipway.workflow_secrets import WorkflowSecrets
from slipway.workspace.journal import WorkspaceJournal
from slipway.workspace.mode import WorkspaceModeStore
from slipway.workspace.service import WorkspaceService
from slipway.workspace.store import WorkspaceStore

# requests reads proxies, ~/.netrc and CA bundles from the environment on every call (about 6%
# of a workflow run's CPU); it only needs to when one of these is set.
_TRANSPORT_ENV = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)
# Storage calls fail fast rather than holding a request or a readiness probe for minutes.
_CLIENT_OPTIONS: dict[str, Any] = {
    "connection_timeout": 5,
    "read_timeout": 20,
    "retry_total": 3,
    "use_env_settings": any(os.environ.get(n) or os.environ.get(n.lower()) for n in _TRANSPORT_ENV),
}
# The storage SDKs' own default backs off 15 s + 3^n s between tries (a minute for three);
# a queued run or a readiness probe should not sit that long behind a blip.
_QUEUE_RETRY = ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=3, random_jitter_range=1)
_SHARE_RETRY = ShareRetry(initial_backoff=1, increment_base=2, retry_total=3, random_jitter_range=1)


@dataclass(frozen=True)
class Services:
    """Everything the API, the triggers and the local runner need, built once."""

    settings: Settings
    tables: TableStore
    queues: QueueBus
    secrets: SecretStore
    auth: AuthPolicy
    health: HealthService
    workspace: WorkspaceService
    gitsync: GitSyncService
    sync_requests: PendingRequests
    webhook: WebhookHandler
    workflows: WorkflowService
    step_executor: StepExecutor
    deployments: DeploymentService
    deploy_pipeline: DeployPipeline
    workflow_secrets: WorkflowSecrets


def _credential(settings: Settings) -> TokenCredential:
    if settings.storage.client_id:
        return ManagedIdentityCredential(client_id=settings.storage.client_id)
    return DefaultAzureCredential(exclude_interactive_browser_credential=True)


def step_launcher(settings: Settings) -> Launcher:
    """What starts workflow processes: as the step user, importing only the SDK's copy. With a
    debugger, no process is started ahead of its step, so each one starts under the debugger."""
    identity = resolve_identity(settings.step_user)
    protect_platform(identity)
    settings.steps_dir.mkdir(parents=True, exist_ok=True)
    settings.steps_dir.chmod(0o755)
    sdk_dir = install_sdk(settings.steps_dir)
    # Fail at start, naming the folder, rather than in every load with "No module named slipway".
    check_reachable(identity, [interpreter(), sdk_dir, settings.environments.root])
    debugging = settings.debugging is not None
    return Launcher(identity, sdk_dir, warm=not debugging, debugging=debugging)


def build_services(settings: Settings) -> Services:
    """Construct every adapter and service from ``settings``."""
    configure_logging(settings.log_level)
    storage = settings.storage
    credential: TokenCredential | None = None
    if storage.uses_identity:
        credential = _credential(settings)
        table_service = TableServiceClient(
            storage.service_url("table"), credential=credential, **_CLIENT_OPTIONS
        )
        queue_service = QueueServiceClient(
            storage.service_url("queue"), credential=credential, retry_policy=_QUEUE_RETRY, **_CLIENT_OPTIONS
        )
        blob_service = BlobServiceClient(
            storage.service_url("blob"), credential=credential, **_CLIENT_OPTIONS
        )
    else:
        table_service = TableServiceClient.from_connection_string(
            storage.connection_string, **_CLIENT_OPTIONS
        )
        queue_service = QueueServiceClient.from_connection_string(
            storage.connection_string, retry_policy=_QUEUE_RETRY, **_CLIENT_OPTIONS
        )
        blob_service = BlobServiceClient.from_connection_string(storage.connection_string, **_CLIENT_OPTIONS)

    secrets: SecretStore
    if settings.secret_store is SecretStoreKind.KEY_VAULT:
        vault_credential = credential or _credential(settings)
        secrets = KeyVaultSecretStore(
            SecretClient(settings.key_vault_url, vault_credential, **_CLIENT_OPTIONS)
        )
    else:
        assert settings.secrets_file is not None  # load_settings guarantees it for the file store
        secrets = FileSecretStore(settings.secrets_file)

    tables = TableStore(table_service)
    queues = QueueBus(queue_service)
    health = HealthService(
        tables=tables,
        queues=queues,
        secrets=secrets,
        workspace_dir=settings.workspace_dir,
        temp_dir=settings.temp_dir,
        min_free_mb=settings.min_free_mb,
        storage_description=storage.describe(),
    )
    auth = AuthPolicy(
        api_token=settings.api_token,
        trust_client_principal=settings.trust_client_principal,
        dev_principal=settings.dev_principal,
        assignments=settings.role_assignments,
    )
    modes = WorkspaceModeStore(tables)
    workspace = WorkspaceService(
        WorkspaceStore(settings.workspace_dir, max_file_bytes=settings.max_file_bytes),
        modes,
        WorkspaceJournal(tables),
    )
    connections = ConnectionStore(tables)
    sync_journal = SyncJournal(tables)
    sync_requests = PendingRequests(tables)
    gitsync = GitSyncService(
        GitSyncConfig(
            git_dir=settings.git_dir,
            workspace_dir=settings.workspace_dir,
            public_base_url=settings.public_base_url,
            github_api_url=settings.github_api_url,
            github_web_url=settings.github_web_url,
        ),
        secrets=secrets,
        connections=connections,
        journal=sync_journal,
        pending=sync_requests,
        lease=SyncLease(tables),
        modes=modes,
        queues=queues,
        github=lambda token: GitHubClient(token, api_url=settings.github_api_url),
        snapshots=_share_snapshots(settings, credential),
    )
    runs = RunStore(tables)
    # Absolute: code objects carry this path, and debuggers match breakpoints against it.
    workspace_dir = settings.workspace_dir.absolute()
    versions = BlobStore(blob_service)
    loader = WorkflowLoader(
        workspace_dir,
        versions,
        snapshots=Snapshots(workspace_dir, versions, settings.steps_dir / "snapshots"),
        launcher=step_launcher(settings),
        home=settings.steps_dir / "home",
        interpreters=WorkflowInterpreters(
            Environments(
                settings.environments.root,
                index_url=settings.environments.index_url,
                find_links=settings.environments.find_links,
            ),
            versions,
            timeout=settings.environments.build_timeout_seconds,
        ),
        host_limits=settings.host_limits,
        load_timeout=float(settings.load_timeout_seconds),
    )
    log_store = RunLogStore(tables, limit_bytes=settings.run_log_limit_bytes)
    log_writer = RunLogWriter(log_store)
    workflows = WorkflowService(loader, runs, log_store, log_writer, queues, settings.temp_dir)
    workflow_secrets = WorkflowSecrets(secrets)
    step_executor = StepExecutor(
        loader, runs, log_writer, CancelWatch(runs), settings.temp_dir, secrets=workflow_secrets
    )
    deployments, deploy_pipeline = _deployments(
        settings,
        tables,
        queues,
        secrets,
        BlobStore(blob_service),
        connections,
        log_store,
        log_writer,
        credential,
    )
    webhook = WebhookHandler(
        secrets=secrets,
        tables=tables,
        queues=queues,
        connections=connections,
        journal=sync_journal,
        on_push=deployments.on_push,
    )
    return Services(
        deployments=deployments,
        deploy_pipeline=deploy_pipeline,
        settings=settings,
        workflows=workflows,
        step_executor=step_executor,
        gitsync=gitsync,
        sync_requests=sync_requests,
        webhook=webhook,
        tables=tables,
        queues=queues,
        secrets=secrets,
        auth=auth,
        health=health,
        workspace=workspace,
        workflow_secrets=workflow_secrets,
    )


def _deployments(
    settings: Settings,
    tables: TableStore,
    queues: QueueBus,
    secrets: SecretStore,
    blobs: BlobStore,
    connections: ConnectionStore,
    log_store: RunLogStore,
    log_writer: RunLogWriter,
    credential: TokenCredential | None,
) -> tuple[DeploymentService, DeployPipeline]:
    """The deploy pipeline and its service, publishing to the local static host when
    ``SLIPWAY_LOCAL_SITES_DIR`` is set, else to Azure Static Web Apps when configured."""
    deploy = settings.deploy
    publisher: Publisher | None = None
    target: str | None = None
    if settings.local_sites_dir is not None:
        publisher = LocalSitesPublisher(settings.local_sites_dir, deploy.local_sites_url)
        target = f"the local static host ({deploy.local_sites_url}{SITES_PATH}/)"
    elif deploy.azure is not None:
        azure = deploy.azure
        manager = StaticWebAppsManager(
            credential or _credential(settings),
            azure.subscription_id,
            azure.resource_group,
            allow_create=azure.create_sites,
        )
        sku: Sku = "Standard" if azure.sku == "Standard" else "Free"
        publisher = SwaCliPublisher(manager, azure.cli, location=azure.location, sku=sku)
        target = f"Azure Static Web Apps in resource group {azure.resource_group}"

    def connected() -> tuple[str, str] | None:
        connection = connections.get()
        return (connection.remote_url, connection.branch) if connection is not None else None

    def git_token(repository: str) -> str | None:
        # The stored token goes only to the connected repository, never to a URL a user typed.
        connection = connections.get()
        if connection is None or not same_repository(repository, connection.remote_url):
            return None
        return secrets.get_secret(TOKEN_SECRET)

    store = DeploymentStore(tables)
    pipeline = DeployPipeline(
        store,
        blobs,
        publisher,
        deploy.work_dir,
        DependencyCache(deploy.cache_dir, keep=deploy.cache_entries),
        workspace_root=settings.workspace_dir,
        limits=BuildLimits(
            install_timeout=deploy.build_timeout_seconds,
            test_timeout=deploy.build_timeout_seconds,
            build_timeout=deploy.build_timeout_seconds,
            max_log_bytes=settings.run_log_limit_bytes,
        ),
        verify_timeout=deploy.verify_timeout_seconds,
        log=log_writer.line,
        flush=log_writer.flush,
        slots=BuildSlots(tables, deploy.concurrency, is_finished=lambda i: _finished(store, i)),
        git_token=git_token,
        keep_artifacts=deploy.keep_artifacts,
        host_limits=settings.host_limits,
    )
    service = DeploymentService(
        store, queues, log_store, log_writer, target=target, connected_repository=connected
    )
    return service, pipeline


def _finished(store: DeploymentStore, deployment_id: str) -> bool:
    try:
        return store.get(deployment_id).finished
    except DeployError:
        return True  # a slot held by a deployment that no longer exists is free


def _share_snapshots(settings: Settings, credential: TokenCredential | None) -> ShareSnapshots | None:
    """Snapshots of the workspace share, in Azure only (a local folder has none)."""
    if not settings.workspace_share:
        return None
    storage = settings.storage
    if storage.uses_identity:
        share = ShareClient(
            storage.service_url("file"),
            settings.workspace_share,
            credential=credential or _credential(settings),
            token_intent="backup",  # noqa: S106 - the Files OAuth mode, not a password
            retry_policy=_SHARE_RETRY,
            **_CLIENT_OPTIONS,
        )
    else:
        share = ShareClient.from_connection_string(
            storage.connection_string,
            settings.workspace_share,
            retry_policy=_SHARE_RETRY,
            **_CLIENT_OPTIONS,
        )
    return ShareSnapshots(share)


def configure_logging(level: str) -> None:
    """Slipway's loggers at ``level``; the Azure SDK's HTTP logging stays at WARNING.

    The SDK logs request headers at INFO, and those can carry SAS tokens and keys.
    """
    logging.getLogger("slipway").setLevel(level)
    logging.getLogger("azure").setLevel(logging.WARNING)
    # PyGithub attaches its own stderr handler at import; the host's handlers are enough.
    github_log = logging.getLogger("github")
    github_log.handlers.clear()
    github_log.setLevel(logging.WARNING)
