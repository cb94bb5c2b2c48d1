"""The web edge: routes, JSON errors, and request logging with secrets kept out."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from bot.api import repos, reviews, tasks, ws
from bot.api.openapi import build_openapi
from bot.errors import ApiError
from bot.github import webhooks

log = logging.getLogger("nimbus.http")


def _both(path: str, endpoint: Callable[..., Any], methods: list[str]) -> list[BaseRoute]:
    """The path with and without its trailing slash, each answered directly (no redirect)."""
    other = path[:-1] if path.endswith("/") else path + "/"
    return [
        Route(path, endpoint, methods=methods),
        Route(other, endpoint, methods=methods, include_in_schema=False),
    ]


async def healthz(request: Request) -> Response:
    try:
        await request.app.state.services.store.get_workspace("ws-default")
    except Exception as exc:
        return JSONResponse({"error": f"database unreachable: {exc}"}, status_code=503)
    return JSONResponse({"status": "ok"})


async def openapi(request: Request) -> Response:
    return JSONResponse(build_openapi())


async def _tasks_collection(request: Request) -> Response:
    if request.method == "POST":
        return await tasks.create_task(request)
    return await tasks.list_tasks(request)


async def _repos_collection(request: Request) -> Response:
    if request.method == "POST":
        return await repos.create_repo(request)
    return await repos.list_repos(request)


def routes() -> list[BaseRoute]:
    # /tasks/review/ comes before /tasks/{task_id}/, which would otherwise take "review" as an id.
    # Webhooks first: the busiest route, and each route before it is a regex tried per request.
    return [
        *_both("/github/webhooks", webhooks.receive, ["POST"]),
        *_both("/tasks/", _tasks_collection, ["GET", "POST"]),
        *_both("/tasks/review/", reviews.review_pr, ["POST"]),
        *_both("/tasks/{task_id}/", tasks.get_task, ["GET"]),
        *_both("/tasks/{task_id}/approve", tasks.approve, ["POST"]),
        *_both("/tasks/{task_id}/reject", tasks.reject, ["POST"]),
        *_both("/tasks/{task_id}/approve-diff", tasks.approve_diff, ["POST"]),
        *_both("/tasks/{task_id}/reject-diff", tasks.reject_diff, ["POST"]),
        *_both("/tasks/{task_id}/revise", tasks.revise, ["POST"]),
        *_both("/tasks/{task_id}/cancel", tasks.cancel_task, ["POST"]),
        *_both("/tasks/{task_id}/diff", tasks.get_diff, ["GET"]),
        WebSocketRoute("/tasks/{task_id}/ws", ws.task_events),
        WebSocketRoute("/tasks/{task_id}/ws/", ws.task_events),
        *_both("/repos/", _repos_collection, ["GET", "POST"]),
        *_both("/healthz", healthz, ["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse({"error": exc.message}, status_code=exc.status_code)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {
        404: f"no such endpoint: {request.url.path}; see /openapi.json",
        405: f"{request.method} is not allowed on {request.url.path}",
    }
    message = messages.get(exc.status_code, str(exc.detail))
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)


async def storage_error(request: Request, exc: Exception) -> Response:
    """The database cannot take the write: out of space or locked past the busy timeout."""
    text = str(exc)
    if "disk is full" in text or "disk I/O error" in text:
        log.error("%s %s: the database cannot write: %s", request.method, request.url.path, text)
        return JSONResponse(
            {"error": "the server's disk is full: nothing was stored; free space and try again"},
            status_code=503,
            headers={"Retry-After": "60"},
        )
    if "locked" in text or "busy" in text:
        log.warning("%s %s: the database is busy: %s", request.method, request.url.path, text)
        return JSONResponse(
            {"error": "the database is busy: nothing was stored; try again shortly"},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    return await internal_error(request, exc)


async def internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        {"error": "internal error; the server log has the details"}, status_code=500
    )


EXCEPTION_HANDLERS = {
    ApiError: api_error,
    HTTPException: http_error,
    sqlite3.OperationalError: storage_error,
    Exception: internal_error,
}


def redact_query(query: str) -> str:
    """The query string with any `api_key` value masked."""
    parts = []
    for part in query.split("&"):
        name, sep, _ = part.partition("=")
        # Starlette decodes names: `api%5Fkey` is an api_key too.
        key = sep and unquote_plus(name).lower() == "api_key"
        parts.append(f"{name}=***" if key else part)
    return "&".join(parts)


class RequestLog:
    """Logs each request once, with `?api_key=` masked (uvicorn's access log is off)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = {"code": 0}

        async def send_logged(message: dict[str, Any]) -> None:
            if message["type"] in ("http.response.start", "websocket.http.response.start"):
                status["code"] = message["status"]
            elif message["type"] == "websocket.accept":
                status["code"] = 101
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            query = scope.get("query_string", b"").decode("latin-1")
            path = scope["path"] + (f"?{redact_query(query)}" if query else "")
            method = scope.get("method", "WS")
            elapsed = (time.monotonic() - started) * 1000
            log.info("%s %s %s %.1fms", method, path, status["code"], elapsed)
