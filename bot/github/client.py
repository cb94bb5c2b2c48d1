"""GitHub's API for one installation: cached tokens, retries GitHub allows, an ETag cache each."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

import httpx2
from gidgethub import apps
from gidgethub.httpx import GitHubAPI

from bot.retry import backoff, retry_after

log = logging.getLogger("nimbus.github")

USER_AGENT = "nimbus-agent"
# Methods GitHub may safely be asked again after a 5xx or a broken connection. A POST creates
# something, and after a 5xx it may have: the caller looks first (DESIGN §6).
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "PATCH"})
# POSTs that create nothing anyone sees: asking twice is harmless (a second token, unused).
_REPEATABLE_POSTS = ("/access_tokens",)
# Longest wait Nimbus accepts from a Retry-After before giving up on the call.
_MAX_WAIT = 120.0
# Renew a token this long before GitHub's `expires_at`, so no call starts with a dying one.
RENEW_MARGIN = 300.0


class BoundedCache(OrderedDict[str, Any]):
    """gidgethub's ETag cache: at most `size` URLs, least recently used out first."""

    def __init__(self, size: int = 512) -> None:
        super().__init__()
        self.size = size

    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key)
        self.move_to_end(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


class RetryingGitHubAPI(GitHubAPI):
    """gidgethub's client, retrying what GitHub documents as safe to retry.

    https://docs.github.com/rest/using-the-rest-api/best-practices-for-using-the-rest-api
    """

    def __init__(
        self,
        *args: Any,
        max_retries: int = 4,
        retry_base: float = 1.0,
        renew: Callable[[], Awaitable[str]] | None = None,
        **kw: Any,
    ):
        super().__init__(*args, **kw)
        self.max_retries = max_retries
        self.retry_base = retry_base
        self.renew = renew

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        attempt, renewed = 0, False
        while True:
            try:
                status, response_headers, data = await super()._request(method, url, headers, body)
            except httpx2.ConnectError:
                # Refused before anything was sent: GitHub cannot have acted.
                if attempt >= self.max_retries:
                    raise
                wait = self._backoff(attempt)
            except httpx2.TransportError:
                if not _repeatable(method, url) or attempt >= self.max_retries:
                    raise
                wait = self._backoff(attempt)
            else:
                if status == 401 and self.renew is not None and not renewed:
                    # The token expired or was revoked before its time: mint one, ask again.
                    renewed = True
                    token = await self.renew()
                    self.oauth_token = token
                    headers = {**headers, "authorization": f"token {token}"}
                    continue
                wait = self._wait_for(method, url, status, response_headers, attempt)
                if wait is None:
                    return status, response_headers, data
            log.info("GitHub %s %s: retrying in %.1fs", method, url, wait)
            await asyncio.sleep(wait)
            attempt += 1

    def _wait_for(
        self, method: str, url: str, status: int, headers: Mapping[str, str], attempt: int
    ) -> float | None:
        """How long to wait before asking again, or None to answer as is."""
        if attempt >= self.max_retries:
            return None
        asked = retry_after(headers)
        if asked is not None and asked > _MAX_WAIT:
            return None
        # 429, and 403 with Retry-After (a secondary rate limit): GitHub did nothing; any
        # method may ask again after the wait it names.
        if status == 429 or (status == 403 and asked is not None):
            return asked if asked is not None else self._backoff(attempt)
        if status >= 500 and _repeatable(method, url):
            return self._backoff(attempt)
        return None

    def _backoff(self, attempt: int) -> float:
        return backoff(attempt, self.retry_base)


def _repeatable(method: str, url: str) -> bool:
    """Whether GitHub may be asked again after a 5xx, which it may have acted on."""
    return method in _IDEMPOTENT or (
        method == "POST" and url.split("?", 1)[0].endswith(_REPEATABLE_POSTS)
    )


class GitHubApp:
    """The App's identity: installation tokens minted once at a time, cached until near expiry."""

    def __init__(
        self,
        app_id: str,
        private_key: str,
        api_url: str,
        http: httpx2.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
        max_retries: int = 4,
        retry_base: float = 1.0,
    ) -> None:
        self.app_id = str(app_id)
        self.private_key = private_key
        self.api_url = api_url.rstrip("/")
        self.http = http
        self.clock = clock
        self.max_retries = max_retries
        self.retry_base = retry_base
        self._tokens: dict[int, tuple[str, float]] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        # One ETag cache per installation: a shared one could hand one tenant another's data.
        self._caches: dict[int, BoundedCache] = {}

    def _api(
        self,
        token: str | None = None,
        cache: BoundedCache | None = None,
        renew: Callable[[], Awaitable[str]] | None = None,
    ) -> GitHubAPI:
        return RetryingGitHubAPI(
            self.http,
            USER_AGENT,
            oauth_token=token,
            cache=cache,
            base_url=self.api_url,
            max_retries=self.max_retries,
            retry_base=self.retry_base,
            renew=renew,
        )

    def jwt(self) -> str:
        return apps.get_jwt(app_id=self.app_id, private_key=self.private_key)

    def app_api(self) -> GitHubAPI:
        """Calls made as the App itself (its installations, the manifest exchange)."""
        return self._api()

    async def token(self, installation_id: int) -> str:
        """A live installation token, minted at most once at a time per installation."""
        cached = self._tokens.get(installation_id)
        if cached and cached[1] - RENEW_MARGIN > self.clock():
            return cached[0]
        lock = self._locks.setdefault(installation_id, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(installation_id)
            if cached and cached[1] - RENEW_MARGIN > self.clock():
                return cached[0]
            data = await apps.get_installation_access_token(
                self._api(),
                installation_id=str(installation_id),
                app_id=self.app_id,
                private_key=self.private_key,
            )
            expires = datetime.fromisoformat(data["expires_at"].replace("Z", "+00:00"))
            self._tokens[installation_id] = (data["token"], expires.timestamp())
            return data["token"]

    def forget_token(self, installation_id: int) -> None:
        """Drop a token GitHub refused (it expired or was revoked early)."""
        self._tokens.pop(installation_id, None)

    async def api(self, installation_id: int) -> GitHubAPI:
        """A client acting as the installation, with that installation's own ETag cache."""
        cache = self._caches.setdefault(installation_id, BoundedCache())

        async def renew() -> str:
            self.forget_token(installation_id)
            return await self.token(installation_id)

        return self._api(await self.token(installation_id), cache, renew)
