"""`POST /github/webhooks` with GitHub's own example payloads: signed, stored once, answered 202."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "github"
EXAMPLES = SHARED / "webhooks" / "payload-examples" / "api.github.com"
SECRET = "It's a Secret to Everybody"


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def delivery(event: str, example: str, **headers: str) -> tuple[bytes, dict[str, str]]:
    """An example payload as GitHub sends it, with an `installation` as App deliveries carry."""
    payload = json.loads((EXAMPLES / event / example).read_text())
    payload.setdefault(
        "installation", {"id": 4242, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNDI0Mg=="}
    )
    body = json.dumps(payload).encode()
    return body, {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body),
        "User-Agent": "GitHub-Hookshot/044aadd",
        **headers,
    }


@pytest.fixture
async def github_server(start_server, settings):
    return await start_server(settings.with_overrides(github_webhook_secret=SECRET))


async def stored(server) -> list[tuple[str, str]]:
    store = server.app.state.services.store
    rows = await store._fetchall("SELECT delivery_id, event FROM webhook_deliveries")
    return [(r["delivery_id"], r["event"]) for r in rows]


def test_the_signature_helper_matches_githubs_test_vector():
    # https://docs.github.com/webhooks/using-webhooks/validating-webhook-deliveries
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert sign(b"Hello, World!") == expected


@pytest.mark.parametrize(
    ("event", "example"),
    [
        ("issue_comment", "created.payload.json"),
        ("issues", "labeled.payload.json"),
        ("installation", "created.payload.json"),
        ("installation_repositories", "added.payload.json"),
        ("pull_request", "opened.payload.json"),
    ],
)
async def test_a_signed_delivery_is_stored_and_answered_202(github_server, event, example):
    body, headers = delivery(event, example)
    response = await github_server.client.post("/github/webhooks", content=body, headers=headers)
    assert response.status_code == 202
    assert response.json() == {
        "event": event,
        "delivery": headers["X-GitHub-Delivery"],
        "new": True,
    }
    assert await stored(github_server) == [(headers["X-GitHub-Delivery"], event)]


async def test_a_redelivery_is_a_no_op(github_server):
    body, headers = delivery("issue_comment", "created.payload.json")
    first = await github_server.client.post("/github/webhooks", content=body, headers=headers)
    again = await github_server.client.post("/github/webhooks", content=body, headers=headers)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json()["new"] is False
    assert len(await stored(github_server)) == 1


async def test_a_redelivery_of_a_failed_delivery_is_taken_again(github_server):
    body, headers = delivery("issue_comment", "created.payload.json")
    await github_server.client.post("/github/webhooks", content=body, headers=headers)
    store = github_server.app.state.services.store

    async def fail(conn):
        await conn.execute("UPDATE webhook_deliveries SET processed_us = 1, error = 'boom'")

    await store._write(fail)
    again = await github_server.client.post("/github/webhooks", content=body, headers=headers)
    assert again.json()["new"] is True
    rows = await store._fetchall("SELECT processed_us, error FROM webhook_deliveries")
    # Pending again, or already processed again by the worker: either way not the failure.
    assert [r["error"] for r in rows] == [None] and rows[0]["processed_us"] != 1


async def test_ping_is_answered(github_server):
    body, headers = delivery("ping", "payload.json")
    response = await github_server.client.post("/github/webhooks", content=body, headers=headers)
    assert response.status_code == 200
    assert response.json()["zen"] == "pong"
    assert await stored(github_server) == []


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"X-Hub-Signature-256": None}, 401),
        ({"X-Hub-Signature-256": sign(b"something else")}, 401),
        ({"X-Hub-Signature-256": sign(b"x", "wrong secret")}, 401),
        ({"X-Hub-Signature-256": "md5=abc"}, 401),
        # Only the legacy SHA-1 signature: refused, though gidgethub alone would accept it.
        ({"X-Hub-Signature-256": None, "X-Hub-Signature": "sha1=0000"}, 401),
        ({"X-GitHub-Event": None}, 400),
        ({"X-GitHub-Delivery": None}, 400),
    ],
)
async def test_bad_deliveries_are_refused_and_nothing_is_stored(github_server, change, status):
    body, headers = delivery("issue_comment", "created.payload.json")
    for name, value in change.items():
        headers.pop(name, None)
        if value is not None:
            headers[name] = value
    response = await github_server.client.post("/github/webhooks", content=body, headers=headers)
    assert response.status_code == status
    assert "error" in response.json()
    assert await stored(github_server) == []


async def test_a_body_over_githubs_cap_is_413(github_server):
    body = b"{" + b" " * (25 * 1024 * 1024) + b"}"
    headers = {
        "X-Hub-Signature-256": sign(body),
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": "d-1",
        "Content-Type": "application/json",
    }
    response = await github_server.client.post("/github/webhooks", content=body, headers=headers)
    assert response.status_code == 413
    assert "error" in response.json()
    assert await stored(github_server) == []


async def test_without_a_webhook_secret_deliveries_are_refused(server):
    body, headers = delivery("issue_comment", "created.payload.json")
    response = await server.client.post("/github/webhooks", content=body, headers=headers)
    assert response.status_code == 503
    assert "NIMBUS_GITHUB_WEBHOOK_SECRET" in response.json()["error"]


async def test_deliveries_need_no_api_key(github_server):
    body, headers = delivery("issue_comment", "created.payload.json")
    response = await github_server.client.post(
        "/github/webhooks", content=body, headers={**headers, "X-API-Key": ""}
    )
    assert response.status_code == 202


async def test_a_burst_of_deliveries_is_stored_whole(github_server):
    sent = [delivery("issue_comment", "created.payload.json") for _ in range(60)]
    answers = await asyncio.gather(
        *(github_server.client.post("/github/webhooks", content=b, headers=h) for b, h in sent)
    )
    assert [a.status_code for a in answers] == [202] * 60
    stored_ids = {d for d, _ in await stored(github_server)}
    assert stored_ids == {h["X-GitHub-Delivery"] for _, h in sent}
    # The same burst again: all redeliveries, nothing new.
    again = await asyncio.gather(
        *(github_server.client.post("/github/webhooks", content=b, headers=h) for b, h in sent)
    )
    assert [a.json()["new"] for a in again] == [False] * 60


async def test_a_backlog_is_processed_once_each(github_server):
    sent = [delivery("issue_comment", "created.payload.json") for _ in range(40)]
    await asyncio.gather(
        *(github_server.client.post("/github/webhooks", content=b, headers=h) for b, h in sent)
    )
    await until_processed(github_server, 40)
    store = github_server.app.state.services.store
    rows = await store._fetchall("SELECT processed_us, attempts, error FROM webhook_deliveries")
    assert len(rows) == 40
    assert all(r["processed_us"] and r["attempts"] == 1 and r["error"] is None for r in rows)


async def processed(server) -> int:
    store = server.app.state.services.store
    rows = await store._fetchall(
        "SELECT count(*) AS n FROM webhook_deliveries WHERE processed_us IS NOT NULL"
    )
    return rows[0]["n"]


async def until_processed(server, count: int) -> None:
    for _ in range(200):
        if await processed(server) == count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{await processed(server)} of {count} deliveries processed")


async def test_processing_waits_while_deliveries_are_being_received(github_server):
    worker = github_server.app.state.deliveries
    worker.give_way = 60.0  # longer than the test: only the end of the receipt lets it go on
    sent = [delivery("issue_comment", "created.payload.json") for _ in range(5)]
    with worker.receiving():  # a receipt in progress, as a large body being read would be
        for body, headers in sent:
            answer = await github_server.client.post(
                "/github/webhooks", content=body, headers=headers
            )
            assert answer.status_code == 202
        await asyncio.sleep(0.5)
        assert await processed(github_server) == 0
    await until_processed(github_server, 5)


async def test_a_flood_of_receipts_slows_processing_but_does_not_stop_it(github_server):
    worker = github_server.app.state.deliveries
    worker.give_way = 0.1
    sent = [delivery("issue_comment", "created.payload.json") for _ in range(20)]
    started = time.monotonic()
    with worker.receiving():  # never quiet while these are processed
        for body, headers in sent:
            answer = await github_server.client.post(
                "/github/webhooks", content=body, headers=headers
            )
            assert answer.status_code == 202
        await until_processed(github_server, 20)
    # Slowed: each delivery waited its turn in vain (a lower bound, not a speed).
    assert time.monotonic() - started >= 19 * worker.give_way
