"""Which Salesforce object an email is logged as: Task or EmailMessage."""

from __future__ import annotations

from typing import Literal

from schemas.events import EmailReplied, EmailSent

Target = Literal["Task", "EmailMessage"]


def classify(event: EmailSent | EmailReplied, *, writeback_enabled: bool, enhanced_email: bool) -> Target:
    """Task or EmailMessage for one email event.

    Manual emails are always Tasks (by product decision, not configurable). Automated emails and
    replies are EmailMessages when the workspace has email-message writeback on and the
    org has Enhanced Email (EmailMessage createable); otherwise they fall back to Tasks.
    A reply is classified as a reply whatever the origin of the thread it answers.
    """
    if not isinstance(event, (EmailSent, EmailReplied)):
        raise TypeError(f"only email events are logged as activities, not {type(event).__name__}")
    email_message_possible = writeback_enabled and enhanced_email
    if event.is_reply:
        return "EmailMessage" if email_message_possible else "Task"
    if event.data.origin == "manual":
        return "Task"
    return "EmailMessage" if email_message_possible else "Task"
