"""`POST /tasks/review/`: review a pull request of a registered repository (creates no task)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.api.auth import workspace_of
from bot.api.bodies import Body, Field
from bot.errors import AgentError, ApiError, NotFound, Unprocessable
from bot.github.reviews import ReviewSkipped, review_pull_request
from phases.context import Services

REVIEW = Body(
    "ReviewRequest",
    Field(
        "pr_url",
        str,
        required=True,
        max_length=2000,
        description="https://<github host>/<owner>/<repo>/pull/<number>",
    ),
    Field("post", bool, default=False, description="Also post the review on the pull request."),
)

_PR_PATH = re.compile(r"^/(?P<owner>[\w.-]+)/(?P<repo>[\w.-]+)/pull/(?P<number>\d+)/?$")


class ServiceUnavailable(ApiError):
    status_code = 503


class BadGateway(ApiError):
    status_code = 502


def parse_pr_url(url: str) -> tuple[str, str, str, int]:
    """(host, owner, repo, number) of a pull request URL; 422 when it is not one."""
    parts = urlsplit(url.strip())
    match = _PR_PATH.match(parts.path)
    if parts.scheme != "https" or not parts.hostname or not match:
        raise Unprocessable(
            f"field 'pr_url': {url!r} is not a pull request URL such as"
            " https://github.com/owner/repo/pull/123"
        )
    return parts.hostname, match["owner"], match["repo"], int(match["number"])


def _same_repo(url: str, host: str, owner: str, name: str) -> bool:
    parts = urlsplit(url)
    path = parts.path.removesuffix(".git").strip("/").lower()
    return parts.hostname == host and path == f"{owner}/{name}".lower()


async def review_pr(request: Request) -> Response:
    workspace = await workspace_of(request)
    body = await REVIEW.read(request)
    host, owner, name, number = parse_pr_url(body["pr_url"])
    services: Services = request.app.state.services
    repos = await services.store.list_repos(workspace)
    repo = next((r for r in repos if _same_repo(r.url, host, owner, name)), None)
    if repo is None:
        raise NotFound(
            f"{owner}/{name} on {host} is not a repository of your workspace; register it"
            " (POST /repos/) or install the GitHub App on it"
        )
    if services.github is None:
        raise ServiceUnavailable(
            f"cannot fetch pull request #{number} of {owner}/{name}: this server has no GitHub"
            " App (set NIMBUS_GITHUB_APP_ID and NIMBUS_GITHUB_PRIVATE_KEY, then install the App"
            " on the repository)"
        )
    if repo.github is None:
        raise NotFound(
            f"the GitHub App is not installed on {owner}/{name}: install it on the repository"
            " (GitHub: Settings → GitHub Apps), then ask again"
        )
    try:
        review = await review_pull_request(
            services, repo, number, post=body["post"], pr_url=body["pr_url"]
        )
    except ReviewSkipped as exc:
        if exc.retry_later:
            raise ServiceUnavailable(
                f"the review could not be made now, try again later: {exc}"
            ) from None
        raise Unprocessable(
            f"pull request #{number} of {owner}/{name} is not reviewed: {exc}"
        ) from None
    except AgentError as exc:
        raise BadGateway(f"the review could not be made: {exc}") from None
    return JSONResponse(review)
