"""`WS /tasks/{id}/ws` with a real WebSocket client: history, `?since=`, live events, close."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from bot.keys import hash_key
from tests.conftest import API_KEY


async def follow(url: str, **kwargs) -> tuple[list[dict], int | None]:
    """Every message until the server closes the socket, and the close code."""
    messages = []
    async with websockets.connect(url, open_timeout=10, **kwargs) as ws:
        async for raw in ws:
            messages.append(json.loads(raw))
    return messages, ws.close_code


def key_header() -> dict:
    return {"additional_headers": {"X-API-Key": API_KEY}}


async def test_a_live_follower_sees_every_event_in_order_then_a_normal_close(server, remote):
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id)
    url = f"{server.ws_url}/tasks/{task['id']}/ws"
    follower = asyncio.create_task(follow(url, **key_header()))
    await server.until_gate(task["id"], "plan")
    await server.client.post(f"/tasks/{task['id']}/approve")
    await server.until_gate(task["id"], "diff")
    await server.client.post(f"/tasks/{task['id']}/approve-diff")
    messages, code = await asyncio.wait_for(follower, 60)

    assert code == 1000
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    assert all(m["task_id"] == task["id"] and m["ts"].endswith("Z") for m in messages)
    kinds = [m["event_type"] for m in messages]
    assert kinds[-1] == "done" and kinds[-2] == "phase"
    assert messages[-1]["pr_url"] is None
    # The plan and the diff come just before the phase event of the gate they open.
    plan_at, diff_at = kinds.index("plan"), kinds.index("diff")
    assert messages[plan_at + 1] == {
        **messages[plan_at + 1],
        "phase": "AWAITING_APPROVAL",
        "approval": "plan",
    }
    assert messages[diff_at + 1]["approval"] == "diff"
    assert "+def multiply(a, b):" in messages[diff_at]["diff"]
    assert messages == await server.events(task["id"])


async def test_a_late_follower_gets_the_same_history_and_since_skips_what_it_saw(server, remote):
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id, auto_approve=True)
    await server.until_ended(task["id"])
    url = f"{server.ws_url}/tasks/{task['id']}/ws"
    everything, code = await follow(url, **key_header())
    assert code == 1000
    assert everything == await server.events(task["id"])
    later, _ = await follow(f"{url}?since=5", **key_header())
    assert later == everything[5:]
    assert later[0]["seq"] == 6


async def test_many_followers_see_one_sequence(server, remote):
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id, auto_approve=True)
    url = f"{server.ws_url}/tasks/{task['id']}/ws"
    results = await asyncio.gather(*(follow(url, **key_header()) for _ in range(5)))
    assert all(code == 1000 for _, code in results)
    first = results[0][0]
    assert all(messages == first for messages, _ in results)


async def test_browsers_may_pass_the_key_in_the_query(server, remote):
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id, auto_approve=True)
    messages, code = await follow(f"{server.ws_url}/tasks/{task['id']}/ws?api_key={API_KEY}")
    assert code == 1000 and messages[-1]["event_type"] == "done"


async def test_a_cancelled_task_ends_with_an_error_event(server, remote):
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id)
    await server.until_gate(task["id"], "plan")
    await server.client.post(f"/tasks/{task['id']}/reject")
    messages, code = await follow(f"{server.ws_url}/tasks/{task['id']}/ws", **key_header())
    assert code == 1000
    assert messages[-1]["event_type"] == "error"
    assert messages[-1]["status"] == "cancelled"


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/tasks/{id}/ws", {}, 401),
        ("/tasks/{id}/ws", {"X-API-Key": "nope"}, 401),
        ("/tasks/task-unknown/ws", {"X-API-Key": API_KEY}, 404),
        ("/tasks/{id}/ws?since=abc", {"X-API-Key": API_KEY}, 422),
    ],
)
async def test_connections_that_may_not_follow_are_refused(server, remote, path, headers, status):
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id, auto_approve=True)
    url = server.ws_url + path.replace("{id}", task["id"])
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(url, additional_headers=headers, open_timeout=10):
            pass
    assert refused.value.response.status_code == status
    assert "error" in json.loads(refused.value.response.body)


async def test_another_workspaces_task_is_refused_as_unknown(server, remote):
    store = server.app.state.services.store
    other = await store.create_workspace("other")
    await store.add_api_key(other.id, hash_key("other-key-123456"), "")
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id, auto_approve=True)
    url = f"{server.ws_url}/tasks/{task['id']}/ws"
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(
            url, additional_headers={"X-API-Key": "other-key-123456"}, open_timeout=10
        ):
            pass
    assert refused.value.response.status_code == 404
