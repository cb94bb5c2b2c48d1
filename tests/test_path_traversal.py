"""Paths that try to leave where they belong (DESIGN §3, §4, §7), in the cases the other tests
leave out: repository URLs into Nimbus's own data folder sent to the real server, skill names
that are paths, a repository skill that is a symlink out of its folder, and file-tool paths that
are absolute, chained or dangling symlinks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bot.agents.tools import CloneTools, ToolError
from bot.errors import Unprocessable
from bot.repo_config import RepoConfig
from bot.repo_urls import normalize_repo_url
from tests.conftest import FAST_CONFIG, Server, bare_clone, commit_all, git, make_repo
from tests.test_api import assert_error

SECRET = "TOP SECRET: a file of the server"


async def repos(server: Server) -> list[dict]:
    response = await server.client.get("/repos/")
    assert response.status_code == 200, response.text
    return response.json()["repos"]


@pytest.fixture
async def task_clone(server: Server, tmp_path: Path) -> Path:
    """The clone of a real task (waiting at its plan gate), inside the data folder."""
    repo_id = await server.register(make_repo(tmp_path / "repo", config=FAST_CONFIG))
    task = await server.create_task(repo_id, agent_name="good")
    await server.until_gate(task["id"], "plan")
    clone = server.settings.tasks_dir / task["id"] / "repo"
    assert (clone / ".git").is_dir()
    return clone


def ways_into(clone: Path, tmp_path: Path) -> list[str]:
    """URLs and paths that all lead to `clone`."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "innocent").symlink_to(clone)
    return [
        str(clone),
        clone.as_uri(),
        f"file://localhost{clone}",
        f"{tmp_path}/elsewhere/../{clone.relative_to(tmp_path)}",
        f"file://{tmp_path}/elsewhere/../{clone.relative_to(tmp_path)}",
        f"{clone}/",
        f"{clone}/.",
        str(tmp_path / "innocent"),
        f"~/{clone.relative_to(tmp_path)}",
    ]


async def test_no_way_into_the_data_folder_registers_a_repository(
    server, task_clone, tmp_path, monkeypatch
):
    # `~` is the server's home: here the folder that holds the data folder.
    monkeypatch.setenv("HOME", str(tmp_path))
    before = await repos(server)
    problems = {}
    for url in ways_into(task_clone, tmp_path):
        response = await server.client.post(
            "/repos/", json={"workspace_id": "ws-default", "url": url}
        )
        if response.status_code != 422 or "data folder" not in response.json().get("error", ""):
            problems[url] = f"{response.status_code}: {response.text[:200]}"
    assert problems == {}
    assert await repos(server) == before


async def test_the_data_folder_itself_and_its_database_are_refused(server):
    data = server.settings.data_dir
    for url in (str(data), data.as_uri(), str(data / "nimbus.db"), str(data / "tasks")):
        response = await server.client.post(
            "/repos/", json={"workspace_id": "ws-default", "url": url}
        )
        assert_error(response, 422, "url", "data folder")


def test_a_data_folder_reached_through_a_symlink_is_still_refused(tmp_path):
    real = tmp_path / "real-data"
    clone = real / "tasks" / "task-1" / "repo"
    clone.mkdir(parents=True)
    git("init", "-q", cwd=clone)
    (tmp_path / "data").symlink_to(real)
    for url in (str(clone), str(tmp_path / "data" / "tasks" / "task-1" / "repo")):
        with pytest.raises(Unprocessable, match="data folder"):
            normalize_repo_url(url, allow_local=True, data_dir=tmp_path / "data")


def test_percent_escapes_in_a_file_url_are_not_a_way_around(tmp_path):
    data = tmp_path / "data"
    clone = data / "tasks" / "task-1" / "repo"
    clone.mkdir(parents=True)
    git("init", "-q", cwd=clone)
    (tmp_path / "x").mkdir()
    url = f"file://{tmp_path}/x/%2E%2E/data/tasks/task-1/repo"
    with pytest.raises(Unprocessable) as refused:
        normalize_repo_url(url, allow_local=True, data_dir=data)
    # Nimbus clones exactly the path it checked, escapes and all: there is no repository there.
    assert "not a git repository" in refused.value.message or "data folder" in refused.value.message


SKILL_PATHS = [
    "..",
    ".",
    "../../etc/passwd",
    "/etc/passwd",
    "x/../y",
    "..\\x",
    "x\\..\\..\\y",
    "%2e%2e%2fx",
    "~root",
    ".hidden",
    "skills/",
    "C:\\skills\\x",
    "x\x00y",
    "",
    " x",
    "a" * 65,
    "\u2024\u2024/x",  # one-dot leaders, which look like ".."
]


