"""Static Web Apps adapters: the ARM manager against a local fake of ARM, the CLI publisher
against a stand-in ``swa`` executable.

``StaticWebAppsManager`` talks through the real ``azure-mgmt-web`` client, over TLS, to
``tests/fakes/arm_staticsites.py``; these tests pin the requests it makes (method, path,
api-version, the body of a create), what it reads back, and how ARM's failures map to Slipway's
exceptions. ``SwaCliPublisher`` runs a script written into tmp that records its argv, cwd and
environment: the deployment token must arrive only in ``SWA_CLI_DEPLOYMENT_TOKEN``, nothing else
of Slipway's environment may, and a hanging CLI is killed with everything it started.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from fakes import self_signed_certificate
from fakes.arm_staticsites import TOKEN, FakeArm

from slipway.adapters.staticwebapps import (
    API_VERSION,
    REQUIRED_PERMISSION,
    AccessDenied,
    PublishFailed,
    PublishResult,
    PublishTimedOut,
    SiteCreationDisabled,
    SiteInfo,
    SiteNotFound,
    StaticWebAppsError,
    StaticWebAppsManager,
    ZipDeployPublisher,
)
from slipway.adapters.swa_cli import TOKEN_VARIABLE, SwaCliPublisher

SUBSCRIPTION = "34adfa4f-cedf-4dc0-ba29-b6d1a69ab345"
RG = "rg-frontends"
SITE_PATH = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.Web/staticSites"


class StaticTokenCredential:
    """A TokenCredential with one fixed ARM token; remembers the scopes it was asked for."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.asked: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.asked.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key, as PEM files."""
    return self_signed_certificate(tmp_path_factory.mktemp("arm-tls"), "Slipway test ARM")


@pytest.fixture
def arm(tls_files: tuple[Path, Path]) -> Iterator[FakeArm]:
    with FakeArm(*tls_files, subscription=SUBSCRIPTION) as fake:
        fake.add_site(RG, "docs-site", hostname="happy-sea-15afae3e.5.azurestaticapps.net")
        yield fake


def make_manager(
    arm: FakeArm, tls_files: tuple[Path, Path], credential: Any = None, **kwargs: Any
) -> StaticWebAppsManager:
    return StaticWebAppsManager(
        credential or StaticTokenCredential(),
        SUBSCRIPTION,
        RG,
        base_url=arm.url,
        connection_verify=str(tls_files[0]),  # verify the fake's certificate, not skip verification
        timeout=5,
        retries=0,
        polling_interval=0.01,
        **kwargs,
    )


@pytest.fixture
def manager(arm: FakeArm, tls_files: tuple[Path, Path]) -> Iterator[StaticWebAppsManager]:
    with make_manager(arm, tls_files, allow_create=True) as client:
        yield client


def calls(arm: FakeArm) -> list[tuple[str, str, str | None]]:
    return [(r.method, r.path, r.query.get("api-version")) for r in arm.requests]


# --- StaticWebAppsManager ------------------------------------------------------------------------


def test_get_site_reads_the_default_hostname_with_a_management_token(
    arm: FakeArm, tls_files: tuple[Path, Path]
) -> None:
    credential = StaticTokenCredential()
    with make_manager(arm, tls_files, credential) as manager:
        site = manager.get_site("docs-site")

    assert site == SiteInfo(
        name="docs-site",
        hostname="happy-sea-15afae3e.5.azurestaticapps.net",
        location="West Europe",
        sku="Free",
    )
    assert site.url == "https://happy-sea-15afae3e.5.azurestaticapps.net"
    assert calls(arm) == [("GET", f"{SITE_PATH}/docs-site", API_VERSION)]
    assert API_VERSION == "2025-05-01"
    assert arm.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert credential.asked == [("https://management.azure.com/.default",)]


def test_get_site_of_a_missing_site_is_none(arm: FakeArm, manager: StaticWebAppsManager) -> None:
    assert manager.get_site("nothing-here") is None
    assert calls(arm) == [("GET", f"{SITE_PATH}/nothing-here", API_VERSION)]


def test_a_missing_resource_group_is_not_mistaken_for_a_missing_site(
    arm: FakeArm, tls_files: tuple[Path, Path]
) -> None:
    with (
        StaticWebAppsManager(
            StaticTokenCredential(),
            SUBSCRIPTION,
            "rg-gone",
            base_url=arm.url,
            connection_verify=str(tls_files[0]),
            retries=0,
        ) as manager,
        pytest.raises(StaticWebAppsError) as caught,
    ):
        manager.get_site("docs-site")

    assert not isinstance(caught.value, SiteNotFound)
    assert "ResourceGroupNotFound" in str(caught.value)


