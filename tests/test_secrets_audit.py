"""DESIGN §7 audited end to end: every secret Nimbus holds is planted, and every output searched.

Nimbus runs as `nimbus serve`, its own process configured through its environment as in
production, against the fake GitHub, its git remote and a fake model on loopback. Its secrets:
the bootstrap API key, a key made with `nimbus key create`, the model key, a second model key that
an agent names with `api_key_env`, the webhook secret, the App's private key (read from a file), and
the installation tokens and App JWTs that it makes while working.

Then everything that could leak tries to: the repository's test command prints its environment,
the remote URL and git's configuration; a command agent puts the same, with every file Nimbus hands
it, into its plan, its output, its review and a committed file; the fake model echoes its whole
request back as plan and review; a task fails on a model that answers 401 with the key in its
message, one on a push the remote refuses, one on an agent that dies printing its environment.

What is searched: task events (as a WebSocket follower gets them), every API answer (tasks, diffs,
errors, lists), the server's log (its stderr at the default level), every request body the fake
GitHub received, everything pushed, every request the model received, the environment seen by the
test command and the agent, the clone's git files, and every file under the data directory
(database included). A secret counts as leaked when it appears whole or in part: any of its
16-character runs, taken every 4 characters (of the PEM key: 24-character runs of its lines, and
its header).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
import pytest_asyncio
import websockets

from tests.conftest import TEST_COMMAND, make_repo
from tests.fakes.github import FakeGitHub, GitRemote
from tests.fakes.models import Fail, FakeOpenAI, Reply, ToolCall, running
from tests.test_cli import ROOT, clean_env, read_line
from tests.test_github_webhooks import EXAMPLES, sign

API_KEY = "audit-bootstrap-key-5f0c2e9a7b1d4e3f8a6c"
MODEL_KEY = "sk-audit-model-key-9b3e71c2d8f04a6e5b1c"
SECOND_MODEL_KEY = "sk-audit-second-key-2c7d9e1f3a5b8064d2e9"
WEBHOOK_SECRET = "audit-webhook-secret-7e2a4c9d1b6f3085a7c2"
# A server variable that is not Nimbus's but holds one of its secrets, as a DSN might.
DATABASE_URL = f"postgres://nimbus:{MODEL_KEY}@db.internal/nimbus"

# The repository's test command: the tests, then everything it can see, printed and kept (in its
# HOME: Nimbus puts the clone back as the tests found it after each run).
LEAKY_TEST_COMMAND = (
    f"{TEST_COMMAND}; s=$?; env > $HOME/.audit-test-env.txt; git remote -v;"
    " git config --list --show-origin; cat .git/config; env | sort; exit $s"
)
FILES = {
    "calc.py": "def add(a, b):\n    return a + b\n",
    "tests/__init__.py": "",
    "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n",
    "conftest.py": "",
    ".github/nimbus.yml": f"test_command: {json.dumps(LEAKY_TEST_COMMAND)}\n",
}

# A command agent that tries to leak whatever it can reach, in every place its output goes.
LEAKY_AGENT = r"""
import json
import os
import subprocess
import sys
from pathlib import Path

PHASE = os.environ["NIMBUS_PHASE"]


def run(*argv):
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    return done.stdout + done.stderr


def text_of(path):
    try:
        return Path(path).read_text(errors="replace")
    except OSError as exc:
        return f"{path}: {exc}"


def environment():
    return "\n".join(f"{k}={v}" for k, v in sorted(os.environ.items()))


def dump():
    parts = [f"AUDIT-AGENT-DUMP {PHASE}", "== environment", environment()]
    parts += ["== git remote -v", run("git", "remote", "-v")]
    parts += ["== git config", run("git", "config", "--list", "--show-origin")]
    parts += ["== .git/config", text_of(".git/config")]
    for name, value in sorted(os.environ.items()):
        if name.startswith("NIMBUS_") and name.endswith("_FILE"):
            parts += [f"== {name}", text_of(value)]
    for path in sorted(Path(os.environ["HOME"]).rglob("*")):
        if path.is_file():
            parts += [f"== {path}", text_of(path)]
    return "\n".join(parts)


