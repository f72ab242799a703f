"""Azure Static Web Apps: the sites Slipway publishes built front-ends to, and how it publishes.

``Publisher`` is the one interface the deploy pipeline calls. Two implementations sit behind it:

- ``slipway.adapters.swa_cli.SwaCliPublisher``, the supported path (DESIGN §8): read the site's
  deployment token through ARM and run the official SWA CLI (``swa deploy``) with it.
- ``ZipDeployPublisher`` (here): ARM's ``staticSites/{name}/zipdeploy``, which takes a URL
  Azure downloads a zip of the site from. It is in the REST API and the SDK, but nobody has
  publicly reported it working; keep it for a trial, not as the default.

``StaticWebAppsManager`` does the ARM calls through ``azure-mgmt-web`` (``WebSiteManagementClient``,
REST api-version ``API_VERSION``): read a site and its hostname, create a site for token-based
deploys (when allowed), read the deployment token, start a zip deployment. Every failure a caller
can act on has its own exception; none of them carries a token, a SAS URL or the request (whose
``Authorization`` header holds the ARM bearer token).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn, Protocol

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.mgmt.web import WebSiteManagementClient
from azure.mgmt.web.models import (
    SkuDescription,
    StaticSite,
    StaticSiteARMResource,
    StaticSiteZipDeployment,
    StaticSiteZipDeploymentARMResource,
)

ARM_URL = "https://management.azure.com"
# The REST api-version azure-mgmt-web 11.x sends for every Microsoft.Web call.
API_VERSION = "2025-05-01"
# What the Function App's identity needs on the resource group (DESIGN §8). No built-in role but
# Contributor and Owner covers it ("Website Contributor" is Microsoft.Web/sites/* only), so
# infra/azuredeploy.json defines a custom role with exactly this permission.
REQUIRED_PERMISSION = "Microsoft.Web/staticSites/*"
SUGGESTED_ROLE = "Slipway Static Web Apps Contributor"

Sku = Literal["Free", "Standard"]
_SKUS = ("Free", "Standard")
# Microsoft.Web/staticSites names: 1-40 letters, digits and hyphens.
_SITE_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38}[A-Za-z0-9])?")


# --- the interface the pipeline calls ----------------------------------------------------------


@dataclass(frozen=True)
class PublishResult:
    url: str  # the site's https URL, e.g. https://happy-sea-15afae3e.5.azurestaticapps.net


class Publisher(Protocol):
    """Publishes a folder of built static files as the production content of a Static Web App."""

    def publish(
        self, site: str, folder: Path, *, log: Callable[[str], None], timeout: float
    ) -> PublishResult:
        """Replaces ``site``'s production content with ``folder``'s files and returns its URL.

        ``log`` receives progress lines (never a secret); after ``timeout`` seconds the publish is
        abandoned and ``PublishTimedOut`` raised. Raises ``SiteNotFound``, ``AccessDenied``,
        ``PublishFailed`` or another ``StaticWebAppsError``.
        """
        ...


# --- errors ------------------------------------------------------------------------------------


class StaticWebAppsError(Exception):
    """ARM or the publisher failed; the message says why and never contains a token."""


class SiteNotFound(StaticWebAppsError):
    """The static web app does not exist in the configured resource group."""


class AccessDenied(StaticWebAppsError):
    """ARM answered 403: the app's identity lacks a role on the resource group."""

    def __init__(self, message: str, *, action: str | None) -> None:
        super().__init__(message)
        self.action = action  # the ARM action that was refused, when ARM names it
        self.required_permission = REQUIRED_PERMISSION


class SiteCreationDisabled(StaticWebAppsError):
    """The site does not exist and this manager was not allowed to create sites."""


