"""The version-1 event contract: what is accepted, normalised, kept, and how refusals read."""

from __future__ import annotations

import json

import pytest

from schemas.events import (
    ContactUpdated,
    EmailReplied,
    EmailSent,
    InvalidEvent,
    email_addresses,
    normalize_email,
    parse_event,
)
from tests.factories import contact_updated_event, email_event


def test_given_a_valid_email_sent_when_parsed_then_typed_and_addresses_normalised():
    raw = email_event(to="Jane.Doe@Acme.example", person_emails=["JANE.DOE@acme.example", "jane@home.example"])
    event = parse_event(raw)
    assert isinstance(event, EmailSent)
    assert event.data.to[0].email == "jane.doe@acme.example"
    assert email_addresses(event) == ["jane.doe@acme.example", "jane@home.example"]
    assert event.occurred_at.tzinfo is not None


def test_given_a_reply_when_addresses_listed_then_the_sender_is_the_prospect():
    event = parse_event(email_event(event_type="email.replied", to="jane@acme.example", person_emails=[]))
    assert isinstance(event, EmailReplied)
    assert email_addresses(event) == ["jane@acme.example"]


def test_given_unknown_extra_fields_when_parsed_then_they_are_kept():
    raw = email_event()
    raw["emitter"] = "unify-web"
    raw["data"]["campaign"] = {"id": 9}
    event = parse_event(raw)
    assert event.model_extra == {"emitter": "unify-web"}
    assert event.data.model_extra["campaign"] == {"id": 9}


def test_given_json_text_or_bytes_when_parsed_then_same_event():
    raw = email_event()
    assert parse_event(json.dumps(raw)) == parse_event(json.dumps(raw).encode()) == parse_event(raw)


def test_given_a_contact_updated_when_parsed_then_changes_are_kept():
    event = parse_event(contact_updated_event(emails=["a@b.example"], changes={"title": "CRO"}))
    assert isinstance(event, ContactUpdated)
    assert event.data.changes == {"title": "CRO"}


@pytest.mark.parametrize("mutate, code, fragment", [
    (lambda e: e.update(occurred_at="2026-11-26T18:03:00"), "INVALID_EVENT", "occurred_at: Input should have timezone"),
    (lambda e: e.update(type="email.bounced"), "UNKNOWN_EVENT_TYPE", "unknown event type (a string of 13 characters)"),
    (lambda e: e.update(version=2), "INVALID_EVENT", "version: Input should be 1"),
    (lambda e: e["data"].update(origin="robot"), "INVALID_EVENT", "data.origin"),
    (lambda e: e["data"].update(to=[{"email": "not-an-address"}]), "INVALID_EVENT", "data.to.0.email"),
    (lambda e: e["data"].update(to=[]), "INVALID_EVENT", "data.to: List should have at least 1 item"),
    (lambda e: e.pop("workspace_id"), "INVALID_EVENT", "workspace_id: Field required"),
    (lambda e: e.update(id="has space"), "INVALID_EVENT", "id: String should match pattern"),
])
def test_given_a_bad_event_when_parsed_then_the_reason_names_the_field(mutate, code, fragment):
    raw = email_event()
    mutate(raw)
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    assert caught.value.code == code
    assert fragment in caught.value.reason


@pytest.mark.parametrize("raw, code", [
    (b"\xff\xfe\x00garbage", "INVALID_JSON"),
    ("{not json", "INVALID_JSON"),
    ("[1, 2]", "INVALID_EVENT"),
    ("[" * 100_000 + "]" * 100_000, "INVALID_JSON"),
    (b"x" * 10_000_000, "EVENT_TOO_LARGE"),
])
def test_given_garbage_when_parsed_then_a_specific_code_and_no_crash(raw, code):
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    assert caught.value.code == code


@pytest.mark.parametrize("address", ["o'brien@x.example", "a%b_c@x.test", "back\\slash@x.example",
                                     "x' OR Email != '@a.example", "Upper@Example.COM"])
def test_given_odd_but_possible_addresses_when_normalised_then_kept_lower_cased(address):
    assert normalize_email(address) == address.strip().lower()


@pytest.mark.parametrize("address", ["", "no-at-sign", "@x.example", "a@", "a@nodot", "a@b.example\nBcc: x"])
def test_given_impossible_addresses_when_normalised_then_refused(address):
    with pytest.raises(ValueError):
        normalize_email(address)
