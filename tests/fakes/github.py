"""A fake api.github.com on loopback that checks every request against GitHub's OpenAPI document.

`FakeGitHub` is a real HTTP server (starlette under uvicorn on 127.0.0.1) serving the operations of
`shared/github/openapi-subset.json`, authenticated as GitHub does it:

- `/app/...` and `GET /repos/{o}/{r}/installation` want `Authorization: Bearer <JWT>`: RS256,
  signed with `private_key_pem`, `iss` = `app_id` (string or number), not expired, `exp` at most
  10 minutes after `iat`; anything else is 401 "A JSON web token could not be decoded";
- the other `/repos/...` operations want `token <t>` or `Bearer <t>` with a live installation token
  (from `POST /app/installations/{id}/access_tokens`, or `issue_token()` in a test) of an
  installation that has the repository: an unknown or expired token is 401 "Bad credentials", a
  repository outside the installation 404, as on GitHub;
- `POST /app-manifests/{code}/conversions` wants nothing.

Every request is recorded in `requests` (method, path, query, lower-case headers, json, status).
One that matches no operation of the subset, has a path or query parameter of the wrong type or an
undeclared one, or a JSON body its operation's schema refuses (undeclared keys included: stricter
than GitHub, to catch typos) goes into `problems` and is answered as GitHub would: 404, or 422
`{"message": "Validation Failed", "errors": [...]}`; tests end with `assert github.problems == []`.
Refused credentials are no problem; their reasons go into `denied`. Responses are shaped like
GitHub's, their URLs pointing at the fake and `html_url`s at https://github.example; where one
disagrees with its schema that goes into `response_problems`, for information only (GitHub's own
examples disagree with theirs).

Usage::

    async with running(FakeGitHub()) as github:
        github.add_repo("octo-org", "hello", installation_id=1)
        issue = github.add_issue("octo-org", "hello", "Add multiply", "Please add mul()")
        github.add_comment("octo-org", "hello", issue.number, "/nimbus go", user="alice")
        github.set_permission("octo-org", "hello", "alice", "write")
        github.fail_next("POST", "/repos/*/issues/*/comments", 502, after_acting=True)
        ...  # Nimbus with NIMBUS_GITHUB_API_URL=github.url, app_id, private_key_pem
        assert [c.body for c in github.comments_on("octo-org", "hello", issue.number)] == [...]
        assert github.problems == []

With a `GitRemote` (tests.fakes.git_remote), `add_repo(..., remote=remote)` makes the repository a
real git repository: `clone_url` points at the remote, and pulls, their files and diffs, compare
and contents are read from it.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import itertools
import json
import math
import re
import secrets
import string
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

import httpx2
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jsonschema import Draft7Validator, FormatChecker, ValidationError, validators
from jsonschema.exceptions import best_match
from referencing import Registry
from referencing.jsonschema import DRAFT7
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes import git_remote
from tests.fakes.git_remote import METHODS, FileDiff, GitRemote, LoopbackServer, running

__all__ = ["FakeGitHub", "GitRemote", "running"]

JSON = dict[str, Any]
SHARED = Path(__file__).resolve().parents[3] / "shared" / "github"
SPEC_URI = "urn:nimbus-test:github-openapi"
HTML = "https://github.example"
DOCS = "https://docs.github.com/rest"
RESOURCES = {"apps": "Integration", "repos": "Repository", "checks": "CheckRun",
             "issues": "Issue", "reactions": "Reaction", "pulls": "PullRequest"}  # fmt: skip
# https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api
SECONDARY = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
    "If you reach out to GitHub Support for help, please include the request ID {id}."
)
# role_name -> permission, as the collaborator permission API reports them
ROLES = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read",
         "read": "read", "none": "none"}  # fmt: skip
REACTIONS = ["+1", "-1", "laugh", "confused", "heart", "hooray", "eyes", "rocket"]
APP_PERMISSIONS = {"metadata": "read", "contents": "write", "issues": "write",
                   "pull_requests": "write", "checks": "write"}  # fmt: skip
APP_EVENTS = ["issues", "issue_comment", "pull_request", "installation"]

FORMATS = FormatChecker(formats=())


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    if isinstance(value, str):
        if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value):
            raise ValueError(f"{value!r} is not YYYY-MM-DDTHH:MM:SSZ")
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    return True


@FORMATS.checks("repo.nwo")
def _repo_nwo(value: object) -> bool:
    return not isinstance(value, str) or re.fullmatch(r"[\w.-]+/[\w.-]+", value) is not None


def _strict_properties(validator: Any, properties: JSON, instance: Any, schema: JSON) -> Any:
    """Draft 7 `properties`, and keys that the schema does not name are errors too."""
    yield from Draft7Validator.VALIDATORS["properties"](validator, properties, instance, schema)
    if validator.is_type(instance, "object") and "additionalProperties" not in schema:
        for extra in sorted(set(instance) - set(properties)):
            yield ValidationError(f"{extra!r} is not a parameter of this operation", path=[extra])


StrictValidator = validators.extend(Draft7Validator, {"properties": _strict_properties})


def _nullable(node: Any) -> None:
    """OpenAPI 3.0's `nullable: true` in JSON Schema terms: null is allowed too."""
    if isinstance(node, list):
        for item in node:
            _nullable(item)
    elif isinstance(node, dict):
        for value in node.values():
            _nullable(value)
        if node.get("nullable") is True:
            del node["nullable"]
            if isinstance(node.get("type"), str) and "enum" not in node:
                node["type"] = [node["type"], "null"]
            else:
                inner = dict(node)
                node.clear()
                node["anyOf"] = [inner, {"type": "null"}]


@dataclass(frozen=True)
class Operation:
    """One operation of the OpenAPI subset."""

    method: str
    template: str
    operation_id: str
    pattern: re.Pattern[str]
    parameters: tuple[JSON, ...]
    body: str | None  # key of the request body schema, if the operation takes one
    body_required: bool
    response: str | None  # key of the success response schema
    docs: str
    resource: str


class OpenAPI:
    """GitHub's REST description, cut to a subset: match paths, check parameters and bodies."""

    def __init__(self, path: Path) -> None:
        doc = json.loads(path.read_text())
        _nullable(doc)
        doc["x-requests"], doc["x-responses"] = {}, {}
        self.operations: list[Operation] = []
        for template, item in doc["paths"].items():
            for method, op in item.items():
                if method.upper() not in METHODS:
                    continue
                params = [_deref(doc, p) for p in item.get("parameters", []) + op["parameters"]]
                key = op["operationId"].replace("/", "--")
                body = op.get("requestBody")
                if body is not None:
                    doc["x-requests"][key] = body["content"]["application/json"]["schema"]
                response = _success_schema(doc, op)
                if response is not None:
                    doc["x-responses"][key] = response
                operation = Operation(
                    method=method.upper(),
                    template=template,
                    operation_id=op["operationId"],
                    pattern=_pattern(template, params),
                    parameters=tuple(params),
                    body=key if body is not None else None,
                    body_required=bool(body and body.get("required")),
                    response=key if response is not None else None,
                    docs=op.get("externalDocs", {}).get("url", DOCS),
                    resource=RESOURCES.get(op.get("tags", [""])[0], "Resource"),
                )
                self.operations.append(operation)
        # More fixed text first, so that `/issues/comments/{id}` wins over `/issues/{number}`.
        self.operations.sort(key=lambda o: -len(re.sub(r"\{[^}]+\}", "", o.template)))
        registry: Registry[Any] = Registry().with_resource(SPEC_URI, DRAFT7.create_resource(doc))
        self._bodies = {
            key: StrictValidator(
                {"$ref": f"{SPEC_URI}#/x-requests/{key}"}, registry=registry, format_checker=FORMATS
            )
            for key in doc["x-requests"]
        }
        self._responses = {
            key: Draft7Validator({"$ref": f"{SPEC_URI}#/x-responses/{key}"}, registry=registry)
            for key in doc["x-responses"]
        }

    def match(self, method: str, raw_path: str) -> tuple[Operation, dict[str, str]] | None:
        """The operation a request is for, and its path parameters, decoded."""
        for op in self.operations:
            found = op.pattern.fullmatch(raw_path)
            if found and op.method == method:
                return op, {k: unquote(v) for k, v in found.groupdict().items()}
        return None

    def parameters(
        self, op: Operation, path: dict[str, str], query: dict[str, str]
    ) -> tuple[JSON, list[JSON]]:
        """Path and query parameters as their declared types (defaults filled), and errors."""
        values: JSON = {}
        errors: list[JSON] = []
        for param in op.parameters:
            name, schema = param["name"], param.get("schema", {})
            raw = {"path": path, "query": query}.get(param["in"], {}).get(name)
            if raw is None:
                if param.get("required"):
                    errors.append(_entry(op, name, "missing_field", f"{name!r} is required"))
                elif "default" in schema:
                    values[name] = schema["default"]
                continue
            values[name] = _coerce(raw, schema)
            for error in Draft7Validator(schema, format_checker=FORMATS).iter_errors(values[name]):
                errors.append(_entry(op, name, "invalid", error.message))
        declared = {p["name"] for p in op.parameters if p["in"] == "query"}
        for name in sorted(set(query) - declared):
            errors.append(_entry(op, name, "invalid", "not a query parameter of this operation"))
        return values, errors

    def body(self, op: Operation, body: Any) -> list[JSON]:
        """What the operation's request body schema says about `body` (None: none was sent)."""
        if op.body is None:
            return [] if body is None else [_entry(op, "", "invalid", "no body expected")]
        if body is None and not op.body_required:
            return []
        errors = []
        # GitHub reads a missing body as {}, so that `required` names each missing field.
        for error in self._bodies[op.body].iter_errors({} if body is None else body):
            leaf = best_match([error])
            where = [str(part) for part in leaf.absolute_path]
            if leaf.validator == "required":
                missing = re.match(r"'(.*)' is a required property", leaf.message)
                where += [missing[1]] if missing else []
            code = "missing_field" if leaf.validator == "required" else "invalid"
            errors.append(_entry(op, ".".join(where), code, leaf.message))
        return errors

    def response_errors(self, op: Operation, body: Any) -> list[str]:
        """Where a response disagrees with the operation's success schema."""
        if op.response is None:
            return []
        found = self._responses[op.response].iter_errors(body)
        return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in found]


