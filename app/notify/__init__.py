"""Telling subscribers how a workflow's promise ended: the email, and the ways to send it.

May import only app.config, app.errors, app.states and third-party libraries: the delivery
worker calls it; it knows nothing of rows, leases or HTTP.
"""

from __future__ import annotations

from app.notify.email import Notification, build_message, message_id_for, render_value
from app.notify.mailer import Mailer, OutboxMailer, SmtpMailer, create_mailer

__all__ = [
    "Mailer",
    "Notification",
    "OutboxMailer",
    "SmtpMailer",
    "build_message",
    "create_mailer",
    "message_id_for",
    "render_value",
]
