"""`nimbus github register`: create Nimbus's GitHub App from its manifest and save its keys.

https://docs.github.com/apps/sharing-github-apps/registering-a-github-app-from-a-manifest
A page served on this machine posts the manifest to GitHub; the person confirms there; GitHub
sends their browser back here with a one-time code, exchanged for the App's id, key and secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import ipaddress
import json
import os
import re
import secrets
import shlex
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx2
import uvicorn
import yaml
from gidgethub.httpx import GitHubAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from bot.errors import ConfigError, NimbusError
from bot.github.client import USER_AGENT

DEFAULT_LISTEN = "127.0.0.1:8765"
DEFAULT_OUT = "nimbus-github-app.env"
# GitHub keeps a manifest code for an hour; waiting longer cannot succeed.
DEFAULT_TIMEOUT = 3600.0
CALLBACK_PATH = "/github/manifest"
# The pages after GitHub's redirect have the code in their URL: never cached, never a Referer.
PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
_CODE = re.compile(r"[A-Za-z0-9_-]{1,200}")
_ORG = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")


class RefusedCallback(Exception):
    """A request at the callback path that is not GitHub's redirect for this registration."""


def manifest_path() -> Path:
    """github_app.yml as packaged (a link to the repository root's copy in a checkout)."""
    return Path(__file__).resolve().parent / "github_app.yml"


