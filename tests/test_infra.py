"""The Azure template (infra/azuredeploy.json), checked without Azure: its expressions resolve,
its API versions are real, it gives the app every setting the code reads with the value right
for Azure and no secret in plain text, its mounts match those settings, and checkov passes with
every suppression explained inline.

ARM expressions are parsed and, where they do not depend on deployed resources, evaluated by a
small evaluator below (parameters at their defaults, a fixed resource group); ``reference()``
and ``list*()`` results stay opaque.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from slipway.config import SETTINGS, load_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
INFRA = REPO_ROOT / "infra"
TEMPLATE_PATH = INFRA / "azuredeploy.json"
PARAMETERS_PATH = INFRA / "azuredeploy.parameters.json"
SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"

# The API version of every resource type the template deploys or reads, each checked to exist
# as a stable (not preview) version in github.com/Azure/azure-rest-api-specs, at the path given.
SPECS = "specification/{}/resource-manager/{}/stable/{}"
API_VERSIONS: dict[str, str] = {
    # operationalinsights/.../Microsoft.OperationalInsights/stable/2022-10-01/Workspaces.json
    "Microsoft.OperationalInsights/workspaces": "2022-10-01",
    # applicationinsights/.../Microsoft.Insights/stable/2020-02-02/components_API.json (examples/ComponentsCreate.json)
    "Microsoft.Insights/components": "2020-02-02",
    # storage/.../Microsoft.Storage/stable/2023-05-01/storage.json
    "Microsoft.Storage/storageAccounts": "2023-05-01",
    # storage/.../Microsoft.Storage/stable/2023-05-01/file.json (examples FileServicesPut_*, FileSharesPut.json)
    "Microsoft.Storage/storageAccounts/fileServices": "2023-05-01",
    "Microsoft.Storage/storageAccounts/fileServices/shares": "2023-05-01",
    # keyvault/.../Microsoft.KeyVault/stable/2023-07-01 (examples/updateVault.json: vault create-or-update)
    "Microsoft.KeyVault/vaults": "2023-07-01",
    # keyvault/.../Microsoft.KeyVault/stable/2023-07-01/secrets.json (examples/createSecret.json)
    "Microsoft.KeyVault/vaults/secrets": "2023-07-01",
    # web/.../Microsoft.Web/stable/2024-04-01/AppServicePlans.json
    "Microsoft.Web/serverfarms": "2024-04-01",
    # web/.../Microsoft.Web/stable/2024-04-01/WebApps.json (sites, sites/config appsettings and
    # authsettingsV2: examples/UpdateAuthSettingsV2.json)
    "Microsoft.Web/sites": "2024-04-01",
    "Microsoft.Web/sites/config": "2024-04-01",
    # web/.../Microsoft.Web/stable/2024-04-01/StaticSites.json (examples/LinkBackendToStaticSite.json)
    "Microsoft.Web/staticSites": "2024-04-01",
    "Microsoft.Web/staticSites/linkedBackends": "2024-04-01",
    # authorization/.../Microsoft.Authorization/stable/2022-04-01/authorization-RoleAssignmentsCalls.json
    "Microsoft.Authorization/roleAssignments": "2022-04-01",
    # authorization/.../Microsoft.Authorization/stable/2022-04-01/authorization-RoleDefinitionsCalls.json
    # (examples/PutRoleDefinition.json)
    "Microsoft.Authorization/roleDefinitions": "2022-04-01",
    # resources/.../Microsoft.Resources/stable/2022-09-01/resources.json (examples/PutDeploymentResourceGroup.json)
    "Microsoft.Resources/deployments": "2022-09-01",
}

# Built-in role definition IDs (learn.microsoft.com, "Azure built-in roles").
BUILT_IN_ROLES = {
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Storage File Data Privileged Contributor": "69566ab7-960f-475b-8e7c-b3118f30c6bd",
    "Key Vault Secrets Officer": "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
}
# Website Contributor (de139f84-1756-47ae-9be6-808fbbe84772) grants Microsoft.Web/sites/* but not
# Microsoft.Web/staticSites/*, so the deploy pipeline gets a custom role instead.
STATIC_WEB_APPS_ACTIONS = {
    "Microsoft.Web/staticSites/*",
    "Microsoft.Web/locations/operationResults/read",
    "Microsoft.Resources/subscriptions/resourceGroups/read",
}
# The ARM operations the deploy pipeline performs (slipway.adapters.staticwebapps): read a site,
# create one, read its deployment token (POST listSecrets) and follow a long-running create.
STATIC_WEB_APPS_OPERATIONS = {
    "Microsoft.Web/staticSites/read",
    "Microsoft.Web/staticSites/write",
    "Microsoft.Web/staticSites/listSecrets/action",
    "Microsoft.Web/locations/operationResults/read",
}

# Settings Slipway reads that the template leaves out on purpose, because the code's default
# is the right value in Azure.
DEFAULTED_IN_AZURE = {
    # Unset means the system-assigned identity, for Slipway and for the Functions host, which
    # reads the same name for its own storage connection: left out rather than set empty.
    "AzureWebJobsStorage__clientId": "",
    # Only read with SLIPWAY_SECRET_STORE=file; Azure uses Key Vault.
    "SLIPWAY_SECRETS_FILE": "",
    # Only read with ENABLE_DEBUGGING=true, which Slipway refuses inside App Service.
    "DEBUG_HOST": "127.0.0.1",
    "DEBUG_PORT": "5678",
    "DEBUG_WAIT_FOR_CLIENT": "false",
    # The local static host: in Azure the Static Web Apps serve the sites.
    "SLIPWAY_LOCAL_SITES_DIR": "",
    "SLIPWAY_LOCAL_SITES_URL": "",
    # The image installs the Static Web Apps CLI as `swa` on the PATH.
    "SLIPWAY_SWA_CLI": "swa",
    # Builds and their dependency cache on the container's own disk, never on a share.
    "SLIPWAY_DEPLOY_DIR": "/tmp/slipway/deploy",
    "SLIPWAY_DEPLOY_CACHE_DIR": "/tmp/slipway/deploy-cache",
    # Workflows' packages come from PyPI unless an admin names a private index or a wheel folder.
    "SLIPWAY_PACKAGE_INDEX_URL": "",
    "SLIPWAY_PACKAGE_FIND_LINKS": "",
}
# Settings that must not be in the app settings at all.
FORBIDDEN_SETTINGS = {
    # A connection string (an account key): identity-based AzureWebJobsStorage__accountName instead.
    "AzureWebJobsStorage",
}
# Host and platform settings the template sets besides Slipway's own.
PLATFORM_SETTINGS = {
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITES_ENABLE_APP_SERVICE_STORAGE",
    "DOCKER_REGISTRY_SERVER_URL",
    "DOCKER_REGISTRY_SERVER_USERNAME",
    "DOCKER_REGISTRY_SERVER_PASSWORD",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_SKIP_CONTENTSHARE_VALIDATION",
}
# App settings that are secrets although Slipway does not read them.
PLATFORM_SECRETS = {"WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "DOCKER_REGISTRY_SERVER_PASSWORD"}
# A private registry (or a Docker Hub account, to avoid anonymous pull limits).
REGISTRY_CREDENTIALS = {
    "containerImage": "myregistry.azurecr.io/slipway:1.2",
    "containerRegistryUrl": "https://myregistry.azurecr.io",
    "containerRegistryUsername": "slipway-pull",
    "containerRegistryPassword": "not-a-real-registry-password",
}
# GUIDs that identify rather than authorize: exempt from the looks-like-a-secret check.
IDENTIFIERS = {"SLIPWAY_SWA_SUBSCRIPTION_ID"}
KEY_VAULT_REFERENCE = re.compile(
    r"^@Microsoft\.KeyVault\(SecretUri=https://[a-z0-9-]+\.vault\.azure\.net/secrets/[a-z0-9-]+\)$"
)
LOOKS_LIKE_A_SECRET = re.compile(
    r"AccountKey=|SharedAccessSignature|[?&]sig=|InstrumentationKey=|ghp_|github_pat_|"
    r"[A-Za-z0-9+/]{40,}={0,2}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    re.IGNORECASE,
)


# --- ARM expressions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Member:
    target: Node
    key: Node  # a Str for .name, any node for [index]


@dataclass(frozen=True)
class Str:
    value: str


@dataclass(frozen=True)
class Num:
    value: int


Node = Call | Member | Str | Num

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>[(),.\[\]]))"
)


def parse_expression(text: str) -> Node:
    """Parse the inside of an ARM ``[...]`` expression."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        assert match, f"cannot parse ARM expression at {text[pos:]!r}"
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    index = 0

    def peek() -> tuple[str, str] | None:
        return tokens[index] if index < len(tokens) else None

    def take(expected: str | None = None) -> tuple[str, str]:
        nonlocal index
        token = tokens[index]
        assert expected is None or token[1] == expected, f"expected {expected!r} in {text!r}"
        index += 1
        return token

    def primary() -> Node:
        kind, value = take()
        node: Node
        if kind == "str":
            node = Str(value[1:-1].replace("''", "'"))
        elif kind == "num":
            node = Num(int(value))
        elif kind == "name":
            take("(")
            args: list[Node] = []
            if peek() != ("op", ")"):
                args.append(primary())
                while peek() == ("op", ","):
                    take(",")
                    args.append(primary())
            take(")")
            node = Call(value, tuple(args))
        else:
            raise AssertionError(f"unexpected {value!r} in {text!r}")
        while peek() in (("op", "."), ("op", "[")):
            if take()[1] == ".":
                node = Member(node, Str(take()[1]))
            else:
                node = Member(node, primary())
                take("]")
        return node

    node = primary()
    assert index == len(tokens), f"trailing tokens in {text!r}"
    return node


