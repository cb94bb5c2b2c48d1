"""`/openapi.json`: the contract, built from the same body declarations the API checks."""

from __future__ import annotations

from typing import Any

from bot.api.repos import CREATE_REPO
from bot.api.reviews import REVIEW
from bot.api.tasks import CREATE_TASK, MAX_LIMIT, REVISE
from phases.machine import STATUSES, Gate, Phase

_NULLABLE_STR = {"type": ["string", "null"]}

TASK = {
    "type": "object",
    "required": [
        "id",
        "description",
        "status",
        "phase",
        "created_at",
        "repo_id",
        "workspace_id",
        "pr_url",
        "error",
        "updated_at",
        "approval",
        "auto_approve",
        "skill_name",
        "agent_name",
        "branch",
        "source",
        "plan",
        "verification",
        "usage",
        "review",
        "fix_attempts",
    ],
    "properties": {
        "id": {"type": "string", "example": "task-3f9a0c1d2e4b5a69"},
        "description": {"type": "string"},
        "status": {"type": "string", "enum": list(STATUSES)},
        "phase": {"type": "string", "enum": [str(p) for p in Phase]},
        "created_at": {"type": "string", "format": "date-time"},
        "repo_id": {"type": "string"},
        "workspace_id": {"type": "string"},
        "pr_url": _NULLABLE_STR,
        "error": _NULLABLE_STR,
        "updated_at": {"type": "string", "format": "date-time"},
        "approval": {"type": ["string", "null"], "enum": [*(str(g) for g in Gate), None]},
        "auto_approve": {"type": "boolean"},
        "skill_name": _NULLABLE_STR,
        "agent_name": _NULLABLE_STR,
        "branch": _NULLABLE_STR,
        "source": {"type": ["object", "null"]},
        "plan": {"type": ["array", "null"], "items": {"$ref": "#/components/schemas/PlanStep"}},
        "verification": {"type": ["object", "null"]},
        "usage": {
            "type": "object",
            "properties": {
                "input_tokens": {"type": "integer"},
                "output_tokens": {"type": "integer"},
            },
        },
        "review": {"type": ["object", "null"]},
        "fix_attempts": {"type": "integer"},
    },
}

