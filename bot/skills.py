"""Skills: markdown instructions added to every prompt of a task (DESIGN §4)."""

from __future__ import annotations

import re
from pathlib import Path

from bot.errors import PhaseError

SKILL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
REPO_SKILLS_DIR = ".nimbus/skills"
# A skill is instructions, not a document: anything longer is cut.
_MAX_SKILL_BYTES = 64 * 1024


def valid_skill_name(name: str) -> bool:
    return bool(SKILL_NAME.fullmatch(name)) and ".." not in name


class Skills:
    """Skills in the server's skills folder, and lookup in a clone."""

    def __init__(self, server_dir: Path) -> None:
        self.server_dir = server_dir

    def on_server(self) -> list[str]:
        if not self.server_dir.is_dir():
            return []
        return sorted(p.stem for p in self.server_dir.glob("*.md") if valid_skill_name(p.stem))

    def load(self, name: str, clone: Path) -> str:
        """The skill's text: the repository's own first, then the server's."""
        for folder in (clone / REPO_SKILLS_DIR, self.server_dir):
            path = folder / f"{name}.md"
            # Resolved, so that a symlink in a hostile clone cannot point outside its folder.
            if path.is_file() and path.resolve().is_relative_to(folder.resolve()):
                return path.read_bytes()[:_MAX_SKILL_BYTES].decode("utf-8", errors="replace")
        available = self.on_server() + sorted(
            p.stem for p in (clone / REPO_SKILLS_DIR).glob("*.md") if valid_skill_name(p.stem)
        )
        raise PhaseError(
            f"skill {name!r} is neither in the repository ({REPO_SKILLS_DIR}/{name}.md) nor on the"
            f" server; skills available: {', '.join(available) or 'none'}"
        )
