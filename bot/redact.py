"""Secret redaction: the one filter every event, error and log line passes through."""

from __future__ import annotations

import logging
import re
import traceback
import weakref
from collections.abc import Iterable
from typing import Any

MASK = "***"

# `https://user:token@host/…` and `https://token@host/…`: the userinfo part of any URL.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@:]+(?::[^/\s@]*)?@")
_AUTH_HEADER = re.compile(r"(?i)(authorization:\s*(?:bearer|token|basic)?\s*)\S+")
# `?api_key=…` (also percent-encoded, `api%5Fkey`) and `access_token=…` in any URL or request line.
_QUERY_KEY = re.compile(r"(?i)([?&;](?:api|access)(?:_|%5f)(?:key|token)=)[^&\s\"'#]*")


class Redactor:
    """Replaces known secret values, URL credentials and Authorization headers with `***`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            value = value.replace(secret, MASK)
        value = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", value)
        value = _QUERY_KEY.sub(lambda m: f"{m.group(1)}{MASK}", value)
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


# Held weakly: an app's redactor masks logs while the app lives, and goes with it (a process
# that builds app after app, as the tests do, would otherwise mask with every past one).
_log_redactors: weakref.WeakSet[Redactor] = weakref.WeakSet()
_factory_installed = False


def redact_logs(redactor: Redactor) -> None:
    """Mask every log record of this process as it is made, whatever logger or handler.

    A record factory rather than a handler filter: uvicorn's loggers, the test runner's capture
    and handlers added later all get the masked text, exception tracebacks included. The caller
    keeps `redactor` alive for as long as it should apply.
    """
    global _factory_installed
    if not _factory_installed:
        logging.setLogRecordFactory(_masking_factory(logging.getLogRecordFactory()))
        _factory_installed = True
    _log_redactors.add(redactor)


def _masking_factory(make: Any) -> Any:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: logging reports it when it formats the record
            return record
        clean = _mask_all(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and record.exc_info[1] is not None:
            trace = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = _mask_all(trace)
        return record

    return factory


def _mask_all(text: str) -> str:
    for redactor in list(_log_redactors):
        text = redactor.text(text)
    return text
