"""Secret redaction: the one filter every event, error and log line passes through."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MASK = "***"

# `https://user:token@host/…` and `https://token@host/…`: the userinfo part of any URL.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@:]+(?::[^/\s@]*)?@")
_AUTH_HEADER = re.compile(r"(?i)(authorization:\s*(?:bearer|token|basic)?\s*)\S+")


class Redactor:
    """Replaces known secret values, URL credentials and Authorization headers with `***`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            value = value.replace(secret, MASK)
        value = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", value)
        return _AUTH_HEADER.sub(lambda m: f"{m.group(1)}{MASK}", value)

    def value(self, value: Any) -> Any:
        """Redact every string inside a JSON-like value."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value
