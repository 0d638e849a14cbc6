"""The store of emails waiting for their contact, on a real Redis: bounded, in order, each released once."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.keys import key
from events.late_contacts import DAY, LATE_CONTACT, LateContacts, WaitingEmail
from events.parking import ParkedMessage, ParkingLot

pytestmark = pytest.mark.integration

WS = "ws_late"
NOW = 1_800_000_000.0


def waiting(event_id: str, addresses, *, sent_ms: int = 0, since: float = NOW) -> WaitingEmail:
    event = {"id": event_id, "type": "email.sent"}
    message = ParkedMessage("sfsync.email.sent", "email.sent", event, {"waiting_since": "x"}, LATE_CONTACT)
    return WaitingEmail(event_id, "email.sent", message, tuple(addresses), sent_ms, since)


def released_messages(client) -> list[dict]:
    """The retries lot's entries, due order, as the releasers will send them."""
    lot = ParkingLot(client, "retries")
    return [parked.raw for _, parked in lot.due(WS, NOW + 1)]


def test_given_emails_waiting_when_their_address_appears_then_all_of_them_are_due_now_in_sent_order(redis_client):
    late = LateContacts(redis_client)
    late.wait(WS, [waiting("e3", ["Jane@Acme.example"], sent_ms=300), waiting("e1", ["jane@acme.example"], sent_ms=100),
                   waiting("e2", ["jane@home.example", "jane@acme.example"], sent_ms=200),
                   waiting("other", ["sam@acme.example"], sent_ms=50)], days=30, max_waiting=100, now=NOW)

    released = late.release(WS, ["JANE@acme.example"], days=30, now=NOW)

    assert released == ["e1", "e2", "e3"]
    assert [m["id"] for m in released_messages(redis_client)] == ["e1", "e2", "e3"]
    assert WS in ParkingLot(redis_client, "retries").workspaces()
    summary = late.summary(WS, days=30, now=NOW)
    assert (summary.waiting, summary.waited, summary.released) == (1, 4, 3)
    # gone from every address it waited under: a second release finds nothing
    assert late.release(WS, ["jane@home.example", "jane@acme.example"], days=30, now=NOW) == []


def test_given_an_email_already_waiting_when_it_waits_again_then_it_keeps_its_place_and_first_wait(redis_client):
    late = LateContacts(redis_client)
    late.wait(WS, [waiting("e1", ["a@x.example"], since=NOW - 100)], days=30, max_waiting=10, now=NOW)
    added = late.wait(WS, [waiting("e1", ["a@x.example"], since=NOW)], days=30, max_waiting=10, now=NOW)

    assert added == {"added": 0, "expired": 0, "dropped": 0}
    assert late.summary(WS, days=30, now=NOW).oldest_since == NOW - 100


def test_given_more_than_the_bound_when_emails_wait_then_the_oldest_are_dropped_and_counted(redis_client):
    late = LateContacts(redis_client)
    late.wait(WS, [waiting(f"e{n}", [f"p{n}@x.example"], since=NOW + n) for n in range(5)], days=30,
              max_waiting=3, now=NOW + 10)

    listing = late.listing(WS, days=30, now=NOW + 10)
    assert [row["event_id"] for row in listing] == ["e2", "e3", "e4"]
    summary = late.summary(WS, days=30, now=NOW + 10)
    assert (summary.waiting, summary.dropped) == (3, 2)
    assert late.release(WS, ["p0@x.example", "p1@x.example"], days=30, now=NOW + 10) == []


def test_given_an_email_past_its_days_when_anything_runs_then_it_expires_and_is_never_released(redis_client):
    late = LateContacts(redis_client)
    late.wait(WS, [waiting("old", ["a@x.example"], since=NOW - 2 * DAY),
                   waiting("new", ["a@x.example"], since=NOW)], days=1, max_waiting=10, now=NOW)

    assert late.release(WS, ["a@x.example"], days=1, now=NOW) == ["new"]
    summary = late.summary(WS, days=1, now=NOW)
    assert (summary.waiting, summary.expired, summary.released) == (0, 1, 1)
    # nothing is left behind in Redis but the totals
    assert sorted(redis_client.keys(key(WS, "late", "*"))) == [key(WS, "late", "counts")]


def test_given_late_contacts_turned_off_when_expired_with_zero_days_then_nothing_waits(redis_client):
    late = LateContacts(redis_client)
    late.wait(WS, [waiting("e1", ["a@x.example"])], days=30, max_waiting=10, now=NOW)
    assert late.expire(WS, days=0, now=NOW + 1) == 1
    assert late.summary(WS, days=0, now=NOW + 1).waiting == 0


def test_given_an_email_without_any_address_when_it_would_wait_then_it_is_not_kept(redis_client):
    late = LateContacts(redis_client)
    assert late.wait(WS, [waiting("e1", [" "])], days=30, max_waiting=10, now=NOW)["added"] == 0


# --- properties: whatever waits, appears, expires or overflows, each email ends one way once ------------

ADDRESSES = [f"p{n}@x.example" for n in range(6)]
steps = st.lists(st.one_of(
    st.tuples(st.just("wait"), st.integers(0, 30), st.lists(st.sampled_from(ADDRESSES), min_size=1, max_size=3),
              st.integers(0, 10_000)),
    st.tuples(st.just("release"), st.lists(st.sampled_from(ADDRESSES), min_size=1, max_size=3)),
    st.tuples(st.just("tick"), st.floats(0, 2 * DAY)),
), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=steps, max_waiting=st.integers(1, 8))
def test_property_each_email_is_released_at_most_once_in_sent_order_and_every_one_is_accounted_for(
        redis_client, steps, max_waiting):
    for name in redis_client.keys(key(WS, "*")):
        redis_client.delete(name)
    late = LateContacts(redis_client)
    now, days = NOW, 1.0
    waited: dict[str, tuple[set[str], int]] = {}
    released_all: list[str] = []
    for step in steps:
        if step[0] == "wait":
            _, n, addresses, sent = step
            event_id = f"e{n}"
            already = {row["event_id"] for row in late.listing(WS, days=days, limit=100, now=now)}
            late.wait(WS, [waiting(event_id, addresses, sent_ms=sent, since=now)], days=days, max_waiting=max_waiting,
                      now=now)
            if event_id not in already:  # one waiting already keeps its addresses and place
                waited[event_id] = (set(addresses), sent)
        elif step[0] == "release":
            released = late.release(WS, step[1], days=days, now=now)
            sents = [waited[e][1] for e in released]
            assert sents == sorted(sents), "released in the order sent"
            assert all(waited[e][0] & set(step[1]) for e in released), "only emails of those addresses"
            released_all.extend(released)
        else:
            now += step[1]
        summary = late.summary(WS, days=days, now=now)
        assert summary.waiting <= max_waiting
        assert summary.waited == summary.waiting + summary.released + summary.expired + summary.dropped
    lot = ParkingLot(redis_client, "retries")
    entries = [json.loads(m) for m in redis_client.zrange(key(WS, lot.name), 0, -1)]
    assert sorted(e["raw"]["id"] for e in entries) == sorted(released_all)
    assert all(e["reason"] == LATE_CONTACT for e in entries)