def _deref(doc: JSON, node: JSON) -> JSON:
    while "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def _success_schema(doc: JSON, op: JSON) -> JSON | None:
    for status in ("200", "201"):
        if status in op["responses"]:
            content = _deref(doc, op["responses"][status]).get("content", {})
            return content.get("application/json", {}).get("schema")
    return None


def _pattern(template: str, params: list[JSON]) -> re.Pattern[str]:
    multi = {p["name"] for p in params if p.get("x-multi-segment")}
    regex, pos = "", 0
    for match in re.finditer(r"\{([^}]+)\}", template):
        regex += re.escape(template[pos : match.start()])
        regex += f"(?P<{match[1]}>{'.+' if match[1] in multi else '[^/]+'})"
        pos = match.end()
    return re.compile(regex + re.escape(template[pos:]))


@cache
def _spec() -> OpenAPI:
    return OpenAPI(SHARED / "openapi-subset.json")


def _coerce(raw: str, schema: JSON) -> Any:
    if schema.get("type") == "integer" and re.fullmatch(r"-?\d+", raw):
        return int(raw)
    if schema.get("type") == "boolean" and raw in {"true", "false"}:
        return raw == "true"
    return raw


def _entry(op: Operation, name: str, code: str, message: str) -> JSON:
    return {"resource": op.resource, "field": name, "code": code, "message": message}


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(int(moment), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _alnum(n: int) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(n))


def _node(kind: str, number: int) -> str:
    return base64.b64encode(f"0:{kind}{number}".encode()).decode()


def _sha(*parts: object) -> str:
    return hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()


def _user_id(login: str) -> int:
    return int(hashlib.sha256(login.lower().encode()).hexdigest()[:7], 16)


@dataclass
class Installation:
    """An installation of the App on an account."""

    id: int
    account: str
    account_type: str = "Organization"
    repositories: list[str] = field(default_factory=list)  # Repo.key
    created_at: float = field(default_factory=time.time)


@dataclass
class Repo:
    """A repository; with `git_dir`, pulls, files, compare and contents come from git."""

    owner: str
    name: str
    id: int
    installation_id: int | None
    default_branch: str = "main"
    clone_url: str | None = None
    private: bool = True
    git_dir: Path | None = None
    drafts_supported: bool = True
    created_at: float = field(default_factory=time.time)

    @property
    def key(self) -> str:
        """`owner/name` in lower case: GitHub's names are not case-sensitive."""
        return f"{self.owner}/{self.name}".lower()


@dataclass
class Token:
    """An installation access token; `repositories` when it was limited to some."""

    token: str
    installation_id: int
    expires_at: float
    repositories: set[str] | None = None
    permissions: dict[str, str] = field(default_factory=lambda: dict(APP_PERMISSIONS))


@dataclass
class Issue:
    """An issue, or the issue side of a pull request."""

    repo: str
    number: int
    id: int
    title: str
    body: str | None
    user: str
    labels: list[str] = field(default_factory=list)
    state: str = "open"
    is_pull: bool = False
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)


@dataclass
class Comment:
    """An issue comment."""

    id: int
    repo: str
    issue_number: int
    body: str
    user: str
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)


@dataclass
class Pull:
    """A pull request; its number is its `Issue`'s."""

    repo: str
    number: int
    id: int
    title: str
    body: str | None
    head: str
    base: str
    user: str
    draft: bool = False
    state: str = "open"
    maintainer_can_modify: bool = False
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)


@dataclass
class CheckRun:
    """A check run."""

    id: int
    repo: str
    name: str
    head_sha: str
    status: str = "queued"
    conclusion: str | None = None
    started_at: float = field(default_factory=time.time)
    completed_at: float | None = None
    details_url: str | None = None
    external_id: str = ""
    output: JSON = field(default_factory=dict)


@dataclass
class Review:
    """A pull request review."""

    id: int
    repo: str
    pull_number: int
    user: str
    body: str
    state: str
    commit_id: str
    submitted_at: float = field(default_factory=time.time)


@dataclass
class ReviewComment:
    """A review comment on the diff of a pull request."""

    id: int
    repo: str
    pull_number: int
    review_id: int
    path: str
    body: str
    user: str
    commit_id: str
    position: int | None
    line: int | None
    side: str | None
    start_line: int | None = None
    start_side: str | None = None
    created_at: float = field(default_factory=time.time)


@dataclass
class Reaction:
    """A reaction to an issue (`subject` "issue", by number) or a comment ("comment", by id)."""

    id: int
    repo: str
    subject: str
    subject_id: int
    content: str
    user: str
    created_at: float = field(default_factory=time.time)


@dataclass
class _Failure:
    method: str
    path_glob: str
    status: int
    retry_after: float | None
    times: int
    after_acting: bool
    message: str | None


@dataclass
class _Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # a body that is not JSON (raw contents, a diff)
    media_type: str = "application/json; charset=utf-8"


@dataclass
class _Call:
    op: Operation
    path: str
    query: dict[str, str]
    params: JSON
    body: Any
    headers: dict[str, str]
    repo: Repo = field(init=False)
    installation: Installation | None = None


