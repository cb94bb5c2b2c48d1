"""Issues: `/nimbus …` comments and the trigger label start and move tasks; closing cancels."""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from bot.errors import Conflict
from bot.github import pulls, render
from bot.github.commands import Command, clean_text, help_text, parse_command
from bot.github.context import GitHubContext
from bot.models import Task
from phases import commands
from phases.machine import Phase

log = logging.getLogger("nimbus.github")

router = routing.Router()

# Gate decisions a comment may make, by command word.
_DECISIONS = {"approve", "reject", "approve-diff", "reject-diff", "revise"}


def source_key(repo: dict[str, Any], issue_number: int) -> str:
    """One active task per issue: tasks of an issue share this key."""
    return f"github:{repo['id']}#{issue_number}"


def _is_bot(user: dict[str, Any]) -> bool:
    # Bots, Nimbus's own App among them, never start or move tasks.
    return user.get("type") == "Bot" or str(user.get("login", "")).endswith("[bot]")


class IssueRequest:
    """One person's request on one issue, with the means to answer it."""

    def __init__(self, event: sansio.Event, ctx: GitHubContext) -> None:
        data = event.data
        self.ctx = ctx
        self.data = data
        self.issue = data["issue"]
        self.repository = data["repository"]
        self.installation = int(data["installation"]["id"])
        self.sender = data.get("sender") or {}
        self.key = source_key(self.repository, int(self.issue["number"]))

    @property
    def full_name(self) -> str:
        return str(self.repository["full_name"])

    async def api(self) -> Any:
        assert self.ctx.app is not None, "the GitHub App is not configured"
        return await self.ctx.app.api(self.installation)

    async def reply(self, body: str) -> None:
        gh = await self.api()
        # Follows the URL GitHub put in the payload rather than building one.
        await gh.post(self.issue["comments_url"], data={"body": body})

    async def may_act(self) -> bool:
        """Whether the sender has write access; others get one short reply."""
        login = str(self.sender.get("login", ""))
        gh = await self.api()
        if await self.ctx.can_write(gh, self.full_name, login):
            return True
        # At most one reply per person and issue (DESIGN §6): look for an earlier one.
        reply = render.permission_reply(login)
        async for comment in gh.getiter(self.issue["comments_url"]):
            if (comment.get("user") or {}).get("type") == "Bot" and comment.get("body") == reply:
                return False
        await self.reply(reply)
        return False

    async def new_task(self, text: str, *, label: str | None = None) -> Task | None:
        active = await self.ctx.services.store.active_tasks(source_key=self.key)
        if active:
            await self.reply(render.already_active_reply(active[-1].id))
            return None
        repo = await self.ctx.register(self.installation, self.repository)
        return await commands.new_task(
            self.ctx.services.events,
            workspace_id=repo.workspace_id,
            repo_id=repo.id,
            description=self.description(text),
            source={
                "type": "github_issue",
                "installation_id": self.installation,
                "repository": self.full_name,
                "issue": int(self.issue["number"]),
                "title": clean_text(self.issue.get("title") or "")[:200],
                "requested_by": self.sender.get("login"),
                # What was asked, apart from the issue's text: `retry` asks it again.
                "request": text,
                "label": label,
            },
            source_key=self.key,
        )

    def description(self, text: str) -> str:
        """What to do, with the issue's title and body as context (hidden text stripped)."""
        title = clean_text(self.issue.get("title") or "")
        body = clean_text(self.issue.get("body") or "")
        parts = [clean_text(text)] if text.strip() else []
        parts.append(f"Issue #{self.issue['number']}: {title}")
        if body.strip():
            parts.append(body.strip())
        return "\n\n".join(parts)


async def _task_for(request: IssueRequest, command: Command) -> Task | None:
    store = request.ctx.services.store
    if command.task_id:
        task = await store.get_task(command.task_id)
        return task if task is not None and task.source_key == request.key else None
    active = await store.active_tasks(source_key=request.key)
    return active[-1] if active else None


