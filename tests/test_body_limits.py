"""Bodies over the limits (DESIGN §3, §7): API bodies over 1 MiB and webhook deliveries over 25 MiB
are a JSON 413 that says so, on every endpoint that takes a body, and nothing is stored.

tests/test_api.py covers POST /tasks/ (declared, streamed, exactly at the limit) and
tests/test_github_webhooks.py a declared webhook body over the cap; these are the rest.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.github.webhooks import WEBHOOK_BODY_LIMIT
from tests.conftest import FAST_CONFIG, Server, make_repo
from tests.test_api import assert_error
from tests.test_github_webhooks import SECRET, sign

MIB = 1024 * 1024


async def streamed(head: bytes, filler: int, tail: bytes) -> AsyncIterator[bytes]:
    """A body sent in chunks, without a Content-Length."""
    yield head
    for _ in range(filler // (256 * 1024)):
        yield b"x" * 256 * 1024
    yield tail


async def stored(server: Server) -> dict[str, Any]:
    """Everything a body could have added: tasks (with their events), repositories, deliveries."""
    store = server.app.state.services.store
    tasks = await store.list_tasks("ws-default", status=None, repo_id=None, limit=1000, before=None)
    deliveries = await store._fetchall("SELECT delivery_id FROM webhook_deliveries")
    return {
        "tasks": [t.to_json() for t in tasks],
        "events": [len(await store.events_after(t.id, 0, 10_000)) for t in tasks],
        "repos": [r.to_json() for r in await store.list_repos("ws-default")],
        "deliveries": [r["delivery_id"] for r in deliveries],
    }


@pytest.fixture
async def receiving(start_server, settings) -> Server:
    """A server that takes webhook deliveries."""
    return await start_server(settings.with_overrides(github_webhook_secret=SECRET))


@pytest.fixture
async def waiting(receiving, tmp_path) -> tuple[Server, str]:
    """A task waiting at its plan gate."""
    server = receiving
    repo_id = await server.register(make_repo(tmp_path / "repo", config=FAST_CONFIG))
    task = await server.create_task(repo_id, agent_name="good")
    await server.until_gate(task["id"], "plan")
    return server, task["id"]


def api_bodies(task_id: str) -> list[tuple[str, bytes]]:
    """(path, the body's start up to an open string) for each API endpoint with a JSON body
    that tests/test_api.py does not cover."""
    return [
        (f"/tasks/{task_id}/revise", b'{"feedback": "'),
        ("/repos/", b'{"workspace_id": "ws-default", "url": "https://example.com/'),
        ("/tasks/review/", b'{"pr_url": "https://github.com/octo/calc/pull/1'),
    ]


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "streamed"])
async def test_api_bodies_over_one_mib_are_413_and_change_nothing(waiting, declared):
    server, task_id = waiting
    before = await stored(server)
    for path, head in api_bodies(task_id):
        tail = b'"}'
        if declared:
            content: Any = head + b"x" * MIB + tail
        else:
            content = streamed(head, MIB, tail)
        response = await server.client.post(
            path, content=content, headers={"Content-Type": "application/json"}
        )
        assert ("content-length" in response.request.headers) == declared
        message = assert_error(response, 413, "body")
        assert str(MIB) in message, message
    assert await stored(server) == before
    assert (await server.task(task_id))["approval"] == "plan"


async def test_a_revise_body_of_exactly_one_mib_is_read(waiting):
    server, task_id = waiting
    raw = json.dumps({"feedback": "Use operator.mul"})
    padded = raw[:-1] + " " * (MIB - len(raw)) + "}"
    response = await server.client.post(
        f"/tasks/{task_id}/revise",
        content=padded.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["phase"] == "PLANNING"


def delivery_headers(body: bytes, event: str = "issues") -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": f"limit-{len(body)}",
        "X-Hub-Signature-256": sign(body),
    }


async def test_a_streamed_webhook_body_over_the_cap_is_413(receiving):
    server = receiving
    before = await stored(server)
    filler = WEBHOOK_BODY_LIMIT + 256 * 1024
    headers = delivery_headers(b"unknown until sent")
    response = await server.client.post(
        "/github/webhooks", content=streamed(b'{"x": "', filler, b'"}'), headers=headers
    )
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "body")
    assert await stored(server) == before


async def test_a_declared_webhook_body_over_the_cap_is_413_before_it_is_sent(receiving):
    server = receiving
    before = await stored(server)
    port = int(server.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /github/webhooks HTTP/1.1\r\nHost: nimbus\r\nX-GitHub-Event: issues\r\n"
            b"X-GitHub-Delivery: big-1\r\nX-Hub-Signature-256: sha256=00\r\n"
            b"Content-Type: application/json\r\nContent-Length: "
            + str(WEBHOOK_BODY_LIMIT + 1).encode()
            + b"\r\n\r\n{"
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = int(re.search(rb"(?i)content-length: (\d+)", head)[1])
        body = json.loads(await asyncio.wait_for(reader.readexactly(length), 10))
    finally:
        writer.close()
        await writer.wait_closed()
    assert head.startswith(b"HTTP/1.1 413 "), head
    assert "body" in body["error"]
    assert await stored(server) == before


async def test_a_webhook_body_of_exactly_the_cap_is_taken(receiving):
    server = receiving
    raw = json.dumps({"zen": "Design for failure.", "hook_id": 1})
    body = (raw[:-1] + " " * (WEBHOOK_BODY_LIMIT - len(raw)) + "}").encode()
    assert len(body) == WEBHOOK_BODY_LIMIT
    response = await server.client.post(
        "/github/webhooks", content=body, headers=delivery_headers(body, "ping")
    )
    assert (response.status_code, response.json()["zen"]) == (200, "pong")


async def test_without_a_key_a_body_over_the_limit_is_401(waiting):
    """The key is checked first: a caller without one learns that, whatever the body."""
    server, task_id = waiting
    before = await stored(server)
    for path, head in api_bodies(task_id):
        response = await server.client.post(
            path,
            content=head + b"x" * MIB + b'"}',
            headers={"Content-Type": "application/json", "X-API-Key": ""},
        )
        assert_error(response, 401, "API key")
    assert await stored(server) == before