@pytest.mark.parametrize("sku", ["Free", "Standard"])
def test_create_site_puts_a_site_without_a_repository_and_waits_for_it(
    arm: FakeArm, manager: StaticWebAppsManager, sku: str
) -> None:
    site = manager.create_site("new-site", "westeurope", sku=sku)  # type: ignore[arg-type]

    assert site.name == "new-site" and site.sku == sku and site.location == "westeurope"
    assert site.hostname.endswith(".azurestaticapps.net")
    put = arm.requests[0]
    assert (put.method, put.path, put.query["api-version"]) == ("PUT", f"{SITE_PATH}/new-site", API_VERSION)
    assert put.body == {"location": "westeurope", "sku": {"name": sku, "tier": sku}, "properties": {}}
    assert put.headers["Content-Type"] == "application/json"
    # 202 with Azure-AsyncOperation: the SDK polls the operation, then reads the site.
    assert [m for m, _, _ in calls(arm)] == ["PUT", "GET", "GET", "GET"]
    assert "/operationResults/" in arm.requests[1].path
    assert arm.requests[-1].path == f"{SITE_PATH}/new-site"
    assert arm.site(RG, "new-site") is not None


def test_create_site_answered_synchronously(arm: FakeArm, manager: StaticWebAppsManager) -> None:
    arm.asynchronous = False
    assert manager.create_site("quick-site", "eastus2").hostname
    assert [m for m, _, _ in calls(arm)] == ["PUT"]


def test_create_site_is_refused_unless_allowed(arm: FakeArm, tls_files: tuple[Path, Path]) -> None:
    with make_manager(arm, tls_files) as manager, pytest.raises(SiteCreationDisabled, match="not allowed"):
        manager.create_site("new-site", "westeurope")
    assert arm.requests == []


@pytest.mark.parametrize("name", ["", "-lead", "has space", "a/b", "x" * 41, "trail-"])
def test_site_names_are_checked_before_any_request(
    arm: FakeArm, manager: StaticWebAppsManager, name: str
) -> None:
    with pytest.raises(ValueError, match="static web app name"):
        manager.get_site(name)
    assert arm.requests == []


def test_get_deployment_token_reads_the_api_key(arm: FakeArm, manager: StaticWebAppsManager) -> None:
    token = manager.get_deployment_token("docs-site")

    assert token == arm.site(RG, "docs-site").api_key  # type: ignore[union-attr]
    assert calls(arm) == [("POST", f"{SITE_PATH}/docs-site/listSecrets", API_VERSION)]


def test_deployment_token_of_a_missing_site(manager: StaticWebAppsManager) -> None:
    with pytest.raises(SiteNotFound, match=f"nothing-here does not exist in resource group {RG}"):
        manager.get_deployment_token("nothing-here")


def test_forbidden_names_the_missing_permission_and_leaks_no_token(
    arm: FakeArm, manager: StaticWebAppsManager
) -> None:
    arm.forbidden.add("Microsoft.Web/staticSites/listSecrets/action")

    with pytest.raises(AccessDenied) as caught:
        manager.get_deployment_token("docs-site")

    error = caught.value
    assert error.action == "Microsoft.Web/staticSites/listSecrets/action"
    assert error.required_permission == REQUIRED_PERMISSION == "Microsoft.Web/staticSites/*"
    assert "managed identity" in str(error) and REQUIRED_PERMISSION in str(error)
    assert "Slipway Static Web Apps Contributor" in str(error) and RG in str(error)
    rendered = "".join(traceback.format_exception(error))
    assert TOKEN not in rendered and error.__cause__ is None


def test_forbidden_read_is_not_reported_as_a_missing_site(
    arm: FakeArm, manager: StaticWebAppsManager
) -> None:
    arm.forbidden.add("Microsoft.Web/staticSites/read")
    with pytest.raises(AccessDenied, match=r"Microsoft\.Web/staticSites/\*"):
        manager.get_site("docs-site")


def test_a_rejected_credential_is_an_error_of_its_own_kind(
    arm: FakeArm, tls_files: tuple[Path, Path]
) -> None:
    with (
        make_manager(arm, tls_files, StaticTokenCredential("expired-token")) as manager,
        pytest.raises(StaticWebAppsError, match="did not accept Slipway's credential") as caught,
    ):
        manager.get_site("docs-site")
    assert not isinstance(caught.value, (SiteNotFound, AccessDenied))
    assert "expired-token" not in str(caught.value)


