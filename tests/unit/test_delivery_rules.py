"""Pure parts of the delivery guarantees: retry caps, parking times, dlq filters and ages, message checks."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from kombu.exceptions import ContentDisallowed, DecodeError

from events.deadletter import DeadLetterFilter, raw_for_storage, RAW_KEEP
from events.parking import ParkedMessage
from schemas.api_usage import ApiUsage
from schemas.deadletter import DeadLetterRecord
from workers.replay import parse_age
from workers.consumer_guard import MAX_MESSAGE_BYTES, check_message

NOW = datetime(2026, 11, 26, 18, 0, tzinfo=timezone.utc)


# --- parking -------------------------------------------------------------------------------

def test_given_a_parked_message_when_encoded_then_it_decodes_to_the_same_message():
    parked = ParkedMessage("sfsync.email.sent", "email.sent", {"id": "evt_1"}, {"attempt": 2}, "REQUEST_LIMIT_EXCEEDED")
    assert ParkedMessage.decode(parked.encode()) == parked


def test_given_two_parkings_of_the_same_event_when_encoded_then_they_are_distinct_members():
    one = ParkedMessage("t", "q", {"id": "evt_1"}, {}, "X", parked_at=1.0)
    two = ParkedMessage("t", "q", {"id": "evt_1"}, {}, "X", parked_at=1.0)
    assert one.encode() != two.encode()


def test_given_usage_when_read_then_share_is_used_over_limit():
    assert ApiUsage(800, 1000, 0).share == 0.8
    assert ApiUsage(5, 0, 0).share == 0.0


# --- dlq ages and filters ------------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [("90s", 90), ("15m", 900), ("2h", 7200), ("3d", 259200), ("1w", 604800),
                                           ("45", 45), ("1.5h", 5400), (" 2H ", 7200)])
def test_given_an_age_when_parsed_then_seconds(text, seconds):
    assert parse_age(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "2x", "-3d", "2 days"])
def test_given_a_malformed_age_when_parsed_then_refused_with_the_text(text):
    with pytest.raises(ValueError, match="not an age"):
        parse_age(text)


def record(**overrides) -> DeadLetterRecord:
    base = dict(id="dl_1", event_id="evt_1", event_type="email.sent", workspace_id="ws_acme", event={"id": "evt_1"},
                error_code="FIELD_CUSTOM_VALIDATION_EXCEPTION", error_message="no", attempts=1,
                first_failure_at=NOW - timedelta(hours=3), last_failure_at=NOW - timedelta(hours=3),
                sfsync_version="0.1.0")
    base.update(overrides)
    return DeadLetterRecord(**base)


def test_given_filters_when_matched_then_each_criterion_narrows():
    r = record()
    assert DeadLetterFilter.of().matches(r, NOW)
    assert DeadLetterFilter.of(codes=["FIELD_CUSTOM_VALIDATION_EXCEPTION"]).matches(r, NOW)
    assert not DeadLetterFilter.of(codes=["INVALID_JSON"]).matches(r, NOW)
    assert not DeadLetterFilter.of(types=["email.replied"]).matches(r, NOW)
    assert not DeadLetterFilter.of(workspaces=["ws_other"]).matches(r, NOW)
    assert DeadLetterFilter.of(older_than=parse_age("2h")).matches(r, NOW)
    assert not DeadLetterFilter.of(older_than=parse_age("4h")).matches(r, NOW)
    assert DeadLetterFilter.of(newer_than=parse_age("4h")).matches(r, NOW)
    assert not DeadLetterFilter.of(newer_than=parse_age("2h")).matches(r, NOW)
    assert not DeadLetterFilter.of(ids=["dl_2"]).matches(r, NOW)


def test_given_no_criterion_when_asked_then_the_filter_does_not_narrow_unless_all():
    assert not DeadLetterFilter.of().narrows
    assert DeadLetterFilter.of(codes=["X"]).narrows
    assert DeadLetterFilter.of(older_than=0).narrows
    assert DeadLetterFilter.of(everything=True).everything


def test_given_an_oversized_raw_body_when_stored_then_cut_and_flagged():
    kept, cut = raw_for_storage(b"x" * (RAW_KEEP + 10))
    assert cut and len(kept) == RAW_KEEP
    kept, cut = raw_for_storage({"id": "evt_1"})
    assert kept == {"id": "evt_1"} and not cut
    kept, cut = raw_for_storage(b"\xff\xfe garbage")
    assert not cut and "\\xff" in kept


# --- messages Celery cannot use --------------------------------------------------------------

class FakeMessage:
    """What check_message reads of a kombu Message."""

    def __init__(self, body: bytes, *, payload=None, error: Exception | None = None,
                 content_type="application/json", headers=None):
        self.body = body
        self._payload = payload
        self._error = error
        self.content_type = content_type
        self.headers = {"id": "t-1", "task": "sfsync.email.sent"} if headers is None else headers

    def decode(self):
        if self._error:
            raise self._error
        return self._payload


def test_given_a_protocol_2_message_when_checked_then_it_passes():
    payload = [[{"id": "evt_1"}], {}, {"callbacks": None}]
    assert check_message(FakeMessage(json.dumps(payload).encode(), payload=payload)) is None


@pytest.mark.parametrize("message, code", [
    (FakeMessage(b"\x00\xff", error=DecodeError("Expecting value")), "UNDECODABLE_MESSAGE"),
    (FakeMessage(b"...", error=ContentDisallowed("pickle"), content_type="application/x-python-serialize"),
     "CONTENT_DISALLOWED"),
    (FakeMessage(b'{"hello": 1}', payload={"hello": 1}), "INVALID_MESSAGE"),
    (FakeMessage(b'"text"', payload="text"), "INVALID_MESSAGE"),
    (FakeMessage(b"[[], {}, {}]", payload=[[], {}, {}], headers={"task": "sfsync.email.sent"}), "INVALID_MESSAGE"),
    (FakeMessage(b"x" * (MAX_MESSAGE_BYTES + 1), payload=[["x"], {}, {}]), "EVENT_TOO_LARGE"),
])
def test_given_an_unusable_message_when_checked_then_a_code_and_reason(message, code):
    problem = check_message(message)
    assert problem is not None and problem[0] == code and problem[1]


def test_given_queue_items_when_checked_then_only_real_envelopes_pass():
    import base64

    from workers.broker_guard import envelope_problem

    def decode(body, encoding):
        return base64.b64decode(body, validate=True)

    good = {"body": base64.b64encode(b"[]").decode(), "content-type": "application/json",
            "headers": {"task": "sfsync.email.sent", "id": "t-1"},
            "properties": {"delivery_tag": "t", "body_encoding": "base64",
                           "delivery_info": {"exchange": "email.sent", "routing_key": "email.sent"}}}
    assert envelope_problem(good, decode) is None
    assert "not a message envelope" in envelope_problem([1], decode)
    assert "properties.delivery_tag: missing" == envelope_problem({**good, "properties": {}}, decode)
    assert "body: must be a string, not null" == envelope_problem({**good, "body": None}, decode)
    bad = {**good, "body": "!!!not base64"}
    assert "not valid base64" in envelope_problem(bad, decode)
