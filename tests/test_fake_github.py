"""The fake GitHub and git remote behave like GitHub for gidgethub and for real git."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import gidgethub
import httpx2
import jwt
import pytest
from gidgethub.apps import get_installation_access_token, get_jwt
from gidgethub.httpx import GitHubAPI

from tests.fakes.github import FakeGitHub, GitRemote, running

OWNER, REPO = "octo-org", "hello"


@pytest.fixture
async def github() -> AsyncIterator[FakeGitHub]:
    async with running(FakeGitHub()) as fake:
        fake.add_repo(OWNER, REPO, installation_id=7)
        yield fake


@pytest.fixture
async def client() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=10) as http:
        yield http


def api(github: FakeGitHub, http: httpx2.AsyncClient, **kwargs: Any) -> GitHubAPI:
    return GitHubAPI(http, "nimbus-test", base_url=github.url, **kwargs)


async def installation_api(
    github: FakeGitHub, http: httpx2.AsyncClient, installation_id: int = 7, **kwargs: Any
) -> GitHubAPI:
    """A client authenticated as the installation, the way Nimbus gets one."""
    minted = await get_installation_access_token(
        api(github, http),
        installation_id=str(installation_id),
        app_id=str(github.app_id),
        private_key=github.private_key_pem,
    )
    return api(github, http, oauth_token=minted["token"], **kwargs)


def app_jwt(github: FakeGitHub, **claims: Any) -> str:
    """An App JWT with claims overridden; an int `iss` is built by hand (PyJWT refuses it)."""
    now = int(time.time())
    payload = {"iat": now - 60, "exp": now + 540, "iss": str(github.app_id), **claims}
    body = json.dumps(payload).encode()
    return jwt.api_jws.encode(body, github.private_key_pem, algorithm="RS256")


async def test_a_gidgethub_jwt_lists_the_installations(github, client):
    token = get_jwt(app_id=str(github.app_id), private_key=github.private_key_pem)
    found = [i async for i in api(github, client).getiter("/app/installations", jwt=token)]
    assert [(i["id"], i["account"]["login"]) for i in found] == [(7, OWNER)]
    int_iss = app_jwt(github, iss=github.app_id)
    assert (await api(github, client).getitem("/app/installations", jwt=int_iss))[0]["id"] == 7
    assert github.problems == [] and github.denied == []


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"iss": "999"}, "not the App id"),
        ({"iat": int(time.time()) - 1200, "exp": int(time.time()) - 600}, "expired"),
        ({"exp": int(time.time()) + 1200}, "10 minutes"),
    ],
)
async def test_a_bad_jwt_is_401(github, client, claims, reason):
    with pytest.raises(gidgethub.BadRequest) as refused:
        await api(github, client).getitem("/app/installations", jwt=app_jwt(github, **claims))
    assert refused.value.status_code == 401
    assert str(refused.value) == "A JSON web token could not be decoded"
    assert reason in github.denied[-1]


async def test_a_jwt_signed_with_another_key_or_a_token_is_401(github, client):
    other = FakeGitHub(app_id=github.app_id)
    forged = get_jwt(app_id=str(github.app_id), private_key=other.private_key_pem)
    token = github.issue_token(7)
    for credential in (forged, token):
        with pytest.raises(gidgethub.BadRequest) as refused:
            await api(github, client).getitem(f"/repos/{OWNER}/{REPO}/installation", jwt=credential)
        assert refused.value.status_code == 401
    assert github.problems == []


async def test_minting_gives_an_hour_long_token_and_counts(github, client):
    minted = await get_installation_access_token(
        api(github, client),
        installation_id="7",
        app_id=str(github.app_id),
        private_key=github.private_key_pem,
    )
    assert minted["token"].startswith("ghs_")
    expires = datetime.fromisoformat(minted["expires_at"].replace("Z", "+00:00")).timestamp()
    assert abs(expires - time.time() - 3600) < 5
    assert github.mints == {7: 1}
    gh = api(github, client, oauth_token=minted["token"])
    assert (await gh.getitem(f"/repos/{OWNER}/{REPO}"))["full_name"] == f"{OWNER}/{REPO}"
    with pytest.raises(gidgethub.BadRequest) as missing:
        await get_installation_access_token(
            api(github, client), installation_id="8", app_id=str(github.app_id),
            private_key=github.private_key_pem,
        )  # fmt: skip
    assert missing.value.status_code == 404
    assert github.problems == []


async def test_a_token_limited_to_some_repositories_sees_only_those(github, client):
    github.add_repo(OWNER, "other", installation_id=7)
    jwt_token = get_jwt(app_id=str(github.app_id), private_key=github.private_key_pem)
    url = "/app/installations/7/access_tokens"
    minted = await api(github, client).post(url, data={"repositories": [REPO]}, jwt=jwt_token)
    assert [r["name"] for r in minted["repositories"]] == [REPO]
    gh = api(github, client, oauth_token=minted["token"])
    await gh.getitem(f"/repos/{OWNER}/{REPO}")
    with pytest.raises(gidgethub.BadRequest) as hidden:
        await gh.getitem(f"/repos/{OWNER}/other")
    assert hidden.value.status_code == 404
    with pytest.raises(gidgethub.ValidationError, match="not accessible"):
        await api(github, client).post(url, data={"repositories": ["nope"]}, jwt=jwt_token)
    assert github.problems == []


async def test_an_expired_token_is_bad_credentials_until_renewed(client):
    async with running(FakeGitHub(token_lifetime=0.3)) as github:
        github.add_repo(OWNER, REPO, installation_id=7)
        gh = await installation_api(github, client)
        await gh.getitem(f"/repos/{OWNER}/{REPO}")
        await asyncio.sleep(0.4)
        with pytest.raises(gidgethub.BadRequest) as refused:
            await gh.getitem(f"/repos/{OWNER}/{REPO}")
        assert (refused.value.status_code, str(refused.value)) == (401, "Bad credentials")
        gh = await installation_api(github, client)
        github.expire_all_tokens()
        with pytest.raises(gidgethub.BadRequest):
            await gh.getitem(f"/repos/{OWNER}/{REPO}")
        assert github.mints == {7: 2}


async def test_repository_endpoints_want_a_token_of_an_installation_that_has_the_repo(
    github, client
):
    github.add_repo("someone", "else", installation_id=8)
    path = f"/repos/{OWNER}/{REPO}"
    with pytest.raises(gidgethub.BadRequest) as anonymous:
        await api(github, client).getitem(path)
    assert anonymous.value.status_code == 401
    with pytest.raises(gidgethub.BadRequest) as app_only:
        await api(github, client).getitem(path, jwt=app_jwt(github))
    assert app_only.value.status_code == 401
    with pytest.raises(gidgethub.BadRequest) as other:
        await api(github, client, oauth_token=github.issue_token(8)).getitem(path)
    assert other.value.status_code == 404
    bearer = await client.get(
        github.url + path, headers={"Authorization": f"Bearer {github.issue_token(7)}"}
    )
    assert bearer.status_code == 200
    assert bearer.json()["clone_url"] == f"https://github.example/{OWNER}/{REPO}.git"


async def test_a_request_outside_the_schema_is_422_and_a_problem(github, client):
    issue = github.add_issue(OWNER, REPO, "Add multiply")
    gh = await installation_api(github, client)
    with pytest.raises(gidgethub.InvalidField) as refused:
        await gh.post(f"/repos/{OWNER}/{REPO}/issues/{issue.number}/comments", data={})
    assert refused.value.status_code == 422
    assert refused.value.errors[0]["code"] == "missing_field"
    assert refused.value.errors[0]["field"] == "body"
    with pytest.raises(gidgethub.HTTPException):
        await gh.post(
            f"/repos/{OWNER}/{REPO}/pulls", data={"head": "x", "base": "main", "drafts": 1}
        )
    with pytest.raises(gidgethub.HTTPException):
        await gh.getitem(f"/repos/{OWNER}/{REPO}/issues/{issue.number}/comments?page=two")
    assert github.problems == [
        f"POST /repos/{OWNER}/{REPO}/issues/1/comments: body: 'body' is a required property",
        f"POST /repos/{OWNER}/{REPO}/pulls: drafts: 'drafts' is not a parameter of this operation",
        f"GET /repos/{OWNER}/{REPO}/issues/1/comments: page: 'two' is not of type 'integer'",
    ]
    assert github.comments_on(OWNER, REPO, issue.number) == []


async def test_an_unknown_path_is_404_and_a_problem(github, client):
    gh = await installation_api(github, client)
    with pytest.raises(gidgethub.BadRequest) as missing:
        await gh.getitem(f"/repos/{OWNER}/{REPO}/issues")
    assert (missing.value.status_code, str(missing.value)) == (404, "Not Found")
    assert github.problems == [
        f"GET /repos/{OWNER}/{REPO}/issues: no such operation in the OpenAPI subset"
    ]


async def test_lists_are_paginated_with_link_headers(github, client):
    issue = github.add_issue(OWNER, REPO)
    for n in range(75):
        github.add_comment(OWNER, REPO, issue.number, f"comment {n}")
    gh = await installation_api(github, client)
    url = f"/repos/{OWNER}/{REPO}/issues/{issue.number}/comments"
    bodies = [c["body"] async for c in gh.getiter(url)]
    assert bodies == [f"comment {n}" for n in range(75)]
    pages = [r["query"].get("page", "1") for r in github.requests if r["path"] == url]
    assert pages == ["1", "2", "3"]
    response = await client.get(
        f"{github.url}{url}?per_page=50",
        headers={"Authorization": f"token {github.issue_token(7)}"},
    )
    assert len(response.json()) == 50
    assert response.headers["link"] == (
        f'<{github.url}{url}?per_page=50&page=2>; rel="next", '
        f'<{github.url}{url}?per_page=50&page=2>; rel="last"'
    )
    assert github.problems == []


async def test_a_matching_etag_is_answered_304(github, client):
    issue = github.add_issue(OWNER, REPO, "Cache me")
    gh = await installation_api(github, client, cache={})
    url = f"/repos/{OWNER}/{REPO}/issues/{issue.number}"
    first = await gh.getitem(url)
    again = await gh.getitem(url)
    assert again == first and github.not_modified == 1
    github.add_comment(OWNER, REPO, issue.number, "changes the issue's comment count")
    assert (await gh.getitem(url))["comments"] == 1
    assert github.not_modified == 1
    assert [r["status"] for r in github.requests if r["path"] == url] == [200, 304, 200]


async def test_injected_failures_look_like_githubs(github, client):
    issue = github.add_issue(OWNER, REPO)
    gh = await installation_api(github, client)
    url = f"/repos/{OWNER}/{REPO}/issues/{issue.number}/comments"
    github.fail_next("POST", "/repos/*/comments", 502)
    with pytest.raises(gidgethub.GitHubBroken):
        await gh.post(url, data={"body": "first try"})
    assert github.comments_on(OWNER, REPO, issue.number) == []

    github.fail_next("POST", "/repos/*/comments", 502, after_acting=True)
    with pytest.raises(gidgethub.GitHubBroken):
        await gh.post(url, data={"body": "acted"})
    assert [c.body for c in github.comments_on(OWNER, REPO, issue.number)] == ["acted"]

    github.fail_next("GET", "/repos/*", 403, retry_after=2)
    with pytest.raises(gidgethub.BadRequest) as secondary:
        await gh.getitem(url)
    assert secondary.value.status_code == 403
    assert secondary.value.headers["retry-after"] == "2"
    assert "secondary rate limit" in str(secondary.value)

    github.fail_next("*", "*", 429, retry_after=1, times=2)
    for _ in range(2):
        with pytest.raises(gidgethub.BadRequest) as limited:
            await gh.getitem(url)
        assert limited.value.status_code == 429
    assert len(await gh.getitem(url)) == 1

    github.fail_next("GET", "/repos/*", 403)
    with pytest.raises(gidgethub.RateLimitExceeded):
        await gh.getitem(url)
    assert github.problems == []


async def test_pull_requests_refuse_duplicates_and_unsupported_drafts(github, client):
    gh = await installation_api(github, client)
    url = f"/repos/{OWNER}/{REPO}/pulls"
    pr = {"title": "Add multiply", "head": "nimbus/task-1", "base": "main", "body": "Closes #1"}
    created = await gh.post(url, data={**pr, "draft": True})
    assert created["html_url"] == f"https://github.example/{OWNER}/{REPO}/pull/1"
    assert created["draft"] is True and created["user"]["login"] == github.bot_login
    with pytest.raises(gidgethub.ValidationError) as duplicate:
        await gh.post(url, data=pr)
    assert "A pull request already exists for octo-org:nimbus/task-1." in str(duplicate.value)

    github.drafts_supported = False
    with pytest.raises(gidgethub.ValidationError) as draft:
        await gh.post(url, data={**pr, "head": "nimbus/task-2", "draft": True})
    assert "Draft pull requests are not supported in this repository." in str(draft.value)
    second = await gh.post(url, data={**pr, "head": "nimbus/task-2", "draft": False})
    assert second["number"] == 2

    found = [p async for p in gh.getiter(url + "{?head}", {"head": f"{OWNER}:nimbus/task-2"})]
    assert [p["number"] for p in found] == [2]
    everything = [p async for p in gh.getiter(url + "{?head}", {"head": "nimbus/task-2"})]
    assert [p["number"] for p in everything] == [2, 1]  # GitHub ignores a head without owner
    assert github.problems == []


async def test_labels_reactions_permissions_contents_and_checks(github, client):
    issue = github.add_issue(OWNER, REPO, labels=["bug"])
    comment = github.add_comment(OWNER, REPO, issue.number, "/nimbus go", user="bob")
    github.set_permission(OWNER, REPO, "bob", "maintain")
    github.set_file(OWNER, REPO, ".github/nimbus.yml", "draft: false\n")
    gh = await installation_api(github, client)
    base = f"/repos/{OWNER}/{REPO}"
    labels = await gh.post(f"{base}/issues/1/labels", data={"labels": ["nimbus", "bug"]})
    assert [label["name"] for label in labels] == ["bug", "nimbus"]
    await gh.delete(f"{base}/issues/1/labels/bug")
    assert issue.labels == ["nimbus"]
    with pytest.raises(gidgethub.BadRequest):
        await gh.delete(f"{base}/issues/1/labels/bug")
    eyes = await gh.post(f"{base}/issues/comments/{comment.id}/reactions", data={"content": "eyes"})
    assert eyes["user"]["login"] == github.bot_login
    got = await gh.getitem(f"{base}/issues/comments/{comment.id}")
    assert got["reactions"]["eyes"] == 1 and got["user"]["login"] == "bob"
    bob = await gh.getitem(f"{base}/collaborators/bob/permission")
    assert (bob["permission"], bob["role_name"]) == ("write", "maintain")
    carol = await gh.getitem(f"{base}/collaborators/carol/permission")
    assert carol["permission"] == "read"
    config = await gh.getitem(f"{base}/contents/.github/nimbus.yml")
    assert base64.b64decode(config["content"]) == b"draft: false\n"
    raw = await gh.getitem(
        f"{base}/contents/.github/nimbus.yml", accept="application/vnd.github.raw+json"
    )
    assert raw == "draft: false\n"
    with pytest.raises(gidgethub.BadRequest):
        await gh.getitem(f"{base}/contents/missing.yml")
    run = await gh.post(f"{base}/check-runs", data={"name": "nimbus", "head_sha": "a" * 40})
    assert run["status"] == "queued"
    done = await gh.patch(
        f"{base}/check-runs/{run['id']}",
        data={"conclusion": "success", "output": {"title": "ok", "summary": "All good"}},
    )
    assert (done["status"], done["conclusion"]) == ("completed", "success")
    listed = await gh.getitem(f"{base}/commits/{'a' * 40}/check-runs")
    assert listed["total_count"] == 1
    assert github.problems == []
    assert github.response_problems == []


async def test_an_app_manifest_code_converts_once(github, client):
    github.add_manifest_code("abc123", webhook_secret="s3cret")
    converted = await api(github, client).post("/app-manifests/abc123/conversions", data=b"")
    assert (converted["id"], converted["webhook_secret"]) == (github.app_id, "s3cret")
    assert converted["pem"] == github.private_key_pem
    with pytest.raises(gidgethub.BadRequest):
        await api(github, client).post("/app-manifests/abc123/conversions", data=b"")
    assert github.problems == []


def git_env(home: Path, header: str | None = None) -> dict[str, str]:
    """git with no user or system config and no prompts; `header` given through GIT_CONFIG_*."""
    env = {
        "PATH": os.environ["PATH"], "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0", "GIT_AUTHOR_NAME": "Nimbus",
        "GIT_AUTHOR_EMAIL": "n@example.com", "GIT_COMMITTER_NAME": "Nimbus",
        "GIT_COMMITTER_EMAIL": "n@example.com",
    }  # fmt: skip
    if header is not None:
        env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="http.extraHeader")
        env["GIT_CONFIG_VALUE_0"] = header
    return env


async def git(*args: str, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run git without blocking the event loop that serves the fakes."""
    proc = await asyncio.create_subprocess_exec(
        "git", *args, cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    return proc.returncode or 0, out.decode()


def basic(token: str) -> str:
    """The header git sends for `x-access-token:<token>`."""
    return "Authorization: Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()


MUL = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n"


@pytest.fixture
async def remote(github: FakeGitHub, tmp_path: Path) -> AsyncIterator[GitRemote]:
    async with running(GitRemote(tmp_path, github)) as served:
        served.create(OWNER, "code", files={"calc.py": "def add(a, b):\n    return a + b\n"})
        github.add_repo(OWNER, "code", installation_id=7, remote=served)
        yield served


async def push_branch(github: FakeGitHub, tmp_path: Path, branch: str = "nimbus/task-1") -> str:
    """Clone with the token in `-c http.extraHeader`, commit, push with it in the environment."""
    token, work = github.issue_token(7), tmp_path / "work"
    url = github.repos[f"{OWNER}/code"].clone_url
    assert url is not None
    env = git_env(tmp_path)
    clone = ("-c", f"http.extraHeader={basic(token)}", "clone", "-q", url, str(work))
    assert await git(*clone, cwd=tmp_path, env=env) == (0, "")
    (work / "calc.py").write_text(MUL)
    for args in (("checkout", "-q", "-b", branch), ("commit", "-qam", "Add mul")):
        assert (await git(*args, cwd=work, env=env))[0] == 0
    code, out = await git(
        "push", "-q", "origin", branch, cwd=work, env=git_env(tmp_path, basic(token))
    )
    assert code == 0, out
    return token


async def test_clone_and_push_over_http_with_an_installation_token(github, remote, tmp_path):
    assert github.repos[f"{OWNER}/code"].clone_url == f"{remote.url}/{OWNER}/code.git"
    await push_branch(github, tmp_path)
    assert remote.branch(OWNER, "code", "nimbus/task-1") is not None
    assert [r["query"] for r in remote.requests if r["method"] == "GET"] == [
        "service=git-upload-pack",
        "service=git-receive-pack",
    ]
    assert remote.denied == [] and remote.errors == []


async def test_git_with_an_expired_or_no_token_fails_fast(github, remote, tmp_path):
    token = await push_branch(github, tmp_path)
    github.expire_all_tokens()
    started = time.monotonic()
    push = ("push", "origin", "HEAD:refs/heads/other")
    code, out = await git(*push, cwd=tmp_path / "work", env=git_env(tmp_path, basic(token)))
    assert code != 0
    assert "could not read Username" in out or "Authentication failed" in out, out
    clone = ("clone", remote.clone_url(OWNER, "code"), str(tmp_path / "again"))
    code, out = await git(*clone, cwd=tmp_path, env=git_env(tmp_path))
    assert code != 0 and time.monotonic() - started < 5
    assert remote.denied[0].endswith("expired token")
    assert remote.denied[-1].endswith("no Basic credentials")
    assert remote.branch(OWNER, "code", "other") is None


async def test_a_pull_request_of_a_git_repository_shows_its_diff(github, remote, client, tmp_path):
    gh = api(github, client, oauth_token=await push_branch(github, tmp_path))
    base = f"/repos/{OWNER}/code"
    pr = await gh.post(f"{base}/pulls", data={"title": "Add mul", "head": "nimbus/task-1",
                                               "base": "main", "draft": True})  # fmt: skip
    assert (pr["additions"], pr["changed_files"], pr["commits"]) == (4, 1, 1)
    assert pr["head"]["sha"] == remote.branch(OWNER, "code", "nimbus/task-1")
    files = [f async for f in gh.getiter(f"{base}/pulls/{pr['number']}/files")]
    assert [(f["filename"], f["status"]) for f in files] == [("calc.py", "modified")]
    assert files[0]["patch"].startswith("@@ -1,2 +1,6 @@\n def add(a, b):")
    diff = await gh.getitem(f"{base}/pulls/{pr['number']}", accept="application/vnd.github.diff")
    assert diff.startswith("diff --git a/calc.py b/calc.py")
    compare = await gh.getitem(f"{base}/compare/main...nimbus/task-1")
    assert (compare["status"], compare["ahead_by"], len(compare["commits"])) == ("ahead", 1, 1)
    on_branch = await gh.getitem(f"{base}/contents/calc.py?ref=nimbus/task-1")
    assert base64.b64decode(on_branch["content"]).decode() == MUL
    with pytest.raises(gidgethub.ValidationError, match="No commits between main and main"):
        await gh.post(f"{base}/pulls", data={"title": "Nothing", "head": "main", "base": "main"})
    assert github.problems == [] and github.response_problems == []


async def test_review_comments_must_land_on_the_diff(github, remote, client, tmp_path):
    gh = api(github, client, oauth_token=await push_branch(github, tmp_path))
    pull = github.add_pull(OWNER, "code", "nimbus/task-1", user="alice")
    url = f"/repos/{OWNER}/code/pulls/{pull.number}"
    by_position = {"path": "calc.py", "position": 5, "body": "Use operator.mul?"}
    by_line = {"path": "calc.py", "line": 6, "side": "RIGHT", "body": "ok"}
    review = {"event": "COMMENT", "body": "Two notes", "comments": [by_position, by_line]}
    assert (await gh.post(f"{url}/reviews", data=review))["state"] == "COMMENTED"
    listed = [c async for c in gh.getiter(f"{url}/comments")]
    assert [(c["position"], c["line"], c["side"]) for c in listed] == [
        (5, 5, "RIGHT"),
        (6, 6, "RIGHT"),
    ]
    for wrong in ({**by_position, "position": 7}, {**by_line, "line": 3, "side": "LEFT"},
                  {**by_line, "path": "other.py"}):  # fmt: skip
        with pytest.raises(gidgethub.ValidationError, match="could not be resolved"):
            await gh.post(f"{url}/reviews", data={"event": "COMMENT", "comments": [wrong]})
    pull.user = github.bot_login  # as if Nimbus had opened it
    with pytest.raises(gidgethub.ValidationError, match="Can not approve your own pull request"):
        await gh.post(f"{url}/reviews", data={"event": "APPROVE"})
    assert github.problems == [] and github.response_problems == []
