"""Generated requests against the real server, checked against its own /openapi.json (schemathesis).

For every documented operation, requests that fit the schema and requests that do not: the answer
is never a 500, its status code is documented for the operation (so no other 5xx either), and its
body has the documented media type and matches the documented schema.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bot.api.openapi import build_openapi
from tests.conftest import API_KEY, FAST_CONFIG, make_repo, make_settings, servers
from tests.test_github_webhooks import SECRET, sign

pytestmark = pytest.mark.asyncio(loop_scope="module")

# About 25 requests per operation, most of them fitting the schema.
EXAMPLES = {GenerationMode.POSITIVE: 15, GenerationMode.NEGATIVE: 10}
GITHUB_REPO = "https://github.com/octo/calc"


def no_internal_error(ctx, response, case) -> bool:
    """Never a 500. The 5xx the document lists are kept for a service behind Nimbus that is down
    or not configured (502, 503); status_code_conformance refuses any other."""
    assert response.status_code != 500, f"500 for {case.method} {case.formatted_path}"
    return True


CHECKS = [
    no_internal_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# The WebSocket answers an upgrade, not a plain request; tests/test_websocket.py speaks to it.
OPERATIONS = [
    pytest.param(method.upper(), path, id=f"{method.upper()} {path}")
    for path, item in build_openapi()["paths"].items()
    for method in item
    if not path.endswith("/ws")
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def target(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    """The server, and ids that exist so that generated requests reach past the 404s: a
    repository whose tasks fail at once (it disappeared after registration), a task at its plan
    gate, an ended task."""
    root = tmp_path_factory.mktemp("fuzz")
    async with servers() as start:
        server = await start(make_settings(root, github_webhook_secret=SECRET))
        live = await server.register(make_repo(root / "live", config=FAST_CONFIG))
        gone = make_repo(root / "gone", config=FAST_CONFIG)
        gone_id = await server.register(gone)
        shutil.rmtree(gone)
        waiting = (await server.create_task(live, agent_name="good"))["id"]
        ended = (await server.create_task(gone_id))["id"]
        await server.until_gate(waiting, "plan")
        await server.until_ended(ended)
        # A GitHub repository: reviews of its pull requests get as far as the missing App (503).
        await server.register(f"{GITHUB_REPO}.git")
        yield {"url": server.url, "repo_id": gone_id, "task_ids": [waiting, ended]}


def fuzz(url: str, method: str, path: str, targets: dict[str, Any]) -> None:
    """Run schemathesis on one operation (blocking: it runs in a thread beside the server)."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", timeout=10)
    operation = schema[path][method]
    spec = operation.definition.raw
    # Without parameters or a body, no request can be outside the schema.
    negatable = bool(spec.get("parameters") or spec.get("requestBody"))
    modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if negatable else [])
    for mode in modes:

        @hypothesis_settings(
            max_examples=EXAMPLES[mode],
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode), use_real_ids=st.booleans())
        def check(case, use_real_ids: bool) -> None:
            if use_real_ids:
                aim(case, targets)
            headers = {"X-API-Key": API_KEY}
            response = case.call(base_url=url, headers=headers, timeout=10)
            case.validate_response(response, checks=CHECKS, headers=headers)

        check()


def aim(case, targets: dict[str, Any]) -> None:
    """Point a generated case at things that exist, keeping whatever else it generated."""
    where = case.operation.path
    if case.path_parameters and "task_id" in case.path_parameters:
        index = len(str(case.path_parameters["task_id"])) % len(targets["task_ids"])
        case.path_parameters["task_id"] = targets["task_ids"][index]
    if not isinstance(case.body, dict):
        return
    if where == "/tasks/":
        case.body.update(workspace_id="ws-default", repo_id=targets["repo_id"])
    elif where == "/repos/":
        case.body.update(workspace_id="ws-default", url=f"{GITHUB_REPO}-{len(case.body)}.git")
    elif where == "/tasks/review/":
        case.body.update(pr_url=f"{GITHUB_REPO}/pull/{len(case.body)}")
    elif where == "/github/webhooks":
        # Signed as GitHub signs, so that generated deliveries get past the signature.
        raw = json.dumps(case.body).encode()
        case.body = raw
        case.headers = {**(case.headers or {}), "X-Hub-Signature-256": sign(raw)}


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
async def test_generated_requests_get_documented_answers(target, method, path):
    await asyncio.to_thread(fuzz, target["url"], method, path, target)