def is_expression(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("[") and not value.startswith("[[")


def calls(node: Node) -> Iterator[Call]:
    """Every function call in an expression, outermost first."""
    if isinstance(node, Call):
        yield node
        for arg in node.args:
            yield from calls(arg)
    elif isinstance(node, Member):
        yield from calls(node.target)
        yield from calls(node.key)


def unparse(node: Node) -> str:
    if isinstance(node, Str):
        return "'" + node.value.replace("'", "''") + "'"
    if isinstance(node, Num):
        return str(node.value)
    if isinstance(node, Call):
        return f"{node.name}({', '.join(unparse(a) for a in node.args)})"
    if isinstance(node.key, Str) and re.fullmatch(r"[A-Za-z_]\w*", node.key.value):
        return f"{unparse(node.target)}.{node.key.value}"
    return f"{unparse(node.target)}[{unparse(node.key)}]"


@dataclass(frozen=True)
class Opaque:
    """A value known only once deployed (reference(), listKeys(), newGuid())."""

    source: str


class Evaluator:
    """Evaluates the subset of ARM functions this template uses, for one set of parameters."""

    RESOURCE_GROUP_ID = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/slipway-rg"
    RUNTIME_ONLY = frozenset({"reference", "listKeys", "newGuid", "copyIndex"})

    def __init__(self, template: dict[str, Any], parameters: dict[str, Any] | None = None) -> None:
        self.template = template
        self.overrides = parameters or {}
        self._variables: dict[str, Any] = {}

    def value(self, raw: Any) -> Any:
        """A template value (string, object, array) with every expression in it evaluated."""
        if isinstance(raw, dict):
            return {k: self.value(v) for k, v in raw.items()}
        if isinstance(raw, list):
            return [self.value(v) for v in raw]
        if is_expression(raw):
            return self.node(parse_expression(raw[1:-1]))
        if isinstance(raw, str) and raw.startswith("[["):
            return raw[1:]
        return raw

    def parameter(self, name: str) -> Any:
        if name in self.overrides:
            return self.overrides[name]
        spec = self.template["parameters"][name]
        if "defaultValue" not in spec:  # a required parameter: the example parameters file's value
            return example_parameters()[name]
        return self.value(spec["defaultValue"])

    def variable(self, name: str) -> Any:
        if name not in self._variables:
            self._variables[name] = self.value(self.template["variables"][name])
        return self._variables[name]

    def resource_id(self, scope: str, type_: str, names: list[str]) -> str:
        namespace, *types = type_.split("/")
        path = "/".join(f"{t}/{n}" for t, n in zip(types, names, strict=True))
        return f"{scope}/providers/{namespace}/{path}"

    def node(self, node: Node) -> Any:
        if isinstance(node, Str | Num):
            return node.value
        if isinstance(node, Member):
            target = self.node(node.target)
            key = self.node(node.key)
            if isinstance(target, Opaque) or isinstance(key, Opaque):
                return Opaque(unparse(node))
            return target[key]
        if node.name in self.RUNTIME_ONLY:
            return Opaque(unparse(node))
        args = [self.node(a) for a in node.args] if node.name != "if" else []
        if node.name not in ("if", "union", "createObject") and any(isinstance(a, Opaque) for a in args):
            return Opaque(unparse(node))
        return self.function(node, args)

    def function(self, node: Call, args: list[Any]) -> Any:
        name = node.name
        if name == "parameters":
            return self.parameter(args[0])
        if name == "variables":
            return self.variable(args[0])
        if name == "if":
            condition = self.node(node.args[0])
            return self.node(node.args[1] if condition else node.args[2])
        if name == "format":
            return re.sub(r"\{(\d+)\}", lambda m: str(args[int(m.group(1)) + 1]), args[0])
        if name == "concat":
            if isinstance(args[0], list):
                return [item for arg in args for item in arg]
            return "".join(str(a) for a in args)
        if name == "take":
            return args[0][: args[1]]
        if name == "startsWith":
            return args[0].lower().startswith(args[1].lower())
        if name == "not":
            return not args[0]
        if name in ("true", "false"):
            return name == "true"
        if name == "json":
            return json.loads(args[0])
        if name == "length":
            return len(args[0])
        if name == "empty":
            return len(args[0]) == 0
        if name == "createObject":
            return dict(zip(args[0::2], args[1::2], strict=True))
        if name == "union":
            merged: dict[str, Any] = {}
            for arg in args:
                merged.update(arg)
            return merged
        if name == "uniqueString":
            return hashlib.sha256("|".join(args).encode()).hexdigest()[:13]
        if name == "guid":
            return str(uuid.uuid5(uuid.NAMESPACE_URL, "|".join(args)))
        if name == "resourceGroup":
            return {"id": self.RESOURCE_GROUP_ID, "location": "westeurope", "name": "slipway-rg"}
        if name == "subscription":
            return {
                "id": "/subscriptions/00000000-0000-0000-0000-000000000000",
                "subscriptionId": "00000000-0000-0000-0000-000000000000",
                "tenantId": "tenant",
            }
        if name == "environment":
            return {"suffixes": {"keyvaultDns": ".vault.azure.net", "storage": "core.windows.net"}}
        if name == "resourceId":
            return self.resource_id(self.RESOURCE_GROUP_ID, args[0], args[1:])
        if name == "subscriptionResourceId":
            return self.resource_id("/subscriptions/00000000-0000-0000-0000-000000000000", args[0], args[1:])
        if name == "extensionResourceId":
            return self.resource_id(args[0], args[1], args[2:])
        raise AssertionError(f"the test's evaluator does not know ARM function {name}()")


# --- the template --------------------------------------------------------------------------------


@cache
def template() -> dict[str, Any]:
    return json.loads(TEMPLATE_PATH.read_text(encoding="utf-8"))


@cache
def example_parameters() -> dict[str, Any]:
    example = json.loads(PARAMETERS_PATH.read_text(encoding="utf-8"))
    return {name: entry["value"] for name, entry in example["parameters"].items()}


def strings(value: Any, skip: Callable[[dict[str, Any]], bool] = lambda _: False) -> Iterator[str]:
    """Every string in a JSON value (keys included), not descending into objects ``skip`` names."""
    if isinstance(value, dict):
        if skip(value):
            return
        for key, item in value.items():
            yield key
            yield from strings(item, skip)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item, skip)
    elif isinstance(value, str):
        yield value


