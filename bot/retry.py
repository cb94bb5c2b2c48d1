"""What HTTP services say about retrying: the Retry-After header, and backoff with jitter."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked to wait (delay-seconds or an HTTP date), if it said.

    https://www.rfc-editor.org/rfc/rfc9110#field.retry-after
    """
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, moment.timestamp() - time.time())


def backoff(attempt: int, base: float, cap: float = 30.0) -> float:
    """Exponential backoff with jitter: about base·2^attempt, at most `cap`."""
    return min(cap, base * 2**attempt) * (0.5 + random.random() / 2)
