"""The webhook: signatures (GitHub's test vector), filtering, deduplication, and the queue."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from slipway.adapters.queues import decode_wire
from slipway.adapters.secrets import FileSecretStore
from slipway.bootstrap import Services, build_services
from slipway.config import load_settings
from slipway.gitsync.connection import WEBHOOK_SECRET, Connection, ConnectionStore
from slipway.gitsync.journal import SyncJournal
from slipway.gitsync.signature import sign, verify
from slipway.gitsync.webhook import WebhookAnswer, WebhookHandler
from slipway.names import SYNC_QUEUE, WEBHOOK_DELIVERIES_TABLE

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "node_modules" / "@octokit" / "webhooks-examples" / "api.github.com" / "index.json"
SECRET = "It's a Secret to Everybody"


def test_githubs_documented_test_vector_verifies() -> None:
    # https://docs.github.com/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert sign(SECRET, b"Hello, World!") == expected
    assert verify(SECRET, b"Hello, World!", expected)


@pytest.mark.parametrize(
    ("secret", "body", "header"),
    [
        (
            "wrong secret",
            b"Hello, World!",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ),
        (SECRET, b"Hello, World?", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"),
        (SECRET, b"Hello, World!", None),
        (SECRET, b"Hello, World!", ""),
        (SECRET, b"Hello, World!", "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"),
        (SECRET, b"Hello, World!", "sha256=757107EA0EB2509FC211221CCE984B8A37570B6D7586C22C46F4379C8B043E17"),
        (SECRET, b"Hello, World!", "sha256=\u00e9"),
    ],
)
def test_anything_but_the_exact_signature_is_refused(secret: str, body: bytes, header: str | None) -> None:
    assert not verify(secret, body, header)


@pytest.fixture
def services(base_env: dict[str, str], tmp_path: Path) -> Services:
    built = build_services(load_settings({**base_env, "SLIPWAY_GIT_DIR": str(tmp_path / "git")}))
    return built


def connect_state(services: Services, *, secret: str = SECRET, branch: str = "main") -> None:
    services.secrets.set_secret(WEBHOOK_SECRET, secret)
    services.gitsync.connections.save(
        Connection(
            repository="octo/flows",
            branch=branch,
            remote_url="file:///nowhere/octo/flows.git",
            hook_id=7,
            hook_managed=True,
            webhook_url="http://127.0.0.1/api/github/webhook",
            connected_at=datetime.now(UTC),
            connected_by="test",
        )
    )


def deliver(
    services: Services, event: str, payload: object, *, delivery: str, secret: str = SECRET, hook: str = "7"
):  # type: ignore[no-untyped-def]
    body = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
    headers = {
        "x-github-event": event,
        "x-github-delivery": delivery,
        "x-github-hook-id": hook,
        "x-hub-signature-256": sign(secret, body),
        "content-type": "application/json",
    }
    return services.webhook.handle(headers, body)


def queued(services: Services) -> list[dict[str, object]]:
    return [json.loads(decode_wire(m)) for m in services.queues.peek_messages(SYNC_QUEUE)]


def drain(services: Services) -> None:
    while messages := services.queues.receive_messages(SYNC_QUEUE, max_messages=32, visibility_timeout=1):
        for message in messages:
            services.queues.delete_message(SYNC_QUEUE, message)


def octokit_examples(event: str) -> list[dict[str, object]]:
    """Real payloads GitHub sent, from the npm package @octokit/webhooks-examples."""
    examples = json.loads(EXAMPLES.read_text())
    return next(e for e in examples if e["name"] == event)["examples"]


def octokit_example(event: str) -> dict[str, object]:
    # For pushes: the first one to a branch that was not deleted (some are tag pushes).
    return next(
        e
        for e in octokit_examples(event)
        if event != "push" or (str(e["ref"]).startswith("refs/heads/") and not e["deleted"])
    )


def test_a_real_ping_is_answered_200(services: Services) -> None:
    connect_state(services)
    answer = deliver(services, "ping", octokit_example("ping"), delivery="ping-1")
    assert answer.status == 200 and answer.body["pong"] is True


def test_a_real_push_to_the_branch_is_queued_once(services: Services) -> None:
    push = octokit_example("push")
    branch = str(push["ref"]).removeprefix("refs/heads/")
    connect_state(services, branch=branch)
    drain(services)
    first = deliver(services, "push", push, delivery="d-1")
    assert first.status == 202 and first.body["queued"] is True
    again = deliver(services, "push", push, delivery="d-1")
    assert again.status == 200 and again.body["duplicate"] is True
    messages = [m for m in queued(services) if m["delivery"] == "d-1"]
    assert messages == [
        {
            "trigger": "push",
            "delivery": "d-1",
            "before": push["before"],
            "after": push["after"],
            "forced": push["forced"],
        }
    ]
    row = services.tables.get_entity(WEBHOOK_DELIVERIES_TABLE, "7", "d-1")
    assert row is not None and row["state"] == "queued"


def test_unsigned_wrong_or_tampered_requests_do_no_work(services: Services) -> None:
    connect_state(services)
    drain(services)
    body = json.dumps({"ref": "refs/heads/main", "after": "abc"}).encode()
    base = {"x-github-event": "push", "x-github-delivery": "t-1"}
    missing = services.webhook.handle(base, body)
    assert missing.status == 401 and missing.body["error"]["code"] == "signature_missing"
    wrong = services.webhook.handle({**base, "x-hub-signature-256": sign("other", body)}, body)
    assert wrong.status == 401 and wrong.body["error"]["code"] == "signature_invalid"
    tampered = services.webhook.handle({**base, "x-hub-signature-256": sign(SECRET, body)}, body[:-1] + b" ")
    assert tampered.status == 401
    assert queued(services) == []
    assert services.tables.get_entity(WEBHOOK_DELIVERIES_TABLE, "-", "t-1") is None


def test_a_real_tag_push_queues_nothing(services: Services) -> None:
    connect_state(services)
    drain(services)
    tag_push = next(e for e in octokit_examples("push") if str(e["ref"]).startswith("refs/tags/"))
    assert deliver(services, "push", tag_push, delivery="tag-1").status == 202
    assert queued(services) == []


def test_other_events_other_branches_and_branch_deletion_queue_nothing(services: Services) -> None:
    connect_state(services)
    drain(services)
    assert deliver(services, "issues", {"action": "opened"}, delivery="o-1").status == 202
    other = deliver(services, "push", {"ref": "refs/heads/feature", "after": "1" * 40}, delivery="o-2")
    assert other.status == 202 and "not to main" in other.body["ignored"]
    deleted = deliver(
        services,
        "push",
        {"ref": "refs/heads/main", "deleted": True, "before": "2" * 40, "after": "0" * 40},
        delivery="o-3",
    )
    assert deleted.status == 202 and "never empties" in deleted.body["ignored"]
    assert queued(services) == []
    journal = services.gitsync.syncs(5)
    assert journal[0].result == "skipped" and "was deleted" in journal[0].message


def test_a_body_over_githubs_cap_is_refused_before_anything_else(services: Services) -> None:
    connect_state(services)
    answer = services.webhook.handle({}, b"x" * (25 * 1024 * 1024 + 1))
    assert answer.status == 413


def test_garbage_signed_bodies_are_400_not_500(services: Services) -> None:
    connect_state(services)
    assert deliver(services, "push", b"\xff\xfe not json", delivery="g-1").status == 400
    assert deliver(services, "push", b"[1, 2]", delivery="g-2").status == 400
    assert deliver(services, "push", {"ref": "refs/heads/main"}, delivery="../../etc").status == 400


def test_without_a_connection_every_delivery_is_401(services: Services) -> None:
    answer = deliver(services, "push", {"ref": "refs/heads/main"}, delivery="n-1")
    assert answer.status == 401 and answer.body["error"]["code"] == "not_connected"


def test_concurrent_duplicates_are_queued_exactly_once(services: Services) -> None:
    connect_state(services)
    drain(services)
    barrier = threading.Barrier(10)
    answers = []

    def send() -> None:
        barrier.wait()
        answers.append(
            deliver(services, "push", {"ref": "refs/heads/main", "after": "3" * 40}, delivery="same")
        )

    threads = [threading.Thread(target=send) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(1 for a in answers if a.body.get("queued")) == 1
    assert len([m for m in queued(services) if m["delivery"] == "same"]) == 1


class CountingSecrets(FileSecretStore):
    """The real file secret store, counting reads (each one a Key Vault call in Azure)."""

    reads = 0

    def get_secret(self, name: str) -> str | None:
        self.reads += 1
        return super().get_secret(name)


class CountingConnections(ConnectionStore):
    """The real connection store, counting reads (each one a Table call)."""

    reads = 0

    def get(self) -> Connection | None:
        self.reads += 1
        return super().get()


@dataclass
class Watched:
    """A webhook handler over the real stores, with its reads counted and its clock in hand."""

    handler: WebhookHandler
    secrets: CountingSecrets
    connections: CountingConnections
    now: list[float]

    def handle(self, headers: dict[str, str], body: bytes) -> WebhookAnswer:
        return self.handler.handle(headers, body)

    def deliver(self, event: str, payload: object, *, delivery: str, secret: str = SECRET) -> WebhookAnswer:
        body = json.dumps(payload).encode()
        return self.handle(
            {
                "x-github-event": event,
                "x-github-delivery": delivery,
                "x-github-hook-id": "7",
                "x-hub-signature-256": sign(secret, body),
            },
            body,
        )


@pytest.fixture
def watched(services: Services, base_env: dict[str, str]) -> Watched:
    now = [1000.0]
    secrets = CountingSecrets(Path(base_env["SLIPWAY_SECRETS_FILE"]))
    connections = CountingConnections(services.tables)
    handler = WebhookHandler(
        secrets=secrets,
        tables=services.tables,
        queues=services.queues,
        connections=connections,
        journal=SyncJournal(services.tables),
        clock=lambda: now[0],
    )
    return Watched(handler, secrets, connections, now)


def flood_request(n: int, body: bytes) -> dict[str, str]:
    """Unsigned, signed with a guessed secret, or with a malformed signature, in turn."""
    headers = {"x-github-event": "push", "x-github-delivery": f"flood-{n}"}
    if n % 3 == 1:
        headers["x-hub-signature-256"] = sign("guessed", body)
    elif n % 3 == 2:
        headers["x-hub-signature-256"] = "sha256=" + "0" * 64
    return headers


def real_push_to_the_connected_branch(services: Services) -> dict[str, object]:
    push = octokit_example("push")
    connect_state(services, branch=str(push["ref"]).removeprefix("refs/heads/"))
    drain(services)
    return push


def test_a_flood_of_bad_requests_gets_401_then_429_and_a_real_push_and_ping_still_get_through(
    services: Services, watched: Watched
) -> None:
    push = real_push_to_the_connected_branch(services)
    body = json.dumps(push).encode()
    answers = [watched.handle(flood_request(n, body), body) for n in range(200)]
    statuses = [a.status for a in answers]
    assert statuses == [401] * 60 + [429] * 140
    assert {a.body["error"]["code"] for a in answers[60:]} == {"too_many_requests"}
    # One read to start with and one re-read for the first unmatched signature; none after.
    assert watched.secrets.reads <= 2, f"the flood read the secret store {watched.secrets.reads} times"
    assert watched.connections.reads <= 2, f"the flood read the connection {watched.connections.reads} times"

    queuedpush = watched.deliver("push", push, delivery="after-the-flood")
    assert queuedpush.status == 202 and queuedpush.body["queued"] is True
    ping = watched.deliver("ping", octokit_example("ping"), delivery="ping-after-the-flood")
    assert ping.status == 200 and ping.body["pong"] is True
    assert [m["delivery"] for m in queued(services)] == ["after-the-flood"]
    assert watched.secrets.reads <= 2


def test_a_flood_from_many_clients_at_once_admits_exactly_the_limit_and_blocks_no_signed_delivery(
    services: Services, watched: Watched
) -> None:
    push = real_push_to_the_connected_branch(services)
    body = json.dumps(push).encode()
    barrier = threading.Barrier(21)
    flood: list[int] = []
    signed: list[WebhookAnswer] = []
    lock = threading.Lock()

    def attacker(client: int) -> None:
        barrier.wait()
        for n in range(50):
            status = watched.handle(flood_request(client * 50 + n, body), body).status
            with lock:
                flood.append(status)

    def github() -> None:
        barrier.wait()
        for n in range(5):
            answer = watched.deliver("push", push, delivery=f"signed-{n}")
            with lock:
                signed.append(answer)

    threads = [threading.Thread(target=attacker, args=(c,)) for c in range(20)]
    threads.append(threading.Thread(target=github))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(flood) == [401] * 60 + [429] * 940
    assert [a.status for a in signed] == [202] * 5
    assert sorted(m["delivery"] for m in queued(services)) == [f"signed-{n}" for n in range(5)]
    assert watched.secrets.reads <= 2
    # The signed pushes read the connection once each (their branch); the flood at most twice.
    assert watched.connections.reads <= 2 + 5


def test_a_reconnect_during_a_flood_is_picked_up_within_a_second(
    services: Services, watched: Watched
) -> None:
    push = real_push_to_the_connected_branch(services)
    branch = str(push["ref"]).removeprefix("refs/heads/")
    assert watched.deliver("push", push, delivery="old-secret").status == 202
    body = json.dumps(push).encode()
    n = 0

    def flood(seconds: float) -> None:
        # Bad requests keep coming while the clock moves on, 20 a second.
        nonlocal n
        for _ in range(int(seconds * 20)):
            watched.handle(flood_request(n, body), body)
            watched.now[0] += 0.05
            n += 1

    flood(6)
    # A reconnect in the order GitHubSyncService.connect writes: the connection first, then the
    # new secret (GitHub pings with it at once), then the hook id; the flood goes on between.
    connection = Connection(
        repository="octo/flows",
        branch=branch,
        remote_url="file:///nowhere/octo/flows.git",
        hook_id=None,
        hook_managed=False,
        webhook_url="http://127.0.0.1/api/github/webhook",
        connected_at=datetime.now(UTC) + timedelta(seconds=1),
        connected_by="test",
    )
    services.gitsync.connections.save(connection)
    flood(1.5)
    services.secrets.set_secret(WEBHOOK_SECRET, "the new secret")
    flood(1.5)
    services.gitsync.connections.save(
        Connection(**{**connection.__dict__, "hook_id": 8, "hook_managed": True})
    )
    reads_before = watched.secrets.reads
    flood(1.1)
    answer = watched.deliver("push", push, delivery="new-secret", secret="the new secret")
    assert answer.status == 202 and answer.body["queued"] is True
    assert (
        watched.deliver("ping", octokit_example("ping"), delivery="new-ping", secret="the new secret").status
        == 200
    )
    assert watched.deliver("push", push, delivery="stale", secret=SECRET).status in (401, 429)
    # 10 s of flood: a re-read every 5 s at most, plus the one the new connection called for.
    assert watched.secrets.reads - reads_before <= 1
    assert watched.secrets.reads <= 1 + 3 + 1


def test_a_secret_changed_in_the_store_alone_is_picked_up_within_seconds_of_a_flood(
    services: Services, watched: Watched
) -> None:
    push = real_push_to_the_connected_branch(services)
    assert watched.deliver("push", push, delivery="before-rotation").status == 202
    body = b"{}"
    for n in range(50):
        watched.handle(flood_request(n, body), body)
    services.secrets.set_secret(WEBHOOK_SECRET, "rotated")  # same connection, new value
    for n in range(50, 100):
        watched.handle(flood_request(n, body), body)
    # Within the re-read interval a rotation without a reconnect may be refused; after it, not.
    watched.now[0] += 5
    assert watched.deliver("push", push, delivery="rotated", secret="rotated").status == 202
    assert watched.secrets.reads <= 3


def test_header_names_in_any_case_are_read(services: Services, watched: Watched) -> None:
    push = real_push_to_the_connected_branch(services)
    body = json.dumps(push).encode()
    headers = {
        "X-GitHub-Event": "push",
        "X-GITHUB-DELIVERY": "mixed-case",
        "x-github-hook-id": "7",
        "X-Hub-Signature-256": sign(SECRET, body),
    }
    answer = watched.handle(headers, body)
    assert answer.status == 202 and answer.body["queued"] is True


def test_a_delivery_id_reused_with_another_commit_is_a_duplicate_and_is_logged(
    services: Services, watched: Watched, caplog: pytest.LogCaptureFixture
) -> None:
    push = real_push_to_the_connected_branch(services)
    assert watched.deliver("push", push, delivery="reused").status == 202
    other = dict(push, after="4" * 40)
    with caplog.at_level(logging.WARNING, logger="slipway.gitsync.webhook"):
        again = watched.deliver("push", other, delivery="reused")
    assert again.status == 200 and again.body["duplicate"] is True
    assert [m["after"] for m in queued(services)] == [push["after"]]
    assert any("another commit" in r.getMessage() for r in caplog.records)


def test_a_signed_push_near_githubs_cap_is_queued(services: Services, watched: Watched) -> None:
    # GitHub sends up to 25 MB; a push of many commits comes close.
    push = dict(real_push_to_the_connected_branch(services), padding="x" * (24 * 1024 * 1024))
    answer = watched.deliver("push", push, delivery="big")
    assert answer.status == 202 and answer.body["queued"] is True


class SlowSecrets(CountingSecrets):
    """The real file secret store, whose reads hang while ``held`` is set (a slow Key Vault)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.held = threading.Event()
        self.entered = threading.Event()
        self.released = threading.Event()

    def get_secret(self, name: str) -> str | None:
        if self.held.is_set():
            self.entered.set()
            self.released.wait(30)
        return super().get_secret(name)


def test_a_slow_secret_store_delays_neither_signed_deliveries_nor_a_flood_for_long(
    services: Services, base_env: dict[str, str]
) -> None:
    push = real_push_to_the_connected_branch(services)
    secrets = SlowSecrets(Path(base_env["SLIPWAY_SECRETS_FILE"]))
    handler = WebhookHandler(
        secrets=secrets,
        tables=services.tables,
        queues=services.queues,
        connections=ConnectionStore(services.tables),
        journal=SyncJournal(services.tables),
    )
    watched = Watched(handler, secrets, CountingConnections(services.tables), [0.0])
    assert watched.deliver("push", push, delivery="slow-store-first").status == 202
    body = json.dumps(push).encode()
    secrets.held.set()
    # This one starts a re-read (its signature does not match) and hangs in the store.
    stuck = threading.Thread(target=watched.handle, args=(flood_request(1, body), body))
    stuck.start()
    try:
        assert secrets.entered.wait(10)
        began = datetime.now(UTC)
        assert watched.deliver("push", push, delivery="slow-store-signed").status == 202
        assert watched.handle(flood_request(4, body), body).status == 401
        assert datetime.now(UTC) - began < timedelta(seconds=2)
    finally:
        secrets.released.set()
        stuck.join()
