"""`nimbus github register` (the App manifest flow) and `nimbus replay`, run as real processes."""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from bot.errors import ConfigError
from bot.github import register
from bot.github.replay import sign
from bot.settings import Settings
from tests.fakes.github import FakeGitHub, running
from tests.test_cli import ROOT, clean_env, nimbus, read_line

SHARED = Path(__file__).resolve().parents[2] / "shared" / "github"
ISSUE_OPENED = SHARED / "webhooks/payload-examples/api.github.com/issues/opened.payload.json"
PUBLIC = "https://nimbus.example.com"
LOCAL = "http://127.0.0.1:8765"
SECRET = "replay-secret-0123456789"


def template() -> dict:
    return register.load_manifest(register.manifest_path())


def form_fields(page: str) -> tuple[str, dict]:
    """The form's action and the manifest it posts, as a browser would read them."""
    action = re.search(r"<form [^>]*action='([^']*)'", page)
    manifest = re.search(r"<input type='hidden' name='manifest' value='([^']*)'>", page)
    assert action and manifest, page
    return html.unescape(action[1]), json.loads(html.unescape(manifest[1]))


def read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: v for k, v in pairs if not k.startswith("#")}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_manifest_sends_webhooks_to_the_url_and_the_browser_back_here():
    made = register.build_manifest(template(), url=PUBLIC, local=LOCAL, name="Nimbus for ACME")
    assert made["hook_attributes"] == {"url": f"{PUBLIC}/github/webhooks", "active": True}
    assert made["redirect_url"] == f"{LOCAL}/github/manifest"
    assert made["name"] == "Nimbus for ACME"
    assert made["default_permissions"]["contents"] == "write"
    assert "NIMBUS_URL" not in json.dumps(made)
    assert register.build_manifest(template(), url=PUBLIC, local=LOCAL)["name"] == "Nimbus"


def test_a_missing_manifest_names_where_it_was_looked_for(tmp_path):
    with pytest.raises(ConfigError, match=f"{tmp_path / 'nope.yml'}.*--manifest"):
        register.load_manifest(tmp_path / "nope.yml")


def test_the_app_is_made_for_the_account_or_an_organization():
    assert register.new_app_url("https://github.com/", None, "s1") == (
        "https://github.com/settings/apps/new?state=s1"
    )
    assert register.new_app_url("https://ghe.example", "acme-corp", "a/b") == (
        "https://ghe.example/organizations/acme-corp/settings/apps/new?state=a%2Fb"
    )
    with pytest.raises(ConfigError, match="organization"):
        register.new_app_url("https://github.com", "../evil", "s1")


@pytest.mark.parametrize("url", ["nimbus.example.com", "ftp://x", "https://", "https://x/?a=1"])
def test_a_url_github_cannot_post_to_is_refused(url):
    with pytest.raises(ConfigError, match="--url"):
        register.public_url(url)


@pytest.mark.parametrize("listen", ["8765", "host:port", "0.0.0.0:8765", "[::]:1", ":1"])
def test_a_listen_address_a_browser_cannot_reach_is_refused(listen):
    with pytest.raises(ConfigError, match="--listen"):
        register.parse_listen(listen)


def test_listen_takes_ipv4_and_ipv6():
    assert register.parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert register.parse_listen("[::1]:8765") == ("::1", 8765)
    assert register.authority("::1", 8765) == "[::1]:8765"


def test_the_form_page_posts_the_manifest_unchanged_whatever_its_name():
    manifest = register.build_manifest(template(), url=PUBLIC, local=LOCAL, name="</script>'\"&")
    action = register.new_app_url("https://github.com", None, "the-state")
    page = register.form_page(manifest, action)
    assert form_fields(page) == (action, manifest)
    assert "</script>'" not in page
    assert "document.getElementById('manifest-form').submit()" in page


def test_the_callback_needs_this_registrations_state_and_a_code():
    assert register.callback_code({"code": "abc_1-2", "state": "s"}, "s") == "abc_1-2"
    for query in ({"code": "abc"}, {"code": "abc", "state": "t"}, {"state": "s"},
                  {"code": "../app", "state": "s"}):  # fmt: skip
        with pytest.raises(register.RefusedCallback):
            register.callback_code(query, "s")