def main():
    if os.environ.get("AUDIT_FAIL_IN") == PHASE:
        # The tail of stderr goes into the task's error: the environment comes last.
        print(dump(), file=sys.stderr)
        print(run("git", "remote", "-v"), file=sys.stderr)
        print(environment(), file=sys.stderr)
        return 3
    if PHASE == "plan":
        step = {"title": "Add multiply()", "files": ["calc.py"], "detail": dump()}
        print(json.dumps({"plan": [step]}))
    elif PHASE in ("implement", "fix"):
        calc = Path("calc.py")
        calc.write_text(calc.read_text() + "\n\ndef multiply(a, b):\n    return a * b\n")
        Path("tests/test_multiply.py").write_text(
            "from calc import multiply\n\n\ndef test_multiply():\n"
            "    assert multiply(3, 4) == 12\n"
        )
        Path(f"leak-{PHASE}.txt").write_text(dump())
        print(dump())
        print(dump(), file=sys.stderr)
    elif PHASE == "review":
        comment = {"path": "calc.py", "line": 5, "body": dump()[-3000:]}
        print(json.dumps({"summary": dump(), "comments": [comment]}))
    return 0


sys.exit(main())
"""


def agents_toml(script: Path) -> str:
    command = json.dumps([sys.executable, str(script)])
    # Everything the server holds is named here: the runner must still give none of it.
    pass_env = json.dumps(
        [
            "NIMBUS_API_KEY",
            "NIMBUS_MODEL_API_KEY",
            "NIMBUS_GITHUB_WEBHOOK_SECRET",
            "NIMBUS_GITHUB_PRIVATE_KEY_PATH",
            "AUDIT_SECOND_MODEL_KEY",
            "DATABASE_URL",
        ]
    )
    configured = f"AUDIT_CONFIGURED = {json.dumps(WEBHOOK_SECRET)}"
    return f"""default_agent = "leaky"
[agents.leaky]
kind = "command"
command = {command}
timeout = 60
pass_env = {pass_env}
env = {{ {configured} }}
[agents.leaky-fails]
kind = "command"
command = {command}
timeout = 60
pass_env = {pass_env}
env = {{ AUDIT_FAIL_IN = "implement" }}
[agents.builtin]
kind = "model"
[agents.second]
kind = "model"
api_key_env = "AUDIT_SECOND_MODEL_KEY"
"""


@dataclass
class Nimbus:
    """`nimbus serve` in its own process group, its stderr going to `log`."""

    url: str
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def data_dir(self) -> Path:
        return Path(self.env["NIMBUS_DATA_DIR"])

    def client(self, key: str) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(base_url=self.url, headers={"X-API-Key": key}, timeout=30)

    async def cli(self, *args: str) -> str:
        """`nimbus <args>` against the same data directory; its stdout."""
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "bot.cli", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


def start_nimbus(env: dict[str, str], log: Path) -> Nimbus:
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve", "--port", "0"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        first = read_line(process.stdout, time.monotonic() + 30)
    except BaseException:
        stop_nimbus(process)
        raise
    match = re.fullmatch(r"Nimbus listening on (http://127\.0\.0\.1:\d+)\n", first)
    assert match, first
    return Nimbus(match[1], env, log, process)


def stop_nimbus(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
    if process.stdout is not None:
        process.stdout.close()


def server_env(data_dir: Path, **more: str) -> dict[str, str]:
    """A server's environment: the test runner's (no NIMBUS_*), fast polling, and `more`."""
    return clean_env(
        data_dir,
        NIMBUS_API_KEY=API_KEY,
        NIMBUS_POLL_SECONDS="0.1",
        NIMBUS_WORKER_ID="audit-worker",
        NIMBUS_GIT_TIMEOUT="30",
        NIMBUS_TEST_TIMEOUT="60",
        **more,
    )


async def wait_for(what: str, check: Callable[[], Awaitable[Any]], timeout: float = 90) -> Any:
    """The first truthy result of `check()`, polled; a failure naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def task_state(client: httpx2.AsyncClient, task_id: str, done: Callable[[dict], bool]):
    async def check() -> dict | None:
        response = await client.get(f"/tasks/{task_id}/")
        assert response.status_code == 200, response.text
        task = response.json()
        return task if done(task) else None

    return await wait_for(f"task {task_id}", check)


