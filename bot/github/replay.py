"""`nimbus replay`: send a payload to a running Nimbus as a signed GitHub delivery.

Like probot's `receive`, for trying the App without GitHub: the request carries the headers
GitHub sends (https://docs.github.com/webhooks/webhook-events-and-payloads#delivery-headers).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from pathlib import Path

import httpx2

from bot.errors import ConfigError, NimbusError

WEBHOOK_PATH = "/github/webhooks"
_EVENT = re.compile(r"[a-z_]+")


def sign(body: bytes, secret: str) -> str:
    """`X-Hub-Signature-256`: the HMAC-SHA256 of the raw body, keyed with the webhook secret."""
    # https://docs.github.com/webhooks/using-webhooks/validating-webhook-deliveries
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def delivery_headers(event: str, body: bytes, secret: str, delivery: str) -> dict[str, str]:
    """The headers of a GitHub delivery of `body`."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/nimbus-replay",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign(body, secret),
    }


def webhook_url(url: str) -> str:
    """Nimbus's webhook endpoint under a base URL (which may already name it)."""
    url = url.rstrip("/")
    return url if url.endswith(WEBHOOK_PATH) else url + WEBHOOK_PATH


def read_payload(path: Path) -> bytes:
    """The payload's bytes as they are (the signature covers them), once they parse as JSON."""
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the payload {path}: {exc.strerror}") from None
    try:
        json.loads(body)
    except ValueError as exc:
        raise ConfigError(f"the payload {path} is not JSON: {exc}") from None
    return body


def replay(
    url: str, event: str, payload: Path, secret: str | None, delivery: str | None = None
) -> httpx2.Response:
    """POST the payload as a signed delivery; Nimbus's answer, whatever its status."""
    if not secret:
        raise ConfigError(
            "no webhook secret: pass --secret or set NIMBUS_GITHUB_WEBHOOK_SECRET to the one"
            " the server was started with"
        )
    if not _EVENT.fullmatch(event):
        raise ConfigError(f"{event!r} is not a webhook event name such as issues or issue_comment")
    body = read_payload(payload)
    headers = delivery_headers(event, body, secret, delivery or str(uuid.uuid4()))
    target = webhook_url(url)
    try:
        with httpx2.Client(timeout=httpx2.Timeout(30.0, connect=10.0)) as client:
            return client.post(target, content=body, headers=headers)
    except httpx2.HTTPError as exc:
        raise NimbusError(
            f"cannot deliver to {target} ({exc}): is Nimbus running there (`nimbus serve`)?"
        ) from None
