"""Git on a task's clone, always through the runner, with hooks and fsmonitor switched off."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
from collections.abc import Sequence
from email.utils import parseaddr
from pathlib import Path

from bot.errors import GitError
from bot.redact import Redactor
from bot.runner import CommandResult, EnvPolicy, Runner

# DESIGN §7: the clone is hostile; none of its configuration may run code.
log = logging.getLogger("nimbus.git")
_SAFE = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")
# Variables a network operation may need for the server's own credentials (credential helper,
# SSH agent, proxies). Local operations get none of them.
_NETWORK_ENV = (
    "SSH_AUTH_SOCK",
    "GIT_SSH_COMMAND",
    "GIT_ASKPASS",
    "SSH_ASKPASS",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "https_proxy",
    "http_proxy",
    "no_proxy",
    "XDG_CONFIG_HOME",
)


def parse_author(author: str) -> tuple[str, str]:
    """`Name <email>` into its parts, with Nimbus's defaults for what is missing."""
    name, email = parseaddr(author)
    return (name or "Nimbus", email or "nimbus@localhost")


class Git:
    """Git commands in one working folder."""

    def __init__(
        self,
        runner: Runner,
        redactor: Redactor,
        *,
        home: Path,
        timeout: float,
        author: str,
        server_home: str | None = None,
    ) -> None:
        self.runner = runner
        self.redactor = redactor
        self.home = home
        self.timeout = timeout
        self.author_name, self.author_email = parse_author(author)
        self.server_home = server_home

    def _policy(self, network: bool, auth_header: str | None = None) -> EnvPolicy:
        extra = {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": self.author_name,
            "GIT_AUTHOR_EMAIL": self.author_email,
            "GIT_COMMITTER_NAME": self.author_name,
            "GIT_COMMITTER_EMAIL": self.author_email,
        }
        if auth_header is not None:
            # A forge's token travels in git's own environment only: never on disk, in the
            # command line (other users can read it there) or in the repository's config.
            auth = {
                "GIT_CONFIG_COUNT": "2",
                "GIT_CONFIG_KEY_0": "http.extraHeader",
                "GIT_CONFIG_VALUE_0": auth_header,
                # No credential helper: a refused token must fail, not fall back to another.
                "GIT_CONFIG_KEY_1": "credential.helper",
                "GIT_CONFIG_VALUE_1": "",
                "GIT_CONFIG_NOSYSTEM": "1",
            }
            return EnvPolicy(home=self.home, extra={**extra, **auth})
        if network and self.server_home:
            # Pushing and cloning use the server's own git credentials (README: "Pushing").
            # Nobody can answer a prompt: ssh must fail rather than wait for one.
            if "GIT_SSH_COMMAND" not in self.runner.server_env:
                extra["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"
            return EnvPolicy(home=Path(self.server_home), pass_env=_NETWORK_ENV, extra=extra)
        return EnvPolicy(home=self.home, extra={**extra, "GIT_CONFIG_NOSYSTEM": "1"})

    async def run(
        self,
        args: Sequence[str],
        *,
        cwd: Path,
        network: bool = False,
        check: bool = True,
        auth_header: str | None = None,
    ) -> CommandResult:
        """Run `git args`; with `check`, a failure raises GitError with git's own words."""
        if await asyncio.to_thread(_restore_config, cwd):
            log.warning("%s: .git/config had changed since the clone; put back as it was", cwd)
        result = await self.runner.run(
            ["git", *_SAFE, *args],
            cwd=cwd,
            timeout=self.timeout,
            env=self._policy(network, auth_header),
        )
        if check and not result.ok:
            what = f"git {args[0]}"
            if result.timed_out:
                raise GitError(f"{what} timed out after {self.timeout:.0f}s")
            message = self.redactor.text(result.stderr.strip() or result.stdout.strip())
            raise GitError(f"{what} failed: {message[-2000:]}")
        return result

    async def out(self, args: Sequence[str], *, cwd: Path) -> str:
        return (await self.run(args, cwd=cwd)).stdout.strip()

    async def clone(
        self, url: str, dest: Path, branch: str | None, *, auth_header: str | None = None
    ) -> None:
        args = ["clone", "--no-recurse-submodules"]
        if branch:
            args += ["--branch", branch]
        await self.run(
            [*args, "--", url, str(dest)], cwd=dest.parent, network=True, auth_header=auth_header
        )
        await asyncio.to_thread(_keep_config, dest)

    async def fetch_commit(
        self, url: str, dest: Path, sha: str, *, auth_header: str | None = None
    ) -> None:
        """Check out one commit of `url` into a new `dest`, without its history."""
        await self.run(["init", "--quiet", "--", str(dest)], cwd=dest.parent)
        # A commit by SHA: GitHub serves any commit reachable in the repository, a fork PR's
        # head included (through refs/pull/N/head).
        await self.run(
            ["fetch", "--quiet", "--depth", "1", "--no-tags", "--", url, sha],
            cwd=dest,
            network=True,
            auth_header=auth_header,
        )
        await self.run(["checkout", "--quiet", "--detach", "FETCH_HEAD"], cwd=dest)

    async def head(self, cwd: Path) -> str:
        return await self.out(["rev-parse", "HEAD"], cwd=cwd)

    async def current_branch(self, cwd: Path) -> str:
        return await self.out(["rev-parse", "--abbrev-ref", "HEAD"], cwd=cwd)

    async def tracked_files(self, cwd: Path) -> list[str]:
        result = await self.run(["ls-files", "-z"], cwd=cwd)
        return [p for p in result.stdout.split("\0") if p]

    async def reset_to(self, cwd: Path, sha: str) -> None:
        """Put the working tree back exactly at `sha` (ignored files such as installs stay)."""
        await self.run(["reset", "--hard", "--quiet", sha], cwd=cwd)
        await self.run(["clean", "-fd", "--quiet"], cwd=cwd)

    async def changed_paths(self, cwd: Path, base: str) -> list[str]:
        """Paths that differ from `base` in the working tree, untracked files included."""
        await self.run(["add", "--all", "--intent-to-add"], cwd=cwd)
        out = await self.run(["diff", "--name-only", "-z", base], cwd=cwd)
        return [p for p in out.stdout.split("\0") if p]

    async def commit_all(self, cwd: Path, message: str) -> str:
        """Commit everything in the working tree (even nothing) and return the new SHA."""
        await self.run(["add", "--all"], cwd=cwd)
        await self.run(
            ["commit", "--quiet", "--allow-empty", "--no-verify", "-m", message], cwd=cwd
        )
        return await self.head(cwd)

    async def squash(self, cwd: Path, base: str, message: str, head: str = "HEAD") -> str:
        """One commit on `base` holding exactly `head`'s tree; the working tree becomes it.

        Not the working tree: what a later test run left there was never shown to anyone.
        """
        tree = await self.out(["rev-parse", f"{head}^{{tree}}"], cwd=cwd)
        sha = await self.out(["commit-tree", tree, "-p", base, "-m", message], cwd=cwd)
        await self.run(["reset", "--hard", "--quiet", sha], cwd=cwd)
        return sha

    async def discard_changes(self, cwd: Path) -> list[str]:
        """Put the working tree back to HEAD: what was changed or added (not ignored files)."""
        status = await self.run(["status", "--porcelain", "-z", "--untracked-files=all"], cwd=cwd)
        changed = [entry[3:] for entry in status.stdout.split("\0") if len(entry) > 3]
        if changed:
            await self.reset_to(cwd, "HEAD")
        return changed

    async def diff(self, cwd: Path, base: str, head: str = "HEAD") -> str:
        result = await self.run(["diff", "--no-color", "--no-ext-diff", base, head], cwd=cwd)
        return result.stdout

    async def restore_paths(self, cwd: Path, base: str, paths: Sequence[str]) -> None:
        """Undo the working tree's changes to `paths` (files new since `base` are removed)."""
        for path in paths:
            exists = await self.run(["cat-file", "-e", f"{base}:{path}"], cwd=cwd, check=False)
            if exists.ok:
                await self.run(["checkout", base, "--", path], cwd=cwd)
            else:
                await self.run(["rm", "-q", "--cached", "--ignore-unmatch", "--", path], cwd=cwd)
                (cwd / path).unlink(missing_ok=True)

    async def push(
        self, cwd: Path, remote: str, branch: str, *, auth_header: str | None = None
    ) -> None:
        await self.run(
            ["push", "--quiet", "--force", remote, f"HEAD:refs/heads/{branch}"],
            cwd=cwd,
            network=True,
            auth_header=auth_header,
        )


_BRANCH_SAFE = re.compile(r"[^A-Za-z0-9._/-]+")


def safe_branch(name: str) -> str:
    """A branch name git accepts, from arbitrary text."""
    cleaned = _BRANCH_SAFE.sub("-", name).strip("-/.")
    return re.sub(r"\.{2,}|/{2,}|@\{", "-", cleaned) or "nimbus"


# The clone's `.git/config` as the clone made it, kept beside the clone: a filter, textconv or
# push URL that repository code (or an agent) writes into it later must never steer Nimbus's own
# git, which runs outside the sandbox and holds the forge's token.


def _config_copy(clone: Path) -> Path:
    return clone.parent / f".{clone.name}.git-config"


def _keep_config(clone: Path) -> None:
    shutil.copyfile(clone / ".git" / "config", _config_copy(clone))


def _restore_config(cwd: Path) -> bool:
    """Put back the clone's config if it changed; True when it had."""
    kept, config = _config_copy(cwd), cwd / ".git" / "config"
    try:
        original = kept.read_bytes()
        if config.read_bytes() == original:
            return False
    except FileNotFoundError:
        return False  # not a clone Nimbus made (or not a clone at all)
    config.write_bytes(original)
    return True