class PublishFailed(StaticWebAppsError):
    """Publishing failed; ``output_tail`` holds the publisher's last output lines (secrets masked)."""

    def __init__(self, message: str, *, output_tail: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.output_tail = output_tail


class PublishTimedOut(PublishFailed):
    """Publishing did not finish within its timeout and was stopped."""


# --- ARM ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteInfo:
    name: str
    hostname: str  # the default hostname, e.g. happy-sea-15afae3e.5.azurestaticapps.net
    location: str
    sku: str | None

    @property
    def url(self) -> str:
        return f"https://{self.hostname}"


def check_site_name(name: str) -> str:
    if not isinstance(name, str) or not _SITE_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a static web app name (1-40 letters, digits and hyphens)")
    return name


class StaticWebAppsManager:
    """The ARM calls on ``Microsoft.Web/staticSites`` in one resource group."""

    def __init__(
        self,
        credential: TokenCredential,
        subscription_id: str,
        resource_group: str,
        *,
        allow_create: bool = False,
        base_url: str = ARM_URL,
        connection_verify: bool | str = True,
        timeout: float = 30,
        retries: int = 3,
        polling_interval: float = 5,
    ) -> None:
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.allow_create = allow_create
        self._polling_interval = polling_interval
        self._client = WebSiteManagementClient(
            credential,
            subscription_id,
            base_url=base_url.rstrip("/"),
            connection_verify=connection_verify,
            connection_timeout=timeout,
            read_timeout=timeout,
            retry_total=retries,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> StaticWebAppsManager:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def get_site(self, name: str) -> SiteInfo | None:
        """The site, or None when it does not exist (``GET .../staticSites/{name}``)."""
        check_site_name(name)
        try:
            site = self._client.static_sites.get_static_site(self.resource_group, name)
        except HttpResponseError as exc:
            if isinstance(exc, ResourceNotFoundError) and _code(exc) != "ResourceGroupNotFound":
                return None
            self._raise(exc, name, f"read static web app {name}")
        except (ServiceRequestError, ServiceResponseError) as exc:
            self._raise(exc, name, f"read static web app {name}")
        return _site_info(site, name)

    def create_site(self, name: str, location: str, *, sku: Sku = "Free", timeout: float = 300) -> SiteInfo:
        """Creates a site without a repository, for token-based deploys (``PUT .../staticSites/{name}``).

        Static Web Apps exist in few regions (westus2, centralus, eastus2, westeurope, eastasia);
        ARM refuses others. Linking a Function App as the site's API needs ``Standard``.
        """
        check_site_name(name)
        if sku not in _SKUS:
            raise ValueError(f"sku must be one of {', '.join(_SKUS)}, not {sku!r}")
        if not self.allow_create:
            raise SiteCreationDisabled(
                f"static web app {name} does not exist in resource group {self.resource_group}, and "
                "Slipway is not allowed to create sites; create it, or allow Slipway to create sites"
            )
        envelope = StaticSiteARMResource(
            location=location, sku=SkuDescription(name=sku, tier=sku), properties=StaticSite()
        )
        action = f"create static web app {name}"
        try:
            poller = self._client.static_sites.begin_create_or_update_static_site(
                self.resource_group, name, envelope, polling_interval=self._polling_interval
            )
            site = poller.result(timeout=timeout)
        except (HttpResponseError, ServiceRequestError, ServiceResponseError) as exc:
            self._raise(exc, name, action)
        if not poller.done() or site is None:
            raise StaticWebAppsError(
                f"Azure did not finish creating static web app {name} within {timeout:g} s; "
                "it may still appear, check the resource group"
            )
        return _site_info(site, name)

    def get_deployment_token(self, name: str) -> str:
        """The site's deployment token (``POST .../staticSites/{name}/listSecrets``, ``apiKey``)."""
        check_site_name(name)
        try:
            secrets = self._client.static_sites.list_static_site_secrets(self.resource_group, name)
        except (HttpResponseError, ServiceRequestError, ServiceResponseError) as exc:
            self._raise(exc, name, f"read the deployment token of static web app {name}")
        token = (secrets.properties or {}).get("apiKey")
        if not isinstance(token, str) or not token:
            raise StaticWebAppsError(f"Azure returned no deployment token for static web app {name}")
        return token

    def create_zip_deployment(
        self, name: str, app_zip_url: str, *, title: str | None = None, timeout: float = 600
    ) -> None:
        """Deploys the zip Azure downloads from ``app_zip_url`` (``POST .../staticSites/{name}/zipdeploy``)."""
        check_site_name(name)
        envelope = StaticSiteZipDeploymentARMResource(
            properties=StaticSiteZipDeployment(app_zip_url=app_zip_url, deployment_title=title)
        )
        action = f"deploy a zip to static web app {name}"
        try:
            poller = self._client.static_sites.begin_create_zip_deployment_for_static_site(
                self.resource_group, name, envelope, polling_interval=self._polling_interval
            )
            poller.result(timeout=timeout)
        except (HttpResponseError, ServiceRequestError, ServiceResponseError) as exc:
            self._raise(exc, name, action)
        if not poller.done():
            raise PublishTimedOut(f"Azure did not finish the zip deployment to {name} within {timeout:g} s")

    # --- plumbing ------------------------------------------------------------------------------

    def _raise(self, exc: Exception, name: str, action: str) -> NoReturn:
        """Raises Slipway's exception for an SDK failure, ``from None``: the SDK's exception holds
        the request, ARM bearer token included."""
        scope = f"resource group {self.resource_group} (subscription {self.subscription_id})"
        if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
            raise StaticWebAppsError(
                f"cannot {action}: Azure Resource Manager did not answer ({exc})"
            ) from None
        assert isinstance(exc, HttpResponseError)
        status, code, said = exc.status_code, _code(exc), _message(exc)
        arm_says = f" (Azure: {code}{f': {said}' if said else ''})" if code or said else ""
        if status == 404 and code != "ResourceGroupNotFound":
            raise SiteNotFound(f"static web app {name} does not exist in {scope}{arm_says}") from None
        if status == 403:
            match = re.search(r"perform action '([^']+)'", said or "")
            raise AccessDenied(
                f"Azure refused to let Slipway {action}{arm_says}: the Function App's managed identity "
                f"needs a role on {scope} that allows {REQUIRED_PERMISSION} (for example "
                f'the "{SUGGESTED_ROLE}" role the template creates); assign it, wait a few minutes for it to apply, and try again',
                action=match[1] if match else None,
            ) from None
        if isinstance(exc, ClientAuthenticationError) or status == 401:
            raise StaticWebAppsError(
                f"Azure did not accept Slipway's credential to {action}{arm_says}; check the app's managed identity"
            ) from None
        raise StaticWebAppsError(f"cannot {action}: Azure answered {status}{arm_says}") from None


def _code(exc: HttpResponseError) -> str | None:
    error = getattr(exc, "error", None)
    return getattr(error, "code", None) or None


def _message(exc: HttpResponseError) -> str | None:
    error = getattr(exc, "error", None)
    return getattr(error, "message", None) or None


def _site_info(site: StaticSiteARMResource, name: str) -> SiteInfo:
    properties: Any = site.properties
    hostname = getattr(properties, "default_hostname", None)
    if not hostname:
        raise StaticWebAppsError(f"Azure returned static web app {name} without a default hostname")
    return SiteInfo(
        name=site.name or name,
        hostname=str(hostname),
        location=str(site.location),
        sku=site.sku.name if site.sku is not None else None,
    )


# --- the zip-deployment publisher --------------------------------------------------------------


class ZipDeployPublisher:
    """Publishes through ARM's zip deployment: zip the folder, stage it, ask Azure to fetch it.

    ``stage`` uploads the zip file it is given and returns a URL Azure can download it from
    (for example a short-lived read-only blob SAS URL); the URL is never logged.

    Caution: DESIGN §8 found no public report of ``begin_create_zip_deployment_for_static_site``
    working, and open issues report ``NotImplemented`` for its per-environment variant. This is
    the documented alternative behind ``Publisher``, to be tried; ``SwaCliPublisher`` is the
    supported path.
    """

    def __init__(self, manager: StaticWebAppsManager, stage: Callable[[Path], str]) -> None:
        self._manager = manager
        self._stage = stage

    def publish(
        self, site: str, folder: Path, *, log: Callable[[str], None], timeout: float
    ) -> PublishResult:
        info = self._manager.get_site(site)
        if info is None:
            raise SiteNotFound(
                f"static web app {site} does not exist in resource group {self._manager.resource_group}"
            )
        if not folder.is_dir():
            raise PublishFailed(f"the folder to publish, {folder}, does not exist")
        with tempfile.TemporaryDirectory(prefix="slipway-swa-zip-") as scratch:
            archive = Path(shutil.make_archive(str(Path(scratch) / "site"), "zip", root_dir=folder))
            log(f"zipped {folder} ({archive.stat().st_size} bytes)")
            url = self._stage(archive)
        log(f"asking Azure to deploy the zip to {site}")
        self._manager.create_zip_deployment(site, url, title="Slipway", timeout=timeout)
        log(f"deployed to {info.url}")
        return PublishResult(url=info.url)
