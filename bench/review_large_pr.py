"""Large-PR review benchmark: a generated 300-file pull request reviewed through the real server.

Runs the real app (create_app + uvicorn, in this process, on 127.0.0.1 port 0) wired to the fake
GitHub of tests/fakes/github.py, whose repository is a real git repository served over HTTP by
tests/fakes/git_remote.py (the end-to-end set-up of tests/test_github_flow.py), with the built-in
model agent pointed at the fake OpenAI server of tests/fakes/models.py. The pull request is one
commit on a branch, generated from a seed: source files of varied size (added, modified with
several hunks, renamed), tests, docs and configuration, lock files, generated and vendored files,
and deleted files. Each review is one `POST /tasks/review/` (post: false).

The fake model answers every request at once with a plain JSON review: one comment on the first
added line of each file its diff shows. What the model was sent is measured from the request bodies
the fake recorded, never from the usage it reports.

Configurations, side by side in the same run (the reviews alternate between them):
  default    NIMBUS_REVIEW_BUDGET_TOKENS 60000, NIMBUS_REVIEW_CHUNK_TOKENS 15000 (the defaults)
  tight      a 20000-token budget, 15000-token chunks (--tight)
  chunked    no budget, 15000-token chunks: the whole PR, in as many requests as that takes
  no budget  the baseline: budget and chunk so large that the whole PR goes in one request, as a
             naive reviewer would send it

    /tmp/venv/bin/python bench/review_large_pr.py               # 7 reviews per configuration
    /tmp/venv/bin/python bench/review_large_pr.py --quick       # 1 review per configuration
    /tmp/venv/bin/python bench/review_large_pr.py --repeats 9 --tight 30000 --seed 7
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx2
import uvicorn

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app import create_app  # noqa: E402
from bench.common import BenchError, cpu_model, give_up, leave_scratch  # noqa: E402
from bot.cli import _listen  # noqa: E402
from bot.github.anchors import PrFile  # noqa: E402
from bot.github.review_scope import (  # noqa: E402
    DELETIONS_ONLY,
    NO_PATCH,
    OVER_BUDGET,
    estimate_tokens,
    file_diff,
    hunks,
    without_deletion_only,
)
from bot.settings import Settings  # noqa: E402
from tests.conftest import Server  # noqa: E402
from tests.fakes import git_remote  # noqa: E402
from tests.fakes.models import FakeOpenAI, Reply, running  # noqa: E402
from tests.test_github_flow import github_world  # noqa: E402
from tests.test_github_reviews import KEY, PR_URL, registered  # noqa: E402
from tests.test_model_agent import with_model  # noqa: E402

BOOTSTRAP_KEY = "bench-bootstrap-key-0123456789"
OWNER, NAME, BRANCH = "octo-org", "hello", "feature"
PR_FILES = 300
# Budget and chunk of the "no budget" baseline: far more than the whole PR.
UNLIMITED = 100_000_000
# Scripted answers are topped up to this many before every review (one is used per request).
SCRIPT_RESERVE = 200
# The kinds of file the generator makes, in the planner's order of priority (plus the ones left).
KINDS = ("source", "test", "other", "generated", "vendored", "lock", "deletion-only")
REASONS = (
    (OVER_BUDGET, "over budget"),
    (DELETIONS_ONLY, "only removed"),
    (NO_PATCH, "no diff"),
)
HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")


@dataclass(frozen=True)
class Config:
    """One server's review settings: NIMBUS_REVIEW_BUDGET_TOKENS and NIMBUS_REVIEW_CHUNK_TOKENS."""

    key: str
    budget: int
    chunk: int


# ---------------------------------------------------------------------------------------------
# The pull request (pure, from a seed)

WORDS = (
    "account audit batch cache client config cursor digest event export filter gateway header"
    " index invoice ledger limit lookup merge metric notice order parser payment policy queue"
    " quota record refund report retry route schema session shard signal token tracker upload"
    " vault window worker"
).split()
VERBS = "build check collect compute fetch flush format load merge parse read score sync".split()


@dataclass
class PullRequest:
    """The repository's main branch and the PR's one commit on top of it."""

    base: dict[str, str]
    head: dict[str, str | None]  # path -> new text; None deletes it
    kinds: dict[str, str]  # every path the PR shows -> its kind, as generated
    renames: dict[str, str] = field(default_factory=dict)  # new path -> old path

    def count(self, kind: str) -> int:
        return sum(1 for k in self.kinds.values() if k == kind)

    def origin(self, path: str) -> str:
        """How a file of the PR came to be: added, changed or renamed."""
        if path in self.renames:
            return "renamed"
        return "changed" if path in self.base else "added"


def _size(rng: random.Random) -> int:
    """Lines of a source file: mostly small and medium, a few large, one in twenty huge."""
    roll = rng.random()
    if roll < 0.30:
        return rng.randint(15, 40)
    if roll < 0.75:
        return rng.randint(60, 180)
    if roll < 0.95:
        return rng.randint(200, 400)
    return rng.randint(500, 900)


