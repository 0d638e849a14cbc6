"""Which object an email becomes: manual → Task; automated and replies → EmailMessage (with Enhanced Email)."""

from __future__ import annotations

import pytest

from schemas.events import parse_event
from tests.factories import contact_updated_event, email_event
from workers.sync.classify import classify


@pytest.mark.parametrize("writeback, enhanced", [(True, True), (True, False), (False, True), (False, False)])
def test_given_a_manual_email_when_classified_then_always_a_task(writeback, enhanced):
    event = parse_event(email_event(origin="manual"))
    assert classify(event, writeback_enabled=writeback, enhanced_email=enhanced) == "Task"


@pytest.mark.parametrize("event_type", ["email.sent", "email.replied"])
@pytest.mark.parametrize("writeback, enhanced, expected", [
    (True, True, "EmailMessage"),
    (True, False, "Task"),
    (False, True, "Task"),
    (False, False, "Task"),
])
def test_given_an_automated_email_or_a_reply_when_classified_then_email_message_only_with_both_flags(
        event_type, writeback, enhanced, expected):
    event = parse_event(email_event(event_type=event_type, origin="automated"))
    assert classify(event, writeback_enabled=writeback, enhanced_email=enhanced) == expected


def test_given_a_reply_in_a_manual_thread_when_both_flags_then_email_message():
    event = parse_event(email_event(event_type="email.replied"))
    assert event.data.origin == "manual"
    assert classify(event, writeback_enabled=True, enhanced_email=True) == "EmailMessage"


def test_given_a_contact_update_when_classified_then_refused():
    event = parse_event(contact_updated_event(emails=["a@b.example"]))
    with pytest.raises(TypeError):
        classify(event, writeback_enabled=True, enhanced_email=True)