def is_inner_deployment(value: dict[str, Any]) -> bool:
    return value.get("expressionEvaluationOptions", {}).get("scope") == "inner" and "template" in value


def expression_calls(value: Any) -> Iterator[Call]:
    """Every function call in the expressions of a template scope (not inner nested templates)."""
    for text in strings(value, skip=lambda v: False):
        if is_expression(text):
            yield from calls(parse_expression(text[1:-1]))


def scope_calls(scope: dict[str, Any]) -> list[Call]:
    """Calls in one template scope: inner-scoped nested templates are a scope of their own."""

    def inner_template_removed(value: Any) -> Any:
        if isinstance(value, dict):
            if is_inner_deployment(value):
                return {k: inner_template_removed(v) for k, v in value.items() if k != "template"}
            return {k: inner_template_removed(v) for k, v in value.items()}
        if isinstance(value, list):
            return [inner_template_removed(v) for v in value]
        return value

    return list(expression_calls(inner_template_removed(scope)))


def inner_templates() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(deployment resource, its inner-scoped template) for each nested deployment."""
    return [
        (r, r["properties"]["template"])
        for r in template()["resources"]
        if r["type"] == "Microsoft.Resources/deployments" and is_inner_deployment(r["properties"])
    ]


def resources_of(kind: str) -> list[dict[str, Any]]:
    return [r for r in template()["resources"] if r["type"] == kind]


def only(kind: str, name_suffix: str = "") -> dict[str, Any]:
    found = [r for r in resources_of(kind) if evaluate(r["name"]).endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind} {name_suffix}, found {len(found)}"
    return found[0]


def site() -> dict[str, Any]:
    return only("Microsoft.Web/sites")


def app_settings(plan_sku: str = "EP1", **parameters: Any) -> dict[str, Any]:
    """The Function App's app settings as deployed on ``plan_sku`` (deploy-time values opaque)."""
    resource = only("Microsoft.Web/sites/config", "/appsettings")
    settings = Evaluator(template(), {"planSku": plan_sku, **parameters}).value(resource["properties"])
    assert isinstance(settings, dict)
    return settings


def evaluate(value: Any, **parameters: Any) -> Any:
    return Evaluator(template(), parameters).value(value)


# --- structure and expressions ------------------------------------------------------------------


def test_the_template_is_an_arm_deployment_template() -> None:
    assert template()["$schema"] == SCHEMA
    assert template()["contentVersion"] == "1.0.0.0"
    for _, inner in inner_templates():
        assert inner["$schema"] == SCHEMA