SCHEMAS: dict[str, Any] = {
    "Task": TASK,
    "PlanStep": {
        "type": "object",
        "required": ["title"],
        "properties": {
            "title": {"type": "string"},
            "files": {"type": "array", "items": {"type": "string"}},
            "detail": {"type": "string"},
        },
    },
    "TaskList": {
        "type": "object",
        "required": ["tasks", "next_cursor"],
        "properties": {
            "tasks": {"type": "array", "items": {"$ref": "#/components/schemas/Task"}},
            "next_cursor": {"type": ["string", "null"]},
        },
    },
    "Repo": {
        "type": "object",
        "required": ["id", "workspace_id", "url", "default_branch", "created_at"],
        "properties": {
            "id": {"type": "string"},
            "workspace_id": {"type": "string"},
            "url": {"type": "string"},
            "default_branch": _NULLABLE_STR,
            "created_at": {"type": "string", "format": "date-time"},
            "github": {
                "type": ["object", "null"],
                "description": "For a repository of a GitHub App installation.",
                "properties": {
                    "installation_id": {"type": "integer"},
                    "full_name": {"type": "string"},
                    "repo_id": {"type": "integer"},
                },
            },
        },
    },
    "RepoList": {
        "type": "object",
        "required": ["repos"],
        "properties": {"repos": {"type": "array", "items": {"$ref": "#/components/schemas/Repo"}}},
    },
    "Review": {
        "type": "object",
        "required": ["pr_url", "summary", "comments", "posted", "review_url"],
        "properties": {
            "pr_url": {"type": "string"},
            "summary": {"type": "string"},
            "comments": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "path": {"type": "string"},
                        "line": {"type": "integer"},
                        "side": {"type": "string", "enum": ["LEFT", "RIGHT"]},
                        "body": {"type": "string"},
                    },
                },
            },
            "posted": {"type": "boolean"},
            "review_url": _NULLABLE_STR,
            "head_sha": {"type": "string", "description": "The commit reviewed."},
            "files": {"type": "integer", "description": "Files the review considered."},
            "reviewed_files": {"type": "integer"},
            "not_reviewed": {
                "type": "array",
                "description": "Files left out, each with why (budget, no diff, deletions).",
                "items": {
                    "type": "object",
                    "properties": {"path": {"type": "string"}, "reason": {"type": "string"}},
                },
            },
            "chunks": {"type": "integer", "description": "Requests the diff was cut into."},
            "usage": {
                "type": "object",
                "properties": {
                    "input_tokens": {"type": "integer"},
                    "output_tokens": {"type": "integer"},
                },
            },
        },
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string", "description": "What is wrong and what to do."}},
    },
    "Health": {"type": "object", "properties": {"status": {"type": "string"}}},
    "WebhookPayload": {
        "type": "object",
        "description": "A GitHub webhook payload: https://docs.github.com/webhooks",
    },
    "Delivery": {
        "type": "object",
        "required": ["event", "delivery"],
        "properties": {
            "event": {"type": "string"},
            "delivery": {"type": "string"},
            "new": {"type": "boolean"},
            "zen": {"type": "string"},
        },
    },
    CREATE_TASK.name: CREATE_TASK.schema(),
    CREATE_REPO.name: CREATE_REPO.schema(),
    REVISE.name: REVISE.schema(),
    REVIEW.name: REVIEW.schema(),
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "The body is not valid JSON.",
        401: "Missing or unknown API key.",
        404: "Unknown, or in another workspace.",
        409: "The task is not in a phase where this applies.",
        413: "The body is too large (API: 1 MiB; webhook deliveries: 25 MB).",
        422: "A field or parameter is missing, of the wrong type, or names something unknown.",
        502: "A service behind Nimbus (the agent) failed.",
        503: "A service this needs is not configured.",
    }
    return {str(c): _json("Error", text[c]) for c in codes}


def _body(name: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(name)}}}


_TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}
_SECURED = [{"ApiKey": []}]


def _task_op(summary: str, *, extra_errors: tuple[int, ...] = (), **more: Any) -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": [_TASK_ID],
        "security": _SECURED,
        "responses": {"200": _json("Task", "The task."), **_errors(401, 404, *extra_errors)},
        **more,
    }


def _gate(command: str, gate: str, effect: str) -> dict[str, Any]:
    return {
        "post": _task_op(
            f"{command}: {effect}; 409 unless the task awaits {gate} approval",
            extra_errors=(409,),
        )
    }


