"""The `nimbus` command: serve, and manage workspaces and API keys."""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence

import uvicorn

from bot.api.auth import DEFAULT_WORKSPACE
from bot.errors import ConfigError
from bot.keys import generate_key, hash_key
from bot.settings import Settings
from bot.store.sqlite import SqliteStore


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when the
    # listening socket names its protocol, and without it each response waits ~40 ms for an ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(settings: Settings) -> int:
    from app import create_app

    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    app = create_app(settings)
    # Bound here rather than by uvicorn, so that port 0 can be announced once it is known.
    try:
        sock = _listen(settings.host, settings.port)
    except OSError as exc:
        print(
            f"error: cannot listen on {settings.host}:{settings.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 2
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app,
        log_level=settings.log_level,
        access_log=False,  # Nimbus logs requests itself, with ?api_key= masked.
        timeout_graceful_shutdown=10,
        ws="websockets-sansio",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    print(f"Nimbus listening on http://{host}:{port}", flush=True)
    asyncio.run(server.serve(sockets=[sock]))
    return 0


async def _with_store(settings: Settings, work: Callable[[SqliteStore], Awaitable[int]]) -> int:
    store = SqliteStore(settings.db_path)
    await store.open()
    try:
        await store.ensure_workspace(DEFAULT_WORKSPACE, "default")
        return await work(store)
    finally:
        await store.close()


async def _workspace_create(store: SqliteStore, name: str) -> int:
    workspace = await store.create_workspace(name)
    print(workspace.id)
    return 0


async def _workspace_list(store: SqliteStore) -> int:
    for workspace in await store.list_workspaces():
        print(f"{workspace.id}\t{workspace.name}")
    return 0


async def _key_create(store: SqliteStore, workspace_id: str, label: str) -> int:
    if await store.get_workspace(workspace_id) is None:
        print(
            f"error: no workspace {workspace_id!r}; create one with `nimbus workspace create`",
            file=sys.stderr,
        )
        return 2
    key = generate_key()
    await store.add_api_key(workspace_id, hash_key(key), label)
    print(key)
    print(f"(an API key for {workspace_id}; it is shown only this once)", file=sys.stderr)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nimbus", description="A self-hosted coding agent.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="run the API server and the worker")
    run.add_argument("--host", help="address to listen on (NIMBUS_HOST, default 127.0.0.1)")
    run.add_argument("--port", type=int, help="port (NIMBUS_PORT, default 8000; 0 picks one)")
    workspace = commands.add_parser("workspace", help="manage workspaces")
    ws_commands = workspace.add_subparsers(dest="action", required=True)
    create = ws_commands.add_parser("create", help="create a workspace and print its id")
    create.add_argument("--name", default="workspace")
    ws_commands.add_parser("list", help="list workspaces")
    key = commands.add_parser("key", help="manage API keys")
    key_commands = key.add_subparsers(dest="action", required=True)
    key_create = key_commands.add_parser("create", help="create an API key and print it once")
    key_create.add_argument("--workspace", required=True, help="the workspace id, ws-…")
    key_create.add_argument("--label", default="", help="a note to tell keys apart")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
        try:
            return serve(settings.with_overrides(**overrides))
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.command == "workspace" and args.action == "create":
        return asyncio.run(_with_store(settings, lambda s: _workspace_create(s, args.name)))
    if args.command == "workspace":
        return asyncio.run(_with_store(settings, _workspace_list))
    return asyncio.run(_with_store(settings, lambda s: _key_create(s, args.workspace, args.label)))


if __name__ == "__main__":
    sys.exit(main())