async def test_skill_names_that_are_paths_are_422_and_nothing_is_stored(server, remote):
    repo_id = await server.register(remote)
    problems = {}
    for name in SKILL_PATHS:
        body = {
            "workspace_id": "ws-default",
            "repo_id": repo_id,
            "description": "x",
            "skill_name": name,
        }
        response = await server.client.post("/tasks/", json=body)
        if response.status_code != 422 or "skill_name" not in response.json()["error"]:
            problems[name] = f"{response.status_code}: {response.text[:200]}"
    assert problems == {}
    assert (await server.client.get("/tasks/")).json()["tasks"] == []


def repository_with_links(root: Path, links: dict[str, str]) -> Path:
    """A bare repository whose commit holds the symlinks `links` (path -> target)."""
    work = root / "work"
    (work / "tests").mkdir(parents=True)
    (work / ".github").mkdir()
    (work / ".github" / "nimbus.yml").write_text(FAST_CONFIG)
    (work / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (work / "docs").mkdir()
    (work / "docs" / "style.md").write_text("Use tabs.\n")
    for path, target in links.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).symlink_to(target)
    commit_all(work)
    return bare_clone(work)


@pytest.mark.parametrize(
    "target",
    ["{secret}", "../../../../../../../../..{secret}", "../../.git/config", "../../docs/style.md"],
    ids=["absolute", "relative-out", "into-git", "elsewhere-in-clone"],
)
async def test_a_repository_skill_that_links_out_of_its_folder_is_not_read(
    server, tmp_path, target
):
    secret = tmp_path / "secret.md"
    secret.write_text(SECRET)
    bare = repository_with_links(
        tmp_path / "repo", {".nimbus/skills/leak.md": target.replace("{secret}", str(secret))}
    )
    task = await server.create_task(await server.register(bare), skill_name="leak")
    ended = await server.until_ended(task["id"])
    assert ended["status"] == "failed"
    assert ended["error"].startswith("INDEXING: skill 'leak' is neither in the repository")
    seen = json.dumps([ended, await server.events(task["id"])])
    assert SECRET not in seen and "Use tabs" not in seen and "[core]" not in seen


@pytest.fixture
def clone(tmp_path: Path) -> tuple[CloneTools, Path, Path]:
    """A clone holding symlinks that lead out, directly, in a chain, or to nothing yet."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text("x = 1\n")
    (root / "hop2").symlink_to(outside / "secret.txt")
    (root / "hop1").symlink_to("hop2")
    (root / "src" / "chain").symlink_to("../hop1")
    (root / "up").symlink_to("..")
    (root / "dangling.txt").symlink_to(outside / "new.txt")
    (root / "ghost").symlink_to(outside / "newdir")
    tools = CloneTools(root, protected=RepoConfig().is_protected)
    return tools, root, outside


def attempts(tools: CloneTools, path: str):
    return [
        lambda: tools.read_file(path),
        lambda: tools.list_files(path),
        lambda: tools.search("SECRET", path=path),
        lambda: tools.edit_file(path, "x", "y"),
        lambda: tools.create_file(path, "owned"),
        lambda: tools.create_file(path, "owned", overwrite=True),
    ]


@pytest.mark.parametrize(
    "path",
    [
        "hop1",
        "src/chain",
        "up/outside/secret.txt",
        "up",
        "dangling.txt",
        "ghost/new.py",
        "ghost/deeper/new.py",
        "src/../up/repo/../outside/secret.txt",
    ],
)
def test_symlinks_out_are_refused_however_they_are_chained(clone, path):
    tools, _, outside = clone
    for attempt in attempts(tools, path):
        with pytest.raises(ToolError, match="outside the repository"):
            attempt()
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == SECRET


def test_an_absolute_path_is_refused_even_inside_the_clone(clone):
    tools, root, _ = clone
    for path in (str(root / "src" / "app.py"), str(root.resolve() / "src" / "app.py"), "/"):
        for attempt in attempts(tools, path):
            with pytest.raises(ToolError, match="outside the repository"):
                attempt()
    assert (root / "src" / "app.py").read_text() == "x = 1\n"


def test_backslashes_and_lookalike_dots_stay_inside_the_clone(clone):
    tools, root, outside = clone
    for name in ("..\\..\\outside\\secret.txt", "\u2024\u2024/escape.txt", "%2e%2e/escape.txt"):
        tools.create_file(name, "harmless")
        made = root / name
        assert made.resolve().is_relative_to(root.resolve())
        assert made.read_text() == "harmless"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert not os.path.exists(root.parent / "escape.txt")