def test_every_parameter_and_variable_is_defined_and_used() -> None:
    scopes = [(template(), scope_calls(template()))] + [(t, scope_calls(t)) for _, t in inner_templates()]
    for scope, found in scopes:
        used_parameters = {c.args[0].value for c in found if c.name == "parameters"}
        used_variables = {c.args[0].value for c in found if c.name == "variables"}
        assert used_parameters == set(scope.get("parameters", {})), (
            "parameters defined but unused, or used but undefined"
        )
        assert used_variables == set(scope.get("variables", {})), (
            "variables defined but unused, or used but undefined"
        )
        for name, spec in scope.get("parameters", {}).items():
            assert len(spec.get("metadata", {}).get("description", "")) > 20, (
                f"parameter {name} needs a description"
            )


def test_every_parameter_default_and_allowed_value_is_valid() -> None:
    for name, spec in template()["parameters"].items():
        if "defaultValue" in spec and not is_expression(spec["defaultValue"]) and "allowedValues" in spec:
            assert spec["defaultValue"] in spec["allowedValues"], name
    prefix = template()["parameters"]["prefix"]
    assert re.fullmatch(r"[a-z][a-z0-9]{2,10}", prefix["defaultValue"])
    assert (prefix["minLength"], prefix["maxLength"]) == (3, 11)


def declared(scope_type: str, name_value: str, scope_value: str | None = None) -> list[dict[str, Any]]:
    """Resources of a type whose evaluated name (and scope, for extension resources) match."""
    found = []
    for resource in template()["resources"]:
        if resource["type"].lower() != scope_type.lower() or "copy" in resource:
            continue
        if evaluate(resource["name"]) != name_value:
            continue
        if scope_value is not None:
            scope = evaluate(resource.get("scope", ""))
            if not scope_value.endswith("/providers/" + scope):
                continue
        found.append(resource)
    return found


