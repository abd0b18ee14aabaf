"""The service's error hierarchy; the API maps each class to its HTTP status once."""

from __future__ import annotations


class AppError(Exception):
    """An error a client can act on: `code` is stable, `message` says what to do."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers: dict[str, str] = {}
        if code is not None:
            self.code = code


class InvalidInput(AppError):
    status_code = 422
    code = "invalid_request"


class InvalidToken(AppError):
    """A signed link that this service did not make, was changed, or has expired."""

    status_code = 403
    code = "invalid_token"


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class WorkflowFailed(AppError):
    """The workflow ended without an output; the message carries its recorded error.

    424 Failed Dependency: the answer depended on the agent's call, and that failed. (Not a
    5xx: this service worked, and retrying the request gets the same recorded outcome.)
    """

    status_code = 424
    code = "workflow_failed"


class DeliveryFailed(AppError):
    """The notification could not be delivered; the message carries the recorded reason."""

    status_code = 424
    code = "delivery_failed"


class Unavailable(AppError):
    status_code = 503
    code = "unavailable"


class TransientError(Exception):
    """An external call failed in a way worth retrying (timeouts, 429, 5xx, 4xx SMTP replies)."""


class OutcomeUnknown(TransientError):
    """An external call may or may not have taken effect: an email the SMTP server was sent but
    never confirmed. Tried again at most once, after a long delay."""


class PermanentError(Exception):
    """An external call failed in a way retrying cannot fix (bad request, auth, 5xx SMTP)."""


def describe(exc: BaseException) -> str:
    """A short account of an exception for records users see: its type and first line, never
    the SQL or parameters a database error's text carries."""
    orig = getattr(exc, "orig", None)  # SQLAlchemy's wrapper; the driver's own text has no SQL
    if isinstance(orig, BaseException):
        exc = orig
    text = str(exc).strip()
    first_line = text.splitlines()[0][:200] if text else ""
    return f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__