async def at_gate(client: httpx2.AsyncClient, task_id: str, gate: str) -> dict:
    task = await task_state(
        client, task_id, lambda t: t["approval"] == gate or t["phase"] in ("DONE", "FAILED")
    )
    assert task["approval"] == gate, task
    return task


async def ended(client: httpx2.AsyncClient, task_id: str) -> dict:
    return await task_state(client, task_id, lambda t: t["phase"] in ("DONE", "FAILED"))


async def follow(nimbus: Nimbus, task_id: str, key: str) -> list[dict]:
    """Every event of an ended task, as a WebSocket follower receives them."""
    url = f"{nimbus.url.replace('http://', 'ws://')}/tasks/{task_id}/ws"
    async with websockets.connect(
        url, additional_headers={"X-API-Key": key}, open_timeout=10
    ) as ws:
        return [json.loads(raw) async for raw in ws]


class Hub:
    """Alice on the fake GitHub: her comments reach Nimbus as signed deliveries."""

    def __init__(self, github: FakeGitHub, nimbus: Nimbus) -> None:
        self.github = github
        self.nimbus = nimbus

    async def get(self, path: str) -> dict:
        return await self.github.get(path)

    async def comment(self, repo: str, number: int, body: str) -> None:
        owner, name = repo.split("/")
        comment = self.github.add_comment(owner, name, number, body, user="alice")
        payload = json.loads((EXAMPLES / "issue_comment" / "created.payload.json").read_text())
        payload["installation"] = {"id": 1}
        payload["repository"] = await self.get(f"/repos/{repo}")
        payload["issue"] = await self.get(f"/repos/{repo}/issues/{number}")
        payload["comment"] = await self.get(f"/repos/{repo}/issues/comments/{comment.id}")
        payload["sender"] = payload["comment"]["user"]
        body_bytes = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": "issue_comment",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": sign(body_bytes, WEBHOOK_SECRET),
        }
        async with httpx2.AsyncClient(base_url=self.nimbus.url, timeout=30) as client:
            response = await client.post("/github/webhooks", content=body_bytes, headers=headers)
        assert response.status_code == 202, response.text

    async def task_of(self, repo: str, number: int) -> str:
        """The id of the task that Nimbus's status comment on the issue is about."""
        owner, name = repo.split("/")

        async def check() -> str | None:
            for comment in self.github.comments_on(owner, name, number):
                found = re.match(r"<!-- nimbus:task=([\w.-]+) -->", comment.body)
                if found:
                    return found[1]
            return None

        return await wait_for(f"a task on {repo}#{number}", check)


def refuse_pushes(bare: Path) -> None:
    """The remote refuses every push, as a protected branch rule or a full disk would."""
    hook = bare / "hooks" / "pre-receive"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text("#!/bin/sh\necho 'audit: this repository takes no pushes' >&2\nexit 1\n")
    hook.chmod(0o755)


def read_tree(folder: Path) -> list[tuple[str, str]]:
    """Every regular file under `folder` (links not followed; git's objects are compressed)."""
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d != "objects"]
        for name in files:
            path = Path(parent) / name
            if path.is_symlink() or not path.is_file():
                continue
            found.append((str(path), path.read_bytes().decode("latin-1")))
    return found