def target_of(call: Call, inner_parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The declared resources a resourceId()/extensionResourceId() call names."""
    evaluator = Evaluator(template(), {}) if inner_parameters is None else None
    if inner_parameters is not None:
        inner = next(t for _, t in inner_templates())
        evaluator = Evaluator(inner, inner_parameters)
    assert evaluator is not None
    args = [evaluator.node(a) for a in call.args]
    if call.name == "resourceId":
        return declared(args[0], "/".join(args[1:]))
    assert call.name == "extensionResourceId"
    return declared(args[1], "/".join(args[2:]), scope_value=args[0])


def test_every_resource_id_names_a_resource_the_template_declares() -> None:
    outer = [c for c in scope_calls(template()) if c.name in ("resourceId", "extensionResourceId")]
    for call in outer:
        assert len(target_of(call)) == 1, f"{unparse(call)} names no resource declared in the template"
    for deployment, inner in inner_templates():
        passed = {k: evaluate(v["value"]) for k, v in deployment["properties"]["parameters"].items()}
        for call in scope_calls(inner):
            if call.name == "resourceId":
                assert len(target_of(call, passed)) == 1, (
                    f"{unparse(call)} (nested) names no declared resource"
                )


def dependencies(resource: dict[str, Any]) -> list[dict[str, Any]]:
    loops = {r["copy"]["name"]: r for r in template()["resources"] if "copy" in r}
    found = []
    for entry in resource.get("dependsOn", []):
        if not is_expression(entry):
            assert entry in loops, f"dependsOn {entry!r} is neither an expression nor a copy loop"
            found.append(loops[entry])
            continue
        node = parse_expression(entry[1:-1])
        assert isinstance(node, Call) and node.name in ("resourceId", "extensionResourceId"), entry
        targets = target_of(node)
        assert len(targets) == 1, f"dependsOn {entry} names no resource declared in the template"
        found.append(targets[0])
    return found


def test_every_depends_on_names_a_declared_resource_and_there_is_no_cycle() -> None:
    order: dict[int, int] = {}

    def depth(resource: dict[str, Any], seen: tuple[int, ...] = ()) -> int:
        key = id(resource)
        assert key not in seen, f"dependency cycle through {resource['type']} {resource['name']}"
        if key not in order:
            order[key] = 1 + max((depth(d, (*seen, key)) for d in dependencies(resource)), default=0)
        return order[key]

    for resource in template()["resources"]:
        depth(resource)


def test_references_and_list_calls_target_declared_resources_with_their_api_version() -> None:
    for call in scope_calls(template()):
        if call.name not in ("reference", "listKeys"):
            continue
        target = call.args[0]
        assert isinstance(target, Call) and target.name == "resourceId", unparse(call)
        resources = target_of(target)
        assert len(resources) == 1, f"{unparse(call)} reads a resource the template does not declare"
        assert isinstance(call.args[1], Str), f"{unparse(call)} needs an explicit API version"
        assert call.args[1].value == API_VERSIONS[resources[0]["type"]], unparse(call)
    for deployment, inner in inner_templates():
        passed = {k: evaluate(v["value"]) for k, v in deployment["properties"]["parameters"].items()}
        for call in scope_calls(inner):
            if call.name == "reference":
                assert isinstance(call.args[0], Call)
                resources = target_of(call.args[0], passed)
                assert len(resources) == 1, f"nested {unparse(call)} reads an undeclared resource"
                assert (
                    isinstance(call.args[1], Str) and call.args[1].value == API_VERSIONS[resources[0]["type"]]
                )
                # What it reads is written by linking: the read waits for the link.
                assert only("Microsoft.Web/staticSites/linkedBackends") in all_dependencies(deployment)


def all_dependencies(resource: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for dependency in dependencies(resource):
        found += [dependency, *all_dependencies(dependency)]
    return found


def test_every_api_version_is_a_real_stable_version() -> None:
    for resource in template()["resources"]:
        assert resource["apiVersion"] == API_VERSIONS[resource["type"]], resource["type"]
        assert not resource["apiVersion"].endswith("-preview")


def test_names_fit_azure_rules_with_the_longest_prefix() -> None:
    names = {
        r["type"]: evaluate(r["name"], prefix="abcdefghijk")
        for r in template()["resources"]
        if "copy" not in r
    }
    storage = names["Microsoft.Storage/storageAccounts"]
    assert re.fullmatch(r"[a-z0-9]{3,24}", storage), storage
    assert re.fullmatch(r"[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]", names["Microsoft.KeyVault/vaults"])
    for kind in ("Microsoft.Web/sites", "Microsoft.Web/serverfarms", "Microsoft.Web/staticSites"):
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]{1,58}[a-z0-9]", names[kind]), names[kind]
    for share in resources_of("Microsoft.Storage/storageAccounts/fileServices/shares"):
        assert re.fullmatch(
            r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]", evaluate(share["name"]).split("/")[-1]
        )


# --- resources ----------------------------------------------------------------------------------


def test_storage_is_locked_down_except_the_key_azure_files_mounts_need() -> None:
    account = only("Microsoft.Storage/storageAccounts")
    props = account["properties"]
    assert account["kind"] == "StorageV2"
    assert props["minimumTlsVersion"] == "TLS1_2" and props["supportsHttpsTrafficOnly"] is True
    assert props["allowBlobPublicAccess"] is False
    assert props["allowSharedKeyAccess"] is True  # azureStorageAccounts mounts authenticate with the key
    assert evaluate(account["sku"]["name"]) == "Standard_LRS"
    shares = {
        evaluate(s["name"]).split("/")[-1]: s
        for s in resources_of("Microsoft.Storage/storageAccounts/fileServices/shares")
    }
    assert {"workspace", "temp"} <= set(shares)
    for name in ("workspace", "temp"):
        assert shares[name]["properties"]["accessTier"] == "Hot"
        assert is_expression(shares[name]["properties"]["shareQuota"]), "quota is a parameter"


def test_key_vault_uses_rbac_soft_delete_and_purge_protection_by_default() -> None:
    vault = only("Microsoft.KeyVault/vaults")["properties"]
    assert vault["enableRbacAuthorization"] is True
    assert vault["enableSoftDelete"] is True and vault["softDeleteRetentionInDays"] == 90
    assert evaluate(vault["enablePurgeProtection"]) is True
    assert (
        evaluate(vault["enablePurgeProtection"], enablePurgeProtection=False) is None
    )  # omitted, never false


def test_the_plan_can_run_custom_containers() -> None:
    plan = only("Microsoft.Web/serverfarms")
    allowed = template()["parameters"]["planSku"]["allowedValues"]
    assert set(allowed) == {"EP1", "EP2", "EP3", "P1v3", "P2v3", "P3v3"}
    for sku in allowed:
        kind, tier = evaluate(plan["kind"], planSku=sku), evaluate(plan["sku"]["tier"], planSku=sku)
        assert (kind, tier) == (
            ("elastic", "ElasticPremium") if sku.startswith("EP") else ("linux", "PremiumV3")
        )
    assert plan["properties"]["reserved"] is True
    config = site()["properties"]["siteConfig"]
    assert evaluate(config["alwaysOn"], planSku="EP1") is False
    assert evaluate(config["alwaysOn"], planSku="P1v3") is True


def test_the_function_app_runs_the_image_parameter_with_https_and_tls_12() -> None:
    app = site()
    props = app["properties"]
    assert app["kind"] == "functionapp,linux,container"
    assert app["identity"]["type"] == "SystemAssigned"
    assert props["httpsOnly"] is True
    config = props["siteConfig"]
    assert config["linuxFxVersion"] == "[format('DOCKER|{0}', parameters('containerImage'))]"
    assert evaluate(config["linuxFxVersion"]) == "DOCKER|docker.io/slipway/slipway:latest"
    assert (
        config["ftpsState"] == "Disabled"
        and config["minTlsVersion"] == "1.2"
        and config["http20Enabled"] is True
    )
    assert config["healthCheckPath"] == "/api/health"


def registry_secret() -> dict[str, Any]:
    return next(
        s
        for s in resources_of("Microsoft.KeyVault/vaults/secrets")
        if "containerRegistrySecretName" in s["name"]
    )


def test_registry_parameters_are_optional_and_the_password_is_secure() -> None:
    parameters = template()["parameters"]
    assert parameters["containerRegistryUrl"]["defaultValue"] == "https://index.docker.io/v1"
    assert parameters["containerRegistryUsername"]["defaultValue"] == ""
    password = parameters["containerRegistryPassword"]
    assert password["type"].lower() == "securestring" and password["defaultValue"] == ""
    assert "containerRegistryPassword" not in json.dumps(template()["outputs"])
    assert "containerRegistryPassword" not in json.dumps(template()["variables"]["appSettings"])


def test_without_registry_credentials_only_the_docker_hub_url_is_set() -> None:
    for plan in ("EP1", "P1v3"):
        settings = app_settings(plan)
        assert settings["DOCKER_REGISTRY_SERVER_URL"] == "https://index.docker.io/v1"
        assert not {"DOCKER_REGISTRY_SERVER_USERNAME", "DOCKER_REGISTRY_SERVER_PASSWORD"} & set(settings)
    assert evaluate(registry_secret()["condition"]) is False  # no secret is created either
    # A user name without a password sets nothing: the pull stays anonymous.
    alone = app_settings(containerRegistryUsername="someone")
    assert "DOCKER_REGISTRY_SERVER_USERNAME" not in alone


def test_with_registry_credentials_the_password_is_a_key_vault_reference_to_its_secret() -> None:
    settings = app_settings(**REGISTRY_CREDENTIALS)
    assert settings["DOCKER_REGISTRY_SERVER_URL"] == "https://myregistry.azurecr.io"
    assert settings["DOCKER_REGISTRY_SERVER_USERNAME"] == "slipway-pull"
    secret = registry_secret()
    assert evaluate(secret["condition"], **REGISTRY_CREDENTIALS) is True
    assert secret["properties"]["value"] == "[parameters('containerRegistryPassword')]"
    vault = evaluate(only("Microsoft.KeyVault/vaults")["name"])
    name = evaluate(secret["name"]).split("/")[1]
    assert settings["DOCKER_REGISTRY_SERVER_PASSWORD"] == (
        f"@Microsoft.KeyVault(SecretUri=https://{vault}.vault.azure.net/secrets/{name})"
    )
    assert KEY_VAULT_REFERENCE.match(settings["DOCKER_REGISTRY_SERVER_PASSWORD"])
    assert REGISTRY_CREDENTIALS["containerRegistryPassword"] not in json.dumps(settings, default=str)
    assert set(settings) - {s.env for s in SETTINGS} <= PLATFORM_SETTINGS
    # The settings wait for the secret (and, as before, for the app's role on the vault).
    appsettings = only("Microsoft.Web/sites/config", "/appsettings")
    assert secret in dependencies(appsettings)
    assert only("Microsoft.KeyVault/vaults") in dependencies(secret)
    # The image is named with its registry, as App Service pulls it.
    config = site()["properties"]["siteConfig"]
    assert (
        evaluate(config["linuxFxVersion"], **REGISTRY_CREDENTIALS)
        == "DOCKER|myregistry.azurecr.io/slipway:1.2"
    )
    env = {k: v for k, v in settings.items() if not isinstance(v, Opaque)}
    env.update(
        APPLICATIONINSIGHTS_CONNECTION_STRING="InstrumentationKey=placeholder", SLIPWAY_API_TOKEN="0" * 36
    )
    env.update(
        SLIPWAY_PUBLIC_BASE_URL="https://slipway-api-x.azurewebsites.net", WEBSITE_SITE_NAME="slipway-api-x"
    )
    load_settings(env)  # still a valid Slipway configuration


def test_the_app_identity_gets_exactly_the_roles_it_needs() -> None:
    custom = only("Microsoft.Authorization/roleDefinitions")
    (permissions,) = custom["properties"]["permissions"]
    assert set(permissions["actions"]) == STATIC_WEB_APPS_ACTIONS and not permissions["dataActions"]
    assert not permissions["notActions"]
    for operation in STATIC_WEB_APPS_OPERATIONS:  # Azure RBAC: * matches any run of characters
        assert any(
            re.fullmatch(re.escape(action).replace(r"\*", ".*"), operation, flags=re.IGNORECASE)
            for action in permissions["actions"]
        ), operation
    assert custom["properties"]["assignableScopes"] == ["[resourceGroup().id]"]
    assert custom["properties"]["type"] == "CustomRole"
    granted: dict[str, set[str]] = {}
    for assignment in resources_of("Microsoft.Authorization/roleAssignments"):
        scope = evaluate(assignment.get("scope", "resourceGroup"))
        principal = assignment["properties"]["principalId"]
        assert (
            principal
            == "[reference(resourceId('Microsoft.Web/sites', variables('functionAppName')), '2024-04-01', 'Full').identity.principalId]"
        )
        assert assignment["properties"]["principalType"] == "ServicePrincipal"
        role_ids = (
            evaluate("[variables('storageRoles')]")
            if "copy" in assignment
            else [evaluate(assignment["properties"]["roleDefinitionId"]).rsplit("/", 1)[-1]]
        )
        kind = scope.split("/")[1] if "/" in scope else scope
        granted.setdefault(kind, set()).update(role_ids)
        assert "guid(" in assignment["name"], "role assignment names are deterministic guid()s"
    roles = BUILT_IN_ROLES
    assert granted == {
        "storageAccounts": {
            roles["Storage Blob Data Owner"],
            roles["Storage Queue Data Contributor"],
            roles["Storage Table Data Contributor"],
            roles["Storage File Data Privileged Contributor"],
        },
        "vaults": {roles["Key Vault Secrets Officer"]},
        "resourceGroup": {evaluate(custom["name"])},
    }


def test_the_static_web_app_builds_web_and_links_the_function_app() -> None:
    swa = only("Microsoft.Web/staticSites")
    assert swa["sku"] == {"name": "Standard", "tier": "Standard"}
    build = swa["properties"]["buildProperties"]
    assert build == {"appLocation": "web", "apiLocation": "", "outputLocation": "dist"}
    assert (REPO_ROOT / "web" / "staticwebapp.config.json").is_file()
    assert re.search(
        r"outDir:\s*\"dist\"", (REPO_ROOT / "web" / "vite.config.js").read_text(encoding="utf-8")
    )
    assert set(template()["parameters"]["staticWebAppLocation"]["allowedValues"]) == {
        "westus2",
        "centralus",
        "eastus2",
        "westeurope",
        "eastasia",
    }
    assert template()["parameters"]["repositoryToken"]["type"].lower() == "securestring"
    link = only("Microsoft.Web/staticSites/linkedBackends")
    assert (
        link["properties"]["backendResourceId"]
        == "[resourceId('Microsoft.Web/sites', variables('functionAppName'))]"
    )


def readme_unauthenticated_paths() -> set[str]:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Authentication and roles", 1)[1].split("\n## ", 1)[0]
    promise = section.split("are excluded from that", 1)[0].rsplit("(", 1)[1]
    return set(re.findall(r"`(/api/[^`]+)`", promise))


def test_app_service_authentication_admits_only_the_static_web_app_outside_the_promised_paths() -> None:
    auth = only("Microsoft.Web/sites/config", "/authsettingsV2")
    props = auth["properties"]
    assert props["platform"]["enabled"] is True
    validation = props["globalValidation"]
    assert (
        validation["requireAuthentication"] is True
        and validation["unauthenticatedClientAction"] == "Return401"
    )
    assert (
        set(validation["excludedPaths"])
        == readme_unauthenticated_paths()
        == {
            "/api/health",
            "/api/github/webhook",
            "/api/automation/*",
        }
    )
    providers = props["identityProviders"]
    assert list(providers) == ["azureStaticWebApps"] and providers["azureStaticWebApps"]["enabled"] is True
    # The registration is read back from what linking wrote, after the link exists.
    read = only("Microsoft.Resources/deployments")
    assert "outputs.staticWebAppsClientId" in providers["azureStaticWebApps"]["registration"]["clientId"]
    assert only("Microsoft.Web/staticSites/linkedBackends") in all_dependencies(read)
    assert read in dependencies(auth)


# --- settings -----------------------------------------------------------------------------------


def test_every_setting_slipway_reads_is_set_or_defaulted_on_purpose() -> None:
    slipway = {s.env for s in SETTINGS if not s.host_only}
    for plan in ("EP1", "P1v3"):
        names = set(app_settings(plan))
        assert slipway - names == set(DEFAULTED_IN_AZURE) | FORBIDDEN_SETTINGS, plan
        assert not names & (set(DEFAULTED_IN_AZURE) | FORBIDDEN_SETTINGS)
        unknown = {n for n in names if n.startswith("SLIPWAY_")} - slipway
        assert not unknown, f"settings the code does not read: {unknown}"
        assert names <= {s.env for s in SETTINGS} | PLATFORM_SETTINGS, names - {s.env for s in SETTINGS}
    spec = {s.env: s for s in SETTINGS}
    for name, value in DEFAULTED_IN_AZURE.items():
        assert spec[name].default == value, f"{name}'s code default changed: review DEFAULTED_IN_AZURE"


def test_settings_have_the_values_right_for_azure() -> None:
    settings = app_settings()
    assert "AzureWebJobsStorage" not in settings
    assert settings["AzureWebJobsStorage__accountName"] == evaluate(
        only("Microsoft.Storage/storageAccounts")["name"]
    )
    expected = {
        "FUNCTIONS_EXTENSION_VERSION": "~4",
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "PYTHON_THREADPOOL_THREAD_COUNT": "16",
        # The app's pinned azure-functions, not the copy bundled with the worker.
        "PYTHON_ISOLATE_WORKER_DEPENDENCIES": "1",
        "WEBSITES_ENABLE_APP_SERVICE_STORAGE": "false",
        "DOCKER_REGISTRY_SERVER_URL": "https://index.docker.io/v1",
        "SLIPWAY_SECRET_STORE": "keyvault",
        "SLIPWAY_TRUST_CLIENT_PRINCIPAL": "true",
        "SLIPWAY_DEV_PRINCIPAL": "false",
        "ENABLE_DEBUGGING": "false",
        "SLIPWAY_WEB_DIR": "",
        "SLIPWAY_WORKSPACE_DIR": "/workspace",
        "SLIPWAY_TEMP_DIR": "/mnt/temp",
        "SLIPWAY_WORKSPACE_SHARE": "workspace",
        "SLIPWAY_LOG_LEVEL": "INFO",
        "SLIPWAY_ADMINS": example_parameters()["admins"],
        "SLIPWAY_EDITORS": "",
        "SLIPWAY_READERS": "",
        # Deployments publish to Static Web Apps in the template's own resource group.
        "SLIPWAY_SWA_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
        "SLIPWAY_SWA_RESOURCE_GROUP": "slipway-rg",
        "SLIPWAY_SWA_CREATE_SITES": "true",
        "SLIPWAY_SWA_LOCATION": evaluate("[parameters('staticWebAppLocation')]"),
        "SLIPWAY_SWA_SKU": "Free",
    }
    assert {k: settings[k] for k in expected} == expected
    appsettings = only("Microsoft.Web/sites/config", "/appsettings")["properties"]
    standard = Evaluator(template(), {"siteSku": "Standard"}).value(appsettings)
    assert standard["SLIPWAY_SWA_SKU"] == "Standard"  # the siteSku parameter reaches the setting
    vault = evaluate(only("Microsoft.KeyVault/vaults")["name"])
    assert settings["SLIPWAY_KEY_VAULT_URL"] == f"https://{vault}.vault.azure.net/"
    assert isinstance(settings["APPLICATIONINSIGHTS_CONNECTION_STRING"], Opaque)
    assert "Microsoft.Insights/components" in settings["APPLICATIONINSIGHTS_CONNECTION_STRING"].source
    assert isinstance(settings["SLIPWAY_PUBLIC_BASE_URL"], Opaque)
    assert "defaultHostName" in settings["SLIPWAY_PUBLIC_BASE_URL"].source
    # Elastic Premium's content share; Dedicated plans do not use one.
    assert settings["WEBSITE_CONTENTSHARE"] == "function-content"
    assert "WEBSITE_CONTENTSHARE" not in app_settings("P1v3")


def test_no_secret_is_plain_text_in_app_settings() -> None:
    secrets = {s.env for s in SETTINGS if s.secret} | PLATFORM_SECRETS
    for plan, parameters in (("EP1", {}), ("P1v3", {}), ("EP1", REGISTRY_CREDENTIALS)):
        for name, value in app_settings(plan, **parameters).items():
            if name in secrets:
                assert isinstance(value, str) and KEY_VAULT_REFERENCE.match(value), (
                    f"{name} must be a Key Vault reference"
                )
                secret_name = value.rsplit("/", 1)[1].rstrip(")")
                assert [
                    s
                    for s in resources_of("Microsoft.KeyVault/vaults/secrets")
                    if evaluate(s["name"]).endswith("/" + secret_name)
                ]
            elif name in IDENTIFIERS:
                assert value == "00000000-0000-0000-0000-000000000000", f"{name}={value!r}"
            elif isinstance(value, str):
                assert not LOOKS_LIKE_A_SECRET.search(value), f"{name}={value!r} looks like a secret"
    raw = only("Microsoft.Web/sites/config", "/appsettings")["properties"]
    for text in [raw, *strings(template()["variables"]["appSettings"])]:
        assert "listKeys" not in text, "an account key would be plain text in app settings"
    assert "SLIPWAY_API_TOKEN" in app_settings()


def test_the_api_token_secret_comes_from_a_secure_parameter_long_enough_for_slipway() -> None:
    parameter = template()["parameters"]["apiToken"]
    assert parameter["type"].lower() == "securestring"
    assert parameter["defaultValue"] == "[newGuid()]" and parameter["minLength"] >= 32
    secret = next(
        s for s in resources_of("Microsoft.KeyVault/vaults/secrets") if "apiTokenSecretName" in s["name"]
    )
    assert secret["properties"]["value"] == "[parameters('apiToken')]"
    assert "parameters('apiToken')" not in json.dumps(template()["outputs"])


def test_the_template_settings_are_a_valid_slipway_configuration_in_app_service() -> None:
    env = {k: v for k, v in app_settings().items() if not isinstance(v, Opaque)}
    env["APPLICATIONINSIGHTS_CONNECTION_STRING"] = "InstrumentationKey=placeholder"
    env["SLIPWAY_PUBLIC_BASE_URL"] = "https://slipway-api-x.azurewebsites.net"
    env["SLIPWAY_API_TOKEN"] = "0" * 36  # what App Service resolves the Key Vault reference to
    env["WEBSITE_SITE_NAME"] = "slipway-api-x"  # App Service sets it: debugging and dev principal refused
    settings = load_settings(env)
    assert settings.storage.uses_identity and settings.trust_client_principal and not settings.dev_principal
    assert settings.debugging is None and settings.web_dir is None
    # Deployments publish to Static Web Apps (no local static host), creating sites as needed.
    azure = settings.deploy.azure
    assert settings.local_sites_dir is None and azure is not None
    assert (azure.subscription_id, azure.resource_group) == (
        "00000000-0000-0000-0000-000000000000",
        "slipway-rg",
    )
    assert (
        azure.create_sites and azure.location == "westeurope" and azure.sku == "Free" and azure.cli == "swa"
    )


def image_env() -> dict[str, str]:
    text = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    final = text.rsplit("\nFROM ", 1)[1]
    found: dict[str, str] = {}
    for line in final.splitlines():
        if line.startswith("ENV "):
            found.update(dict(re.findall(r"(\S+?)=(\S+)", line[4:])))
    return found


def test_mounts_match_the_settings_and_the_image_and_avoid_tmp() -> None:
    settings = app_settings()
    mounts = evaluate(site()["properties"]["siteConfig"]["azureStorageAccounts"])
    by_path = {m["mountPath"]: m for m in mounts.values()}
    assert set(by_path) == {settings["SLIPWAY_WORKSPACE_DIR"], settings["SLIPWAY_TEMP_DIR"]}
    env = image_env()
    assert (env["SLIPWAY_WORKSPACE_DIR"], env["SLIPWAY_TEMP_DIR"]) == (
        settings["SLIPWAY_WORKSPACE_DIR"],
        settings["SLIPWAY_TEMP_DIR"],
    )
    for path, mount in by_path.items():
        # Microsoft: a Linux container's storage mount must not be /, /home or /tmp (or below).
        assert path.startswith("/") and path != "/"
        assert not re.match(r"^/(tmp|home)(/|$)", path), path
        assert mount["type"] == "AzureFiles"
        assert mount["accountName"] == settings["AzureWebJobsStorage__accountName"]
        assert isinstance(mount["accessKey"], Opaque) and mount["accessKey"].source.startswith("listKeys(")
    assert by_path[settings["SLIPWAY_WORKSPACE_DIR"]]["shareName"] == settings["SLIPWAY_WORKSPACE_SHARE"]
    shares = {
        evaluate(s["name"]).split("/")[-1]
        for s in resources_of("Microsoft.Storage/storageAccounts/fileServices/shares")
    }
    assert {m["shareName"] for m in mounts.values()} <= shares
    assert not settings["SLIPWAY_GIT_DIR"].startswith(tuple(by_path)), "the git mirror stays on local disk"
    defaults = {s.env: s.default for s in SETTINGS}
    for name in ("SLIPWAY_DEPLOY_DIR", "SLIPWAY_DEPLOY_CACHE_DIR"):  # builds stay on local disk too
        folder = settings.get(name, defaults[name])
        assert folder.startswith("/") and not folder.startswith(tuple(by_path)), name


def test_outputs_name_the_urls_and_resources_but_no_secret() -> None:
    outputs = template()["outputs"]
    assert set(outputs) == {
        "uiUrl",
        "apiUrl",
        "webhookUrl",
        "healthUrl",
        "functionAppName",
        "staticWebAppName",
        "storageAccountName",
        "keyVaultName",
        "apiTokenSecretUri",
    }
    assert outputs["webhookUrl"]["value"].endswith(
        "/api/github/webhook', reference(resourceId('Microsoft.Web/sites', variables('functionAppName')), '2024-04-01').defaultHostName)]"
    )
    assert evaluate(outputs["apiTokenSecretUri"]["value"]).endswith("/secrets/slipway-api-token")
    for output in outputs.values():
        assert output["type"] == "string"
        assert "listKeys" not in output["value"] and "parameters('apiToken')" not in output["value"]


def test_the_parameters_file_covers_the_required_parameters_with_placeholders() -> None:
    example = json.loads(PARAMETERS_PATH.read_text(encoding="utf-8"))
    assert (
        example["$schema"]
        == "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#"
    )
    given = set(example["parameters"])
    required = {n for n, spec in template()["parameters"].items() if "defaultValue" not in spec}
    assert required <= given <= set(template()["parameters"])
    for name in given:
        value = example["parameters"][name]["value"]
        spec = template()["parameters"][name]
        if "allowedValues" in spec:
            assert value in spec["allowedValues"], name
        if spec["type"].lower() == "securestring":
            assert re.fullmatch(r"<[^>]+>", value), f"{name} must be a placeholder, not a secret"


# --- checkov --------------------------------------------------------------------------------------


def inline_suppressions() -> list[tuple[str, str, str]]:
    """(owner, check id, reason) for every checkov suppression in the template."""
    found = []
    owners = [(f"parameter.{n}", p) for n, p in template()["parameters"].items()]
    owners += [(f"{r['type']}.{r['name']}", r) for r in template()["resources"]]
    for owner, body in owners:
        for entry in body.get("metadata", {}).get("checkov", []):
            match = re.fullmatch(r"checkov:skip=(CKV2?_[A-Z]+_\d+): (.+)", entry)
            assert match, f"{owner}: {entry!r} is not 'checkov:skip=<ID>: <reason>'"
            found.append((owner, match.group(1), match.group(2)))
    return found


def test_every_suppression_is_justified_by_a_real_sentence() -> None:
    suppressions = inline_suppressions()
    assert suppressions
    for owner, check, reason in suppressions:
        assert len(reason) >= 30, f"{owner} {check}: reason too short"
        assert reason[0].isupper() and reason.endswith(".") and len(reason.split()) >= 8, (
            f"{owner} {check}: {reason!r}"
        )
    pairs = [(owner, check) for owner, check, _ in suppressions]
    assert len(pairs) == len(set(pairs)), "a check is suppressed twice on one resource"


def test_checkov_passes_with_only_the_inline_suppressions() -> None:
    checkov = Path(sys.executable).with_name("checkov")
    result = subprocess.run(
        [
            str(checkov),
            "-f",
            str(TEMPLATE_PATH),
            "--framework",
            "arm",
            "--compact",
            "--skip-download",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=REPO_ROOT,
    )
    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0 and not failed, failed
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] >= len(template()["resources"]) - 1  # nested deployment: no checks
    skipped = report["results"]["skipped_checks"]
    for check in skipped:
        reason = check["check_result"]["suppress_comment"]
        assert len(reason) >= 30, f"{check['check_id']} skipped without a reason"
    # Every inline suppression is one checkov applied: none is stale or misspelled.
    assert len(skipped) == len(inline_suppressions())
    assert sorted(c["check_id"] for c in skipped) == sorted(check for _, check, _ in inline_suppressions())


@pytest.mark.parametrize("plan", ["EP1", "P3v3"])
def test_both_plan_families_evaluate(plan: str) -> None:
    settings = app_settings(plan)
    assert settings["FUNCTIONS_EXTENSION_VERSION"] == "~4"
    config = evaluate(site()["properties"]["siteConfig"], planSku=plan)
    assert config["minimumElasticInstanceCount"] == (1 if plan.startswith("EP") else 0)
