"""What a notification says: the outcome one subscriber is owed, in the service's one template,
before it is written as an email's plain text and HTML, a webhook's event or a chat message."""

from __future__ import annotations

import json
from dataclasses import dataclass

from app.states import AGENT_PROMISE, CANCELLED_ERROR, PromiseState, decision_promise_of


@dataclass(frozen=True, slots=True)
class Notification:
    """What one subscriber is owed: the outcome of a completed promise of one workflow."""

    email: str
    message_id: str
    workflow_key: str
    promise: str  # its name; AGENT_PROMISE is the agent's answer
    state: PromiseState  # resolved or rejected
    value: object
    error: str | None
    # The page where an approver decides (an approval request, with PUBLIC_URL set).
    approval_link: str | None = None

    @property
    def approval(self) -> dict[str, object] | None:
        """The request, when this tells an approver that a run asks for an approval."""
        if decision_promise_of(self.promise) is None or not isinstance(self.value, dict):
            return None
        return self.value


def render_value(value: object) -> str:
    """The promise value as email text: a string as is, anything else as indented JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False)


# Said under text a caller supplied through the API (a promise's value or reason), so that no
# such text can pose as the service's own message (a phishing link resolved into a promise).
SUPPLIED_NOTE = (
    "agent-notify did not write the quoted text: whoever completed the promise supplied it\n"
    "through the service's API."
)


# The longest key or promise name a subject shows whole: a longer one is cut (the body and the
# X-Agent-Notify-Key header carry it in full), so that the Subject fits its line. The standard
# library folds a longer one badly: the whole text onto a continuation line (read back with a
# leading space), or a plain ASCII key as encoded-words.
SUBJECT_NAME_CHARS = 40


def subject_name(name: str) -> str:
    """`name` as a subject shows it."""
    if len(name) <= SUBJECT_NAME_CHARS:
        return name
    return name[: SUBJECT_NAME_CHARS - 3] + "..."


@dataclass(frozen=True, slots=True)
class Content:
    """What a notification says, before it is written as plain text or HTML.

    The agent's `answer` (its Markdown) is the whole message; else the service speaks: its
    `heading`, text `supplied` through the API (quoted and marked as theirs), its `footer`.
    """

    subject: str
    heading: str | None = None
    answer: str | None = None
    supplied: str | None = None
    footer: str | None = None
    # Said under the supplied text: who wrote it.
    supplied_note: str = SUPPLIED_NOTE
    # The one thing to do, as (label, URL): an approver's page.
    action: tuple[str, str] | None = None


# Said under an approval request's question.
APPROVAL_NOTE = "The agent of this task wrote the quoted question, not agent-notify."


def approval_content(notification: Notification, request: dict[str, object]) -> Content:
    """What an approver is sent: the question, the run's task, and where to decide."""
    key = notification.workflow_key
    question = str(request.get("question") or "")
    details = request.get("details")
    decision = str(request.get("decision") or "")
    if isinstance(details, str) and details:
        question += "\n\n" + details
    deadline = str(request.get("deadline") or "")
    link = notification.approval_link
    how = (
        "Open the link to approve or reject."
        if link
        else f"Approve with POST /workflows/{key}/promises/{decision}/resolve, or reject with "
        f"POST /workflows/{key}/promises/{decision}/reject."
    )
    return Content(
        f"Approval needed: {subject_name(key)}",
        f"The agent task {key} asks for your approval.\n\n"
        f"Its task: {request.get('query') or ''}\n\n{how} Without a decision by {deadline} "
        "the agent is told that nobody approved.",
        supplied=question,
        supplied_note=APPROVAL_NOTE,
        action=("Approve or reject", link) if link else None,
        footer=f"Sent by agent-notify to {notification.email}, an approver of the agent task "
        f"{key}.",
    )


def content_of(notification: Notification) -> Content:
    """What the email says.

    The agent's answer is the whole message. Everything else is the service speaking, in one
    template: its own heading, then what the promise carries, then its footer. A promise other
    than the agent's is completed through the API, by any caller, with any text: that text is
    quoted and marked as theirs. The agent's failure is recorded as the provider's or the
    runtime's own words (with the model, the endpoint, part of a key): meant for operators, not
    recipients, so the email only says where to read it.
    """
    key, promise = notification.workflow_key, notification.promise
    request = notification.approval
    if request is not None:
        return approval_content(notification, request)
    named = subject_name(key)
    resolved = notification.state is PromiseState.RESOLVED
    footer = f"Sent by agent-notify to {notification.email}, a subscriber of the agent task {key}."
    if promise != AGENT_PROMISE:
        return Content(
            f"Your agent task {named}: {subject_name(promise)} was {notification.state}",
            f"The promise {promise} of your agent task {key} was "
            + ("resolved with:" if resolved else "rejected, with the reason:"),
            supplied=render_value(notification.value)
            if resolved
            else notification.error or "(no reason given)",
            footer=footer,
        )
    if resolved:
        return Content(f"Your agent task {named} is ready", answer=render_value(notification.value))
    if notification.error == CANCELLED_ERROR:
        return Content(
            f"Your agent task {named} was cancelled",
            f"Your agent task {key} was cancelled before it finished.",
            footer=footer,
        )
    return Content(
        f"Your agent task {named} failed",
        f"Your agent task {key} could not be completed.\n"
        "\n"
        "The service recorded the reason; whoever runs the service can see it at\n"
        f"GET /workflows/{key} or on the dashboard at /ui/workflows/{key}.",
        footer=footer,
    )


def subject_and_body(notification: Notification) -> tuple[str, str]:
    """The email's subject and its plain text."""
    content = content_of(notification)
    return content.subject, plain_text(content)


def plain_text(content: Content) -> str:
    """The one plain-text template of every notification. With no heading, the agent's answer
    alone; else the heading, then the supplied text (every line quoted, and said to be theirs),
    then the footer."""
    if content.heading is None:
        return content.answer or ""
    parts = [content.heading]
    if content.supplied is not None:
        quoted = "\n".join(f"> {line}" if line else ">" for line in content.supplied.splitlines())
        parts += [quoted or ">", content.supplied_note]
    if content.action is not None:
        label, url = content.action
        parts.append(f"{label}: {url}")
    if content.footer is not None:
        parts.append(f"-- \n{content.footer}")
    return "\n\n".join(parts)
