"""The GitHub App client against the fake GitHub: tokens, retries GitHub allows, ETags."""

from __future__ import annotations

import asyncio

import httpx2
import pytest
from gidgethub import BadRequest, GitHubBroken

from bot.github.client import GitHubApp
from tests.fakes.github import FakeGitHub, running


@pytest.fixture
async def github():
    async with running(FakeGitHub()) as fake:
        fake.add_repo("octo-org", "hello", installation_id=1)
        fake.add_repo("other-org", "secret", installation_id=2)
        yield fake
    assert fake.problems == []


@pytest.fixture
async def app(github):
    async with httpx2.AsyncClient(timeout=10) as http:
        yield GitHubApp(
            str(github.app_id), github.private_key_pem, github.url, http, retry_base=0.01
        )


async def test_tokens_are_minted_once_per_installation_even_when_asked_at_once(github, app):
    tokens = await asyncio.gather(*(app.token(1) for _ in range(10)))
    assert len(set(tokens)) == 1
    assert await app.token(1) == tokens[0]
    assert github.mints[1] == 1


async def test_a_token_near_its_expiry_is_renewed(github, app):
    github.token_lifetime = 60  # inside the renewal margin: never served from the cache
    first = await app.token(1)
    second = await app.token(1)
    assert first != second
    assert github.mints[1] == 2


async def test_reads_are_retried_after_a_server_error(github, app):
    github.fail_next("GET", "/repos/octo-org/hello", 502, times=2)
    gh = await app.api(1)
    assert (await gh.getitem("/repos/octo-org/hello"))["full_name"] == "octo-org/hello"


async def test_a_creation_is_not_retried_blindly_after_a_server_error(github, app):
    issue = github.add_issue("octo-org", "hello", "An issue")
    github.fail_next("POST", "/repos/octo-org/hello/issues/*/comments", 502, after_acting=True)
    gh = await app.api(1)
    with pytest.raises(GitHubBroken):
        await gh.post(f"/repos/octo-org/hello/issues/{issue.number}/comments", data={"body": "x"})
    # GitHub acted once; Nimbus did not ask again and create a second comment.
    assert len(github.comments_on("octo-org", "hello", issue.number)) == 1


@pytest.mark.parametrize("status", [429, 403])
async def test_rate_limits_with_retry_after_are_waited_out_even_for_creations(github, app, status):
    issue = github.add_issue("octo-org", "hello", "An issue")
    github.fail_next("POST", "/repos/octo-org/hello/issues/*/comments", status, retry_after=0.05)
    gh = await app.api(1)
    await gh.post(f"/repos/octo-org/hello/issues/{issue.number}/comments", data={"body": "x"})
    assert len(github.comments_on("octo-org", "hello", issue.number)) == 1


async def test_each_installation_has_its_own_etag_cache(github, app):
    first = await app.api(1)
    await first.getitem("/repos/octo-org/hello")
    await first.getitem("/repos/octo-org/hello")
    assert github.not_modified == 1
    other = await app.api(2)
    with pytest.raises(BadRequest) as refused:
        await other.getitem("/repos/octo-org/hello")
    assert refused.value.status_code == 404  # not another installation's cached answer
    assert app._caches[1] is not app._caches[2]


async def test_an_expired_token_is_renewed_for_api_calls(github, app):
    gh = await app.api(1)
    github.expire_all_tokens()
    assert (await gh.getitem("/repos/octo-org/hello"))["name"] == "hello"
    assert github.mints[1] == 2