def test_zip_deploy_publisher_stages_a_zip_and_asks_arm_to_fetch_it(
    arm: FakeArm, manager: StaticWebAppsManager, tmp_path: Path
) -> None:
    folder = tmp_path / "dist"
    folder.mkdir()
    (folder / "index.html").write_text("<h1>hi</h1>")
    staged: list[Path] = []

    def stage(archive: Path) -> str:
        staged.append(archive)
        assert archive.suffix == ".zip" and archive.stat().st_size > 0
        return "https://store.example.net/site.zip?sig=SAS-SECRET"

    lines: list[str] = []
    result = ZipDeployPublisher(manager, stage).publish("docs-site", folder, log=lines.append, timeout=10)

    assert result == PublishResult(url="https://happy-sea-15afae3e.5.azurestaticapps.net")
    zip_call = next(r for r in arm.requests if r.path.endswith("/zipdeploy"))
    assert (zip_call.method, zip_call.query["api-version"]) == ("POST", API_VERSION)
    assert zip_call.body == {
        "properties": {
            "appZipUrl": "https://store.example.net/site.zip?sig=SAS-SECRET",
            "deploymentTitle": "Slipway",
        }
    }
    assert arm.site(RG, "docs-site").zip_urls == ["https://store.example.net/site.zip?sig=SAS-SECRET"]  # type: ignore[union-attr]
    assert not staged[0].exists()  # the local zip is gone after staging
    assert not any("SAS-SECRET" in line for line in lines)


# --- SwaCliPublisher ----------------------------------------------------------------------------

STAND_IN = """#!{python}
import json, os, subprocess, sys, time
with open({record!r}, "w") as f:
    json.dump({{"argv": sys.argv, "env": dict(os.environ), "cwd": os.getcwd()}}, f)
mode = {mode!r}
print("Deploying front-end files from folder:", flush=True)
print("\\x1b[32m  " + sys.argv[2] + "\\x1b[39m", flush=True)
if mode == "leak":
    print("token is " + os.environ.get("SWA_CLI_DEPLOYMENT_TOKEN", "?"), flush=True)
if mode == "hang":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    with open({record!r} + ".pids", "w") as f:
        f.write(f"{{os.getpid()}} {{child.pid}}")
    print("Preparing deployment. Please wait...", flush=True)
    time.sleep(300)
if mode == "fail":
    print("Uploading build artifacts.", flush=True)
    print("The content server has rejected the request with: BadRequest", file=sys.stderr, flush=True)
    sys.exit(1)
print("Project deployed to https://happy-sea-15afae3e.5.azurestaticapps.net", flush=True)
"""


def stand_in_swa(tmp_path: Path, mode: str = "ok") -> tuple[Path, Path]:
    record = tmp_path / "swa-record.json"
    script = tmp_path / "swa"
    script.write_text(STAND_IN.format(python=sys.executable, record=str(record), mode=mode))
    script.chmod(0o755)
    return script, record


@pytest.fixture
def built(tmp_path: Path) -> Path:
    folder = tmp_path / "dist"
    folder.mkdir()
    (folder / "index.html").write_text("<h1>hi</h1>")
    return folder


