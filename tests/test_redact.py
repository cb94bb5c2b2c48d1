"""The one secret filter that events, errors and log lines pass through (DESIGN §7)."""

from __future__ import annotations

import gc
import logging

import pytest

from bot.redact import MASK, Redactor, redact_logs

TOKEN = "ghs_0123456789abcdefABCDEF"


def test_configured_secret_is_masked_wherever_it_appears():
    redactor = Redactor([TOKEN, "sk-model-key-42"])
    text = f"clone failed with token {TOKEN}; model said sk-model-key-42!"
    assert redactor.text(text) == "clone failed with token ***; model said ***!"


def test_every_occurrence_is_masked():
    assert Redactor(["s3cret"]).text("s3cret s3crets3cret") == "*** ******"


def test_secret_containing_another_is_masked_whole():
    redactor = Redactor(["abcd", "abcdefgh"])
    assert redactor.text("key=abcdefgh") == "key=***"


def test_very_short_and_empty_secrets_are_not_used():
    """Masking every `a` would make every message unreadable."""
    redactor = Redactor(["", "a", "ab", "abc"])
    assert redactor.text("abc and a cab") == "abc and a cab"


def test_text_without_secrets_is_unchanged():
    text = "tests fail: tests/test_calc.py::test_add (see https://github.com/o/r/pull/1)"
    assert Redactor([TOKEN]).text(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "fatal: unable to access 'https://x-access-token:unknown-tok@github.com/o/r.git/'",
            "fatal: unable to access 'https://***@github.com/o/r.git/'",
        ),
        ("https://user:pa55@example.com/r.git", "https://***@example.com/r.git"),
        ("https://only-a-token@example.com/r.git", "https://***@example.com/r.git"),
        ("remote: http://u:p@10.0.0.1:3000/r", "remote: http://***@10.0.0.1:3000/r"),
        ("https://user:@example.com/r", "https://***@example.com/r"),
    ],
)
def test_url_credentials_are_masked_even_when_not_configured(text, expected):
    assert Redactor().text(text) == expected


def test_url_without_credentials_is_unchanged():
    text = "pushed to https://github.com/o/r.git and git@github.com:o/r.git"
    assert Redactor().text(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer eyJhbGciOi.x.y", "Authorization: Bearer ***"),
        ("authorization: token ghp_unknown123", "authorization: token ***"),
        ("AUTHORIZATION: Basic dXNlcjpwYXNz", "AUTHORIZATION: Basic ***"),
        ("Authorization: raw-credential", "Authorization: ***"),
        (
            "git -c http.extraheader=Authorization:Basic\tc2VjcmV0 fetch",
            "git -c http.extraheader=Authorization:Basic\t*** fetch",
        ),
    ],
)
def test_authorization_header_values_are_masked(text, expected):
    assert Redactor().text(text) == expected


def test_nested_values_are_redacted_and_other_values_kept():
    redactor = Redactor([TOKEN])
    value = {
        "message": f"using {TOKEN}",
        "count": 3,
        "ok": True,
        "none": None,
        "steps": [
            {"title": "clone", "detail": f"https://x:{TOKEN}@github.com/o/r"},
            ["deeper", f"Authorization: token {TOKEN}"],
        ],
        "pair": ("plain", TOKEN),
    }
    assert redactor.value(value) == {
        "message": "using ***",
        "count": 3,
        "ok": True,
        "none": None,
        "steps": [
            {"title": "clone", "detail": "https://***@github.com/o/r"},
            ["deeper", "Authorization: token ***"],
        ],
        "pair": ["plain", MASK],
    }


def test_redacting_does_not_change_the_original():
    value = {"a": [TOKEN]}
    Redactor([TOKEN]).value(value)
    assert value == {"a": [TOKEN]}


def test_log_records_are_masked_by_the_redactors_still_in_use():
    live, gone = Redactor(["live-secret-1"]), Redactor(["gone-secret-2"])
    redact_logs(live)
    redact_logs(gone)
    record = logging.getLogRecordFactory()
    masked = record(
        "t", logging.INFO, __file__, 1, "%s %s", ("live-secret-1", "gone-secret-2"), None
    )
    assert masked.getMessage() == "*** ***"
    del gone
    gc.collect()  # its app is gone: its secrets are no longer this process's to hide
    kept = record("t", logging.INFO, __file__, 1, "%s %s", ("live-secret-1", "gone-secret-2"), None)
    assert kept.getMessage() == "*** gone-secret-2"
