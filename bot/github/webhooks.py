"""`POST /github/webhooks`: verify the signature, store the delivery, answer 202 at once."""

from __future__ import annotations

import logging

from gidgethub import ValidationFailure
from gidgethub.sansio import validate_event
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.api.bodies import read_body
from bot.errors import ApiError, BadRequest, Unauthorized
from phases.context import Services

log = logging.getLogger("nimbus.github")

# GitHub caps webhook payloads at 25 MB:
# https://docs.github.com/webhooks/webhook-events-and-payloads#payload-cap
WEBHOOK_BODY_LIMIT = 25 * 1024 * 1024


class NotConfigured(ApiError):
    status_code = 503


async def receive(request: Request) -> Response:
    """Store a signed delivery for the worker; a redelivery (same id) changes nothing."""
    with request.app.state.deliveries.receiving():
        return await _receive(request)


async def _receive(request: Request) -> Response:
    services: Services = request.app.state.services
    secret = services.settings.github_webhook_secret
    if not secret:
        raise NotConfigured(
            "this server takes no GitHub deliveries: set NIMBUS_GITHUB_WEBHOOK_SECRET to the"
            " App's webhook secret"
        )
    body = await read_body(request, WEBHOOK_BODY_LIMIT)
    # Required: gidgethub would also accept the legacy sha1 signature, or none at all.
    # https://docs.github.com/webhooks/using-webhooks/validating-webhook-deliveries
    signature = request.headers.get("x-hub-signature-256")
    if not signature:
        raise Unauthorized("missing X-Hub-Signature-256: deliveries must be signed")
    try:
        validate_event(body, signature=signature, secret=secret)
    except ValidationFailure:
        raise Unauthorized("the signature does not match the webhook secret") from None
    event = request.headers.get("x-github-event")
    delivery = request.headers.get("x-github-delivery")
    if not event or not delivery:
        raise BadRequest("a delivery needs the X-GitHub-Event and X-GitHub-Delivery headers")
    if event == "ping":
        return JSONResponse({"event": "ping", "delivery": delivery, "zen": "pong"}, 200)
    stored = await services.store.record_delivery(delivery, event, body)
    if stored:
        request.app.state.deliveries.wake.set()
    else:
        log.info("delivery %s (%s) was already stored: nothing to do", delivery, event)
    return JSONResponse({"event": event, "delivery": delivery, "new": stored}, 202)
