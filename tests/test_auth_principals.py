"""Reading principals: what each kind of credential grants, and garbage never grants anything."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slipway.auth import AuthenticationFailed, AuthPolicy, Role, RoleAssignments, parse_client_principal


def _encode(payload: object) -> str:
    return base64.b64encode(json.dumps(payload).encode()).decode()


def swa_header(name: str, *roles: str) -> dict[str, str]:
    payload = {
        "identityProvider": "aad",
        "userId": "1",
        "userDetails": name,
        "userRoles": ["authenticated", *roles],
    }
    return {"x-ms-client-principal": _encode(payload)}


def test_highest_slipway_role_wins_and_unknown_roles_are_ignored() -> None:
    principal = parse_client_principal(
        _encode(
            {
                "identityProvider": "github",
                "userDetails": "octo",
                "userRoles": ["authenticated", "reader", "editor", "owner"],
            }
        )
    )
    assert principal.role is Role.EDITOR
    assert principal.name == "octo"
    assert principal.may(Role.READER) and principal.may(Role.EDITOR) and not principal.may(Role.ADMIN)


def test_role_names_are_matched_without_regard_to_case() -> None:
    assert parse_client_principal(_encode({"userRoles": ["Admin"]})).role is Role.ADMIN


@pytest.mark.parametrize(
    "payload",
    [_encode(["reader"]), _encode({"userRoles": "admin"}), "bm90IGpzb24=", "A" * 20000],
)
def test_malformed_client_principals_are_rejected(payload: str) -> None:
    with pytest.raises(AuthenticationFailed):
        parse_client_principal(payload)


@given(st.text(max_size=300))
def test_arbitrary_header_text_is_either_rejected_or_grants_only_roles_it_names(text: str) -> None:
    try:
        principal = parse_client_principal(text)
    except AuthenticationFailed:
        return
    decoded = base64.b64decode(text).decode("utf-8", errors="replace").lower()
    if principal.role is not None:
        assert principal.role.label in decoded


@given(
    st.dictionaries(
        st.sampled_from(["userRoles", "userDetails", "identityProvider", "userId"]),
        st.one_of(st.none(), st.text(), st.lists(st.text()), st.integers()),
    )
)
def test_any_json_object_principal_is_read_without_crashing(payload: dict[str, object]) -> None:
    try:
        principal = parse_client_principal(_encode(payload))
    except AuthenticationFailed:
        return
    roles = payload.get("userRoles")
    if principal.role is not None:
        assert isinstance(roles, list) and principal.role.label in [str(r).lower() for r in roles]


def test_the_token_is_compared_whole() -> None:
    policy = AuthPolicy(api_token="a" * 40)
    assert policy.authenticate({"authorization": "Bearer " + "a" * 40}) is not None
    with pytest.raises(AuthenticationFailed, match="not valid"):
        policy.authenticate({"authorization": "Bearer " + "a" * 39})
    with pytest.raises(AuthenticationFailed, match="not valid"):
        policy.authenticate({"authorization": "Bearer " + "a" * 41})


def test_no_credentials_and_no_development_principal_means_no_principal() -> None:
    assert AuthPolicy().authenticate({}) is None
    assert AuthPolicy(dev_principal=True).authenticate({}).role is Role.ADMIN  # type: ignore[union-attr]


def test_the_client_principal_header_grants_nothing_unless_trusted() -> None:
    header = {"x-ms-client-principal": _encode({"userRoles": ["admin"]})}
    assert AuthPolicy().authenticate(header) is None
    assert AuthPolicy(trust_client_principal=True).authenticate(header).role is Role.ADMIN  # type: ignore[union-attr]


def test_slipway_assigns_roles_by_address_on_top_of_static_web_app_roles() -> None:
    policy = AuthPolicy(
        trust_client_principal=True,
        assignments=RoleAssignments(
            admins=RoleAssignments.parse("Ada@Contoso.com"),
            readers=RoleAssignments.parse("*@contoso.com"),
        ),
    )

    def role_of(name: str, *roles: str) -> str | None:
        principal = policy.authenticate(swa_header(name, *roles))
        assert principal is not None
        return principal.role.label if principal.role else None

    assert role_of("ada@contoso.com") == "admin"  # the first admin, with no invitation
    assert role_of("bob@contoso.com") == "reader"  # everyone of the domain
    assert role_of("bob@contoso.com", "editor") == "editor"  # a higher Static Web Apps role wins
    assert role_of("eve@example.com") is None
    assert role_of("eve@contoso.com.example.com") is None


@pytest.mark.parametrize("raw", ["ada", "ada@", "@contoso.com", "a*b@contoso.com", "ada@localhost"])
def test_role_assignments_refuse_what_is_not_an_address(raw: str) -> None:
    with pytest.raises(ValueError, match="is not an address"):
        RoleAssignments.parse(raw)
