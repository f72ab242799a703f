"""The webhook: signatures (GitHub's test vector), filtering, deduplication, and the queue."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from slipway.adapters.queues import decode_wire
from slipway.bootstrap import Services, build_services
from slipway.config import load_settings
from slipway.gitsync.connection import WEBHOOK_SECRET, Connection
from slipway.gitsync.signature import sign, verify
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


class CountingSecrets:
    """The real secret store, counting reads (Key Vault calls in Azure)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.reads = 0

    def get_secret(self, name: str) -> str | None:
        self.reads += 1
        return self.inner.get_secret(name)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_a_flood_of_bad_signatures_never_blocks_a_signed_delivery_nor_hammers_the_secret_store(
    services: Services,
) -> None:
    connect_state(services)
    drain(services)
    counting = CountingSecrets(services.webhook._secrets)
    services.webhook._secrets = counting  # type: ignore[assignment]
    body = json.dumps(octokit_example("push")).encode()
    answers = []
    for n in range(200):
        headers = {"x-github-event": "push", "x-github-delivery": f"flood-{n}"}
        if n % 2:
            headers["x-hub-signature-256"] = sign("guessed", body)
        answers.append(services.webhook.handle(headers, body).status)
    assert set(answers[:60]) == {401} and set(answers[60:]) == {429}
    assert counting.reads <= 3, f"the flood read the secret store {counting.reads} times"

    push = dict(octokit_example("push"), ref="refs/heads/main")
    assert deliver(services, "push", push, delivery="after-the-flood").status == 202
    assert deliver(services, "ping", octokit_example("ping"), delivery="ping-after-flood").status == 200
    assert [m["delivery"] for m in queued(services)] == ["after-the-flood"]


def test_a_secret_changed_during_a_flood_is_picked_up_within_seconds(services: Services) -> None:
    now = [1000.0]
    services.webhook._clock = lambda: now[0]  # type: ignore[attr-defined]
    connect_state(services)
    drain(services)
    push = dict(octokit_example("push"), ref="refs/heads/main")
    assert deliver(services, "push", push, delivery="old-secret").status == 202
    services.secrets.set_secret(WEBHOOK_SECRET, "the new secret")  # a reconnect
    for n in range(100):
        body = b"{}"
        services.webhook.handle(
            {"x-github-event": "push", "x-github-delivery": f"f-{n}", "x-hub-signature-256": sign("x", body)},
            body,
        )
    now[0] += 6
    assert deliver(services, "push", push, delivery="new-secret", secret="the new secret").status == 202
