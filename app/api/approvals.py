"""The approver's page, by the signed link of an approval request.

Public (no API token: the link's signature is the authority). `GET` shows the question, the
run's task and a form, and decides nothing (mail scanners open links); `POST` (the page's
plain HTML form: `decision=approve|reject`, optional `comment`) records the decision. The first
decision wins; a later one sees it (409). No JavaScript, no other resource.
"""

from __future__ import annotations

import html
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Path, Request
from starlette.responses import HTMLResponse

from app.api.deps import service_of
from app.api.errors import error_responses
from app.api.unsubscribe import PAGE_HEADERS
from app.errors import InvalidToken, NotFound
from app.workflows.approvals import AlreadyDecided, ApprovalView

router = APIRouter(tags=["approvals"])

TokenPath = Annotated[
    str, Path(min_length=1, max_length=256, description="the signed token of the request's link")
]
RESPONSES = {
    status: response
    for status, response in error_responses(
        "invalid_token", "not_found", "already_decided", "invalid_request"
    ).items()
    if status != 401
}
COMMENT_CHARS = 2000


@router.get("/approvals/{token}", response_class=HTMLResponse, responses=RESPONSES)
async def approval_page(request: Request, token: TokenPath) -> HTMLResponse:
    """The request and a form to approve or reject it; opening it decides nothing."""
    try:
        view = await service_of(request).deciding.view(token)
    except (InvalidToken, NotFound) as exc:
        return _page(exc.status_code, f"<p>{html.escape(exc.message)}</p>")
    return _page(200, _request_html(view) + _decision_html(view))


@router.post("/approvals/{token}", response_class=HTMLResponse, responses=RESPONSES)
async def decide(request: Request, token: TokenPath) -> HTMLResponse:
    """Record the decision of the form (`decision=approve|reject`, `comment`); 409 with the
    decision already made, 403 `invalid_token` for a forged, changed or expired link."""
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    decision = (form.get("decision") or [""])[0]
    comment = (form.get("comment") or [""])[0].replace("\x00", "").strip()[:COMMENT_CHARS]
    if decision not in ("approve", "reject"):
        return _page(422, "<p>Choose Approve or Reject.</p>")
    try:
        view = await service_of(request).deciding.decide(
            token, approved=decision == "approve", comment=comment or None
        )
    except AlreadyDecided as exc:
        return _page(409, _request_html(exc.view) + _decision_html(exc.view, late=True))
    except (InvalidToken, NotFound) as exc:
        return _page(exc.status_code, f"<p>{html.escape(exc.message)}</p>")
    return _page(200, _request_html(view) + _decision_html(view))


def _request_html(view: ApprovalView) -> str:
    request = view.request
    key = view.subscription.workflow_key
    parts = [
        f"<p>The agent task <strong>{html.escape(key)}</strong> asks:</p>",
        f"<blockquote>{_text(request.get('question'))}</blockquote>",
    ]
    if request.get("details"):
        parts.append(f"<blockquote>{_text(request.get('details'))}</blockquote>")
    parts.append(f"<p>Its task:</p><blockquote>{_text(request.get('query'))}</blockquote>")
    return "\n".join(parts)


def _decision_html(view: ApprovalView, *, late: bool = False) -> str:
    decision = view.decision
    if decision is None:
        deadline = html.escape(str(view.request.get("deadline") or ""))
        return (
            '<form method="post">\n'
            '<p><label>Comment (optional)<br><textarea name="comment" rows="3" cols="60" '
            f'maxlength="{COMMENT_CHARS}"></textarea></label></p>\n'
            '<p><button type="submit" name="decision" value="approve">Approve</button> '
            '<button type="submit" name="decision" value="reject">Reject</button></p>\n'
            f"</form>\n<p><small>Without a decision by {deadline}, the agent is told that "
            "nobody approved.</small></p>"
        )
    if decision.get("timed_out"):
        said = "Nobody decided in time: the agent was told so."
    else:
        verdict = "Approved" if decision.get("approved") else "Rejected"
        by = decision.get("by")
        said = verdict + (f" by {by}" if by else "") + "."
        if decision.get("comment"):
            said += f" Comment: {decision.get('comment')}"
    prefix = "This request was already decided. " if late else ""
    return f"<p><strong>{html.escape(prefix + said)}</strong></p>"


def _text(value: object) -> str:
    return html.escape(str(value or "")).replace("\n", "<br>")


def _page(status_code: int, body: str) -> HTMLResponse:
    document = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Approval · agent-notify</title></head>\n"
        f"<body><h1>agent-notify</h1>\n{body}\n</body></html>\n"
    )
    return HTMLResponse(document, status_code=status_code, headers=PAGE_HEADERS)