def test_the_keys_are_written_0600_whatever_the_umask_and_never_over_others(tmp_path):
    out = tmp_path / "app.env"
    app = {"id": 7, "pem": "-----BEGIN RSA PRIVATE KEY-----\n…", "webhook_secret": "w s",
           "client_id": "Iv1.x", "client_secret": "c", "slug": "nimbus-x",
           "html_url": "https://github.com/apps/nimbus-x"}  # fmt: skip
    previous = os.umask(0)
    try:
        pem = register.write_credentials(out, app, "https://api.github.com/")
    finally:
        os.umask(previous)
    assert pem == tmp_path / "app.pem" and pem.read_text() == app["pem"]
    assert (mode(out), mode(pem)) == (0o600, 0o600)
    env = read_env(out)
    assert env["NIMBUS_GITHUB_APP_ID"] == "7"
    assert env["NIMBUS_GITHUB_PRIVATE_KEY_PATH"] == str(pem.resolve())
    assert env["NIMBUS_GITHUB_WEBHOOK_SECRET"] == "'w s'"
    assert env["NIMBUS_GITHUB_API_URL"] == "https://api.github.com"
    assert env["NIMBUS_GITHUB_APP_SLUG"] == "nimbus-x"
    with pytest.raises(ConfigError, match="exists"):
        register.check_outputs(out)
    with pytest.raises(FileExistsError):
        register.write_credentials(out, app, "https://api.github.com")
    with pytest.raises(ConfigError, match="key file"):
        register.check_outputs(tmp_path / "x.pem")


def test_nimbus_reads_the_settings_file_it_writes(tmp_path):
    out = tmp_path / "app.env"
    app = {"id": 42, "pem": "PEM TEXT\n", "webhook_secret": "abc123"}
    register.write_credentials(out, app, "https://ghe.example/api/v3")
    settings = Settings.from_env(read_env(out))
    assert settings.github_app_id == "42"
    assert settings.github_private_key == "PEM TEXT\n"
    assert settings.github_webhook_secret == "abc123"
    assert settings.github_api_url == "https://ghe.example/api/v3"


class Register:
    """`nimbus github register` as its own process group, with its printed local URL."""

    def __init__(self, process: asyncio.subprocess.Process, local: str) -> None:
        self.process = process
        self.local = local

    async def finish(self) -> tuple[int, str, str]:
        out, err = await asyncio.wait_for(self.process.communicate(), 15)
        assert self.process.returncode is not None
        return self.process.returncode, out.decode(), err.decode()


@pytest.fixture
async def start_register(tmp_path: Path) -> AsyncIterator:
    started: list[asyncio.subprocess.Process] = []

    async def start(*args: str) -> Register:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "github", "register", "--url", PUBLIC,
            "--listen", "127.0.0.1:0", "--out", str(tmp_path / "app.env"), *args,
            cwd=ROOT, env=clean_env(tmp_path / "data"), start_new_session=True,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        started.append(process)
        line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        found = re.fullmatch(r"Open (http://127\.0\.0\.1:\d+)/ in your browser.*\n", line)
        assert found, line
        return Register(process, found[1])

    yield start
    for process in started:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await asyncio.wait_for(process.wait(), 10)


async def test_register_creates_the_app_through_the_browser_flow(tmp_path, start_register):
    async with running(FakeGitHub()) as github, httpx2.AsyncClient(timeout=10) as browser:
        run = await start_register("--api-url", github.url, "--github-url",
                                   "https://github.example", "--org", "octo-org")  # fmt: skip
        form = await browser.get(run.local + "/")
        assert form.status_code == 200 and form.headers["cache-control"] == "no-store"
        assert form.text.count("<html>") == 1
        action, manifest = form_fields(form.text)
        assert action.startswith("https://github.example/organizations/octo-org/settings/apps/new?")
        state = parse_qs(urlsplit(action).query)["state"][0]
        assert manifest["hook_attributes"]["url"] == f"{PUBLIC}/github/webhooks"
        assert manifest["redirect_url"] == run.local + "/github/manifest"

        # Someone else's link, or this page under another name, is refused; the flow waits on.
        generated = github.add_manifest_code("code-1")
        stray = await browser.get(manifest["redirect_url"], params={"code": "code-1", "state": "x"})
        assert stray.status_code == 400 and "state" in stray.text
        rebound = await browser.get(run.local + "/", headers={"host": "evil.example"})
        assert rebound.status_code == 403 and state not in rebound.text
        assert run.process.returncode is None and github.manifests

        good = {"code": "code-1", "state": state}
        back = await browser.get(manifest["redirect_url"], params=good)
        assert back.status_code == 200, back.text
        assert "https://github.example/apps/nimbus-test/installations/new" in back.text
        code, out, err = await run.finish()
    assert code == 0, err
    assert "https://github.example/apps/nimbus-test/installations/new" in out
    assert "nimbus serve" in out
    for secret in (github.private_key_pem, generated["webhook_secret"], generated["client_secret"]):
        assert secret.strip() not in out + err + back.text
    env_file, pem = tmp_path / "app.env", tmp_path / "app.pem"
    assert (mode(env_file), mode(pem)) == (0o600, 0o600)
    assert pem.read_text() == github.private_key_pem
    env = read_env(env_file)
    assert env["NIMBUS_GITHUB_APP_ID"] == str(github.app_id)
    assert env["NIMBUS_GITHUB_WEBHOOK_SECRET"] == generated["webhook_secret"]
    assert env["NIMBUS_GITHUB_PRIVATE_KEY_PATH"] == str(pem)
    assert env["NIMBUS_GITHUB_API_URL"] == github.url
    assert github.problems == []