@pytest.fixture
def slipway_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets a Functions host running Slipway has in its environment."""
    monkeypatch.setenv("AzureWebJobsStorage", "DefaultEndpointsProtocol=https;AccountKey=STORAGE-KEY")
    monkeypatch.setenv("SLIPWAY_GITHUB_TOKEN", "github_pat_SECRET")
    monkeypatch.setenv("IDENTITY_HEADER", "identity-secret")


@pytest.mark.usefixtures("slipway_environment")
def test_publish_runs_swa_deploy_with_the_token_only_in_its_environment(
    arm: FakeArm, manager: StaticWebAppsManager, built: Path, tmp_path: Path
) -> None:
    swa, record = stand_in_swa(tmp_path)
    lines: list[str] = []

    result = SwaCliPublisher(manager, str(swa)).publish("docs-site", built, log=lines.append, timeout=30)

    token = arm.site(RG, "docs-site").api_key  # type: ignore[union-attr]
    seen = json.loads(record.read_text())
    assert result == PublishResult(url="https://happy-sea-15afae3e.5.azurestaticapps.net")
    assert seen["argv"] == [
        str(swa),
        "deploy",
        str(built),
        "--app-location",
        str(built),
        "--env",
        "production",
    ]
    assert not any(token in arg for arg in seen["argv"])
    assert TOKEN_VARIABLE == "SWA_CLI_DEPLOYMENT_TOKEN" and seen["env"][TOKEN_VARIABLE] == token
    assert set(seen["env"]) - {"LC_CTYPE"} == {
        "PATH",
        "HOME",
        "NO_UPDATE_NOTIFIER",
        "SWA_CLI_DEPLOYMENT_TOKEN",
    }
    assert "AzureWebJobsStorage" not in seen["env"] and not any(k.startswith("SLIPWAY_") for k in seen["env"])
    assert seen["cwd"] == str(built)
    assert "Deploying front-end files from folder:" in lines
    assert f"  {built}" in lines  # colour codes stripped
    assert "Project deployed to https://happy-sea-15afae3e.5.azurestaticapps.net" in lines
    assert not any(token in line for line in lines)
    assert [m for m, _, _ in calls(arm)] == ["GET", "POST"]


def test_a_token_the_cli_prints_is_masked(
    arm: FakeArm, manager: StaticWebAppsManager, built: Path, tmp_path: Path
) -> None:
    swa, _ = stand_in_swa(tmp_path, "leak")
    lines: list[str] = []

    SwaCliPublisher(manager, str(swa)).publish("docs-site", built, log=lines.append, timeout=30)

    token = arm.site(RG, "docs-site").api_key  # type: ignore[union-attr]
    assert "token is ***" in lines
    assert not any(token in line for line in lines)


def test_a_failing_cli_raises_with_the_tail_of_its_output(
    manager: StaticWebAppsManager, built: Path, tmp_path: Path
) -> None:
    swa, _ = stand_in_swa(tmp_path, "fail")
    lines: list[str] = []

    with pytest.raises(PublishFailed, match="exit code 1") as caught:
        SwaCliPublisher(manager, str(swa)).publish("docs-site", built, log=lines.append, timeout=30)

    assert not isinstance(caught.value, PublishTimedOut)
    assert caught.value.output_tail[-2:] == (
        "Uploading build artifacts.",
        "The content server has rejected the request with: BadRequest",
    )
    assert "rejected the request with: BadRequest" in str(caught.value)
    assert "The content server has rejected the request with: BadRequest" in lines


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has been killed; only its reaping is pending


def test_a_hanging_cli_is_killed_at_the_timeout_with_everything_it_started(
    manager: StaticWebAppsManager, built: Path, tmp_path: Path
) -> None:
    swa, record = stand_in_swa(tmp_path, "hang")
    lines: list[str] = []
    started = time.monotonic()

    with pytest.raises(PublishTimedOut, match=r"did not finish within 1\.5 s") as caught:
        SwaCliPublisher(manager, str(swa)).publish("docs-site", built, log=lines.append, timeout=1.5)

    assert time.monotonic() - started < 6
    assert caught.value.output_tail[-1] == "Preparing deployment. Please wait..."
    pids = [int(p) for p in Path(f"{record}.pids").read_text().split()]
    deadline = time.monotonic() + 3
    while any(_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_running(pid) for pid in pids)


def test_publish_to_a_missing_site_runs_nothing_when_sites_may_not_be_created(
    arm: FakeArm, tls_files: tuple[Path, Path], built: Path, tmp_path: Path
) -> None:
    swa, record = stand_in_swa(tmp_path)
    with (
        make_manager(arm, tls_files) as refusing,
        pytest.raises(SiteNotFound, match="SLIPWAY_SWA_CREATE_SITES"),
    ):
        SwaCliPublisher(refusing, str(swa)).publish("nothing-here", built, log=lambda _: None, timeout=10)
    assert not record.exists()
    assert [method for method, _path, _version in calls(arm)] == ["GET"]


def test_publish_to_a_missing_site_creates_it_where_allowed_then_deploys(
    arm: FakeArm, manager: StaticWebAppsManager, built: Path, tmp_path: Path
) -> None:
    swa, record = stand_in_swa(tmp_path)
    lines: list[str] = []
    publisher = SwaCliPublisher(manager, str(swa), location="eastus2", sku="Standard")

    result = publisher.publish("brand-new", built, log=lines.append, timeout=30)

    created = arm.site(RG, "brand-new")
    assert created is not None and result.url == f"https://{created.hostname}"
    put = next(r for r in arm.requests if r.method == "PUT")
    assert put.path.endswith("/staticSites/brand-new")
    assert (put.body["location"], put.body["sku"]["name"]) == ("eastus2", "Standard")
    assert json.loads(record.read_text())["env"]["SWA_CLI_DEPLOYMENT_TOKEN"] == created.api_key
    assert lines[0] == "creating static web app brand-new (Standard, eastus2)"


def test_a_missing_cli_is_a_publish_error(manager: StaticWebAppsManager, built: Path, tmp_path: Path) -> None:
    with pytest.raises(PublishFailed, match="cannot run the Static Web Apps CLI"):
        SwaCliPublisher(manager, str(tmp_path / "no-swa")).publish(
            "docs-site", built, log=lambda _: None, timeout=10
        )


def test_publishing_a_missing_folder_is_a_publish_error(
    manager: StaticWebAppsManager, tmp_path: Path
) -> None:
    swa, record = stand_in_swa(tmp_path)
    with pytest.raises(PublishFailed, match="does not exist"):
        SwaCliPublisher(manager, str(swa)).publish(
            "docs-site", tmp_path / "nope", log=lambda _: None, timeout=10
        )
    assert not record.exists()
