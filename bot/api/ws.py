"""`WS /tasks/{id}/ws`: every event of a task in order, then live ones, then a normal close."""

from __future__ import annotations

import asyncio
import contextlib

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from bot.api.auth import own_task, workspace_of
from bot.errors import ApiError, Unprocessable
from phases.context import Services

# How often a follower looks at the store when no event came from this process.
_POLL_SECONDS = 1.0


async def task_events(websocket: WebSocket) -> None:
    try:
        workspace = await workspace_of(websocket, allow_query=True)
        task = await own_task(websocket, workspace)
        since = _since(websocket.query_params.get("since"))
    except ApiError as exc:
        # Refused before the upgrade, with a real status and a JSON body.
        await websocket.send_denial_response(
            JSONResponse({"error": exc.message}, status_code=exc.status_code)
        )
        return
    services: Services = websocket.app.state.services
    await websocket.accept()
    # Notices a client that goes away while the task is quiet.
    gone = asyncio.create_task(_until_disconnect(websocket))
    try:
        seq = since
        while not gone.done():
            for event in await services.store.events_after(task.id, seq):
                await websocket.send_json(event.to_json())
                seq = event.seq
                if event.is_final:
                    await websocket.close(1000)
                    return
            waiter = asyncio.create_task(services.events.wait(task.id, _POLL_SECONDS))
            await asyncio.wait({waiter, gone}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        gone.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gone


async def _until_disconnect(websocket: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return


def _since(value: str | None) -> int:
    if value is None:
        return 0
    # At most SQLite's largest integer: a longer run of digits is no seq at all.
    if not (value.isascii() and value.isdigit()) or len(value) > 19 or int(value) > 2**63 - 1:
        raise Unprocessable("parameter 'since' must be an event seq (a whole number)")
    return int(value)