async def test_a_code_github_does_not_know_ends_the_flow_saying_to_start_again(
    tmp_path, start_register
):
    async with running(FakeGitHub()) as github, httpx2.AsyncClient(timeout=10) as browser:
        run = await start_register("--api-url", github.url)
        action, manifest = form_fields((await browser.get(run.local + "/")).text)
        state = parse_qs(urlsplit(action).query)["state"][0]
        back = await browser.get(manifest["redirect_url"], params={"code": "stale", "state": state})
        assert back.status_code == 502
        code, _, err = await run.finish()
    assert code == 1 and "nimbus github register` again" in err
    assert not (tmp_path / "app.env").exists() and not (tmp_path / "app.pem").exists()


async def test_register_gives_up_after_its_timeout(tmp_path, start_register):
    run = await start_register("--timeout", "0.3")
    code, _, err = await run.finish()
    assert code == 1 and "no answer from GitHub within 0.3 s" in err
    assert list(tmp_path.glob("app.*")) == []


async def test_ctrl_c_stops_register_saying_no_app_was_saved(tmp_path, start_register):
    run = await start_register()
    os.killpg(run.process.pid, signal.SIGINT)
    code, _, err = await run.finish()
    assert code == 1 and "no App was saved" in err and "Traceback" not in err
    assert list(tmp_path.glob("app.*")) == []


def test_register_will_not_overwrite_earlier_keys(tmp_path):
    (tmp_path / "app.pem").write_text("an older App's key")
    done = nimbus("github", "register", "--url", PUBLIC, "--listen", "127.0.0.1:0",
                  "--out", str(tmp_path / "app.env"), env=clean_env(tmp_path / "data"))  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert "app.pem exists" in done.stderr and "--out" in done.stderr
    assert (tmp_path / "app.pem").read_text() == "an older App's key"


def test_the_signature_is_githubs():
    # The test vector of https://docs.github.com/webhooks/using-webhooks/validating-webhook-deliveries
    assert sign(b"Hello, World!", "It's a Secret to Everybody") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


@pytest.fixture
def serve_github(tmp_path: Path) -> Iterator[str]:
    """`nimbus serve --port 0` taking deliveries signed with SECRET; yields its URL."""
    env = clean_env(tmp_path / "data", NIMBUS_GITHUB_WEBHOOK_SECRET=SECRET,
                    NIMBUS_LOG_LEVEL="critical")  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve", "--port", "0"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        first = read_line(process.stdout, time.monotonic() + 20)
        found = re.fullmatch(r"Nimbus listening on (http://127\.0\.0\.1:\d+)\n", first)
        assert found, first
        yield found[1]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
        process.stdout.close()


def replay(*args: str, env: dict[str, str]) -> tuple[int, str, dict | None, str]:
    """Run `nimbus replay`; its exit code, status line, parsed body and stderr."""
    done = nimbus("replay", *args, env=env)
    status, _, body = done.stdout.partition("\n")
    return done.returncode, status, json.loads(body) if body.strip() else None, done.stderr


def test_replay_delivers_once_and_a_redelivery_is_nothing_new(tmp_path, serve_github):
    env = clean_env(tmp_path / "data", NIMBUS_GITHUB_WEBHOOK_SECRET=SECRET)
    args = ("issues", str(ISSUE_OPENED), "--url", serve_github, "--delivery", "d-1")
    first = replay(*args, env=env)
    assert first[:3] == (0, "202 Accepted", {"event": "issues", "delivery": "d-1", "new": True})
    again = replay(*args, env=env)
    assert again[:3] == (0, "202 Accepted", {"event": "issues", "delivery": "d-1", "new": False})

    code, status, body, err = replay(*args, "--secret", "not-it", env=env)
    assert (code, status) == (1, "401 Unauthorized")
    assert body == {"error": "the signature does not match the webhook secret"}
    assert "401" in err and "does not match" in err


def test_replay_without_a_secret_or_a_server_says_what_to_do(tmp_path):
    env = clean_env(tmp_path / "data")
    code, _, _, err = replay("issues", str(ISSUE_OPENED), env=env)
    assert code == 2 and "NIMBUS_GITHUB_WEBHOOK_SECRET" in err and "--secret" in err
    code, _, _, err = replay("issues", str(tmp_path / "none.json"), "--secret", "s", env=env)
    assert code == 2 and "none.json" in err
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens there
    code, _, _, err = replay("issues", str(ISSUE_OPENED), "--secret", "s", "--url", closed, env=env)
    assert code == 1 and "nimbus serve" in err and "Traceback" not in err
