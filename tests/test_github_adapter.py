"""GitHubClient against a local fake of GitHub's REST API, over real HTTP.

PyGithub does the talking (see ``tests/fakes/github.py`` for what the fake speaks); these tests
pin the requests each method makes, the mapping of every failure to Slipway's exceptions, and
that neither the token nor a webhook secret reaches an exception or a log.
"""

from __future__ import annotations

import logging
import re
import socket
import time
import traceback
from collections.abc import Iterator

import pytest
from fakes.github import FakeGitHub, FakeToken

from slipway.adapters.github import (
    API_VERSION,
    BranchNotFound,
    GitHubAuthFailed,
    GitHubClient,
    GitHubError,
    GitHubUnavailable,
    PermissionMissing,
    RepositoryInfo,
    RepositoryNotFound,
    parse_repository,
)

TOKEN = "github_pat_11AAAAAAA0Slipway0Test0Token0abcdefghijklmnopqrstuvwxyz"
READ_ONLY = "github_pat_11BBBBBBB0ReadOnly0Token0abcdefghijklmnopqrstuvwxyz0"
NO_CONTENTS = "ghp_NoContentsTokenabcdefghijklmnopqrstuvwxyz012"
NOT_ADMIN = "ghp_NotAdminTokenabcdefghijklmnopqrstuvwxyz0123456"
OTHER_REPOS = "ghp_OtherReposTokenabcdefghijklmnopqrstuvwxyz01234"
SECRET = "webhook-secret-d41d8cd98f00b204e9800998ecf8427e"
HOOK_URL = "https://slipway.example.net/api/github/webhook"
SHA = "9fceb02d0ae598e95dc970b74767f19372d61af8"


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub() as server:
        server.tokens.update(
            {
                TOKEN: FakeToken(),
                READ_ONLY: FakeToken(hooks=False),
                NO_CONTENTS: FakeToken(contents=False),
                NOT_ADMIN: FakeToken(admin=False),
                OTHER_REPOS: FakeToken(repos={"acme/other"}),
            }
        )
        server.add_repo("Acme/Workflows", branches={"main": SHA, "feature/x": "1" * 40})
        server.add_repo("acme/empty", branches={}, private=False)
        yield server


def client(fake: FakeGitHub, token: str = TOKEN, **kwargs: float) -> GitHubClient:
    return GitHubClient(token, api_url=fake.url, **kwargs)


