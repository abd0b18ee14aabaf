"""What the client raises: the service's errors with their `code`, status and message, and the
client's own (the service unreachable, a wait that ran out of time)."""

from __future__ import annotations


class AgentNotifyError(Exception):
    """Every error this client raises."""


class ApiError(AgentNotifyError):
    """The service answered with an error: `{"error": {"code", "message"}}` and its status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class BadRequest(ApiError):
    """The request was refused as it stands (400, 413, 422): change it before sending again."""


class Unauthorized(ApiError):
    """401 or 403: no API token, or not one the service accepts."""


class NotFound(ApiError):
    """404: no such workflow (or promise)."""


class Conflict(ApiError):
    """409: the workflow's state does not allow it (see `code`)."""


class WorkflowFailed(ApiError):
    """The run failed (424 `workflow_failed`); `message` says why."""


class WorkflowCancelled(Conflict):
    """The run was cancelled (409 `workflow_cancelled`)."""


class ServiceUnavailable(ApiError):
    """503 after the client's retries: the service is shutting down or its database is out."""


class Unreachable(AgentNotifyError):
    """No answer from the service after the client's retries (connection refused, reset, timed
    out)."""


class WaitTimedOut(AgentNotifyError, TimeoutError):
    """The run was not finished within the wait the caller gave; it goes on."""

    def __init__(self, key: str, status: str) -> None:
        super().__init__(f"workflow {key!r} is still {status}")
        self.key = key
        self.status = status


class NoPendingApproval(AgentNotifyError):
    """The run asks no approval now (none of its `request_approval` calls waits)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"workflow {key!r} waits for no approval")
        self.key = key


def api_error(status: int, code: str, message: str) -> ApiError:
    """The exception for one error answer."""
    if code == "workflow_cancelled":
        return WorkflowCancelled(status, code, message)
    if code == "workflow_failed":
        return WorkflowFailed(status, code, message)
    kind: type[ApiError] = ApiError
    if status in (400, 413, 415, 422):
        kind = BadRequest
    elif status in (401, 403):
        kind = Unauthorized
    elif status == 404:
        kind = NotFound
    elif status == 409:
        kind = Conflict
    elif status == 503:
        kind = ServiceUnavailable
    return kind(status, code, message)
