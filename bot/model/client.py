"""One model endpoint over httpx2: timeouts, retries with backoff, errors that name the setting."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx2

from bot.errors import ModelError, RateLimited
from bot.model import anthropic, openai
from bot.model.types import Message, ModelReply, ToolSpec
from bot.retry import backoff, retry_after

PROVIDERS = {"openai": openai, "anthropic": anthropic}
# Statuses after which the provider cannot have done the work: asking again is safe.
_RETRYABLE = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
# The longest Retry-After Nimbus waits for; a provider asking for more is treated as down.
_MAX_RETRY_AFTER = 120.0


@dataclass(frozen=True)
class ModelEndpoint:
    """Where a model is, and how to reach it."""

    provider: str
    model: str
    base_url: str
    api_key: str | None
    timeout: float = 300.0
    max_retries: int = 5
    retry_base: float = 1.0

    def describe(self) -> str:
        return f"{self.provider} model {self.model!r} at {self.base_url}"


class ModelClient:
    """Sends conversations to one endpoint and returns neutral replies."""

    def __init__(self, endpoint: ModelEndpoint, http: httpx2.AsyncClient) -> None:
        self.endpoint = endpoint
        self.http = http
        self.wire = PROVIDERS[endpoint.provider]
        self.calls = 0

    def _backoff(self, attempt: int) -> float:
        return backoff(attempt, self.endpoint.retry_base)

    async def complete(
        self, system: str, messages: list[Message], tools: list[ToolSpec], max_tokens: int = 4096
    ) -> ModelReply:
        """One completion, retried on rate limits, server errors and dropped connections."""
        ep = self.endpoint
        body = self.wire.request_body(ep.model, system, messages, tools, max_tokens)
        last, delay = "", 0.0
        for attempt in range(ep.max_retries + 1):
            if attempt:
                await asyncio.sleep(delay)
            self.calls += 1
            try:
                response = await self.http.post(
                    self.wire.endpoint(ep.base_url),
                    json=body,
                    headers=self.wire.headers(ep.api_key),
                    timeout=httpx2.Timeout(ep.timeout, connect=min(ep.timeout, 15.0)),
                )
            except httpx2.TimeoutException:
                last = f"no answer within {ep.timeout:.0f}s"
                delay = self._backoff(attempt)
                continue
            except httpx2.TransportError as exc:
                last = f"connection failed ({type(exc).__name__}: {exc})"
                delay = self._backoff(attempt)
                continue
            if response.status_code == 200:
                return self.wire.parse_reply(self._json(response))
            last = f"HTTP {response.status_code}: {self._message(response)}"
            if response.status_code not in _RETRYABLE:
                raise self._refusal(response)
            waited = retry_after(response.headers)
            if waited is not None and waited > _MAX_RETRY_AFTER:
                break
            delay = waited if waited is not None else self._backoff(attempt)
        error = RateLimited if last.startswith("HTTP 429") else ModelError
        raise error(
            f"the {ep.describe()} kept failing after {ep.max_retries + 1} attempts; last: {last}"
        )

    def _json(self, response: httpx2.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            raise ModelError(
                f"the {self.endpoint.describe()} answered something that is not JSON:"
                f" {response.text[:300]!r}"
            ) from None
        if not isinstance(data, dict):
            raise ModelError(f"the {self.endpoint.describe()} answered an unexpected {data!r:.300}")
        return data

    def _message(self, response: httpx2.Response) -> str:
        try:
            return self.wire.error_message(response.json())
        except ValueError:
            return response.text[:300]

    def _refusal(self, response: httpx2.Response) -> ModelError:
        ep, status = self.endpoint, response.status_code
        said = self._message(response)
        if status in (401, 403):
            return ModelError(
                f"the {ep.describe()} refused the API key (HTTP {status}: {said}); set"
                " NIMBUS_MODEL_API_KEY (or the agent's api_key_env) to a valid key"
            )
        if status == 404:
            return ModelError(
                f"the {ep.describe()} was not found (HTTP 404: {said}); check NIMBUS_MODEL and"
                " NIMBUS_MODEL_BASE_URL (or the agent's model and base_url)"
            )
        return ModelError(f"the {ep.describe()} refused the request (HTTP {status}: {said})")
