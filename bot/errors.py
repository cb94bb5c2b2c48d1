"""Nimbus's exceptions, in one tree.

NimbusError
├── ConfigError          a setting or configuration file is wrong (names it)
├── ApiError             an HTTP request cannot be served (carries the status code)
│   ├── BadRequest           400: the body is not JSON
│   ├── Unauthorized         401: missing or unknown API key
│   ├── NotFound             404: unknown, or belongs to another workspace
│   ├── Conflict             409: the task is not in a phase where this applies
│   ├── PayloadTooLarge      413
│   └── Unprocessable        422: a field is missing, of the wrong type, or names something unknown
└── PhaseError           a phase cannot finish; the message is the task's error
    ├── AgentError           an agent failed, timed out or answered nonsense
    │   ├── ModelError           the model provider refused or kept failing (names the setting)
    │   └── BudgetExceeded       the task spent its token budget
    └── GitError             git failed (credentials already scrubbed from the message)
"""

from __future__ import annotations


class NimbusError(Exception):
    """Base of every error Nimbus raises on purpose; the message says what to do."""


class ConfigError(NimbusError):
    """A setting, agent configuration or repository configuration is invalid."""


class ApiError(NimbusError):
    """An HTTP request that cannot be served; rendered as `{"error": message}`."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ApiError):
    status_code = 400


class Unauthorized(ApiError):
    status_code = 401


class NotFound(ApiError):
    status_code = 404


class Conflict(ApiError):
    status_code = 409


class PayloadTooLarge(ApiError):
    status_code = 413


class Unprocessable(ApiError):
    status_code = 422


class PhaseError(NimbusError):
    """A phase cannot finish; the task ends FAILED with this message."""


class AgentError(PhaseError):
    """An agent exited non-zero, hung past its timeout, or answered something unusable."""


class ModelError(AgentError):
    """The model provider refused the request or kept failing."""


class RateLimited(ModelError):
    """The model provider still answered 429 (too many requests) after every retry."""


class BudgetExceeded(AgentError):
    """The task used more tokens than NIMBUS_MAX_TOKENS_PER_TASK allows."""


class GitError(PhaseError):
    """A git command failed."""