async def _run(request: IssueRequest, command: Command) -> None:
    events = request.ctx.services.events
    by = f"@{request.sender.get('login')} on GitHub"
    if command.word == "help":
        await request.reply(help_text())
        return
    if command.word == "new":
        await request.new_task(command.text)
        return
    if command.word == "retry":
        latest = await request.ctx.services.store.latest_task(request.key)
        if latest is None or latest.phase != Phase.FAILED:
            await request.reply("Nothing to retry: this issue has no failed or cancelled task.")
            return
        source = latest.source or {}
        await request.new_task(source.get("request", ""), label=source.get("label"))
        return
    if command.word in _PR_WORDS:
        await request.reply(f"`/nimbus {command.word}` works on pull requests, not on issues.")
        return
    task = await _task_for(request, command)
    if task is None:
        await request.reply(f"No active Nimbus task on this issue. {help_text().splitlines()[0]}")
        return
    try:
        if command.word in _DECISIONS:
            await commands.decide(events, task, command.word, feedback=command.text or None, by=by)
        elif command.word == "cancel":
            await commands.cancel(events, task, by=by)
        elif command.word == "status":
            # Without its marker: the reply must not pass for the status comment Nimbus edits.
            status = render.status_comment(task)
            await request.reply(status.removeprefix(render.marker(task.id)).lstrip())
    except Conflict as exc:
        await request.reply(f"`/nimbus {command.word}` does not apply now: {exc}")


# https://docs.github.com/webhooks/webhook-events-and-payloads#issue_comment
@router.register("issue_comment", action="created")
async def comment_created(event: sansio.Event, ctx: GitHubContext, *a: Any, **kw: Any) -> None:
    comment = event.data["comment"]
    if _is_bot(comment.get("user") or {}):
        return
    command = parse_command(comment.get("body") or "")
    if command is None:
        return
    if "pull_request" in event.data["issue"]:
        await _on_pull_request(event, ctx, command)
        return
    if ctx.app is None:
        log.warning(
            "a /nimbus command arrived but the GitHub App is not configured: set"
            " NIMBUS_GITHUB_APP_ID and NIMBUS_GITHUB_PRIVATE_KEY (or _PATH) to act on it"
        )
        return
    request = IssueRequest(event, ctx)
    gh = await request.api()
    # 👀: seen. https://docs.github.com/rest/reactions/reactions#create-reaction-for-an-issue-comment
    await gh.post(f"{comment['url']}/reactions", data={"content": "eyes"})
    if await request.may_act():
        await _run(request, command)


# Words that mean something on a pull request only.
_PR_WORDS = {"review", "pause", "resume"}


async def _on_pull_request(event: sansio.Event, ctx: GitHubContext, command: Command) -> None:
    """On a PR: `/nimbus review` reviews its head now; `pause` and `resume` its auto reviews."""
    if command.word not in _PR_WORDS or ctx.app is None:
        return
    request = IssueRequest(event, ctx)
    gh = await request.api()
    await gh.post(f"{event.data['comment']['url']}/reactions", data={"content": "eyes"})
    if not await request.may_act():
        return
    if command.word == "pause":
        await request.reply(await pulls.pause(ctx, event.data, f"@{request.sender.get('login')}"))
        return
    if command.word == "resume":
        await request.reply(await pulls.resume(ctx, event.data))
        return
    pr = await gh.getitem(event.data["issue"]["pull_request"]["url"])
    repository = event.data["repository"]
    config = await pulls.repo_config(gh, repository["full_name"], repository["default_branch"])
    await pulls.review_once(ctx, event.data, pr, config)


# https://docs.github.com/webhooks/webhook-events-and-payloads#issues
@router.register("issues", action="labeled")
async def labeled(event: sansio.Event, ctx: GitHubContext, *a: Any, **kw: Any) -> None:
    label = (event.data.get("label") or {}).get("name")
    if label != ctx.services.settings.github_label or ctx.app is None:
        return
    if _is_bot(event.data.get("sender") or {}):
        return
    request = IssueRequest(event, ctx)
    if await request.may_act():
        await request.new_task("", label=label)


@router.register("issues", action="closed")
async def closed(event: sansio.Event, ctx: GitHubContext, *a: Any, **kw: Any) -> None:
    key = source_key(event.data["repository"], int(event.data["issue"]["number"]))
    tasks = await ctx.services.store.active_tasks(source_key=key)
    await ctx.cancel(tasks, "the issue was closed")