def _block(lang: str, tag: str, n: int, rng: random.Random) -> list[str]:
    """One function of about ten lines; `tag` makes its names unique to its file."""
    verb, noun = rng.choice(VERBS), rng.choice(WORDS)
    k, limit = rng.randint(2, 9), rng.randint(10, 500)
    if lang == "py":
        return [
            f"def {verb}_{noun}_{tag}_{n}(items: list[int], limit: int = {limit}) -> int:",
            f'    """{verb.capitalize()} the {noun} values of {tag} up to `limit`."""',
            f"    total_{tag} = 0",
            "    for item in items:",
            "        if item > limit:",
            f"            log.debug('{noun} %s over the limit in {tag}', item)",
            "            continue",
            f"        total_{tag} += item * {k}",
            f"    return total_{tag} + {n}",
            "",
            "",
        ]
    if lang == "ts":
        name = f"{verb}{noun.capitalize()}{tag.capitalize()}{n}"
        return [
            f"export function {name}(items: number[], limit = {limit}): number {{",
            f"  let total{tag.capitalize()} = 0;",
            "  for (const item of items) {",
            "    if (item > limit) {",
            f"      console.debug('{noun} over the limit in {tag}', item);",
            "      continue;",
            "    }",
            f"    total{tag.capitalize()} += item * {k};",
            "  }",
            f"  return total{tag.capitalize()} + {n};",
            "}",
            "",
        ]
    name = f"{verb.capitalize()}{noun.capitalize()}{tag.capitalize()}{n}"
    return [
        f"// {name} {verb}s the {noun} values of {tag} up to limit.",
        f"func {name}(items []int, limit int) int {{",
        f"\ttotal{tag.capitalize()} := 0",
        "\tfor _, item := range items {",
        "\t\tif item > limit {",
        "\t\t\tcontinue",
        "\t\t}",
        f"\t\ttotal{tag.capitalize()} += item * {k}",
        "\t}",
        f"\treturn total{tag.capitalize()} + {n}",
        "}",
        "",
    ]


def _header(lang: str, path: str) -> list[str]:
    if lang == "py":
        return [f'"""{path}: generated for the review benchmark."""', "", "import logging", "",
                "log = logging.getLogger(__name__)", "", ""]  # fmt: skip
    if lang == "ts":
        return [f"// {path}: generated for the review benchmark.", ""]
    return [f"// {path}: generated for the review benchmark.", "", "package bench", ""]


def _functions(lang: str, tag: str, lines: int, rng: random.Random) -> list[list[str]]:
    blocks: list[list[str]] = []
    while sum(map(len, blocks)) < lines:
        blocks.append(_block(lang, tag, len(blocks), rng))
    return blocks


def _join(header: list[str], blocks: list[list[str]]) -> str:
    return "\n".join(header + [line for block in blocks for line in block]).rstrip("\n") + "\n"


def _source(lang: str, path: str, tag: str, lines: int, rng: random.Random) -> str:
    return _join(_header(lang, path), _functions(lang, tag, lines, rng))


def _modified(
    lang: str, path: str, tag: str, rng: random.Random, *, only_removals: bool = False
) -> tuple[str, str]:
    """(base, head) of a file changed in several places: edits, an addition, a removal."""
    blocks = _functions(lang, tag, rng.randint(90, 260), rng)
    header = _header(lang, path)
    base = _join(header, blocks)
    changed = [list(b) for b in blocks]
    if only_removals:
        for index in sorted(rng.sample(range(1, len(changed)), 2), reverse=True):
            del changed[index]
        return base, _join(header, changed)
    picks = rng.sample(range(1, len(changed) - 1), min(4, len(changed) - 2))
    for index in picks[:3]:  # an edit in the body of three functions, far apart
        block = changed[index]
        block[2] = block[2] + ("  # start from zero" if lang == "py" else " // start from zero")
        block.insert(3, SEEN[lang])
    del changed[picks[3] if len(picks) > 3 else 1]  # a function removed: a deletion-only hunk
    changed.append(_block(lang, tag, len(blocks) + 1, rng))  # and a new one at the end
    return base, _join(header, changed)


SEEN = {
    "py": "    seen = len(items)",
    "ts": "  const seen = items.length;",
    "go": "\tseen := len(items)",
}