def closed_port() -> int:
    """A port nothing listens on (it was free a moment ago)."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        return int(unused.getsockname()[1])


def paths(fake: FakeGitHub) -> list[tuple[str, str, int]]:
    return [(m, p.split("?")[0], s) for m, p, s in fake.requests]


# --- parse_repository ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("acme/workflows", "acme/workflows"),
        ("  Acme-Corp/my.repo_1  ", "Acme-Corp/my.repo_1"),
        ("acme/workflows.git", "acme/workflows"),
        ("https://github.com/acme/workflows", "acme/workflows"),
        ("https://github.com/acme/workflows/", "acme/workflows"),
        ("https://github.com/acme/workflows.git", "acme/workflows"),
        ("https://GitHub.com/acme/workflows", "acme/workflows"),
        ("git@github.com:acme/workflows.git", "acme/workflows"),
        ("git@github.com:acme/workflows", "acme/workflows"),
        ("a/b", "a/b"),
        ("acme/.github", "acme/.github"),
        ("x" * 39 + "/" + "y" * 100, "x" * 39 + "/" + "y" * 100),
    ],
)
def test_parse_repository_accepts(text: str, expected: str) -> None:
    assert parse_repository(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "acme",
        "acme/",
        "/workflows",
        "acme/work/flows",
        "acme/work flows",
        "-acme/workflows",
        "ac_me/workflows",
        "acme/..",
        "acme/.",
        "acme/.git",
        "x" * 40 + "/y",
        "acme/" + "y" * 101,
        "http://github.com/acme/workflows",
        "https://gitlab.com/acme/workflows",
        "https://github.com/acme/workflows/tree/main",
        "https://github.com.evil.example/acme/workflows",
        "ssh://git@github.com/acme/workflows.git",
        "git@gitlab.com:acme/workflows.git",
        "acme/work\nflows",
        "acme/workflows?x=1",
    ],
)
def test_parse_repository_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape("owner/name, https://github.com/owner/name")) as caught:
        parse_repository(text)
    assert repr(text) in str(caught.value)


# --- the calls -----------------------------------------------------------------------------------


def test_get_repository(fake: FakeGitHub) -> None:
    info = client(fake).get_repository("https://github.com/acme/workflows.git")
    assert info == RepositoryInfo(
        full_name="Acme/Workflows",
        default_branch="main",
        clone_url="https://github.com/Acme/Workflows.git",
        private=True,
        can_admin_hooks=True,
    )
    assert paths(fake) == [("GET", "/repos/acme/workflows", 200)]
    sent = fake.headers[0]
    assert sent["Authorization"] == f"token {TOKEN}"
    assert sent["X-GitHub-Api-Version"] == API_VERSION
    assert sent["User-Agent"] == "Slipway"


def test_get_repository_of_a_non_admin(fake: FakeGitHub) -> None:
    assert client(fake, NOT_ADMIN).get_repository("acme/workflows").can_admin_hooks is False


def test_missing_and_invisible_repositories_are_not_found(fake: FakeGitHub) -> None:
    with pytest.raises(RepositoryNotFound, match="acme/nothing was not found, or the token cannot see it"):
        client(fake).get_repository("acme/nothing")
    # A private repository the token was not granted answers 404 too, and says so.
    with pytest.raises(RepositoryNotFound, match="404 for a private repository"):
        client(fake, OTHER_REPOS).get_repository("acme/workflows")
    assert client(fake, OTHER_REPOS).get_repository("acme/empty").private is False  # public


def test_check_branch(fake: FakeGitHub) -> None:
    github = client(fake)
    assert github.check_branch("acme/workflows", "main") == SHA
    assert github.check_branch("acme/workflows", "feature/x") == "1" * 40
    assert paths(fake) == [
        ("GET", "/repos/acme/workflows/branches/main", 200),
        ("GET", "/repos/acme/workflows/branches/feature/x", 200),
    ]


def test_check_branch_failures(fake: FakeGitHub) -> None:
    github = client(fake)
    with pytest.raises(BranchNotFound, match="branch 'develop' does not exist in acme/workflows"):
        github.check_branch("acme/workflows", "develop")
    # The 404 is followed by a look at the repository, to tell the two apart.
    assert paths(fake)[-2:] == [
        ("GET", "/repos/acme/workflows/branches/develop", 404),
        ("GET", "/repos/acme/workflows", 200),
    ]
    with pytest.raises(BranchNotFound):
        github.check_branch("acme/empty", "main")  # no commits yet
    with pytest.raises(RepositoryNotFound):
        github.check_branch("acme/nothing", "main")
    with pytest.raises(PermissionMissing, match=r'"Contents: read".*"repo" scope') as caught:
        client(fake, NO_CONTENTS).check_branch("acme/workflows", "main")
    assert caught.value.permission == "Contents: read"
    for bad in ("", "a b", "a..b", "-x", "x:y", "x\n"):
        with pytest.raises(ValueError, match="not a valid git branch name"):
            github.check_branch("acme/workflows", bad)


def test_check_contents_readable(fake: FakeGitHub) -> None:
    client(fake).check_contents_readable("acme/workflows", "main")
    assert paths(fake) == [
        ("GET", "/repos/acme/workflows/branches/main", 200),
        ("GET", f"/repos/acme/workflows/git/trees/{SHA}", 200),
    ]
    with pytest.raises(PermissionMissing, match="Contents: read") as caught:
        client(fake, NO_CONTENTS).check_contents_readable("acme/workflows", "main")
    assert "contents=read" in str(caught.value)  # GitHub's X-Accepted-GitHub-Permissions
    with pytest.raises(BranchNotFound):
        client(fake).check_contents_readable("acme/workflows", "gone")
    with pytest.raises(RepositoryNotFound):
        client(fake, OTHER_REPOS).check_contents_readable("acme/workflows", "main")


def test_create_find_and_delete_webhook(fake: FakeGitHub) -> None:
    github = client(fake)
    assert github.find_webhook("acme/workflows", HOOK_URL) is None
    hook_id = github.create_push_webhook("acme/workflows", HOOK_URL, SECRET)
    (stored,) = fake.repos["acme/workflows"].hooks.values()
    assert stored["id"] == hook_id
    assert stored["config"] == {
        "url": HOOK_URL,
        "content_type": "json",
        "secret": SECRET,
        "insecure_ssl": "0",
    }
    assert stored["events"] == ["push"]
    assert stored["active"] is True
    assert github.find_webhook("acme/workflows", HOOK_URL) == hook_id
    assert github.find_webhook("acme/workflows", HOOK_URL + "/other") is None
    assert github.delete_webhook("acme/workflows", hook_id) is True
    assert fake.repos["acme/workflows"].hooks == {}
    assert paths(fake) == [
        ("GET", "/repos/acme/workflows/hooks", 200),
        ("POST", "/repos/acme/workflows/hooks", 201),
        ("GET", "/repos/acme/workflows/hooks", 200),
        ("GET", "/repos/acme/workflows/hooks", 200),
        ("DELETE", f"/repos/acme/workflows/hooks/{hook_id}", 204),
    ]


def test_delete_a_webhook_that_is_already_gone(fake: FakeGitHub) -> None:
    github = client(fake)
    hook_id = github.create_push_webhook("acme/workflows", HOOK_URL, SECRET)
    fake.remove_hook("Acme/Workflows", hook_id)
    assert github.delete_webhook("acme/workflows", hook_id) is False
    assert github.find_webhook("acme/workflows", HOOK_URL) is None


def test_a_duplicate_webhook_is_refused_with_githubs_reason(fake: FakeGitHub) -> None:
    github = client(fake)
    github.create_push_webhook("acme/workflows", HOOK_URL, SECRET)
    with pytest.raises(GitHubError, match="422: Validation Failed \\(Hook already exists") as caught:
        github.create_push_webhook("acme/workflows", HOOK_URL, SECRET)
    assert type(caught.value) is GitHubError
    with pytest.raises(ValueError, match="secret is required"):
        github.create_push_webhook("acme/workflows", HOOK_URL, "")


@pytest.mark.parametrize("token", [READ_ONLY, NOT_ADMIN])
def test_webhook_permission_missing(fake: FakeGitHub, token: str) -> None:
    """Fine-grained tokens without the permission get 403; non-admins get 404 from GitHub."""
    owner = client(fake)
    hook_id = owner.create_push_webhook("acme/workflows", HOOK_URL, SECRET)
    github = client(fake, token)
    calls = [
        lambda: github.create_push_webhook("acme/workflows", HOOK_URL + "/2", SECRET),
        lambda: github.find_webhook("acme/workflows", HOOK_URL),
        lambda: github.delete_webhook("acme/workflows", hook_id),
    ]
    for call in calls:
        with pytest.raises(
            PermissionMissing, match=r'"Webhooks: read and write".*"admin:repo_hook"'
        ) as caught:
            call()
        assert caught.value.permission == "Webhooks: read and write"
        assert "admin of the repository" in str(caught.value)
    assert list(fake.repos["acme/workflows"].hooks) == [hook_id]
    with pytest.raises(RepositoryNotFound):
        client(fake, OTHER_REPOS).create_push_webhook("acme/workflows", HOOK_URL, SECRET)


def test_bad_token(fake: FakeGitHub) -> None:
    github = client(fake, "ghp_revokedTokenabcdefghijklmnopqrstuvwxyz0123")
    for call in (
        lambda: github.get_repository("acme/workflows"),
        lambda: github.check_branch("acme/workflows", "main"),
        lambda: github.find_webhook("acme/workflows", HOOK_URL),
        lambda: github.delete_webhook("acme/workflows", 1),
    ):
        with pytest.raises(GitHubAuthFailed, match="rejected the token \\(Bad credentials\\)"):
            call()
    with pytest.raises(ValueError, match="token is required"):
        GitHubClient(" ", api_url=fake.url)


@pytest.mark.parametrize("status", [403, 429])
def test_rate_limited(fake: FakeGitHub, status: int) -> None:
    reset = int(time.time()) + 600
    fake.rate_limit = (status, reset)
    with pytest.raises(GitHubUnavailable, match=r"rate limit .* resets at .* UTC, in about 10 min") as caught:
        client(fake).check_branch("acme/workflows", "main")
    assert caught.value.retry_at is not None
    assert int(caught.value.retry_at.timestamp()) == reset
    assert len(fake.requests) == 1  # neither retried nor slept through


def test_server_errors_and_network_failures(fake: FakeGitHub) -> None:
    fake.failure = 502
    with pytest.raises(GitHubUnavailable, match="GitHub failed with 502 \\(Server Error\\)"):
        client(fake).get_repository("acme/workflows")
    assert len(fake.requests) == 1
    github = GitHubClient(TOKEN, api_url=f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(GitHubUnavailable, match=r"cannot reach GitHub at .* \(connection refused\)"):
        github.get_repository("acme/workflows")


def test_timeout(fake: FakeGitHub) -> None:
    fake.delay = 1.3
    with pytest.raises(GitHubUnavailable, match="did not answer within 1 s"):  # whole seconds
        client(fake, timeout=0.5).get_repository("acme/workflows")


# --- secrets stay secret -------------------------------------------------------------------------


def test_token_and_secret_never_in_exceptions_or_logs(
    fake: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="github")
    caplog.set_level(logging.DEBUG, logger="urllib3")
    failures: list[BaseException] = []

    def attempt(call: object) -> None:
        try:
            call()  # type: ignore[operator]
        except GitHubError as exc:
            failures.append(exc)

    github = client(fake)
    hook_id = github.create_push_webhook("acme/workflows", HOOK_URL, SECRET)
    github.find_webhook("acme/workflows", HOOK_URL)
    github.check_contents_readable("acme/workflows", "main")
    github.delete_webhook("acme/workflows", hook_id)
    attempt(lambda: client(fake, READ_ONLY).create_push_webhook("acme/workflows", HOOK_URL, SECRET))
    attempt(lambda: client(fake, NO_CONTENTS).check_contents_readable("acme/workflows", "main"))
    attempt(lambda: client(fake, OTHER_REPOS).get_repository("acme/workflows"))
    attempt(lambda: client(fake).check_branch("acme/workflows", "nope"))
    attempt(lambda: client(fake, TOKEN + "x").get_repository("acme/workflows"))
    fake.rate_limit = (403, int(time.time()) + 60)
    attempt(lambda: client(fake).get_repository("acme/workflows"))
    fake.rate_limit, fake.failure = None, 500
    attempt(lambda: client(fake).get_repository("acme/workflows"))
    fake.failure = None
    attempt(
        lambda: GitHubClient(TOKEN, api_url=f"http://127.0.0.1:{closed_port()}").get_repository(
            "acme/workflows"
        )
    )
    assert len(failures) == 8

    requester_log = [r for r in caplog.records if r.name == "github.Requester"]
    assert any("POST" in r.getMessage() and "/hooks" in r.getMessage() for r in requester_log)
    assert any(r.name.startswith("urllib3") for r in caplog.records)
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert "(secret removed)" in logged
    for secret in (TOKEN, READ_ONLY, NO_CONTENTS, OTHER_REPOS, SECRET):
        assert secret not in logged
        for failure in failures:
            text = "".join(traceback.format_exception(failure)) + repr(failure.args)
            assert secret not in text
