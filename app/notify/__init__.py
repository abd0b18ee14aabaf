"""Telling subscribers how a workflow's promise ended: the email, the webhook's event, Apprise,
the ways to send them, and the address guard in front of the last two.

May import only app.config, app.errors, app.states and third-party libraries: the delivery
worker calls it; it knows nothing of rows, leases or HTTP.
"""

from __future__ import annotations

from app.notify.chat import AppriseSender, is_apprise_url
from app.notify.content import Notification, render_value, subject_and_body
from app.notify.email import MessageLinks, build_message, message_id_for
from app.notify.guard import AddressGuard, TargetNotAllowed
from app.notify.links import Links, Signer
from app.notify.mailer import Mailer, OutboxMailer, SmtpMailer, create_mailer
from app.notify.webhook import WebhookSender, event_body, new_secret, webhook_id_for

__all__ = [
    "AddressGuard",
    "AppriseSender",
    "Links",
    "Mailer",
    "MessageLinks",
    "Notification",
    "OutboxMailer",
    "Signer",
    "SmtpMailer",
    "TargetNotAllowed",
    "WebhookSender",
    "build_message",
    "create_mailer",
    "event_body",
    "is_apprise_url",
    "message_id_for",
    "new_secret",
    "render_value",
    "subject_and_body",
    "webhook_id_for",
]
