"""The `nimbus` command: serve, manage workspaces and API keys, register and try the GitHub App."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import shlex
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import uvicorn

from bot.api.auth import DEFAULT_WORKSPACE
from bot.errors import ConfigError, NimbusError
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
    # What start-up made (modules, the app) lives as long as the process: the collector need
    # not walk it again. Each full collection did, for 15-20 ms with every request waiting.
    gc.freeze()
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


def _next_steps(app: Mapping[str, Any], out: Path, pem: Path, hook_url: str) -> str:
    """What to do once the App exists; names files, never their secrets."""
    html_url = app.get("html_url") or f"https://github.com/apps/{app.get('slug', '')}"
    return (
        f"Created the GitHub App {app.get('slug') or app.get('name')} (id {app['id']}).\n"
        f"Wrote {out} and {pem} (mode 0600; keep them secret).\n\n"
        f"1. Install the App on your repositories: {html_url}/installations/new\n"
        f"2. Start Nimbus with these settings, where GitHub reaches it at {hook_url}\n"
        "   (directly, or through a reverse proxy or tunnel):\n"
        f"     set -a; . {shlex.quote(str(out))}; set +a; nimbus serve\n"
    )


def _github_register(args: argparse.Namespace) -> int:
    from bot.github import register

    out = Path(args.out)
    try:
        template = register.load_manifest(args.manifest or register.manifest_path())
        host, port = register.parse_listen(args.listen)
        register.check_outputs(out)
        try:
            sock = _listen(host, port)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {args.listen}: {exc.strerror}") from None
        local = "http://" + register.authority(host, sock.getsockname()[1])
        reg = register.registration(
            template, url=args.url, local=local, out=out, github_url=args.github_url,
            api_url=args.api_url, org=args.org, name=args.name,
        )  # fmt: skip
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def ready() -> None:
        print(f"Open {local}/ in your browser to create the App on GitHub", flush=True)
        print(f"(waiting up to {args.timeout / 60:g} minutes; Ctrl-C gives up)", flush=True)

    try:
        app, pem = asyncio.run(register.serve(reg, sock, args.timeout, ready))
    except NimbusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # before the server took over Ctrl-C
        print("error: interrupted: no App was saved", file=sys.stderr)
        return 1
    print(_next_steps(app, out, pem, reg.manifest["hook_attributes"]["url"]), end="")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from bot.github.replay import replay

    secret = args.secret or os.environ.get("NIMBUS_GITHUB_WEBHOOK_SECRET", "").strip()
    try:
        answer = replay(args.url, args.event, Path(args.payload), secret, args.delivery)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NimbusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{answer.status_code} {answer.reason_phrase}")
    print(answer.text)
    if not answer.is_success:
        print(f"error: Nimbus answered {answer.status_code}: {answer.text}", file=sys.stderr)
        return 1
    return 0


def _add_github_commands(commands: argparse._SubParsersAction) -> None:
    from bot.github.register import DEFAULT_LISTEN, DEFAULT_OUT, DEFAULT_TIMEOUT

    github = commands.add_parser("github", help="the GitHub App")
    github_commands = github.add_subparsers(dest="action", required=True)
    reg = github_commands.add_parser(
        "register", help="create Nimbus's GitHub App from its manifest, in your browser"
    )
    reg.add_argument("--url", required=True, help="where GitHub reaches this Nimbus (https://…)")
    reg.add_argument("--org", help="create the App for this organization, not your account")
    reg.add_argument("--name", help="the App's name (unique on GitHub; default from the manifest)")
    reg.add_argument("--out", default=DEFAULT_OUT, help=f"settings file (default {DEFAULT_OUT})")
    reg.add_argument(
        "--listen", default=DEFAULT_LISTEN, help=f"local page, HOST:PORT (default {DEFAULT_LISTEN})"
    )
    reg.add_argument(
        "--github-url", default="https://github.com", help="GitHub (Enterprise: your host)"
    )
    reg.add_argument(
        "--api-url", default="https://api.github.com", help="its API (Enterprise: …/api/v3)"
    )
    reg.add_argument("--manifest", type=Path, help="the manifest (default: github_app.yml)")
    reg.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to wait (default 3600)"
    )
    replay = commands.add_parser("replay", help="send a payload to Nimbus as a signed delivery")
    replay.add_argument("event", help="the X-GitHub-Event, e.g. issues or issue_comment")
    replay.add_argument("payload", help="a JSON file, as GitHub would deliver it")
    replay.add_argument("--url", default="http://127.0.0.1:8000", help="Nimbus's base URL")
    replay.add_argument("--secret", help="webhook secret (default NIMBUS_GITHUB_WEBHOOK_SECRET)")
    replay.add_argument("--delivery", help="the X-GitHub-Delivery id (default: a new UUID)")


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
    _add_github_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # These two need no settings: a malformed NIMBUS_* must not stop them.
    if args.command == "github":
        return _github_register(args)
    if args.command == "replay":
        return _replay(args)
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