class FakeGitHub(LoopbackServer):
    """GitHub's REST API for one App, with state that a test sets up and inspects."""

    def __init__(
        self,
        *,
        app_id: int = 4242,
        app_slug: str = "nimbus-test",
        token_lifetime: float = 3600,
        drafts_supported: bool = True,
    ) -> None:
        super().__init__()
        self.app_id = app_id
        self.app_slug = app_slug
        self.token_lifetime = token_lifetime  # seconds that a token minted from now on lives
        self.drafts_supported = drafts_supported  # False: as on a plan without draft PRs
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ).decode()
        self._public_key = key.public_key()
        self.spec = _spec()
        self.installations: dict[int, Installation] = {}
        self.repos: dict[str, Repo] = {}
        self.tokens: dict[str, Token] = {}
        self.mints: Counter[int] = Counter()  # installation id -> tokens minted through the API
        self.issues: dict[tuple[str, int], Issue] = {}
        self.comments: dict[int, Comment] = {}
        self.pulls: dict[tuple[str, int], Pull] = {}
        self.check_runs: dict[int, CheckRun] = {}
        self.reviews: dict[int, Review] = {}
        self.review_comments: dict[int, ReviewComment] = {}
        self.reactions: list[Reaction] = []
        self.labels: dict[str, dict[str, tuple[int, str]]] = {}  # repo -> lower name -> id, name
        self.permissions: dict[tuple[str, str], str] = {}  # (repo, lower login) -> role
        self.contents: dict[tuple[str, str, str], bytes] = {}  # (repo, ref or "", path)
        self.manifests: dict[str, JSON] = {}
        self.requests: list[JSON] = []
        self.problems: list[str] = []
        self.response_problems: list[str] = []
        self.denied: list[str] = []
        self.not_modified = 0
        self._failures: list[_Failure] = []
        self._ids = itertools.count(1001)
        self._numbers: Counter[str] = Counter()

    @property
    def bot_login(self) -> str:
        """The login under which GitHub shows what the App does."""
        return f"{self.app_slug}[bot]"

    def install(
        self, installation_id: int, account: str, *, account_type: str = "Organization"
    ) -> Installation:
        """Install the App on an account; `add_repo` adds its repositories."""
        self.installations[installation_id] = Installation(installation_id, account, account_type)
        return self.installations[installation_id]

    def add_repo(
        self,
        owner: str,
        name: str,
        *,
        installation_id: int | None = None,
        default_branch: str = "main",
        clone_url: str | None = None,
        private: bool = True,
        remote: GitRemote | None = None,
        drafts_supported: bool = True,
    ) -> Repo:
        """A repository, in an installation (made for `owner` if new) unless that is None."""
        git_dir = None
        if remote is not None:
            if not remote.path(owner, name).is_dir():
                remote.create(owner, name, default_branch=default_branch)
            clone_url = clone_url or remote.clone_url(owner, name)
            git_dir = remote.path(owner, name)
        repo = Repo(owner, name, next(self._ids), installation_id, default_branch, clone_url,
                    private, git_dir, drafts_supported)  # fmt: skip
        self.repos[repo.key] = repo
        if installation_id is not None:
            if installation_id not in self.installations:
                self.install(installation_id, owner)
            self.installations[installation_id].repositories.append(repo.key)
        return repo

    def add_issue(
        self,
        owner: str,
        repo: str,
        title: str = "An issue",
        body: str | None = "",
        *,
        user: str = "alice",
        labels: list[str] | None = None,
        state: str = "open",
    ) -> Issue:
        """An issue, numbered after the repository's issues and pulls."""
        key = self._repo(owner, repo).key
        self._numbers[key] += 1
        issue = Issue(key, self._numbers[key], next(self._ids), title, body, user, state=state)
        issue.labels = [self._label(key, label) for label in labels or []]
        self.issues[(key, issue.number)] = issue
        return issue

    def add_comment(
        self, owner: str, repo: str, number: int, body: str, *, user: str = "alice"
    ) -> Comment:
        """A comment by `user` on issue or pull `number`."""
        key = self._repo(owner, repo).key
        assert (key, number) in self.issues, f"no issue {owner}/{repo}#{number}"
        comment = Comment(next(self._ids), key, number, body, user)
        self.comments[comment.id] = comment
        return comment

    def add_pull(
        self,
        owner: str,
        repo: str,
        head: str,
        *,
        base: str | None = None,
        title: str = "A change",
        body: str = "",
        user: str = "alice",
        draft: bool = False,
    ) -> Pull:
        """A pull request that someone opened (Nimbus's own are made through the API)."""
        found = self._repo(owner, repo)
        issue = self.add_issue(owner, repo, title, body, user=user)
        issue.is_pull = True
        pull = Pull(found.key, issue.number, next(self._ids), title, body, head,
                    base or found.default_branch, user, draft)  # fmt: skip
        self.pulls[(found.key, pull.number)] = pull
        return pull

    def set_permission(self, owner: str, repo: str, username: str, role: str) -> None:
        """admin, maintain, write, triage, read or none; a user never set has read."""
        assert role in ROLES, role
        self.permissions[(self._repo(owner, repo).key, username.lower())] = role

    def set_file(
        self, owner: str, repo: str, path: str, content: str | bytes, *, ref: str | None = None
    ) -> None:
        """A file that the contents API serves (on the default branch unless `ref`)."""
        data = content.encode() if isinstance(content, str) else content
        self.contents[(self._repo(owner, repo).key, ref or "", path.strip("/"))] = data

    def add_manifest_code(self, code: str, **fields: Any) -> JSON:
        """A code from the manifest flow, good for one conversion within the hour.

        The conversion answers this App (id, slug, `pem` = `private_key_pem`) with new
        `client_id`, `client_secret` and `webhook_secret`; `fields` override any of them.
        Returns what was generated, merged with `fields`.
        """
        generated = {
            "client_id": f"Iv1.{_alnum(16).lower()}",
            "client_secret": _alnum(40).lower(),
            "webhook_secret": _alnum(40).lower(),
            "pem": self.private_key_pem,
            **fields,
        }
        # https://docs.github.com/apps/sharing-github-apps/registering-a-github-app-from-a-manifest
        self.manifests[code] = {**generated, "_expires": time.time() + 3600}
        return generated

    def issue_token(self, installation_id: int, *, lifetime: float | None = None) -> str:
        """A live installation token made directly (not counted in `mints`)."""
        token = f"ghs_{_alnum(36)}"
        lifetime = self.token_lifetime if lifetime is None else lifetime
        self.tokens[token] = Token(token, installation_id, time.time() + lifetime)
        return token

    async def get(self, path: str, installation_id: int = 1) -> Any:
        """What GitHub's API answers to GET `path`, asked as an installation (as a test reads)."""
        headers = {"Authorization": f"token {self.issue_token(installation_id)}"}
        async with httpx2.AsyncClient(base_url=self.url) as client:
            response = await client.get(path, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    def expire_all_tokens(self) -> None:
        """Every token so far stops working, as if its hour had passed."""
        for token in self.tokens.values():
            token.expires_at = min(token.expires_at, time.time() - 1)

    def fail_next(
        self,
        method: str,
        path_glob: str,
        status: int,
        retry_after: float | None = None,
        times: int = 1,
        *,
        after_acting: bool = False,
        message: str | None = None,
    ) -> None:
        """Answer the next `times` requests that match with `status` (method "*": any).

        `path_glob` is an fnmatch pattern in which `*` spans `/`. A 429, or a 403 with
        `retry_after`, is a secondary rate limit; a 403 without is the primary one
        (`x-ratelimit-remaining: 0`). With `after_acting`, the request is carried out and its
        answer replaced: GitHub acted, the client saw a failure. Checks and auth come first.
        """
        failure = _Failure(method.upper(), path_glob, status, retry_after, times, after_acting,
                           message)  # fmt: skip
        self._failures.append(failure)

    def comments_on(self, owner: str, repo: str, number: int) -> list[Comment]:
        """The comments on an issue or pull, oldest first."""
        key = self._repo(owner, repo).key
        return [c for c in self.comments.values() if (c.repo, c.issue_number) == (key, number)]

    def pulls_of(self, owner: str, repo: str) -> list[Pull]:
        """The pull requests of a repository, oldest first."""
        key = self._repo(owner, repo).key
        return [p for p in self.pulls.values() if p.repo == key]

    def git_access(self, token: str, owner: str, repo: str) -> str | None:
        """None when `token` is live for an installation that has the repository, else why not."""
        found = self.tokens.get(token)
        if found is None:
            return "unknown token"
        if found.expires_at <= time.time():
            return "expired token"
        key = f"{owner}/{repo}".lower()
        installation = self.installations.get(found.installation_id)
        if installation is None or key not in installation.repositories:
            return f"the token's installation does not have {owner}/{repo}"
        if found.repositories is not None and key not in found.repositories:
            return f"the token is limited to other repositories than {owner}/{repo}"
        return None

    def _repo(self, owner: str, name: str) -> Repo:
        repo = self.repos.get(f"{owner}/{name}".lower())
        assert repo is not None, f"no repository {owner}/{name}: add_repo first"
        return repo

    def _label(self, repo: str, name: str) -> str:
        known = self.labels.setdefault(repo, {})
        known.setdefault(name.lower(), (next(self._ids), name))
        return known[name.lower()][1]

    # The server: check, authenticate, fail if told to, act, answer.

    def _app(self) -> Starlette:
        return Starlette(routes=[Route("/{rest:path}", self._endpoint, methods=METHODS)])

    async def _endpoint(self, request: Request) -> Response:
        path = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1")
        data = await request.body()
        query = dict(parse_qsl(request.url.query, keep_blank_values=True))
        headers = dict(request.headers.items())
        try:
            body, parsed = (json.loads(data) if data else None), True
        except ValueError:
            body, parsed = None, False
        record = {"method": request.method, "path": path, "query": query, "headers": headers,
                  "json": body, "status": None}  # fmt: skip
        self.requests.append(record)
        if parsed:
            answer = await self._answer(request.method, path, query, headers, body)
        else:
            self.problems.append(f"{request.method} {path}: the body is not JSON")
            answer = self._error(400, "Problems parsing JSON")
        record["status"] = answer.status
        return self._render(answer)

    async def _answer(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any
    ) -> _Answer:
        found = self.spec.match(method, path)
        if found is None:
            self.problems.append(f"{method} {path}: no such operation in the OpenAPI subset")
            return self._error(404, "Not Found")
        op, path_params = found
        params, errors = self.spec.parameters(op, path_params, query)
        errors += self.spec.body(op, body)
        for error in errors:
            self.problems.append(f"{method} {path}: {error['field'] or 'body'}: {error['message']}")
        call = _Call(op, path, query, params, body, headers)
        refused = self._authorize(call)
        if refused is not None:
            return refused
        if errors:
            return self._invalid(call, errors)
        failure = self._failure(method, path)
        if failure is not None and not failure.after_acting:
            return self._failed(failure, call)
        answer = await getattr(self, "_op_" + re.sub(r"[/-]", "_", op.operation_id))(call)
        if failure is not None:
            return self._failed(failure, call)
        if answer.status < 300 and answer.raw is None:
            for problem in self.spec.response_errors(op, answer.body)[:5]:
                self.response_problems.append(f"{op.operation_id}: {problem}")
        return self._etagged(answer, headers) if method == "GET" else answer

    def _render(self, answer: _Answer) -> Response:
        headers = {
            "x-github-request-id": f"{_alnum(4)}:{_alnum(6)}".upper(),
            "x-github-api-version-selected": "2022-11-28",
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "4999",
            "x-ratelimit-used": "1",
            "x-ratelimit-reset": str(int(time.time()) + 3600),
            "x-ratelimit-resource": "core",
            **answer.headers,
        }
        if answer.status == 304:
            return Response(None, 304, headers=headers)
        content = answer.raw if answer.raw is not None else json.dumps(answer.body).encode()
        return Response(content, answer.status, headers=headers, media_type=answer.media_type)

    def _etagged(self, answer: _Answer, headers: dict[str, str]) -> _Answer:
        # https://docs.github.com/rest/using-the-rest-api/best-practices-for-using-the-rest-api#use-conditional-requests-if-appropriate
        if answer.status != 200:
            return answer
        content = answer.raw if answer.raw is not None else json.dumps(answer.body).encode()
        etag = f'W/"{hashlib.sha256(content).hexdigest()[:40]}"'
        answer.headers["etag"] = etag
        wanted = {tag.strip() for tag in headers.get("if-none-match", "").split(",")}
        if etag in wanted or etag.removeprefix("W/") in wanted:
            self.not_modified += 1
            return _Answer(304, headers={"etag": etag})
        return answer

    def _error(self, status: int, message: str) -> _Answer:
        return _Answer(status, {"message": message, "documentation_url": DOCS,
                                "status": str(status)})  # fmt: skip

    def _invalid(self, call: _Call, errors: list[JSON]) -> _Answer:
        body = {"message": "Validation Failed", "errors": errors,
                "documentation_url": call.op.docs, "status": "422"}  # fmt: skip
        return _Answer(422, body)

    def _refused(self, call: _Call, message: str) -> _Answer:
        """A 422 that is no schema violation: GitHub's `custom` error."""
        return self._invalid(call, [{"resource": call.op.resource, "code": "custom",
                                     "message": message}])  # fmt: skip

    def _unprocessable(self, call: _Call, message: str) -> _Answer:
        body = {"message": "Unprocessable Entity", "errors": [message],
                "documentation_url": call.op.docs, "status": "422"}  # fmt: skip
        return _Answer(422, body)

    def _failure(self, method: str, path: str) -> _Failure | None:
        for failure in self._failures:
            if failure.method in {"*", method} and fnmatch.fnmatchcase(path, failure.path_glob):
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.remove(failure)
                return failure
        return None

    def _failed(self, failure: _Failure, call: _Call) -> _Answer:
        status, message = failure.status, failure.message
        headers = {}
        if failure.retry_after is not None:
            headers["retry-after"] = str(math.ceil(failure.retry_after))
        if status == 429 or (status == 403 and failure.retry_after is not None):
            message = message or SECONDARY.format(id=_alnum(8).upper())
        elif status == 403:
            headers["x-ratelimit-remaining"] = "0"
            headers["x-ratelimit-reset"] = str(int(time.time()) + 60)
            installation = call.installation.id if call.installation else 0
            message = message or f"API rate limit exceeded for installation ID {installation}."
        answer = self._error(status, message or HTTPStatus(status).phrase)
        answer.headers.update(headers)
        return answer

    def _authorize(self, call: _Call) -> _Answer | None:
        template = call.op.template
        if template.startswith("/app-manifests/"):
            return None
        by_app = template.startswith("/app/") or template.endswith("/installation")
        if by_app:
            reason = self._jwt_refusal(call.headers.get("authorization", ""))
            if reason is not None:
                self.denied.append(f"{call.op.method} {call.path}: {reason}")
                return self._error(401, "A JSON web token could not be decoded")
            if template.startswith("/app/"):
                return None
        scheme, _, credential = call.headers.get("authorization", "").partition(" ")
        token = self.tokens.get(credential) if scheme.lower() in {"token", "bearer"} else None
        if not by_app and (token is None or token.expires_at <= time.time()):
            reason = "no installation token" if token is None else "expired token"
            self.denied.append(f"{call.op.method} {call.path}: {reason}")
            return self._error(401, "Bad credentials")
        owner, name = call.params["owner"], call.params["repo"]
        repo = self.repos.get(f"{owner}/{name}".lower())
        if by_app:
            out = repo is None or repo.installation_id is None
        else:
            assert token is not None
            call.installation = self.installations.get(token.installation_id)
            out = self.git_access(token.token, owner, name) is not None
        if repo is None or out:
            self.denied.append(f"{call.op.method} {call.path}: not in an installation")
            return self._error(404, "Not Found")  # GitHub does not tell that the repo exists
        call.repo = repo
        return None

    def _jwt_refusal(self, authorization: str) -> str | None:
        # https://docs.github.com/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-json-web-token-jwt-for-a-github-app
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credential:
            return "no Bearer JWT"
        try:  # the times and the issuer are checked below, as GitHub checks them
            claims = jwt.decode(
                credential,
                self._public_key,
                algorithms=["RS256"],
                options={"verify_exp": False, "verify_iat": False, "verify_iss": False,
                         "require": ["iat", "exp", "iss"]},
            )  # fmt: skip
        except jwt.PyJWTError as exc:
            return f"JWT refused: {exc}"
        now, iat, exp = time.time(), claims["iat"], claims["exp"]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (iat, exp)):
            return "iat and exp must be numbers"
        if str(claims["iss"]) != str(self.app_id):
            return f"iss {claims['iss']!r} is not the App id {self.app_id}"
        if exp <= now:
            return "the JWT has expired"
        if exp - iat > 600 or exp - now > 600:
            return "exp is more than 10 minutes ahead"
        if iat > now + 60:
            return "iat is in the future"
        return None

    # GitHub's JSON, with URLs that lead back to the fake.

    def _api(self, repo: Repo) -> str:
        return f"{self.url}/repos/{repo.owner}/{repo.name}"

    def _html(self, repo: Repo) -> str:
        return f"{HTML}/{repo.owner}/{repo.name}"

    def _user(self, login: str, kind: str | None = None) -> JSON:
        kind = kind or ("Bot" if login.endswith("[bot]") else "User")
        api = f"{self.url}/{'orgs' if kind == 'Organization' else 'users'}/{login}"
        number = _user_id(login)
        urls = {"followers": "/followers", "following": "/following{/other_user}",
                "gists": "/gists{/gist_id}", "starred": "/starred{/owner}{/repo}",
                "subscriptions": "/subscriptions", "organizations": "/orgs", "repos": "/repos",
                "events": "/events{/privacy}", "received_events": "/received_events"}  # fmt: skip
        html = f"{HTML}/apps/{self.app_slug}" if kind == "Bot" else f"{HTML}/{login}"
        return {"login": login, "id": number, "node_id": _node(kind, number),
                "avatar_url": f"{HTML}/avatars/{number}", "gravatar_id": "", "url": api,
                "html_url": html, **{f"{k}_url": api + v for k, v in urls.items()},
                "type": kind, "user_view_type": "public", "site_admin": False}  # fmt: skip

    def _app_json(self) -> JSON:
        return {"id": self.app_id, "slug": self.app_slug, "name": f"Nimbus ({self.app_slug})",
                "client_id": f"Iv1.{_sha(self.app_id)[:16]}",
                "node_id": _node("Integration", self.app_id),
                "owner": self._user("nimbus-org", "Organization"), "description": "",
                "external_url": HTML, "html_url": f"{HTML}/apps/{self.app_slug}",
                "created_at": _iso(0), "updated_at": _iso(0), "events": APP_EVENTS,
                "permissions": APP_PERMISSIONS}  # fmt: skip

    def _installation_json(self, inst: Installation) -> JSON:
        api = f"{self.url}/app/installations/{inst.id}"
        html = f"{HTML}/organizations/{inst.account}/settings/installations/{inst.id}"
        return {"id": inst.id, "account": self._user(inst.account, inst.account_type),
                "repository_selection": "selected", "access_tokens_url": f"{api}/access_tokens",
                "repositories_url": f"{self.url}/installation/repositories", "html_url": html,
                "app_id": self.app_id, "app_slug": self.app_slug,
                "target_id": _user_id(inst.account), "target_type": inst.account_type,
                "permissions": APP_PERMISSIONS, "events": APP_EVENTS, "single_file_name": None,
                "created_at": _iso(inst.created_at), "updated_at": _iso(inst.created_at),
                "suspended_by": None, "suspended_at": None}  # fmt: skip

    def _repo_json(self, repo: Repo) -> JSON:
        # GitHub's example has every URL template; they are re-pointed at this repository.
        example = json.dumps(_examples()["full-repository-default-response"]["value"])
        shaped = json.loads(example.replace("https://api.github.com/repos/octocat/Hello-World",
                                            self._api(repo)))  # fmt: skip
        for key in ("parent", "source", "template_repository", "organization", "permissions",
                    "temp_clone_token"):  # fmt: skip
            shaped.pop(key, None)
        installation = self.installations.get(repo.installation_id or -1)
        owner = self._user(repo.owner, installation.account_type if installation else None)
        html, stamp = self._html(repo), _iso(repo.created_at)
        opened = sum(1 for i in self.issues.values() if i.repo == repo.key and i.state == "open")
        shaped.update(
            {"id": repo.id, "node_id": _node("Repository", repo.id), "name": repo.name,
             "full_name": f"{repo.owner}/{repo.name}", "owner": owner, "private": repo.private,
             "visibility": "private" if repo.private else "public", "html_url": html,
             "url": self._api(repo), "clone_url": repo.clone_url or f"{html}.git",
             "git_url": f"git://github.example/{repo.owner}/{repo.name}.git",
             "ssh_url": f"git@github.example:{repo.owner}/{repo.name}.git", "svn_url": html,
             "mirror_url": None, "homepage": None, "description": None, "language": None,
             "default_branch": repo.default_branch, "license": None, "open_issues": opened,
             "open_issues_count": opened, "topics": [], "created_at": stamp,
             "updated_at": stamp, "pushed_at": stamp, "fork": False, "archived": False}
        )  # fmt: skip
        return shaped

    def _label_json(self, repo: Repo, name: str) -> JSON:
        number, label = self.labels[repo.key][name.lower()]
        return {"id": number, "node_id": _node("Label", number), "name": label,
                "url": f"{self._api(repo)}/labels/{label}", "color": "ededed",
                "description": None, "default": False}  # fmt: skip

    def _association(self, repo: Repo, login: str) -> str:
        if login.lower() == repo.owner.lower():
            return "OWNER"
        role = self.permissions.get((repo.key, login.lower()), "read")
        return "COLLABORATOR" if role in {"admin", "maintain", "write", "triage"} else "NONE"

    def _rollup(self, url: str, repo: Repo, subject: str, subject_id: int) -> JSON:
        wanted = (repo.key, subject, subject_id)
        mine = [r.content for r in self.reactions if (r.repo, r.subject, r.subject_id) == wanted]
        return {"url": f"{url}/reactions", "total_count": len(mine),
                **{content: mine.count(content) for content in REACTIONS}}  # fmt: skip

    def _issue_json(self, issue: Issue) -> JSON:
        repo = self.repos[issue.repo]
        api = f"{self._api(repo)}/issues/{issue.number}"
        html = f"{self._html(repo)}/{'pull' if issue.is_pull else 'issues'}/{issue.number}"
        comments = len(self.comments_on(repo.owner, repo.name, issue.number))
        shaped = {
            "id": issue.id, "node_id": _node("Issue", issue.id), "url": api,
            "repository_url": self._api(repo), "labels_url": f"{api}/labels{{/name}}",
            "comments_url": f"{api}/comments", "events_url": f"{api}/events",
            "timeline_url": f"{api}/timeline", "html_url": html, "number": issue.number,
            "state": issue.state, "state_reason": "completed" if issue.state == "closed" else None,
            "title": issue.title, "body": issue.body, "user": self._user(issue.user),
            "labels": [self._label_json(repo, name) for name in issue.labels], "assignee": None,
            "assignees": [], "milestone": None, "locked": False, "active_lock_reason": None,
            "comments": comments, "closed_at": None, "closed_by": None,
            "created_at": _iso(issue.created_at), "updated_at": _iso(issue.updated_at),
            "author_association": self._association(repo, issue.user),
            "reactions": self._rollup(api, repo, "issue", issue.number),
        }  # fmt: skip
        if issue.is_pull:
            shaped["pull_request"] = {"url": f"{self._api(repo)}/pulls/{issue.number}",
                                      "html_url": html, "diff_url": f"{html}.diff",
                                      "patch_url": f"{html}.patch", "merged_at": None}  # fmt: skip
        return shaped

    def _comment_json(self, comment: Comment) -> JSON:
        repo = self.repos[comment.repo]
        api = f"{self._api(repo)}/issues/comments/{comment.id}"
        html = f"{self._html(repo)}/issues/{comment.issue_number}#issuecomment-{comment.id}"
        via_app = self._app_json() if comment.user == self.bot_login else None
        return {"id": comment.id, "node_id": _node("IssueComment", comment.id), "url": api,
                "html_url": html, "body": comment.body, "user": self._user(comment.user),
                "created_at": _iso(comment.created_at), "updated_at": _iso(comment.updated_at),
                "issue_url": f"{self._api(repo)}/issues/{comment.issue_number}",
                "author_association": self._association(repo, comment.user),
                "performed_via_github_app": via_app,
                "reactions": self._rollup(api, repo, "comment", comment.id)}  # fmt: skip

    def _reaction_json(self, reaction: Reaction) -> JSON:
        return {"id": reaction.id, "node_id": _node("Reaction", reaction.id),
                "user": self._user(reaction.user), "content": reaction.content,
                "created_at": _iso(reaction.created_at)}  # fmt: skip

    async def _shas(self, repo: Repo, pull: Pull) -> tuple[str, str]:
        """The head and base commits of a pull: from git, or made up when there is none."""
        if repo.git_dir is not None:
            head = await git_remote.resolve(repo.git_dir, pull.head)
            base = await git_remote.resolve(repo.git_dir, pull.base)
            if head and base:
                return head, base
        return _sha(repo.key, pull.head), _sha(repo.key, pull.base)

    async def _pull_json(self, pull: Pull, *, full: bool = True) -> JSON:
        repo = self.repos[pull.repo]
        api, html = (
            f"{self._api(repo)}/pulls/{pull.number}",
            f"{self._html(repo)}/pull/{pull.number}",
        )
        head_sha, base_sha = await self._shas(repo, pull)
        repo_json, issue = self._repo_json(repo), self.issues[(pull.repo, pull.number)]
        links = {"self": api, "html": html, "issue": f"{self._api(repo)}/issues/{pull.number}",
                 "comments": f"{self._api(repo)}/issues/{pull.number}/comments",
                 "review_comments": f"{api}/comments",
                 "review_comment": f"{self._api(repo)}/pulls/comments{{/number}}",
                 "commits": f"{api}/commits",
                 "statuses": f"{self._api(repo)}/statuses/{head_sha}"}  # fmt: skip
        shaped = {
            **{f"{name}_url": links[name] for name in ("issue", "commits", "review_comments",
                                                       "review_comment", "comments", "statuses")},
            "url": api, "id": pull.id, "node_id": _node("PullRequest", pull.id),
            "html_url": html, "diff_url": f"{html}.diff", "patch_url": f"{html}.patch",
            "number": pull.number, "state": pull.state, "locked": False, "title": pull.title,
            "user": self._user(pull.user), "body": pull.body,
            "labels": [self._label_json(repo, name) for name in issue.labels], "milestone": None,
            "active_lock_reason": None, "created_at": _iso(pull.created_at),
            "updated_at": _iso(pull.updated_at), "closed_at": None, "merged_at": None,
            "merge_commit_sha": None, "assignee": None, "assignees": [],
            "requested_reviewers": [], "requested_teams": [],
            "head": {"label": f"{repo.owner}:{pull.head}", "ref": pull.head, "sha": head_sha,
                     "user": self._user(repo.owner), "repo": repo_json},
            "base": {"label": f"{repo.owner}:{pull.base}", "ref": pull.base, "sha": base_sha,
                     "user": self._user(repo.owner), "repo": repo_json},
            "_links": {name: {"href": href} for name, href in links.items()},
            "author_association": self._association(repo, pull.user), "auto_merge": None,
            "draft": pull.draft,
        }  # fmt: skip
        if not full:
            return shaped
        files = await self._files(repo, pull) or []
        commits = await git_remote.commits(repo.git_dir, f"{base_sha}..{head_sha}") if (
            repo.git_dir) else []  # fmt: skip
        review_comments = [c for c in self.review_comments.values()
                           if (c.repo, c.pull_number) == (pull.repo, pull.number)]  # fmt: skip
        shaped.update(
            {"merged": False, "mergeable": True, "rebaseable": True, "merged_by": None,
             "mergeable_state": "draft" if pull.draft else "clean",
             "comments": len(self.comments_on(repo.owner, repo.name, pull.number)),
             "review_comments": len(review_comments), "commits": len(commits),
             "maintainer_can_modify": pull.maintainer_can_modify,
             "additions": sum(f.additions for f in files),
             "deletions": sum(f.deletions for f in files), "changed_files": len(files)}
        )  # fmt: skip
        return shaped

    def _check_run_json(self, run: CheckRun) -> JSON:
        repo = self.repos[run.repo]
        api = f"{self._api(repo)}/check-runs/{run.id}"
        output = {"title": None, "summary": None, "text": None, **run.output}
        annotations = output.pop("annotations", [])
        output.pop("images", None)
        output.update(annotations_count=len(annotations), annotations_url=f"{api}/annotations")
        completed = _iso(run.completed_at) if run.completed_at else None
        return {"id": run.id, "head_sha": run.head_sha, "node_id": _node("CheckRun", run.id),
                "external_id": run.external_id, "url": api,
                "html_url": f"{self._html(repo)}/runs/{run.id}",
                "details_url": run.details_url or f"{HTML}/apps/{self.app_slug}",
                "status": run.status, "conclusion": run.conclusion,
                "started_at": _iso(run.started_at), "completed_at": completed, "output": output,
                "name": run.name, "check_suite": {"id": run.id + 500000}, "app": self._app_json(),
                "pull_requests": []}  # fmt: skip

    def _review_json(self, review: Review) -> JSON:
        repo = self.repos[review.repo]
        html = f"{self._html(repo)}/pull/{review.pull_number}"
        api = f"{self._api(repo)}/pulls/{review.pull_number}"
        submitted = None if review.state == "PENDING" else _iso(review.submitted_at)
        return {"id": review.id, "node_id": _node("PullRequestReview", review.id),
                "user": self._user(review.user), "body": review.body, "state": review.state,
                "html_url": f"{html}#pullrequestreview-{review.id}", "pull_request_url": api,
                "_links": {"html": {"href": html}, "pull_request": {"href": api}},
                "submitted_at": submitted, "commit_id": review.commit_id,
                "author_association": self._association(repo, review.user)}  # fmt: skip

    def _review_comment_json(self, comment: ReviewComment) -> JSON:
        repo = self.repos[comment.repo]
        api = f"{self._api(repo)}/pulls/comments/{comment.id}"
        pull = f"{self._api(repo)}/pulls/{comment.pull_number}"
        html = f"{self._html(repo)}/pull/{comment.pull_number}#discussion_r{comment.id}"
        links = {"self": {"href": api}, "html": {"href": html}, "pull_request": {"href": pull}}
        return {"url": api, "pull_request_review_id": comment.review_id, "id": comment.id,
                "node_id": _node("PullRequestReviewComment", comment.id), "diff_hunk": "",
                "path": comment.path, "position": comment.position,
                "original_position": comment.position, "commit_id": comment.commit_id,
                "original_commit_id": comment.commit_id, "user": self._user(comment.user),
                "body": comment.body, "created_at": _iso(comment.created_at),
                "updated_at": _iso(comment.created_at), "html_url": html,
                "pull_request_url": pull,
                "author_association": self._association(repo, comment.user),
                "_links": links, "line": comment.line, "original_line": comment.line,
                "side": comment.side, "start_line": comment.start_line,
                "start_side": comment.start_side, "subject_type": "line"}  # fmt: skip

    def _diff_entry_json(self, repo: Repo, head: str, entry: FileDiff) -> JSON:
        shaped = {"sha": entry.sha, "filename": entry.filename, "status": entry.status,
                  "additions": entry.additions, "deletions": entry.deletions,
                  "changes": entry.additions + entry.deletions,
                  "blob_url": f"{self._html(repo)}/blob/{head}/{entry.filename}",
                  "raw_url": f"{self._html(repo)}/raw/{head}/{entry.filename}",
                  "contents_url": f"{self._api(repo)}/contents/{entry.filename}?ref={head}",
                  }  # fmt: skip
        if entry.patch is not None:
            shaped["patch"] = entry.patch
        if entry.previous_filename is not None:
            shaped["previous_filename"] = entry.previous_filename
        return shaped

    def _commit_json(self, repo: Repo, commit: dict[str, str]) -> JSON:
        api, sha, tree = self._api(repo), commit["sha"], commit["tree"]
        person = {"name": commit["name"], "email": commit["email"], "date": commit["date"]}
        return {"sha": sha, "node_id": _node("Commit", int(sha[:7], 16)),
                "url": f"{api}/commits/{sha}", "html_url": f"{self._html(repo)}/commit/{sha}",
                "comments_url": f"{api}/commits/{sha}/comments",
                "commit": {"url": f"{api}/git/commits/{sha}", "author": person,
                           "committer": person, "message": commit["message"], "comment_count": 0,
                           "tree": {"sha": tree, "url": f"{api}/git/trees/{tree}"}},
                "author": None, "committer": None, "parents": []}  # fmt: skip

    def _content_json(self, repo: Repo, path: str, data: bytes | None, ref: str) -> JSON:
        kind = "file" if data is not None else "dir"
        sha = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() if data else _sha(path)
        api = f"{self._api(repo)}/contents/{path}?ref={ref}"
        html = f"{self._html(repo)}/{'blob' if data is not None else 'tree'}/{ref}/{path}"
        git = f"{self._api(repo)}/git/{'blobs' if data is not None else 'trees'}/{sha}"
        raw = f"{HTML}/raw/{repo.owner}/{repo.name}/{ref}/{path}" if data is not None else None
        shaped = {"type": kind, "size": len(data or b""), "name": path.rsplit("/", 1)[-1],
                  "path": path, "sha": sha, "url": api, "git_url": git, "html_url": html,
                  "download_url": raw, "_links": {"self": api, "git": git, "html": html},
                  }  # fmt: skip
        if data is not None:
            encoded = base64.b64encode(data).decode()  # GitHub wraps it at 60 characters
            shaped["content"] = "".join(
                encoded[i : i + 60] + "\n" for i in range(0, len(encoded), 60)
            )
            shaped["encoding"] = "base64"
        return shaped

    # What the operations share.

    def _paged(self, call: _Call, items: list[Any], key: str | None = None) -> _Answer:
        """One page of `items` with GitHub's `Link` header (under `key` in an object if given)."""
        # https://docs.github.com/rest/using-the-rest-api/using-pagination-in-the-rest-api
        per_page = call.params.get("per_page", 30)
        per_page = 30 if per_page < 1 else min(per_page, 100)
        page, last = max(call.params.get("page", 1), 1), max(1, math.ceil(len(items) / per_page))

        def link(number: int, rel: str) -> str:
            query = urlencode({**call.query, "per_page": per_page, "page": number})
            return f'<{self.url}{call.path}?{query}>; rel="{rel}"'

        links = [link(page - 1, "prev"), link(1, "first")] if page > 1 else []
        links += [link(page + 1, "next"), link(last, "last")] if page < last else []
        chunk = items[(page - 1) * per_page : page * per_page]
        body = chunk if key is None else {"total_count": len(items), key: chunk}
        return _Answer(200, body, {"link": ", ".join(links)} if links else {})

    async def _files(self, repo: Repo, pull: Pull) -> list[FileDiff] | None:
        if repo.git_dir is None:
            return None
        return await git_remote.diff_files(repo.git_dir, pull.base, pull.head)

    def _issue(self, call: _Call, number: int) -> Issue | None:
        return self.issues.get((call.repo.key, number))

    def _pull(self, call: _Call) -> Pull | None:
        return self.pulls.get((call.repo.key, call.params["pull_number"]))

    def _comment(self, call: _Call) -> Comment | None:
        comment = self.comments.get(call.params["comment_id"])
        return comment if comment is not None and comment.repo == call.repo.key else None

    def _react(self, call: _Call, subject: str, subject_id: int) -> _Answer:
        wanted = (call.repo.key, subject, subject_id, call.body["content"], self.bot_login)
        for reaction in self.reactions:
            if (reaction.repo, reaction.subject, reaction.subject_id, reaction.content,
                    reaction.user) == wanted:  # fmt: skip
                return _Answer(200, self._reaction_json(reaction))
        reaction = Reaction(next(self._ids), *wanted)
        self.reactions.append(reaction)
        return _Answer(201, self._reaction_json(reaction))

    def _not_found(self) -> _Answer:
        return self._error(404, "Not Found")

    # The operations, one method each, named after the operationId.

    async def _op_apps_create_from_manifest(self, call: _Call) -> _Answer:
        conversion = self.manifests.pop(call.params["code"], None)
        if conversion is None or conversion.pop("_expires") < time.time():
            return self._not_found()
        return _Answer(201, {**self._app_json(), **conversion})

    async def _op_apps_list_installations(self, call: _Call) -> _Answer:
        return self._paged(call, [self._installation_json(i) for i in self.installations.values()])

    async def _op_apps_create_installation_access_token(self, call: _Call) -> _Answer:
        installation = self.installations.get(call.params["installation_id"])
        if installation is None:
            return self._not_found()
        body = call.body or {}
        limited: set[str] | None = None
        if "repositories" in body or "repository_ids" in body:
            by_id = {self.repos[k].id: k for k in installation.repositories}
            limited = {f"{installation.account}/{n}".lower() for n in body.get("repositories", [])}
            limited |= {by_id.get(i, f"#{i}") for i in body.get("repository_ids", [])}
            if not limited <= set(installation.repositories):
                return self._refused(
                    call,
                    "There is at least one repository that does not exist or is not accessible "
                    "to the parent installation.",
                )
        self.mints[installation.id] += 1
        token = Token(f"ghs_{_alnum(36)}", installation.id, time.time() + self.token_lifetime,
                      limited, body.get("permissions") or dict(APP_PERMISSIONS))  # fmt: skip
        self.tokens[token.token] = token
        answer = {"token": token.token, "expires_at": _iso(token.expires_at),
                  "permissions": token.permissions, "repository_selection": "selected"}  # fmt: skip
        if limited is not None:
            answer["repositories"] = [self._repo_json(self.repos[k]) for k in sorted(limited)]
        return _Answer(201, answer)

    async def _op_apps_get_repo_installation(self, call: _Call) -> _Answer:
        assert call.repo.installation_id is not None
        return _Answer(200, self._installation_json(self.installations[call.repo.installation_id]))

    async def _op_repos_get(self, call: _Call) -> _Answer:
        return _Answer(200, self._repo_json(call.repo))

    async def _op_repos_get_collaborator_permission_level(self, call: _Call) -> _Answer:
        username = call.params["username"]
        role = self.permissions.get((call.repo.key, username.lower()), "read")
        if username.lower() == call.repo.owner.lower():
            role = "admin"
        user = self._user(username)
        user["role_name"] = role
        user["permissions"] = {"admin": role == "admin", "maintain": role in {"admin", "maintain"},
                               "push": ROLES[role] in {"admin", "write"},
                               "triage": role not in {"read", "none"},
                               "pull": role != "none"}  # fmt: skip
        return _Answer(200, {"permission": ROLES[role], "role_name": role, "user": user})

    async def _op_repos_get_content(self, call: _Call) -> _Answer:
        repo, path, ref = call.repo, call.params["path"].strip("/"), call.params.get("ref")
        refs = [ref] if ref else ["", repo.default_branch]
        refs += [""] if ref == repo.default_branch else []
        data = next((self.contents[(repo.key, r, path)] for r in refs
                     if (repo.key, r, path) in self.contents), None)  # fmt: skip
        if data is None and repo.git_dir is not None:
            commit = await git_remote.resolve(repo.git_dir, ref or repo.default_branch)
            data = await git_remote.read_blob(repo.git_dir, commit, path) if commit else None
        ref = ref or repo.default_branch
        if data is not None:
            if "raw" in call.headers.get("accept", ""):
                return _Answer(200, raw=data, media_type="application/vnd.github.raw+json")
            return _Answer(200, self._content_json(repo, path, data, ref))
        names = {k[2][len(path) + 1 :].split("/")[0] for k in self.contents
                 if k[0] == repo.key and k[1] in refs and k[2].startswith(path + "/")}  # fmt: skip
        if not names:
            return self._not_found()
        return _Answer(
            200, [self._content_json(repo, f"{path}/{n}", None, ref) for n in sorted(names)]
        )

    async def _op_repos_compare_commits_with_basehead(self, call: _Call) -> _Answer:
        repo, basehead = call.repo, call.params["basehead"]
        base_ref, dots, head_ref = basehead.partition("...")
        if not dots or repo.git_dir is None:
            return self._not_found()
        base = await git_remote.resolve(repo.git_dir, base_ref.split(":")[-1])
        head = await git_remote.resolve(repo.git_dir, head_ref.split(":")[-1])
        if base is None or head is None:
            return self._not_found()
        merge_base = await git_remote.git_output(repo.git_dir, "merge-base", base, head) or b""
        ahead = await git_remote.commits(repo.git_dir, f"{base}..{head}")
        behind = await git_remote.commits(repo.git_dir, f"{head}..{base}")
        files = await git_remote.diff_files(repo.git_dir, base, head) or []
        status = ("identical" if not ahead and not behind else "ahead" if not behind
                  else "behind" if not ahead else "diverged")  # fmt: skip
        ends = [await git_remote.commits(repo.git_dir, f"{sha}^!")
                for sha in (base, merge_base.decode().strip())]  # fmt: skip
        html = f"{self._html(repo)}/compare/{basehead}"
        answer = self._paged(call, [self._commit_json(repo, c) for c in ahead])
        answer.body = {
            "url": f"{self._api(repo)}/compare/{basehead}", "html_url": html,
            "permalink_url": f"{self._html(repo)}/compare/{base}...{head}",
            "diff_url": f"{html}.diff", "patch_url": f"{html}.patch",
            "base_commit": self._commit_json(repo, ends[0][0]),
            "merge_base_commit": self._commit_json(repo, ends[1][0]) if ends[1] else None,
            "status": status, "ahead_by": len(ahead), "behind_by": len(behind),
            "total_commits": len(ahead), "commits": answer.body,
            # GitHub lists at most 300 files here, whatever the page.
            "files": [self._diff_entry_json(repo, head, f) for f in files[:300]],
        }  # fmt: skip
        return answer

    async def _op_checks_create(self, call: _Call) -> _Answer:
        body = call.body
        run = CheckRun(next(self._ids), call.repo.key, body["name"], body["head_sha"])
        return self._update_run(call, run, 201)

    async def _op_checks_update(self, call: _Call) -> _Answer:
        run = self.check_runs.get(call.params["check_run_id"])
        if run is None or run.repo != call.repo.key:
            return self._not_found()
        return self._update_run(call, run, 200)

    def _update_run(self, call: _Call, run: CheckRun, status: int) -> _Answer:
        body = call.body
        if body.get("status") == "completed" and "conclusion" not in body and not run.conclusion:
            missing = {"resource": "CheckRun", "code": "missing_field", "field": "conclusion"}
            return self._invalid(call, [missing])
        for name in ("name", "details_url", "external_id", "status", "output"):
            if name in body:
                setattr(run, name, body[name])
        if "conclusion" in body:  # a conclusion completes the run
            run.conclusion, run.status = body["conclusion"], "completed"
        if "started_at" in body:
            run.started_at = _epoch(body["started_at"])
        if run.status == "completed" and run.completed_at is None:
            run.completed_at = (
                _epoch(body["completed_at"]) if "completed_at" in body else time.time()
            )
        self.check_runs[run.id] = run
        return _Answer(status, self._check_run_json(run))

    async def _op_checks_list_for_ref(self, call: _Call) -> _Answer:
        ref = call.params["ref"]
        sha = await git_remote.resolve(call.repo.git_dir, ref) if call.repo.git_dir else None
        runs = [r for r in self.check_runs.values()
                if r.repo == call.repo.key and r.head_sha in {ref, sha}]  # fmt: skip
        if "check_name" in call.params:
            runs = [r for r in runs if r.name == call.params["check_name"]]
        if "status" in call.params:
            runs = [r for r in runs if r.status == call.params["status"]]
        runs.sort(key=lambda r: -r.id)  # newest first; `latest` keeps the newest of each name
        if call.params["filter"] == "latest":
            runs = [r for i, r in enumerate(runs) if r.name not in {s.name for s in runs[:i]}]
        return self._paged(call, [self._check_run_json(r) for r in runs], key="check_runs")

    async def _op_issues_get(self, call: _Call) -> _Answer:
        issue = self._issue(call, call.params["issue_number"])
        return self._not_found() if issue is None else _Answer(200, self._issue_json(issue))

    async def _op_issues_get_comment(self, call: _Call) -> _Answer:
        comment = self._comment(call)
        return self._not_found() if comment is None else _Answer(200, self._comment_json(comment))

    async def _op_issues_update_comment(self, call: _Call) -> _Answer:
        comment = self._comment(call)
        if comment is None:
            return self._not_found()
        comment.body, comment.updated_at = call.body["body"], time.time()
        return _Answer(200, self._comment_json(comment))

    async def _op_issues_create_comment(self, call: _Call) -> _Answer:
        issue = self._issue(call, call.params["issue_number"])
        if issue is None:
            return self._not_found()
        comment = Comment(next(self._ids), issue.repo, issue.number, call.body["body"],
                          self.bot_login)  # fmt: skip
        self.comments[comment.id] = comment
        shaped = self._comment_json(comment)
        return _Answer(201, shaped, {"location": shaped["url"]})

    async def _op_issues_list_comments(self, call: _Call) -> _Answer:
        issue = self._issue(call, call.params["issue_number"])
        if issue is None:
            return self._not_found()
        comments = self.comments_on(call.repo.owner, call.repo.name, issue.number)
        if "since" in call.params:
            comments = [c for c in comments if c.updated_at >= _epoch(call.params["since"])]
        return self._paged(call, [self._comment_json(c) for c in comments])

    async def _op_issues_add_labels(self, call: _Call) -> _Answer:
        issue = self._issue(call, call.params["issue_number"])
        if issue is None:
            return self._not_found()
        for item in (call.body or {}).get("labels", []):
            name = self._label(issue.repo, item if isinstance(item, str) else item["name"])
            if name.lower() not in {n.lower() for n in issue.labels}:
                issue.labels.append(name)
        return _Answer(200, [self._label_json(call.repo, n) for n in issue.labels])

    async def _op_issues_remove_label(self, call: _Call) -> _Answer:
        issue = self._issue(call, call.params["issue_number"])
        if issue is None:
            return self._not_found()
        kept = [n for n in issue.labels if n.lower() != call.params["name"].lower()]
        if len(kept) == len(issue.labels):
            return self._error(404, "Label does not exist")
        issue.labels = kept
        return _Answer(200, [self._label_json(call.repo, n) for n in issue.labels])

    async def _op_reactions_create_for_issue(self, call: _Call) -> _Answer:
        issue = self._issue(call, call.params["issue_number"])
        return self._not_found() if issue is None else self._react(call, "issue", issue.number)

    async def _op_reactions_create_for_issue_comment(self, call: _Call) -> _Answer:
        comment = self._comment(call)
        return self._not_found() if comment is None else self._react(call, "comment", comment.id)

    async def _op_pulls_create(self, call: _Call) -> _Answer:
        repo, body = call.repo, call.body
        owner, _, head = body["head"].rpartition(":")
        if owner and owner.lower() != repo.owner.lower():  # forks are not modelled
            return self._invalid(call, [_entry(call.op, "head", "invalid", "not a branch here")])
        issue = self._issue(call, body["issue"]) if "issue" in body else None
        title = body.get("title") or (issue.title if issue else None)
        if title is None:
            return self._invalid(call, [_entry(call.op, "title", "missing_field", "no title")])
        for pull in self.pulls.values():
            if (pull.repo, pull.head, pull.base, pull.state) == (
                repo.key,
                head,
                body["base"],
                "open",
            ):
                return self._refused(
                    call, f"A pull request already exists for {repo.owner}:{head}."
                )
        if body.get("draft") and not (self.drafts_supported and repo.drafts_supported):
            return self._refused(call, "Draft pull requests are not supported in this repository.")
        if repo.git_dir is not None:
            shas = {name: await git_remote.resolve(repo.git_dir, ref)
                    for name, ref in (("base", body["base"]), ("head", head))}  # fmt: skip
            for name, sha in shas.items():
                if sha is None:
                    return self._invalid(call, [_entry(call.op, name, "invalid", "no such branch")])
            if not await git_remote.commits(repo.git_dir, f"{shas['base']}..{shas['head']}"):
                return self._refused(call, f"No commits between {body['base']} and {head}")
        issue = self.add_issue(repo.owner, repo.name, title, body.get("body"), user=self.bot_login)
        issue.is_pull = True
        pull = Pull(repo.key, issue.number, next(self._ids), title, body.get("body"), head,
                    body["base"], self.bot_login, bool(body.get("draft")),
                    maintainer_can_modify=bool(body.get("maintainer_can_modify")))  # fmt: skip
        self.pulls[(repo.key, pull.number)] = pull
        shaped = await self._pull_json(pull)
        return _Answer(201, shaped, {"location": shaped["url"]})

    async def _op_pulls_list(self, call: _Call) -> _Answer:
        state, head = call.params["state"], call.params.get("head", "")
        pulls = [p for p in self.pulls_of(call.repo.owner, call.repo.name)
                 if state in {"all", p.state}]  # fmt: skip
        if ":" in head:  # GitHub ignores a `head` without `owner:`: a trap worth keeping
            owner, _, branch = head.partition(":")
            pulls = [
                p for p in pulls if (call.repo.owner.lower(), p.head) == (owner.lower(), branch)
            ]
        if "base" in call.params:
            pulls = [p for p in pulls if p.base == call.params["base"]]
        by_updated = call.params.get("sort") == "updated"
        pulls.sort(key=lambda p: (p.updated_at if by_updated else p.created_at, p.number),
                   reverse=call.params.get("direction", "desc") == "desc")  # fmt: skip
        answer = self._paged(call, pulls)
        answer.body = [await self._pull_json(p, full=False) for p in answer.body]
        return answer

    async def _op_pulls_get(self, call: _Call) -> _Answer:
        pull = self._pull(call)
        if pull is None:
            return self._not_found()
        if "diff" in call.headers.get("accept", "") and call.repo.git_dir is not None:
            text = await git_remote.diff_text(call.repo.git_dir, pull.base, pull.head) or ""
            return _Answer(200, raw=text.encode(), media_type="application/vnd.github.diff")
        return _Answer(200, await self._pull_json(pull))

    async def _op_pulls_list_files(self, call: _Call) -> _Answer:
        pull = self._pull(call)
        if pull is None:
            return self._not_found()
        head, _ = await self._shas(call.repo, pull)
        files = await self._files(call.repo, pull) or []
        return self._paged(call, [self._diff_entry_json(call.repo, head, f) for f in files])

    async def _op_pulls_list_review_comments(self, call: _Call) -> _Answer:
        pull = self._pull(call)
        if pull is None:
            return self._not_found()
        found = [c for c in self.review_comments.values()
                 if (c.repo, c.pull_number) == (pull.repo, pull.number)]  # fmt: skip
        if call.params.get("direction") == "desc":
            found.reverse()
        return self._paged(call, [self._review_comment_json(c) for c in found])

    async def _op_pulls_list_reviews(self, call: _Call) -> _Answer:
        pull = self._pull(call)
        if pull is None:
            return self._not_found()
        found = [r for r in self.reviews.values()
                 if (r.repo, r.pull_number) == (pull.repo, pull.number)]  # fmt: skip
        return self._paged(call, [self._review_json(r) for r in found])

    async def _op_pulls_create_review(self, call: _Call) -> _Answer:
        pull = self._pull(call)
        if pull is None:
            return self._not_found()
        body, event = call.body or {}, (call.body or {}).get("event")
        if event in {"APPROVE", "REQUEST_CHANGES"} and pull.user == self.bot_login:
            verb = "approve" if event == "APPROVE" else "request changes on"
            return self._unprocessable(call, f"Can not {verb} your own pull request")
        if event in {"REQUEST_CHANGES", "COMMENT"} and not body.get("body") and (
                event == "REQUEST_CHANGES" or not body.get("comments")):  # fmt: skip
            return self._unprocessable(call, f"A body is required for {event}")
        files = {f.filename: f for f in await self._files(call.repo, pull) or []}
        placed = []
        for item in body.get("comments", []):
            where = _place(item, files if call.repo.git_dir is not None else None)
            if isinstance(where, str):
                return self._unprocessable(call, where)
            placed.append((item, where))
        head, _ = await self._shas(call.repo, pull)
        state = {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED",
                 "COMMENT": "COMMENTED"}.get(event or "", "PENDING")  # fmt: skip
        review = Review(next(self._ids), pull.repo, pull.number, self.bot_login,
                        body.get("body", ""), state, body.get("commit_id", head))  # fmt: skip
        self.reviews[review.id] = review
        for item, (position, line, side) in placed:
            comment = ReviewComment(next(self._ids), pull.repo, pull.number, review.id,
                                    item["path"], item["body"], self.bot_login, review.commit_id,
                                    position, line, side, item.get("start_line"),
                                    item.get("start_side"))  # fmt: skip
            self.review_comments[comment.id] = comment
        return _Answer(200, self._review_json(review))


def _place(item: JSON, files: dict[str, FileDiff] | None) -> tuple[Any, Any, Any] | str:
    """A review comment's (position, line, side), or why GitHub would refuse where it is."""
    if "position" not in item and "line" not in item:
        return "Line could not be resolved"
    if files is None:  # no git, nothing to check against
        return item.get("position"), item.get("line"), item.get("side")
    if item["path"] not in files:
        return "Path could not be resolved"
    entry, side = files[item["path"]], item.get("side", "RIGHT")
    found = entry.locate(position=item.get("position"), line=item.get("line"), side=side)
    if found is None:
        return "Line could not be resolved"
    if "start_line" in item:
        start = entry.locate(line=item["start_line"], side=item.get("start_side", side))
        if start is None or start[0] > found[0]:
            return "Start line could not be resolved"
    return found


@cache
def _examples() -> JSON:
    return json.loads((SHARED / "openapi-subset.json").read_text())["components"]["examples"]