def git_history(bare: Path) -> str:
    """Every commit of every branch of a bare repository, with its patch."""
    done = subprocess.run(
        ["git", "--git-dir", str(bare), "log", "--all", "-p", "--format=fuller"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={"PATH": os.environ["PATH"], "HOME": str(bare), "GIT_CONFIG_NOSYSTEM": "1"},
    )
    return done.stdout


@dataclass
class Audit:
    """The secrets, and every output of the run by kind: (where, text) pairs."""

    secrets: dict[str, str]
    outputs: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    tasks: dict[str, dict] = field(default_factory=dict)
    pulls: list[Any] = field(default_factory=list)

    def add(self, kind: str, where: str, text: str | bytes | Any) -> None:
        if isinstance(text, bytes):
            text = text.decode("latin-1")
        elif not isinstance(text, str):
            text = json.dumps(text)
        self.outputs.setdefault(kind, []).append((where, text))

    def text(self, kind: str) -> str:
        return "\n".join(text for _, text in self.outputs.get(kind, []))


def needles(secrets: dict[str, str]) -> list[tuple[str, str]]:
    """(secret name, text): each secret whole and every run of 16 of its characters (step 4)."""
    found: list[tuple[str, str]] = []
    for name, value in secrets.items():
        if "PRIVATE KEY-----" in value:
            found.append((name, "PRIVATE KEY-----"))
            for line in value.splitlines():
                if "-----" not in line and len(line) >= 24:
                    found += [(name, line[i : i + 24]) for i in range(0, len(line) - 23, 20)]
            continue
        found.append((name, value))
        found += [(name, value[i : i + 16]) for i in range(0, max(len(value) - 15, 1), 4)]
    return found


def leaks(audit: Audit, kind: str) -> list[str]:
    """Where a secret appears in the outputs of `kind`, with some context."""
    found = []
    for where, text in audit.outputs.get(kind, []):
        for name, needle in needles(audit.secrets):
            at = text.find(needle)
            if at >= 0:
                context = text[max(0, at - 80) : at + len(needle) + 40]
                found.append(f"{name} in {where}: …{context!r}…")
                break
    return found


def echoed(request: dict) -> str:
    """Everything the model was sent: its system prompt, the prompts, every tool result."""
    return json.dumps(request["messages"])


def model_script() -> list[Any]:
    """A model that looks around, runs the tests, makes the change, and echoes what it got."""
    test = "from calc import multiply\n\n\ndef test_multiply():\n    assert multiply(3, 4) == 12\n"
    look = [
        ToolCall("list_files", {}),
        ToolCall("read_file", {"path": ".audit-test-env.txt"}),
        ToolCall("read_file", {"path": ".github/nimbus.yml"}),
        ToolCall("search", {"pattern": "KEY"}),
    ]
    edit = ToolCall(
        "edit_file",
        {
            "path": "calc.py",
            "search": "    return a + b\n",
            "replace": "    return a + b\n\n\ndef multiply(a, b):\n    return a * b\n",
        },
    )

    create_test = ToolCall("create_file", {"path": "tests/test_m.py", "content": test})

    def plan(request: dict) -> Reply:
        step = {"title": "Add multiply()", "files": ["calc.py"], "detail": echoed(request)}
        return Reply(json.dumps({"plan": [step]}))

    def review(request: dict) -> Reply:
        comment = {"path": "calc.py", "line": 5, "body": echoed(request)[-1500:]}
        return Reply(json.dumps({"summary": echoed(request), "comments": [comment]}))

    return [
        Reply("Looking around first.", tool_calls=look),
        plan,
        Reply(tool_calls=[ToolCall("run_tests", {})]),
        Reply(tool_calls=[edit, create_test]),
        lambda request: Reply(echoed(request)),
        review,
    ]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def audit(tmp_path_factory) -> Audit:
    root = tmp_path_factory.mktemp("audit")
    agent = root / "leaky_agent.py"
    agent.write_text(LEAKY_AGENT)
    (root / "agents.toml").write_text(agents_toml(agent))
    plain = make_repo(root / "plain", config=FILES[".github/nimbus.yml"])
    async with (
        running(FakeGitHub()) as github,
        running(GitRemote(root / "git", github)) as remote,
        running(FakeOpenAI(api_key=MODEL_KEY)) as model,
    ):
        for name in ("hello", "broken"):
            remote.create("octo-org", name, files=FILES)
            github.add_repo("octo-org", name, installation_id=1, remote=remote)
            github.set_permission("octo-org", name, "alice", "write")
        refuse_pushes(remote.path("octo-org", "broken"))
        key_file = root / "app-key.pem"
        key_file.write_text(github.private_key_pem)
        env = server_env(
            root / "data",
            NIMBUS_CONFIG=str(root / "agents.toml"),
            NIMBUS_MODEL_PROVIDER="openai",
            NIMBUS_MODEL="gpt-test",
            NIMBUS_MODEL_BASE_URL=model.url,
            NIMBUS_MODEL_API_KEY=MODEL_KEY,
            NIMBUS_MODEL_MAX_RETRIES="1",
            NIMBUS_MODEL_RETRY_BASE_SECONDS="0.01",
            NIMBUS_GITHUB_APP_ID=str(github.app_id),
            NIMBUS_GITHUB_PRIVATE_KEY_PATH=str(key_file),
            NIMBUS_GITHUB_WEBHOOK_SECRET=WEBHOOK_SECRET,
            NIMBUS_GITHUB_API_URL=github.url,
            AUDIT_SECOND_MODEL_KEY=SECOND_MODEL_KEY,
            DATABASE_URL=DATABASE_URL,
        )
        nimbus = await asyncio.to_thread(start_nimbus, env, root / "nimbus.log")
        try:
            result = await run_everything(nimbus, github, model, plain)
        finally:
            await asyncio.to_thread(stop_nimbus, nimbus.process)
        result.secrets["NIMBUS_GITHUB_PRIVATE_KEY"] = github.private_key_pem
        for token in github.tokens:
            result.secrets[f"installation token {token[:8]}…"] = token
        for request in github.requests:
            scheme, _, credential = request["headers"].get("authorization", "").partition(" ")
            if scheme.lower() == "bearer" and credential.count(".") == 2:
                result.secrets[f"App JWT …{credential[-8:]}"] = credential
        for request in github.requests:
            # Its headers carry the credentials, as they must; the rest is what Nimbus said.
            said = {k: request[k] for k in ("method", "path", "query", "json")}
            result.add("github", f"{request['method']} {request['path']}", said)
        for pull in github.pulls.values():
            result.pulls.append(pull)
        for name in ("hello", "broken"):
            result.add("pushed", f"octo-org/{name}", git_history(remote.path("octo-org", name)))
        for number, request in enumerate(model.requests, 1):
            result.add("model", f"model request {number}", request)
        assert github.problems == []
        assert model.problems == []
    result.add("pushed", "plain", git_history(plain))
    result.add("log", "server stderr", nimbus.log.read_bytes())
    for where, text in read_tree(nimbus.data_dir):
        result.add("data", where, text)
    return result


async def run_everything(
    nimbus: Nimbus, github: FakeGitHub, model: FakeOpenAI, plain: Path
) -> Audit:
    audit = Audit(
        secrets={
            "NIMBUS_API_KEY": API_KEY,
            "NIMBUS_MODEL_API_KEY": MODEL_KEY,
            "AUDIT_SECOND_MODEL_KEY (api_key_env)": SECOND_MODEL_KEY,
            "NIMBUS_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        }
    )
    hub = Hub(github, nimbus)
    model.script(*model_script())
    issue = github.add_issue("octo-org", "hello", "Add multiply", "We need multiply(a, b).")
    await hub.comment("octo-org/hello", issue.number, "/nimbus add a multiply function")
    issue_task = await hub.task_of("octo-org/hello", issue.number)
    gh_key = await nimbus.cli("key", "create", "--workspace", "ws-gh-1", "--label", "audit")
    audit.secrets["API key from `nimbus key create`"] = gh_key
    async with nimbus.client(gh_key) as gh_client, nimbus.client(API_KEY) as default_client:
        repos = (await gh_client.get("/repos/", params={"workspace_id": "ws-gh-1"})).json()
        by_name = {r["github"]["full_name"]: r["id"] for r in repos["repos"]}
        audit.add("api", "GET /repos/ ws-gh-1", repos)
        if "octo-org/broken" not in by_name:
            # The broken repository is registered when Nimbus first hears of it.
            issue_b = github.add_issue("octo-org", "broken", "Nothing")
            await hub.comment("octo-org/broken", issue_b.number, "/nimbus help")

            async def broken_known() -> dict | None:
                listed = await gh_client.get("/repos/", params={"workspace_id": "ws-gh-1"})
                names = {r["github"]["full_name"]: r["id"] for r in listed.json()["repos"]}
                return names if "octo-org/broken" in names else None

            by_name = await wait_for("octo-org/broken to be registered", broken_known)
        plain_repo = await default_client.post(
            "/repos/", json={"workspace_id": "ws-default", "url": str(plain)}
        )
        assert plain_repo.status_code in (200, 201), plain_repo.text

        async def create(client: httpx2.AsyncClient, workspace: str, repo: str, **fields) -> str:
            body = {"workspace_id": workspace, "repo_id": repo, "description": "Add multiply"}
            response = await client.post("/tasks/", json={**body, **fields})
            assert response.status_code == 201, response.text
            return response.json()["id"]

        async def issue_flow() -> None:
            await at_gate(gh_client, issue_task, "plan")
            await hub.comment("octo-org/hello", issue.number, "/nimbus approve")
            await at_gate(gh_client, issue_task, "diff")
            snapshot(audit, nimbus, issue_task)
            await hub.comment("octo-org/hello", issue.number, "/nimbus approve-diff")
            await ended(gh_client, issue_task)

        async def model_flow() -> str:
            hello = by_name["octo-org/hello"]
            task_id = await create(gh_client, "ws-gh-1", hello, agent_name="builtin")
            await at_gate(gh_client, task_id, "plan")
            await gh_client.post(f"/tasks/{task_id}/approve")
            await at_gate(gh_client, task_id, "diff")
            snapshot(audit, nimbus, task_id)
            await gh_client.post(f"/tasks/{task_id}/approve-diff")
            await ended(gh_client, task_id)
            return task_id

        async def failing(client, workspace, repo, **fields) -> str:
            task_id = await create(client, workspace, repo, auto_approve=True, **fields)
            await ended(client, task_id)
            return task_id

        ids = await asyncio.gather(
            issue_flow(),
            model_flow(),
            failing(gh_client, "ws-gh-1", by_name["octo-org/broken"]),
            failing(gh_client, "ws-gh-1", by_name["octo-org/hello"], agent_name="second"),
            failing(
                default_client, "ws-default", plain_repo.json()["id"], agent_name="leaky-fails"
            ),
        )
        names = ["issue", "model", "push refused", "model key refused", "agent failed"]
        by_task = {name: (tid or issue_task) for name, tid in zip(names, ids, strict=True)}
        # The provider answers 401 with the key in its message, as some proxies do.
        message = f"Incorrect API key provided: {MODEL_KEY}. Find your key in the dashboard."
        model.script(Fail(401, message=message))
        by_task["model echoes the key"] = await failing(
            gh_client, "ws-gh-1", by_name["octo-org/hello"], agent_name="builtin"
        )
        for name, task_id in by_task.items():
            client = default_client if name == "agent failed" else gh_client
            key = API_KEY if name == "agent failed" else gh_key
            task = (await client.get(f"/tasks/{task_id}/")).json()
            audit.tasks[name] = task
            audit.add("api", f"GET /tasks/{task_id}/ ({name})", task)
            diff = await client.get(f"/tasks/{task_id}/diff")
            audit.add("api", f"GET /tasks/{task_id}/diff ({name})", diff.text)
            audit.add("events", f"WebSocket {task_id} ({name})", await follow(nimbus, task_id, key))
        for workspace, client in (("ws-gh-1", gh_client), ("ws-default", default_client)):
            listed = await client.get("/tasks/", params={"workspace_id": workspace})
            audit.add("api", f"GET /tasks/ {workspace}", listed.json())
        # A key in a query string: HTTP routes do not take it, and the log must not show it.
        for key, client in ((gh_key, gh_client), (API_KEY, default_client)):
            response = await client.get("/tasks/", params={"api_key": key, "limit": "1"})
            audit.add("api", "GET /tasks/?api_key=…", response.text)
            async with httpx2.AsyncClient(base_url=nimbus.url) as anonymous:
                refused = await anonymous.get("/tasks/", params={"api_key": key})
                audit.add("api", "GET /tasks/?api_key=… without a header", refused.text)
                health = await anonymous.get("/healthz", params={"api_key": key})
                audit.add("api", "GET /healthz?api_key=…", health.text)
    return audit


def snapshot(audit: Audit, nimbus: Nimbus, task_id: str) -> None:
    """The task's folder at the diff gate: the clone, its .git, the agent's home and inputs."""
    for where, text in read_tree(nimbus.data_dir / "tasks" / task_id):
        audit.add("workspace", where, text)


def test_the_run_did_what_it_was_meant_to(audit):
    tasks = audit.tasks
    assert tasks["issue"]["status"] == "completed", tasks["issue"]
    assert tasks["model"]["status"] == "completed", tasks["model"]
    assert len(audit.pulls) == 2
    assert tasks["push refused"]["error"].startswith("CLEANUP: git push failed"), tasks
    assert "audit: this repository takes no pushes" in tasks["push refused"]["error"]
    assert "refused the API key (HTTP 401" in tasks["model key refused"]["error"]
    assert "refused the API key (HTTP 401" in tasks["model echoes the key"]["error"]
    assert "exited with code 3" in tasks["agent failed"]["error"]


def test_the_leak_attempts_reached_every_output(audit):
    """Without this, finding nothing would prove nothing."""
    workspace = audit.text("workspace")
    assert "AUDIT-AGENT-DUMP implement" in workspace
    assert "NIMBUS_TASK_ID=" in workspace  # the test command's environment, kept in its HOME
    assert "remote.origin.url=" in workspace
    assert "AUDIT-AGENT-DUMP" in audit.text("github")
    assert "AUDIT-AGENT-DUMP" in audit.text("pushed")
    assert "CI=true" in audit.text("model")  # run_tests showed the model the command's env
    assert "AUDIT-AGENT-DUMP plan" in audit.text("events")
    assert "NIMBUS_PHASE=implement" in audit.tasks["agent failed"]["error"]
    assert "Incorrect API key provided" in audit.tasks["model echoes the key"]["error"]
    assert "GET /tasks/?api_key=***" in audit.text("log")


@pytest.mark.parametrize(
    "kind", ["events", "api", "log", "github", "pushed", "model", "workspace", "data"]
)
def test_no_secret_reaches(audit, kind):
    assert audit.outputs.get(kind), f"nothing collected for {kind}"
    assert leaks(audit, kind) == []


def names_in(environment: str) -> set[str]:
    return {line.split("=", 1)[0] for line in environment.splitlines() if "=" in line}


def test_commands_get_no_nimbus_variable_but_their_own(audit):
    """What the test command and the agent saw, read from the clone: not redacted by anyone."""
    tests = [t for w, t in audit.outputs["workspace"] if w.endswith(".audit-test-env.txt")]
    agents = [
        t.split("== environment\n")[1].split("\n== ")[0]
        for w, t in audit.outputs["workspace"]
        if w.endswith("leak-implement.txt")
    ]
    assert (len(tests), len(agents)) == (2, 1)  # two tasks snapshotted, one by the agent
    server_only = {"DATABASE_URL", "AUDIT_SECOND_MODEL_KEY", "AUDIT_CONFIGURED"}
    for environment in tests:
        names = names_in(environment)
        assert {n for n in names if n.startswith("NIMBUS_")} == {"NIMBUS_TASK_ID"}
        assert not names & server_only
    for environment in agents:
        names = names_in(environment)
        assert {n for n in names if n.startswith("NIMBUS_")} <= {
            "NIMBUS_PHASE",
            "NIMBUS_TASK_ID",
            "NIMBUS_TASK_DESCRIPTION",
            "NIMBUS_PROMPT_FILE",
            "NIMBUS_CONTEXT_FILE",
            "NIMBUS_PLAN_FILE",
        }
        # Named by pass_env, or set to a secret by the configuration: dropped all the same.
        assert not names & server_only


def test_the_clone_remembers_no_credential(audit):
    configs = [text for where, text in audit.outputs["workspace"] if where.endswith(".git/config")]
    assert len(configs) == 2
    for config in configs:
        assert re.search(r"url = http://127\.0\.0\.1:\d+/octo-org/hello\.git\n", config), config
        assert "extraheader" not in config.lower()
        assert "@" not in config