def build_openapi() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    workspace_q = {
        "name": "workspace_id",
        "in": "query",
        "schema": {"type": "string"},
        "description": "Defaults to your API key's workspace.",
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Nimbus",
            "version": "0.1.0",
            "description": "Tasks on git repositories: plan, approve, implement, verify, review.",
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
        "paths": {
            "/tasks/": {
                "post": {
                    "summary": "Create a task",
                    "security": _SECURED,
                    "requestBody": _body("CreateTask"),
                    "responses": {
                        "201": _json("Task", "The task, queued."),
                        **_errors(400, 401, 413, 422),
                    },
                },
                "get": {
                    "summary": "List tasks, newest first",
                    "security": _SECURED,
                    "parameters": [
                        workspace_q,
                        {
                            "name": "status",
                            "in": "query",
                            "schema": {"type": "string", "enum": list(STATUSES)},
                        },
                        {"name": "repo_id", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": MAX_LIMIT,
                                "default": 50,
                            },
                        },
                        {
                            "name": "cursor",
                            "in": "query",
                            "schema": {"type": "string"},
                            "description": "next_cursor of the previous page.",
                        },
                    ],
                    "responses": {
                        "200": _json("TaskList", "A page of tasks."),
                        **_errors(401, 404, 422),
                    },
                },
            },
            "/tasks/review/": {
                "post": {
                    "summary": "Review a pull request of a registered repository",
                    "security": _SECURED,
                    "requestBody": _body("ReviewRequest"),
                    "responses": {
                        "200": _json("Review", "The review."),
                        **_errors(400, 401, 404, 413, 422, 502, 503),
                    },
                }
            },
            "/tasks/{task_id}/": {"get": _task_op("Get a task")},
            "/tasks/{task_id}/approve": _gate("approve", "plan", "go on to IMPLEMENTING"),
            "/tasks/{task_id}/reject": _gate("reject", "plan", "cancel the task"),
            "/tasks/{task_id}/approve-diff": _gate("approve-diff", "diff", "commit and push"),
            "/tasks/{task_id}/reject-diff": _gate("reject-diff", "diff", "cancel the task"),
            "/tasks/{task_id}/revise": {
                "post": _task_op(
                    "revise: back to PLANNING with feedback; 409 unless awaiting plan approval",
                    extra_errors=(400, 409, 413, 422),
                    requestBody=_body("Revise"),
                )
            },
            "/tasks/{task_id}/cancel": {
                "post": _task_op(
                    "Cancel, whatever the phase; 409 once it ended", extra_errors=(409,)
                )
            },
            "/tasks/{task_id}/diff": {
                "get": {
                    "summary": "The task's current diff",
                    "parameters": [_TASK_ID],
                    "security": _SECURED,
                    "responses": {
                        "200": {
                            "description": "A unified diff.",
                            "content": {"text/x-diff": {"schema": {"type": "string"}}},
                        },
                        **_errors(401, 404),
                    },
                }
            },
            "/tasks/{task_id}/ws": {
                "get": {
                    "summary": "WebSocket: the task's events (history, then live); ?since=<seq>",
                    "parameters": [
                        _TASK_ID,
                        {"name": "since", "in": "query", "schema": {"type": "integer"}},
                        {
                            "name": "api_key",
                            "in": "query",
                            "schema": {"type": "string"},
                            "description": "For browsers, which cannot set X-API-Key.",
                        },
                    ],
                    "security": _SECURED,
                    "responses": {
                        "101": {"description": "Switching to the WebSocket."},
                        **_errors(401, 404, 422),
                    },
                }
            },
            "/repos/": {
                "post": {
                    "summary": "Register a git repository",
                    "security": _SECURED,
                    "requestBody": _body("CreateRepo"),
                    "responses": {
                        "201": _json("Repo", "Registered."),
                        "200": _json("Repo", "Already registered with this URL."),
                        **_errors(400, 401, 413, 422),
                    },
                },
                "get": {
                    "summary": "List the workspace's repositories",
                    "security": _SECURED,
                    "parameters": [workspace_q],
                    "responses": {
                        "200": _json("RepoList", "The repositories."),
                        **_errors(401, 404),
                    },
                },
            },
            "/github/webhooks": {
                "post": {
                    "summary": "GitHub App deliveries (signed with the webhook secret, no key)",
                    "parameters": [
                        {"name": h, "in": "header", "required": True, "schema": {"type": "string"}}
                        for h in ("X-Hub-Signature-256", "X-GitHub-Event", "X-GitHub-Delivery")
                    ],
                    "requestBody": _body("WebhookPayload"),
                    "responses": {
                        "202": _json("Delivery", "Stored for the worker (or already stored)."),
                        "200": _json("Delivery", "A ping, answered."),
                        **_errors(400, 401, 413),
                        "503": _json("Error", "No webhook secret is configured."),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness and database check",
                    "responses": {
                        "200": _json("Health", "Up."),
                        "503": _json("Error", "The database is unreachable."),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
    }
