"""Which repository URLs Nimbus accepts (DESIGN §3), checked before anything is stored."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from bot.errors import Unprocessable

_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+$")
_BRANCH = re.compile(r"(?!-)(?!.*\.\.)[A-Za-z0-9._/-]{1,200}")


def valid_branch(name: str) -> bool:
    """What `git check-ref-format --branch` accepts, for the characters Nimbus allows."""
    if not _BRANCH.fullmatch(name):
        return False
    return all(
        part and not part.startswith(".") and not part.endswith((".lock", "."))
        for part in name.split("/")
    )


def normalize_repo_url(url: str, *, allow_local: bool, data_dir: Path) -> str:
    """The URL as it will be cloned; 422 naming what is wrong otherwise."""
    url = url.strip()
    if not url or url.startswith("-") or any(c.isspace() or ord(c) < 32 for c in url):
        raise Unprocessable("field 'url' must be a git URL such as https://host/owner/repo.git")
    if _SCP_LIKE.match(url):
        return url
    parts = urlsplit(url)
    if parts.scheme in ("https", "ssh"):
        if not parts.hostname or parts.hostname.startswith("-"):
            raise Unprocessable(f"field 'url': {url!r} has no valid host")
        if parts.password is not None or (parts.scheme == "https" and parts.username):
            raise Unprocessable(
                "field 'url' must not carry credentials: Nimbus uses the server's git"
                " credentials (credential helper or SSH agent) instead"
            )
        return url
    if parts.scheme == "file" or (not parts.scheme and url.startswith(("/", "~", "."))):
        return _local(parts.path if parts.scheme == "file" else url, allow_local, data_dir)
    raise Unprocessable(
        f"field 'url': {url!r} is not a URL Nimbus can clone; use https://…, ssh://… or"
        " user@host:path"
    )


def _local(raw: str, allow_local: bool, data_dir: Path) -> str:
    if not allow_local:
        raise Unprocessable(
            "field 'url': local repositories are off on this server (it listens beyond"
            " loopback); set NIMBUS_ALLOW_LOCAL_REPOS=true to allow them"
        )
    path = Path(raw).expanduser().resolve()
    if path.is_relative_to(data_dir.resolve()):
        raise Unprocessable("field 'url': a repository inside Nimbus's own data folder is refused")
    if not (path / ".git").exists() and not (path / "HEAD").is_file():
        raise Unprocessable(f"field 'url': {path} is not a git repository")
    return str(path)