def _digest(text: str, bits: int = 256) -> str:
    """A hash of the package's name and version, as a lock file records it."""
    return hashlib.shake_256(text.encode()).hexdigest(bits // 8)


def _package_lock(versions: dict[str, str]) -> str:
    entries = []
    for name, version in versions.items():
        entries.append(
            f'    "node_modules/{name}": {{\n'
            f'      "version": "{version}",\n'
            f'      "resolved": "https://registry.npmjs.org/{name}/-/{name}-{version}.tgz",\n'
            f'      "integrity": "sha512-{_digest(name + version, 384)}",\n'
            '      "dev": true\n'
            "    }"
        )
    return (
        '{\n  "name": "web",\n  "lockfileVersion": 3,\n  "packages": {\n'
        + ",\n".join(entries)
        + "\n  }\n}\n"
    )


def _poetry_lock(versions: dict[str, str]) -> str:
    parts = []
    for name, version in versions.items():
        stem = name.replace("-", "_")
        parts.append(
            f'[[package]]\nname = "{name}"\nversion = "{version}"\n'
            f'description = "The {name} library"\noptional = false\npython-versions = ">=3.9"\n'
            "files = [\n"
            f'    {{file = "{stem}-{version}-py3-none-any.whl",'
            f' hash = "sha256:{_digest(name + version + "whl")}"}},\n'
            f'    {{file = "{stem}-{version}.tar.gz",'
            f' hash = "sha256:{_digest(name + version + "tar")}"}},\n'
            "]\n"
        )
    return "\n".join(parts) + '\n[metadata]\nlock-version = "2.0"\npython-versions = "^3.11"\n'


def _go_sum(versions: dict[str, str]) -> str:
    lines = []
    for name, version in versions.items():
        lines.append(f"github.com/acme/{name} v{version} h1:{_digest(name + version, 192)}=")
        lines.append(f"github.com/acme/{name} v{version}/go.mod h1:{_digest(name, 192)}=")
    return "\n".join(lines) + "\n"


def _yarn_lock(versions: dict[str, str]) -> str:
    parts = ["# THIS IS AN AUTOGENERATED FILE. DO NOT EDIT THIS FILE DIRECTLY.\n"]
    for name, version in versions.items():
        parts.append(
            f'"{name}@^{version}":\n  version "{version}"\n'
            f'  resolved "https://registry.yarnpkg.com/{name}/-/{name}-{version}.tgz"\n'
            f"  integrity sha512-{_digest(name + version, 384)}\n"
        )
    return "\n".join(parts)


def _versions(names: list[str], rng: random.Random) -> dict[str, str]:
    found = {n: f"{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 20)}" for n in names}
    return dict(sorted(found.items()))


def _bumped(versions: dict[str, str], rng: random.Random, share: float, new: int) -> dict[str, str]:
    """A lock's versions after an upgrade: `share` of them bumped, `new` packages added."""
    bumped = {
        name: (f"{v.split('.')[0]}.{int(v.split('.')[1]) + 1}.0" if rng.random() < share else v)
        for name, v in versions.items()
    }
    extra = _versions([f"added-{rng.choice(WORDS)}-{i}" for i in range(new)], rng)
    return dict(sorted({**bumped, **extra}.items()))


def _minified(rng: random.Random, size: int) -> str:
    parts = []
    while sum(map(len, parts)) < size:
        a, b = rng.choice(WORDS), rng.randint(0, 999)
        parts.append(f"function {a[0]}{b}(t,e){{return t.{a}(e)*{b}||null}}")
    text = ";".join(parts)
    return "\n".join(text[i : i + 4000] for i in range(0, len(text), 4000)) + "\n"


def _pb2(rng: random.Random, name: str, lines: int) -> str:
    head = [
        "# -*- coding: utf-8 -*-",
        "# Generated by the protocol buffer compiler.  DO NOT EDIT!",
        f"# source: {name}.proto",
        '"""Generated protocol buffer code."""',
        "from google.protobuf import descriptor as _descriptor",
        "_globals = globals()",
    ]
    body = [
        f"_globals['_{name.upper()}{i}']._serialized_start={rng.randint(100, 9999)}"
        for i in range(lines)
    ]
    return "\n".join(head + body) + "\n"


def _pb_go(rng: random.Random, name: str, lines: int) -> str:
    head = ["// Code generated by protoc-gen-go. DO NOT EDIT.", f"// source: {name}.proto", "",
            "package api", ""]  # fmt: skip
    body = [f"var x_{name}_{i} = []byte{{0x{rng.getrandbits(32):08x}}}" for i in range(lines)]
    return "\n".join(head + body) + "\n"


def _doc(rng: random.Random, title: str, paragraphs: int) -> str:
    out = [f"# {title}", ""]
    for _ in range(paragraphs):
        words = [rng.choice(WORDS) for _ in range(rng.randint(25, 60))]
        out += [" ".join(words).capitalize() + ".", ""]
    return "\n".join(out)


def _yaml(rng: random.Random, name: str, entries: int) -> str:
    out = [f"# {name}", "services:"]
    for i in range(entries):
        word = rng.choice(WORDS)
        out += [f"  {word}-{i}:", f"    image: registry.example/{word}:{rng.randint(1, 40)}",
                f"    replicas: {rng.randint(1, 5)}", "    env:",
                f"      {word.upper()}_LIMIT: \"{rng.randint(10, 900)}\""]  # fmt: skip
    return "\n".join(out) + "\n"


def generate(seed: int) -> PullRequest:
    """The 300 files of the PR, and the main branch it changes; the same for the same seed."""
    rng = random.Random(seed)
    pr = PullRequest(base={}, head={}, kinds={})
    base_readme = _doc(rng, "Hello", 6)
    pr.base["README.md"] = base_readme

    def add(kind: str, path: str, text: str | None, base: str | None = None) -> None:
        if path in pr.kinds:
            raise AssertionError(f"generated {path} twice")
        pr.kinds[path] = kind
        pr.head[path] = text
        if base is not None:
            pr.base[path] = base

    langs = (
        [("py", "app", ".py")] * 12 + [("ts", "web/src", ".ts")] * 5 + [("go", "pkg", ".go")] * 3
    )
    # Source: 166 added, 32 modified in several places, 2 renamed (one as is, one edited).
    for i in range(166):
        lang, folder, ext = rng.choice(langs)
        area = rng.choice(WORDS)
        path = f"{folder}/{area}/{rng.choice(WORDS)}_{i:03d}{ext}"
        add("source", path, _source(lang, path, f"a{i}", _size(rng), rng))
    for i in range(32):
        lang, folder, ext = rng.choice(langs)
        path = f"{folder}/core/{rng.choice(WORDS)}_m{i:02d}{ext}"
        base, head = _modified(lang, path, f"m{i}", rng)
        add("source", path, head, base)
    old, new = "app/util/strings_old.py", "app/text/strings.py"
    text = _source("py", old, "r0", 120, rng)
    add("source", new, text, None)
    pr.base[old], pr.head[old], pr.renames[new] = text, None, old
    old, new = "web/src/legacy/format.ts", "web/src/format/dates.ts"
    text = _source("ts", old, "r1", 160, rng)
    lines = text.split("\n")
    lines[40] += " // checked"
    lines.insert(80, "export const DATES_VERSION = 2;")
    add("source", new, "\n".join(lines), None)
    pr.base[old], pr.head[old], pr.renames[new] = text, None, old

    # Tests: 40 added, 10 modified.
    for i in range(40):
        if i < 20:
            path = f"tests/{rng.choice(WORDS)}/test_{rng.choice(WORDS)}_{i:02d}.py"
            add("test", path, _source("py", path, f"t{i}", rng.randint(30, 160), rng))
        elif i < 30:
            path = f"web/src/{rng.choice(WORDS)}/{rng.choice(WORDS)}_{i:02d}.test.ts"
            add("test", path, _source("ts", path, f"t{i}", rng.randint(30, 160), rng))
        else:
            path = f"pkg/{rng.choice(WORDS)}/{rng.choice(WORDS)}_{i:02d}_test.go"
            add("test", path, _source("go", path, f"t{i}", rng.randint(30, 160), rng))
    for i in range(10):
        path = f"tests/core/test_{rng.choice(WORDS)}_m{i:02d}.py"
        base, head = _modified("py", path, f"tm{i}", rng)
        add("test", path, head, base)

    # Other: docs and deployment files added, the README and a config changed.
    for i in range(6):
        add("other", f"docs/guide-{i}.md", _doc(rng, f"Guide {i}", rng.randint(4, 20)))
    for i in range(4):
        add("other", f"deploy/service-{i}.yaml", _yaml(rng, f"service {i}", rng.randint(3, 12)))
    add("other", "README.md", base_readme + "\n" + _doc(rng, "Reviewing", 3))
    cfg_base = '[tool.bench]\nname = "hello"\nversion = "1.0.0"\n'
    add("other", "pyproject.toml", cfg_base.replace("1.0.0", "1.1.0") + "strict = true\n", cfg_base)

    # Generated: minified bundles, protobuf modules.
    for i, size in enumerate((12_000, 25_000, 40_000)):
        add("generated", f"web/static/bundle-{i}.min.js", _minified(rng, size))
    for i, name in enumerate(("orders", "ledger", "events")):
        add("generated", f"app/proto/{name}_pb2.py", _pb2(rng, name, 120 + 60 * i))
    for name in ("orders", "ledger"):
        add("generated", f"api/{name}.pb.go", _pb_go(rng, name, 200))

    # Vendored: a Go module and a JavaScript library copied in.
    for i in range(7):
        path = f"vendor/github.com/acme/retry/{rng.choice(WORDS)}_{i}.go"
        add("vendored", path, _source("go", path, f"v{i}", rng.randint(100, 400), rng))
    for i in range(7):
        path = f"third_party/leftpad/lib/{rng.choice(WORDS)}_{i}.js"
        add("vendored", path, _source("ts", path, f"w{i}", rng.randint(100, 400), rng))

    # Lock files: three upgraded in place, one new.
    npm = _versions([f"{w}-{i}" for i, w in enumerate(rng.choices(WORDS, k=900))], rng)
    add(
        "lock",
        "web/package-lock.json",
        _package_lock(_bumped(npm, rng, 0.08, 40)),
        _package_lock(npm),
    )
    py = _versions([f"{w}-py{i}" for i, w in enumerate(rng.choices(WORDS, k=300))], rng)
    add("lock", "poetry.lock", _poetry_lock(_bumped(py, rng, 0.1, 10)), _poetry_lock(py))
    go = _versions([f"{w}{i}" for i, w in enumerate(rng.choices(WORDS, k=250))], rng)
    add("lock", "go.sum", _go_sum(_bumped(go, rng, 0.1, 10)), _go_sum(go))
    yarn = _versions([f"{w}-y{i}" for i, w in enumerate(rng.choices(WORDS, k=200))], rng)
    add("lock", "web/legacy/yarn.lock", _yarn_lock(yarn))

    # Deletion-only: ten files removed, two with some functions removed and nothing added.
    for i in range(10):
        lang, folder, ext = rng.choice(langs)
        path = f"{folder}/legacy/{rng.choice(WORDS)}_d{i}{ext}"
        add("deletion-only", path, None, _source(lang, path, f"d{i}", _size(rng), rng))
    for i in range(2):
        path = f"app/core/trimmed_{i}.py"
        base, head = _modified("py", path, f"x{i}", rng, only_removals=True)
        add("deletion-only", path, head, base)

    # The renames' old paths are in the commit (as deletions) but GitHub shows only the new path.
    shown = len(pr.kinds)
    if shown != PR_FILES:
        raise AssertionError(f"the generator made {shown} files, not {PR_FILES}")
    return pr


# ---------------------------------------------------------------------------------------------
# The scripted reviewer (answers the fake model server's requests)


def message_text(message: dict[str, Any]) -> str:
    """The text a chat message carries to the model: its content and its tool calls."""
    content = message.get("content")
    if isinstance(content, list):
        text = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    else:
        text = content or ""
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        text += f"{function.get('name', '')}{function.get('arguments', '')}"
    return text


def request_tokens(body: dict[str, Any]) -> int:
    """The request's messages, estimated as the review planner estimates: characters / 4."""
    return estimate_tokens("".join(message_text(m) for m in body.get("messages") or []))


def shown_files(body: dict[str, Any]) -> dict[str, int | None]:
    """Each file whose diff the request's prompt shows, with the new line of its first addition."""
    messages = body.get("messages") or []
    prompt = "\n".join(message_text(m) for m in messages if m.get("role") == "user")
    found: dict[str, int | None] = {}
    path, line = None, None
    for row in prompt.split("\n"):
        if row.startswith("+++ b/"):
            path, line = row[6:], None
            found.setdefault(path, None)
        elif (hunk := HUNK.match(row)) is not None:
            line = int(hunk.group(1))
        elif path is not None and line is not None:
            if row.startswith("+"):
                if found[path] is None:
                    found[path] = line
                line += 1
            elif not row.startswith("-"):
                line += 1
    return found


@dataclass
class Reviewer:
    """The fake model's behaviour: a plain JSON review, one comment on the first added line of
    each file shown. Notes when each request reached it (after the fake read and checked it)."""

    arrivals: list[float] = field(default_factory=list)

    def __call__(self, body: dict[str, Any]) -> Reply:
        self.arrivals.append(time.perf_counter())
        files = shown_files(body)
        comments = [
            {"path": path, "line": line, "body": "Check the limit here.", "blocking": False}
            for path, line in files.items()
            if line is not None
        ]
        answer = json.dumps({"summary": f"Read {len(files)} files.", "comments": comments})
        # Usage as the fake reports it: the same estimate as measured here, so that the server's
        # total can be checked against the requests the fake recorded.
        return Reply(
            answer, input_tokens=request_tokens(body), output_tokens=estimate_tokens(answer)
        )


# ---------------------------------------------------------------------------------------------
# The servers


@dataclass
class Nimbus:
    """One Nimbus server, set up with one configuration's review budget."""

    config: Config
    server: Server


class Servers:
    """Starts the real app on loopback; `start` is what github_world calls `start_server`."""

    def __init__(self) -> None:
        self.running: list[tuple[uvicorn.Server, asyncio.Task[None], Server]] = []

    async def start(self, settings: Settings) -> Server:
        app = create_app(settings)
        config = uvicorn.Config(
            app, log_level="warning", log_config=None, access_log=False, lifespan="on", ws="none"
        )
        server = uvicorn.Server(config)
        sock = _listen("127.0.0.1", 0)
        port = sock.getsockname()[1]
        job = asyncio.create_task(server.serve(sockets=[sock]))
        deadline = time.monotonic() + 15
        while not server.started:
            if job.done():
                job.result()
                raise BenchError("the server stopped before it started")
            if time.monotonic() > deadline:
                raise BenchError("the server did not start within 15 s")
            await asyncio.sleep(0.01)
        url = f"http://127.0.0.1:{port}"
        client = httpx2.AsyncClient(
            base_url=url, headers={"X-API-Key": KEY}, timeout=300, trust_env=False
        )
        made = Server(url=url, client=client, settings=settings, app=app)
        self.running.append((server, job, made))
        return made

    async def stop_all(self) -> None:
        for server, job, made in reversed(self.running):
            await made.client.aclose()
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(job, 30)
        self.running.clear()


# ---------------------------------------------------------------------------------------------
# Measuring


@dataclass
class Clock:
    """Seconds spent inside the fakes' request handlers and Nimbus's git commands.

    Timed by wrapping methods at runtime (the fake GitHub's `_answer`, the fake model's `_handle`,
    each app's `Runner.run`); nothing they do is changed. The fakes run on this process's event
    loop and the review waits for each of their answers, so their time is part of a review's wall
    time that real GitHub and a real model server would spend elsewhere.
    """

    github: float = 0.0
    model: float = 0.0
    git: float = 0.0

    def _wrap(self, owner: Any, method: str, counter: str) -> None:
        inner: Callable[..., Awaitable[Any]] = getattr(owner, method)

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await inner(*args, **kwargs)
            finally:
                setattr(self, counter, getattr(self, counter) + time.perf_counter() - started)

        setattr(owner, method, timed)

    def install(self, github: Any, model: Any) -> None:
        self._wrap(github, "_answer", "github")
        self._wrap(model, "_handle", "model")

    def install_runner(self, app: Any) -> None:
        self._wrap(app.state.services.runner, "run", "git")


@dataclass
class Run:
    config: Config
    index: int  # 0: the warm-up
    wall: float
    status: int
    review: dict[str, Any]
    tokens: list[int]  # per model request, in the order the fake received them
    shown: set[str]  # files whose diff the model was sent
    github_calls: int
    git_requests: int
    # Seconds from the POST to the first model request, from it to the last, from it to the answer.
    before_model: float = 0.0
    at_model: float = 0.0
    after_model: float = 0.0
    in_github: float = 0.0  # inside the fake GitHub's handler
    in_model: float = 0.0  # inside the fake model's handler
    in_git: float = 0.0  # inside Nimbus's commands (git: the head checkout)
    problems: list[str] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return sum(self.tokens)

    @property
    def not_reviewed(self) -> Counter[str]:
        return Counter(e["reason"] for e in self.review.get("not_reviewed") or [])


async def review_once(
    nimbus: Nimbus,
    world: Any,
    fake: FakeOpenAI,
    reviewer: Reviewer,
    clock: Clock,
    pr: PullRequest,
    index: int,
) -> Run:
    """One POST /tasks/review/ on the PR, and what the fakes saw of it."""
    if fake.remaining < SCRIPT_RESERVE:
        fake.script(*[reviewer] * (SCRIPT_RESERVE - fake.remaining))
    reviewer.arrivals.clear()
    asked, calls, fetches = (
        len(fake.requests),
        len(world.github.requests),
        len(world.remote.requests),
    )
    problems_before = len(fake.problems) + len(world.github.problems)
    in_github, in_model, in_git = clock.github, clock.model, clock.git
    started = time.perf_counter()
    answer = await nimbus.server.client.post("/tasks/review/", json={"pr_url": PR_URL})
    ended = time.perf_counter()
    wall = ended - started
    bodies = fake.requests[asked:]
    shown = {path for body in bodies for path in shown_files(body)}
    review = (
        answer.json()
        if answer.headers.get("content-type", "").startswith("application/json")
        else {}
    )
    run = Run(
        config=nimbus.config,
        index=index,
        wall=wall,
        status=answer.status_code,
        review=review,
        tokens=[request_tokens(b) for b in bodies],
        shown=shown,
        github_calls=len(world.github.requests) - calls,
        git_requests=len(world.remote.requests) - fetches,
        in_github=clock.github - in_github,
        in_model=clock.model - in_model,
        in_git=clock.git - in_git,
    )
    if reviewer.arrivals:
        first, last = reviewer.arrivals[0], reviewer.arrivals[-1]
        run.before_model, run.at_model, run.after_model = (
            first - started,
            last - first,
            ended - last,
        )
    run.problems = check(run, pr)
    if len(fake.problems) + len(world.github.problems) > problems_before:
        run.problems += [f"fake model: {p}" for p in fake.problems]
        run.problems += [f"fake GitHub: {p}" for p in world.github.problems]
    return run


def check(run: Run, pr: PullRequest) -> list[str]:
    """What in one review's answer disagrees with what the fake model was sent."""
    if run.status != 200:
        return [f"POST /tasks/review/ answered {run.status}: {str(run.review)[:300]}"]
    r = run.review
    found = []
    left_out = {e["path"] for e in r["not_reviewed"]}
    claimed = set(pr.kinds) - left_out
    if r["files"] != PR_FILES:
        found.append(f"the review considered {r['files']} files, the PR has {PR_FILES}")
    if r["reviewed_files"] != len(run.shown):
        found.append(
            f"reviewed_files says {r['reviewed_files']}, the model was sent {len(run.shown)} files"
        )
    if claimed != run.shown:
        odd = sorted(claimed ^ run.shown)[:3]
        found.append(f"files neither sent nor listed as not reviewed, or both: {odd}")
    if r["reviewed_files"] + len(r["not_reviewed"]) != r["files"]:
        found.append(
            f"reviewed_files {r['reviewed_files']} + not_reviewed {len(r['not_reviewed'])}"
            f" != files {r['files']}"
        )
    if r["chunks"] != len(run.tokens):
        found.append(f"{r['chunks']} chunks but {len(run.tokens)} model requests")
    if r["usage"]["input_tokens"] != run.sent:
        found.append(
            f"usage.input_tokens {r['usage']['input_tokens']} != {run.sent} measured from the"
            " requests"
        )
    commented = {c["path"] for c in r["comments"]}
    missing = run.shown - commented - {p for p in run.shown if pr.kinds.get(p) == "deletion-only"}
    if missing:
        found.append(
            f"{len(missing)} files sent without their comment placed: {sorted(missing)[:3]}"
        )
    return found


async def measure(args: argparse.Namespace, pr: PullRequest, root: Path) -> tuple[list[Run], dict]:
    configs = [
        Config("default", 60_000, 15_000),
        Config("tight", args.tight, min(15_000, args.tight)),
        Config("chunked", UNLIMITED, 15_000),
        Config("no budget", UNLIMITED, UNLIMITED),
    ]
    servers = Servers()
    runs: list[Run] = []
    facts: dict[str, Any] = {}
    try:
        reviewer = Reviewer()
        async with running(FakeOpenAI()) as fake:
            base = Settings(
                data_dir=root / "data-default",
                api_key=BOOTSTRAP_KEY,
                poll_seconds=0.5,
                worker_id="bench-default",
                log_level="warning",
                git_timeout=120,
            )
            # One retry: the fake answers at once, a failure is worth seeing rather than hiding.
            base = with_model(base, fake).with_overrides(model_max_retries=1)
            first = configs[0]
            async with github_world(
                root,
                servers.start,
                base,
                files=pr.base,
                review_budget_tokens=first.budget,
                review_chunk_tokens=first.chunk,
            ) as world:
                progress("committing the pull request (one commit, 300 files)")
                world.commit_files(BRANCH, pr.head, new=True)
                world.github.add_pull(OWNER, NAME, BRANCH, title="Split the services")
                facts.update(await describe(world, pr))
                clock = Clock()
                clock.install(world.github, fake)
                nimbi = [Nimbus(first, world.server)]
                for config in configs[1:]:
                    settings = world.server.settings.with_overrides(
                        data_dir=root / f"data-{config.key.replace(' ', '-')}",
                        worker_id=f"bench-{config.key.replace(' ', '-')}",
                        review_budget_tokens=config.budget,
                        review_chunk_tokens=config.chunk,
                    )
                    server = await servers.start(settings)
                    nimbi.append(Nimbus(config, server))
                for nimbus in nimbi:
                    await registered(SimpleNamespace(server=nimbus.server))
                    clock.install_runner(nimbus.server.app)
                rounds = range(0 if args.warmup else 1, args.repeats + 1)
                for index in rounds:
                    for nimbus in nimbi:
                        what = "warm-up" if index == 0 else f"{index}/{args.repeats}"
                        run = await review_once(nimbus, world, fake, reviewer, clock, pr, index)
                        progress(
                            f"{nimbus.config.key:<9} {what}: {run.status} in {run.wall:.2f} s,"
                            f" {len(run.tokens)} requests, {run.sent:,} tokens,"
                            f" {run.review.get('reviewed_files', '?')} files reviewed"
                        )
                        if run.status != 200:
                            raise BenchError(run.problems[0])
                        runs.append(run)
                facts["github_problems"] = list(world.github.problems)
                facts["model_problems"] = list(fake.problems)
                facts["tool_tokens"] = (
                    estimate_tokens(json.dumps(fake.requests[0].get("tools") or []))
                    if fake.requests
                    else 0
                )
                await servers.stop_all()
    except AssertionError as exc:  # github_world's own check of the fake GitHub, at its end
        if not runs:
            raise BenchError(f"the set-up failed: {exc!r}") from exc
        facts.setdefault("github_problems", []).append(f"github_world: {exc!r}")
    finally:
        await servers.stop_all()
    facts["configs"] = configs
    return runs, facts


async def describe(world: Any, pr: PullRequest) -> dict[str, Any]:
    """The PR as GitHub shows it (the fake's own `git diff base...head`), checked against plan."""
    git_dir = world.remote.path(OWNER, NAME)
    seconds = []
    for _ in range(3):
        started = time.perf_counter()
        files = await git_remote.diff_files(git_dir, "main", BRANCH)
        seconds.append(time.perf_counter() - started)
    if files is None:
        raise BenchError("git diff of the pull request failed")
    names = {f.filename for f in files}
    if names != set(pr.kinds):
        extra, missing = sorted(names - set(pr.kinds)), sorted(set(pr.kinds) - names)
        raise BenchError(
            f"GitHub shows {len(files)} files, not the {PR_FILES} generated: extra {extra[:4]},"
            f" missing {missing[:4]} (a rename not detected, or a file detected as renamed)"
        )
    statuses = Counter(f.status for f in files)
    chars = sum(len(f.patch or "") for f in files)
    # The whole PR as the planner prices it: deletion-only hunks dropped, headers per hunk.
    planned = 0
    for f in files:
        patch = without_deletion_only(f.patch) if f.patch else ""
        file = PrFile(f.filename, f.patch, f.status, f.previous_filename)
        planned += sum(estimate_tokens(file_diff(file, hunk)) for hunk in hunks(patch))
    return {
        "diff_seconds": statistics.median(seconds),
        "planned_tokens": planned,
        "statuses": statuses,
        "additions": sum(f.additions for f in files),
        "deletions": sum(f.deletions for f in files),
        "patch_chars": chars,
        "no_patch": sorted(f.filename for f in files if f.patch is None),
        "hunks": sum((f.patch or "").count("\n@@") + (1 if f.patch else 0) for f in files),
    }


# ---------------------------------------------------------------------------------------------
# Report


def machine_info() -> list[str]:
    def out(*argv: str) -> str:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
        return "?"

    cpu = cpu_model()
    return [
        f"machine: nproc={out('nproc')} (os.cpu_count()={os.cpu_count()}) {cpu};"
        f" {platform.system()} {platform.release()} {platform.machine()}",
        f"python:  {platform.python_implementation()} {platform.python_version()}"
        f" ({sys.executable})",
        f"git:     {out('git', '--version')}; uvicorn {uvicorn.__version__}, in this process,"
        " with the fake GitHub, git remote and model servers on the same event loop",
    ]


def tok(value: float) -> str:
    return f"{round(value):,}"


def budget_cell(value: int) -> str:
    return "none" if value >= UNLIMITED else tok(value)


def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(runs: list[Run], facts: dict[str, Any], pr: PullRequest) -> list[str]:
    configs: list[Config] = facts["configs"]
    measured = {c.key: [r for r in runs if r.config == c and r.index > 0] for c in configs}
    shown = [(c, measured[c.key]) for c in configs if measured[c.key]]
    lines = ["", "Time of one review, s (median over the measured runs)"]
    header = (
        f"{'config':<10} {'wall':>6} {'(min-max)':>12} {'before model':>12} {'at model':>8}"
        f" {'after model':>11} {'fake GitHub':>11} {'fake model':>10} {'git':>5} {'Nimbus':>6}"
        f" {'GitHub calls':>12} {'git reqs':>8}"
    )
    lines += [header, "-" * len(header)]
    for c, got in shown:
        walls = [r.wall for r in got]
        lines.append(
            f"{c.key:<10} {med(walls):>6.2f} {f'({min(walls):.2f}-{max(walls):.2f})':>12}"
            f" {med([r.before_model for r in got]):>12.2f}"
            f" {med([r.at_model for r in got]):>8.2f} {med([r.after_model for r in got]):>11.2f}"
            f" {med([r.in_github for r in got]):>11.2f} {med([r.in_model for r in got]):>10.2f}"
            f" {med([r.in_git for r in got]):>5.2f}"
            f" {med([r.wall - r.in_github - r.in_model - r.in_git for r in got]):>6.2f}"
            f" {med([r.github_calls for r in got]):>12g} {med([r.git_requests for r in got]):>8g}"
        )
    lines += [
        "",
        "  wall         the POST /tasks/review/ call as the client sees it (perf_counter)",
        "  before model from the POST to the first model request reaching the fake's script:"
        " GitHub reads (the PR, its files, the",
        "               repository), the head checkout (git fetch --depth 1 over HTTP),"
        " planning, the fake model reading the first request",
        "  at model     from the first model request to the last (3 at a time; the fake answers"
        " at once); after model: from the last",
        "               model request to the answer (its reply, merging, anchoring the comments,"
        " the JSON answer)",
        "  fake GitHub  time inside the fake GitHub's handler during the review: it checks every"
        " request and answer against the OpenAPI",
        f"               document and recomputes the PR's diff ({facts['diff_seconds']:.2f} s)"
        " for the PR and for each page of its files",
        "  fake model   time inside the fake model server's handler (reading and checking each"
        " request body, the scripted answer)",
        "  git          time inside Nimbus's git commands (Runner.run): init, fetch --depth 1"
        " of the head over HTTP, checkout, with the",
        "               git remote (git http-backend) serving the fetch meanwhile",
        "  Nimbus       wall - fake GitHub - fake model - git: Nimbus's own Python work and HTTP"
        " on loopback (both ends, as the clients run here too)",
        "  GitHub calls requests to the fake GitHub API during the review; git reqs: HTTP"
        " requests to the git remote",
        "",
        "What the model was sent, per review (median over the measured runs)",
    ]
    header = (
        f"{'config':<10} {'budget':>7} {'chunk':>7} {'requests':>8} {'tokens sent':>12}"
        f" {'largest req':>12} {'sent/budget':>11} {'reviewed':>9} {'tok/file':>8}"
    )
    lines += [header, "-" * len(header)]
    for c, got in shown:
        sent = med([r.sent for r in got])
        reviewed = med([len(r.shown) for r in got])
        ratio = f"{sent / c.budget:.2f}" if c.budget < UNLIMITED else "-"
        lines.append(
            f"{c.key:<10} {budget_cell(c.budget):>7} {budget_cell(c.chunk):>7}"
            f" {med([len(r.tokens) for r in got]):>8g} {tok(sent):>12}"
            f" {tok(med([max(r.tokens, default=0) for r in got])):>12} {ratio:>11}"
            f" {f'{reviewed:g}/{PR_FILES}':>9} {tok(sent / reviewed) if reviewed else '-':>8}"
        )
    lines += [
        "",
        "  requests     requests the fake model received: one per chunk (it calls no tool)",
        "  tokens sent  the sum over those requests of their messages' text (the system prompt"
        " and the review prompt holding the chunk's",
        "               diff) as characters / 4, the estimate the review planner uses (no"
        f" tokenizer); each request also carries ~{tok(facts['tool_tokens'])} tokens",
        "               of tool specs, not counted",
        "  largest req  the largest single request, in the same tokens; the no-budget one is"
        " larger than most models' context windows",
        "               (128k-200k tokens): a real provider would refuse it, the fake accepts any"
        " size",
        "  sent/budget  tokens sent / NIMBUS_REVIEW_BUDGET_TOKENS; the budget prices only the"
        " diff (with file headers per hunk), the",
        "               prompt around each chunk comes on top",
        "  reviewed     files whose diff the model was sent (parsed from the requests the fake"
        " recorded); tok/file: tokens sent / reviewed",
        "",
        f"Coverage: files the model was sent, of the PR's {PR_FILES}, by kind as generated",
    ]
    header = (
        f"{'config':<10} {'reviewed':>9}"
        + "".join(f" {k:>{max(len(k), 9)}}" for k in KINDS)
        + " | not reviewed:"
        + "".join(f" {label:>12}" for _, label in REASONS)
        + f" {'other':>6} {'comments':>9}"
    )
    lines += [header, "-" * len(header)]
    for c, got in shown:
        last = got[-1]
        cells = []
        for kind in KINDS:
            covered = sum(1 for p in last.shown if pr.kinds.get(p) == kind)
            cells.append(f" {f'{covered}/{pr.count(kind)}':>{max(len(kind), 9)}}")
        reasons = last.not_reviewed
        known = {reason for reason, _ in REASONS}
        other = sum(n for reason, n in reasons.items() if reason not in known)
        lines.append(
            f"{c.key:<10} {f'{len(last.shown)}/{PR_FILES}':>9}"
            + "".join(cells)
            + " " * 15
            + "".join(f" {reasons.get(reason, 0):>12}" for reason, _ in REASONS)
            + f" {other:>6} {len(last.review['comments']):>9}"
        )
    sources = [p for p, k in pr.kinds.items() if k == "source"]
    groups: dict[str, list[str]] = {}
    for path in sources:
        groups.setdefault(pr.origin(path), []).append(path)
    for path in sorted(sources):
        groups.setdefault(f"{path.split('/')[0]}/", []).append(path)
    lines += [
        "",
        "  by kind      covered / in the PR; deletion-only: 10 deleted files and 2 with lines"
        " only removed (never sent: nothing added)",
        f"  not reviewed the API's not_reviewed by reason: over budget = {OVER_BUDGET!r},"
        f" only removed = {DELETIONS_ONLY!r},",
        f"               no diff = {NO_PATCH!r}",
        "  comments     inline comments in the answer (the fake comments on the first added line"
        " of every file it is sent)",
        "",
        "Source files covered, by how they changed and by top folder (GitHub lists files by"
        " path; the planner keeps that order within a kind)",
    ]
    header = f"{'config':<10}" + "".join(f" {g:>9}" for g in groups)
    lines += [header, "-" * len(header)]
    for c, got in shown:
        covered = got[-1].shown
        lines.append(
            f"{c.key:<10}"
            + "".join(
                f" {f'{sum(1 for p in paths if p in covered)}/{len(paths)}':>9}"
                for paths in groups.values()
            )
        )
    lines += [
        "",
        "  added: new files; changed: existing files edited in several places (small diffs);"
        " renamed: one unchanged (no patch), one edited;",
        "  app/ is Python, web/ TypeScript, pkg/ Go",
    ]
    return lines


def checks(runs: list[Run], facts: dict[str, Any]) -> list[str]:
    found = []
    for run in runs:
        found += [f"{run.config.key} run {run.index}: {p}" for p in run.problems]
    by_config: dict[str, set[frozenset[str]]] = {}
    for run in runs:
        by_config.setdefault(run.config.key, set()).add(frozenset(run.shown))
    for key, seen in by_config.items():
        if len(seen) > 1:
            found.append(f"{key}: the files reviewed differ between runs ({len(seen)} sets)")
    found += [f"fake GitHub: {p}" for p in facts.get("github_problems", [])]
    found += [f"fake model: {p}" for p in facts.get("model_problems", [])]
    return list(dict.fromkeys(found))


# ---------------------------------------------------------------------------------------------
# Main


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--repeats", type=int, help="measured reviews per configuration (default 7, quick 1)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 review per configuration, no warm-up"
    )
    parser.add_argument(
        "--tight",
        type=int,
        default=20_000,
        help="the tight configuration's review budget in tokens (default 20000)",
    )
    parser.add_argument("--seed", type=int, default=1, help="the PR generator's seed (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 7
    args.warmup = not args.quick
    if args.repeats < 1 or args.tight < 1:
        parser.error("--repeats and --tight must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="[server] %(levelname)s %(name)s: %(message)s",
    )
    root = Path(tempfile.mkdtemp(prefix="nimbus-bench-review-"))
    started = time.perf_counter()
    try:
        print("Nimbus large-PR review benchmark: POST /tasks/review/ on a generated 300-file PR")
        print(f"command: {' '.join([sys.executable, *sys.argv])}")
        for line in machine_info():
            print(line)
        pr = generate(args.seed)
        sys.stdout.flush()
        runs, facts = asyncio.run(measure(args, pr, root))
        kinds = ", ".join(f"{pr.count(k)} {k}" for k in KINDS)
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(facts["statuses"].items()))
        print(
            f"pull request (seed {args.seed}): {PR_FILES} files ({kinds}); as GitHub lists them:"
            f" {statuses}"
        )
        print(
            f"  +{facts['additions']:,} -{facts['deletions']:,} lines in {facts['hunks']:,}"
            f" hunks; the patches GitHub sends: {facts['patch_chars']:,} characters"
            f" ~ {tok(facts['patch_chars'] / 4)} tokens (characters / 4); priced as the review"
            f" planner does it: {tok(facts['planned_tokens'])} tokens"
        )
        print(
            f"runs: {args.repeats} measured review(s) per configuration"
            f"{', after one uncounted warm-up each' if args.warmup else ' (no warm-up)'};"
            " the configurations take turns; post: false; model gpt-test on the fake OpenAI"
        )
        print("\n".join(report(runs, facts, pr)))
        problems = checks(runs, facts)
        if problems:
            print("\nWARNING: the run did not go as scripted; the figures may not compare:")
            print("\n".join(f"  {p}" for p in problems[:20]))
        else:
            print(
                "\nChecks: every review answered 200; the files the model was sent are exactly"
                " the PR's files minus not_reviewed, and as many as reviewed_files; one request"
                " per chunk; usage.input_tokens equals the tokens measured here; every file sent"
                " got its inline comment; no fake saw a malformed request."
            )
        print(f"Total benchmark time: {time.perf_counter() - started:.1f} s")
        return 1 if problems else 0
    except BenchError as exc:
        return give_up(exc)
    finally:
        leave_scratch(root, args.keep)


if __name__ == "__main__":
    sys.exit(main())
