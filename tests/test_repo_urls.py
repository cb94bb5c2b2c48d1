"""Which repository URLs and branch names Nimbus accepts (DESIGN §3)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bot.errors import Unprocessable
from bot.repo_urls import normalize_repo_url, valid_branch
from tests.conftest import git


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def normalize(url: str, data_dir: Path, *, allow_local: bool = False) -> str:
    return normalize_repo_url(url, allow_local=allow_local, data_dir=data_dir)


def init_repo(path: Path, *, bare: bool = False) -> Path:
    path.mkdir(parents=True)
    git("init", "-q", *(["--bare"] if bare else []), cwd=path)
    return path


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/octo/calc.git",
        "https://github.com/octo/calc",
        "https://git.example.com:8443/team/calc.git",
        "ssh://git@github.com/octo/calc.git",
        "ssh://github.com:2222/octo/calc.git",
        "git@github.com:octo/calc.git",
        "deploy.user@git.example.com:team/calc",
    ],
)
def test_remote_urls_are_accepted_as_given(url, data_dir):
    assert normalize(url, data_dir) == url
    assert normalize(f"  {url}\n", data_dir) == url


@pytest.mark.parametrize(
    "url",
    [
        "https://user:token@github.com/octo/calc.git",
        "https://ghp_token@github.com/octo/calc.git",
        "https://user:@github.com/octo/calc.git",
        "ssh://git:password@github.com/octo/calc.git",
    ],
)
def test_credentials_in_the_url_are_refused(url, data_dir):
    with pytest.raises(Unprocessable, match="must not carry credentials"):
        normalize(url, data_dir)


@pytest.mark.parametrize(
    "url",
    [
        "http://github.com/octo/calc.git",
        "git://github.com/octo/calc.git",
        "ftp://example.com/calc.git",
        "ext::sh -c touch% /tmp/pwned",
        "octo/calc",
        "not a url",
        "",
        "   ",
        "https://",
        "https:///octo/calc",
        "https://github.com/octo/calc\n.git",
    ],
)
def test_other_urls_are_refused_naming_the_field(url, data_dir):
    with pytest.raises(Unprocessable, match="field 'url'"):
        normalize(url, data_dir)


@pytest.mark.parametrize(
    "url", ["-uhttps://github.com/octo/calc", "--upload-pack=touch /tmp/x", "-git@host:r"]
)
def test_leading_dash_is_refused(url, data_dir):
    """git would read it as an option."""
    with pytest.raises(Unprocessable):
        normalize(url, data_dir)


def test_local_path_refused_unless_local_repos_are_allowed(tmp_path, data_dir):
    repo = init_repo(tmp_path / "calc")
    with pytest.raises(Unprocessable, match="NIMBUS_ALLOW_LOCAL_REPOS"):
        normalize(str(repo), data_dir)
    with pytest.raises(Unprocessable, match="NIMBUS_ALLOW_LOCAL_REPOS"):
        normalize(repo.as_uri(), data_dir)


def test_local_working_copy_allowed_when_local_repos_are(tmp_path, data_dir):
    repo = init_repo(tmp_path / "calc")
    assert normalize(str(repo), data_dir, allow_local=True) == str(repo.resolve())


def test_local_bare_repository_allowed(tmp_path, data_dir):
    bare = init_repo(tmp_path / "calc.git", bare=True)
    assert normalize(str(bare), data_dir, allow_local=True) == str(bare.resolve())


def test_local_path_is_resolved(tmp_path, data_dir):
    repo = init_repo(tmp_path / "calc")
    (tmp_path / "link").symlink_to(repo)
    given = f"{tmp_path}/other/../link"
    assert normalize(given, data_dir, allow_local=True) == str(repo.resolve())


def test_file_url_is_resolved_to_its_path(tmp_path, data_dir):
    repo = init_repo(tmp_path / "calc")
    assert normalize(repo.as_uri(), data_dir, allow_local=True) == str(repo.resolve())
    assert normalize(f"file://{tmp_path}/./calc", data_dir, allow_local=True) == str(repo.resolve())


def test_local_path_inside_the_data_dir_is_refused(data_dir):
    clone = init_repo(data_dir / "tasks" / "task-1" / "repo")
    with pytest.raises(Unprocessable, match="data folder"):
        normalize(str(clone), data_dir, allow_local=True)
    with pytest.raises(Unprocessable, match="data folder"):
        normalize(clone.as_uri(), data_dir, allow_local=True)


def test_symlink_into_the_data_dir_is_refused(tmp_path, data_dir):
    clone = init_repo(data_dir / "tasks" / "task-1" / "repo")
    (tmp_path / "innocent").symlink_to(clone)
    with pytest.raises(Unprocessable, match="data folder"):
        normalize(str(tmp_path / "innocent"), data_dir, allow_local=True)


def test_directory_that_is_not_a_repository_is_refused(tmp_path, data_dir):
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(Unprocessable, match="is not a git repository"):
        normalize(str(plain), data_dir, allow_local=True)
    with pytest.raises(Unprocessable, match="is not a git repository"):
        normalize(str(tmp_path / "missing"), data_dir, allow_local=True)


@pytest.mark.parametrize(
    "name",
    ["main", "master", "develop", "feature/rate-limit", "nimbus/task-3f9a", "release-1.2", "v2_x"],
)
def test_ordinary_branch_names_are_valid(name):
    assert valid_branch(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "-main",
        "a..b",
        "a//b",
        "feature/",
        "feature.",
        "main.lock",
        "has space",
        "a~1",
        "a^2",
        "a:b",
        "a?b",
        "a*b",
        "a[b",
        "a\\b",
        "@{-1}",
        "x" * 201,
    ],
)
def test_unsafe_branch_names_are_invalid(name):
    assert not valid_branch(name)


@pytest.mark.parametrize(
    "name", ["main", "feature/x", ".hidden", "feature/.x", "a.lock/b", "-x", "a..b", "/x"]
)
def test_valid_branch_accepts_only_what_git_accepts(name):
    refused_by_git = (
        subprocess.run(
            ["git", "check-ref-format", "--branch", name], capture_output=True, check=False
        ).returncode
        != 0
    )
    if refused_by_git:
        assert not valid_branch(name)