def load_manifest(path: Path) -> dict[str, Any]:
    """The manifest template, read from `path`."""
    try:
        data = yaml.safe_load(path.read_text("utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"cannot read the App manifest {path} ({exc.strerror}): pass --manifest PATH to a"
            " copy of github_app.yml from the Nimbus repository"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"the App manifest {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or "hook_attributes" not in data:
        raise ConfigError(f"the App manifest {path} has no hook_attributes: is it github_app.yml?")
    return data


def public_url(url: str) -> str:
    """`--url` checked: http(s), a host, no query; without a trailing slash."""
    parts = urlsplit(url.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname or parts.query:
        raise ConfigError(
            f"--url {url!r} is not a public base URL such as https://nimbus.example.com:"
            " GitHub sends webhooks to <url>/github/webhooks"
        )
    return url.strip().rstrip("/")


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::1]:PORT` for IPv6) as a pair; the host must be one a browser can reach."""
    host, _, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"--listen {value!r} is not HOST:PORT, e.g. {DEFAULT_LISTEN}")
    try:
        unspecified = ipaddress.ip_address(host).is_unspecified
    except ValueError:
        unspecified = False
    if unspecified:
        raise ConfigError(
            f"--listen {value!r}: GitHub sends your browser back to this address, so name one it"
            " can reach (127.0.0.1 and an SSH tunnel, `ssh -L 8765:127.0.0.1:8765 host`, work)"
        )
    return host, int(port)


def authority(host: str, port: int) -> str:
    """`host:port` as it appears in a URL and in the Host header."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def build_manifest(
    template: Mapping[str, Any], *, url: str, local: str, name: str | None = None
) -> dict[str, Any]:
    """The manifest to post: NIMBUS_URL replaced by `url`, the redirect to the local server."""
    text = json.dumps(template).replace("NIMBUS_URL", url)
    manifest: dict[str, Any] = json.loads(text)
    # The person's browser follows the redirect, so it comes back to this command, not Nimbus.
    manifest["redirect_url"] = local + CALLBACK_PATH
    if name:
        manifest["name"] = name
    return manifest


def new_app_url(github_url: str, org: str | None, state: str) -> str:
    """GitHub's page that takes a manifest, for the person's account or an organization."""
    base = github_url.rstrip("/")
    if org is not None:
        if not _ORG.fullmatch(org):
            raise ConfigError(f"--org {org!r} is not a GitHub organization name")
        base += f"/organizations/{org}"
    return f"{base}/settings/apps/new?state={quote(state, safe='')}"


def page(title: str, body: str) -> str:
    """A small HTML page; `body` is HTML already escaped."""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def form_page(manifest: Mapping[str, Any], action: str) -> str:
    """The page that posts the manifest to GitHub by itself (or with one click, without JS)."""
    hook = html.escape(str(manifest["hook_attributes"]["url"]))
    return page(
        "Create Nimbus's GitHub App",
        f"<form id='manifest-form' method='post' action='{html.escape(action)}'>"
        f"<input type='hidden' name='manifest' value='{html.escape(json.dumps(manifest))}'>"
        f"<p>GitHub will ask you to confirm the App's name; it will send webhooks to"
        f" <code>{hook}</code>.</p>"
        "<button type='submit'>Continue on GitHub</button></form>"
        "<script>document.getElementById('manifest-form').submit()</script>",
    )


def callback_code(query: Mapping[str, str], state: str) -> str:
    """The code of GitHub's redirect, once its state is this registration's."""
    if not secrets.compare_digest(query.get("state", "").encode(), state.encode()):
        raise RefusedCallback("the state does not match: this link is not from this registration")
    code = query.get("code", "")
    if not _CODE.fullmatch(code):
        raise RefusedCallback("the redirect has no valid code")
    return code


def check_outputs(out: Path) -> None:
    """Refuse, before anything is created on GitHub, to overwrite keys or write nowhere."""
    pem = out.with_suffix(".pem")  # next to the settings file
    if pem == out:
        raise ConfigError(f"--out {out} would be the key file itself: name a .env file")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: the folder {out.parent} does not exist")
    for path in (out, pem):
        if path.exists() or path.is_symlink():
            raise ConfigError(
                f"{path} exists and may hold another App's keys: move it away or pass --out"
            )


def _env_value(value: object) -> str:
    text = str(value)
    # Plain where possible, so the file also suits systemd's EnvironmentFile and docker --env-file.
    return text if re.fullmatch(r"[\w@%+=:,./-]+", text) else shlex.quote(text)


def settings_text(app: Mapping[str, Any], pem: Path, api_url: str) -> str:
    """The settings file: what Nimbus reads, then the rest of the App for reference."""
    rows = [
        "# Nimbus's GitHub App, made by `nimbus github register`. Keep this file secret.",
        f"NIMBUS_GITHUB_APP_ID={_env_value(app['id'])}",
        f"NIMBUS_GITHUB_PRIVATE_KEY_PATH={_env_value(pem.resolve())}",
        f"NIMBUS_GITHUB_WEBHOOK_SECRET={_env_value(app['webhook_secret'])}",
        f"NIMBUS_GITHUB_API_URL={_env_value(api_url.rstrip('/'))}",
        "# Not read by Nimbus: the App's OAuth client and where it lives on GitHub.",
    ]
    for name, key in (("CLIENT_ID", "client_id"), ("CLIENT_SECRET", "client_secret"),
                      ("APP_SLUG", "slug"), ("APP_URL", "html_url")):  # fmt: skip
        if app.get(key):
            rows.append(f"NIMBUS_GITHUB_{name}={_env_value(app[key])}")
    return "\n".join(rows) + "\n"


def _write_private(path: Path, text: str) -> None:
    # Created 0600 in one step (never readable by others, even briefly); O_EXCL also refuses a
    # file or symlink that appeared since check_outputs.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # exactly 0600 whatever the umask
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def write_credentials(out: Path, app: Mapping[str, Any], api_url: str) -> Path:
    """Write the key and the settings file, both mode 0600; returns the key's path."""
    missing = [key for key in ("id", "pem", "webhook_secret") if not app.get(key)]
    if missing:
        raise ConfigError(f"GitHub's answer lacks {', '.join(missing)}: register again")
    pem = out.with_suffix(".pem")  # next to the settings file
    _write_private(pem, str(app["pem"]))
    _write_private(out, settings_text(app, pem, api_url))
    return pem


@dataclass(frozen=True)
class Registration:
    """One run of the flow: what was asked of GitHub and where the answer goes."""

    manifest: dict[str, Any]
    state: str
    action: str
    local: str
    out: Path
    api_url: str


def registration(
    template: Mapping[str, Any], *, url: str, local: str, out: Path, github_url: str,
    api_url: str, org: str | None = None, name: str | None = None,
) -> Registration:  # fmt: skip
    """A registration of the manifest with a fresh random state."""
    state = secrets.token_urlsafe(24)
    manifest = build_manifest(template, url=public_url(url), local=local, name=name)
    return Registration(manifest, state, new_app_url(github_url, org, state), local, out, api_url)


async def exchange(api_url: str, code: str) -> dict[str, Any]:
    """Trade the redirect's code for the App: id, pem, webhook_secret, client id and secret."""
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(30.0, connect=10.0)) as http:
        github = GitHubAPI(http, USER_AGENT, base_url=api_url.rstrip("/"))
        # No authentication: the code itself is the credential, good once within the hour.
        answer = await github.post(f"/app-manifests/{quote(code, safe='')}/conversions", data=b"")
    if not isinstance(answer, dict):
        raise ValueError(f"GitHub's answer is not an App: {str(answer)[:100]}")
    return answer


def _app(
    reg: Registration,
    done: asyncio.Future[tuple[dict[str, Any], Path]],
    ready: Callable[[], None],
) -> Starlette:
    """The local pages: `/` posts the manifest to GitHub, CALLBACK_PATH takes the redirect."""
    host = urlsplit(reg.local).netloc
    claimed = False

    def answer(status: int, title: str, body: str) -> HTMLResponse:
        return HTMLResponse(page(title, body), status, PAGE_HEADERS)

    def foreign(request: Request) -> bool:
        # A page served under another name (DNS rebinding) could read the state.
        return request.headers.get("host") != host

    async def form(request: Request) -> Response:
        if foreign(request):
            return answer(403, "Wrong address", f"<p>Open {html.escape(reg.local)}/</p>")
        # With a Referer (its URL holds nothing secret): an `Origin: null` might put GitHub off.
        return HTMLResponse(
            form_page(reg.manifest, reg.action), headers={"Cache-Control": "no-store"}
        )

    async def callback(request: Request) -> Response:
        nonlocal claimed
        try:
            if foreign(request):
                raise RefusedCallback(f"this page is served only as {reg.local}")
            code = callback_code(request.query_params, reg.state)
        except RefusedCallback as exc:
            return answer(400, "Not this registration", f"<p>{html.escape(str(exc))}.</p>")
        if claimed:
            return answer(409, "Already done", "<p>This registration has finished.</p>")
        claimed = True
        try:
            app = await exchange(reg.api_url, code)
        except Exception as exc:
            message = (
                f"GitHub did not turn the code into an App ({type(exc).__name__}: {exc}); a code"
                " works once and for an hour: run `nimbus github register` again"
            )
            done.set_exception(NimbusError(message))
            return answer(502, "Registration failed", f"<p>{html.escape(message)}</p>")
        try:
            pem = write_credentials(reg.out, app, reg.api_url)
        except (OSError, ConfigError) as exc:
            message = (
                f"the App {app.get('html_url', app.get('id'))} exists but its keys could not be"
                f" saved ({exc}): generate a private key in its settings, or delete it and"
                " register again"
            )
            done.set_exception(NimbusError(message))
            return answer(500, "Keys not saved", f"<p>{html.escape(message)}</p>")
        done.set_result((app, pem))
        install = html.escape(f"{app.get('html_url', '')}/installations/new")
        return answer(
            200,
            "Nimbus's GitHub App is ready",
            f"<p>Its settings are in <code>{html.escape(str(reg.out))}</code>. Next,"
            f" <a href='{install}'>install it on your repositories</a>.</p>",
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # uvicorn has taken over Ctrl-C by now, and the socket is listening.
        ready()
        yield

    routes = [Route("/", form), Route(CALLBACK_PATH, callback)]
    return Starlette(routes=routes, lifespan=lifespan)


async def serve(
    reg: Registration, sock: socket.socket, timeout: float, ready: Callable[[], None]
) -> tuple[dict[str, Any], Path]:
    """Serve the pages on `sock` until GitHub's redirect is handled; the App and its key file.

    `ready` is called once the pages are served (and Ctrl-C stops the server cleanly).
    """
    done: asyncio.Future[tuple[dict[str, Any], Path]] = asyncio.get_running_loop().create_future()
    config = uvicorn.Config(
        _app(reg, done, ready), log_level="warning", access_log=False, lifespan="on",
        timeout_graceful_shutdown=5,
    )  # fmt: skip
    server = uvicorn.Server(config)
    job = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await asyncio.wait({done, job}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        interrupted = job.done()  # uvicorn stops by itself on Ctrl-C or SIGTERM
    finally:
        server.should_exit = True
        await job
    if done.done():  # also when GitHub answered while the server was stopping
        return done.result()
    if interrupted:
        raise NimbusError("stopped before GitHub's answer came: no App was saved")
    raise NimbusError(
        f"no answer from GitHub within {timeout:g} s: run `nimbus github register` again"
    )
