"""The stores' batch writes on a real Redis: one round trip per batch, and the same state as before.

`put_contacts(..., misses=)`, `Ledger.finish` and `OutcomeLog.record` replaced calls (or
commands) per event or per step by one pipelined round trip; these tests count the round trips a
real client makes and check what Redis holds afterwards, against the previous way of writing it
(`reference_put_contacts`, the earlier code, kept here as the specification).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.contact_index import POSITIVE_TTL, ContactIndex
from events.keys import key
from events.ledger import Ledger, LedgerEntry
from events.lua import source
from events.outcome_log import OutcomeLog

pytestmark = pytest.mark.integration

WS = "ws_batch"


@pytest.fixture(autouse=True)
def _scripts_loaded(redis_client):
    """Redis knows the batch scripts, as it does after a worker's first batch: a script is sent by its
    SHA, and only the first call on a fresh Redis takes the extra round trips of loading it."""
    for name in ("ledger_begin", "ledger_finish", "outcomes_record", "index_write"):
        redis_client.script_load(source(name))
FIELDS = ["Email", "Secondary_Email__c"]


class RoundTrips:
    """Counts the round trips a real client makes: each command sent alone, and each pipeline executed."""

    def __init__(self, client):
        self.client = client
        self.count = 0
        self._execute_command = client.execute_command
        self._pipeline = client.pipeline

    def __enter__(self) -> "RoundTrips":
        def execute_command(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return self._execute_command(*args, **kwargs)

        def pipeline(*args: Any, **kwargs: Any):
            pipe = self._pipeline(*args, **kwargs)
            execute = pipe.execute

            def counted(*a: Any, **k: Any) -> Any:
                if len(pipe.command_stack):
                    self.count += 1
                return execute(*a, **k)

            pipe.execute = counted
            return pipe

        self.client.execute_command = execute_command
        self.client.pipeline = pipeline
        return self

    def __exit__(self, *exc: Any) -> None:
        del self.client.execute_command
        del self.client.pipeline


def reference_put_contacts(index: ContactIndex, ws: str, contacts: Iterable[dict[str, Any]], email_fields: list[str],
                           misses: Iterable[str]) -> None:
    """put_contacts then put_misses as they were written before the batch method (three reads, two writes)."""
    r = index.redis
    contacts = list(contacts)
    if contacts:
        old = r.mget([index._contact(ws, c["Id"]) for c in contacts])
        touched: dict[str, None] = {}
        new_by_contact: dict[str, list[str]] = {}
        for contact, previous in zip(contacts, old):
            current = sorted({str(contact[f]).strip().lower() for f in email_fields if contact.get(f)})
            new_by_contact[contact["Id"]] = current
            for address in current + (json.loads(previous) if previous else []):
                touched[address] = None
        cached = index.get_many(ws, list(touched))
        summaries = {c["Id"]: {f: c.get(f) for f in (*index.summary_fields, *email_fields)} for c in contacts}
        pipe = r.pipeline(transaction=False)
        for address in touched:
            kept = [c for c in cached.get(address, []) if c["Id"] not in summaries]
            fresh = [summaries[cid] for cid, addrs in new_by_contact.items() if address in addrs]
            entry = kept + fresh
            if entry:
                pipe.set(index._addr(ws, address), json.dumps(entry), ex=POSITIVE_TTL)
            else:
                pipe.delete(index._addr(ws, address))
        for cid, addrs in new_by_contact.items():
            pipe.set(index._contact(ws, cid), json.dumps(addrs), ex=POSITIVE_TTL)
        pipe.execute()
    pipe = r.pipeline(transaction=False)
    for address in misses:
        pipe.set(index._addr(ws, address), "[]", ex=index.miss_ttl, nx=True)
    pipe.execute()


def contact(cid: str, *emails: str | None, created: str = "2026-01-01T00:00:00.000+0000") -> dict[str, Any]:
    record: dict[str, Any] = {"Id": cid, "CreatedDate": created}
    for field, email in zip(FIELDS, emails):
        record[field] = email
    return record


def index_state(client, ws: str) -> dict[str, Any]:
    """Every index key of the workspace with its value (the addresses' entries and the contacts' addresses)."""
    return {k.split(":", 2)[2]: client.get(k) for k in client.scan_iter(match=key(ws, "idx", "*"), count=1000)}


def test_given_a_lookup_with_hits_and_misses_when_remembered_then_one_read_and_one_write(redis_client):
    index = ContactIndex(redis_client, miss_ttl=300)
    found = [contact("003A", "a@acme.example", "b@acme.example"), contact("003B", "b@acme.example")]

    with RoundTrips(redis_client) as trips:
        index.put_contacts(WS, found, FIELDS, misses=["nobody@acme.example"])

    assert trips.count == 2
    known = index.get_many(WS, ["a@acme.example", "b@acme.example", "nobody@acme.example", "never@acme.example"])
    assert [c["Id"] for c in known["a@acme.example"]] == ["003A"]
    assert [c["Id"] for c in known["b@acme.example"]] == ["003A", "003B"]
    assert known["nobody@acme.example"] == []
    assert "never@acme.example" not in known
    assert 0 < redis_client.ttl(key(WS, "idx", "email", "nobody@acme.example")) <= 300


def test_given_a_contact_that_lost_an_address_when_remembered_then_the_old_address_stops_matching_it(redis_client):
    index = ContactIndex(redis_client)
    index.put_contacts(WS, [contact("003A", "old@acme.example", "new@acme.example"),
                            contact("003C", "old@acme.example")], FIELDS)

    with RoundTrips(redis_client) as trips:
        index.put_contacts(WS, [contact("003A", "new@acme.example")], FIELDS)

    assert trips.count == 3  # the entry of the address it lost is read too
    known = index.get_many(WS, ["old@acme.example", "new@acme.example"])
    assert [c["Id"] for c in known["old@acme.example"]] == ["003C"]
    assert [c["Id"] for c in known["new@acme.example"]] == ["003A"]


def test_given_a_miss_for_an_address_a_contact_has_when_remembered_together_then_the_contact_wins(redis_client):
    index = ContactIndex(redis_client)
    index.put_contacts(WS, [contact("003A", "jane@acme.example")], FIELDS, misses=["jane@acme.example"])
    assert [c["Id"] for c in index.get_many(WS, ["jane@acme.example"])["jane@acme.example"]] == ["003A"]


def test_given_only_misses_when_remembered_then_one_write(redis_client):
    index = ContactIndex(redis_client)
    with RoundTrips(redis_client) as trips:
        index.put_contacts(WS, [], FIELDS, misses=["x@acme.example", "y@acme.example"])
        index.put_contacts(WS, [], FIELDS)
    assert trips.count == 1
    assert index.get_many(WS, ["x@acme.example", "y@acme.example"]) == {"x@acme.example": [], "y@acme.example": []}


ADDRESSES = [f"p{n}@acme.example" for n in range(6)]
RECORDS = st.builds(lambda n, emails: contact(f"003{n:03d}", *emails),
                    st.integers(0, 4), st.lists(st.sampled_from(ADDRESSES + [None]), min_size=0, max_size=2))
STEPS = st.lists(st.tuples(st.lists(RECORDS, max_size=4), st.lists(st.sampled_from(ADDRESSES), max_size=3)),
                 min_size=1, max_size=5)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
def test_given_any_sequence_of_lookups_when_remembered_then_the_index_holds_what_the_earlier_code_wrote(
        redis_client, steps):
    for ws in ("ws_new", "ws_ref"):
        for name in redis_client.scan_iter(match=key(ws, "*"), count=1000):
            redis_client.delete(name)
    index = ContactIndex(redis_client)
    for found, misses in steps:
        index.put_contacts("ws_new", found, FIELDS, misses=misses)
        reference_put_contacts(index, "ws_ref", found, FIELDS, misses)
    new, ref = index_state(redis_client, "ws_new"), index_state(redis_client, "ws_ref")
    assert {k: json.loads(v) for k, v in new.items()} == {k: json.loads(v) for k, v in ref.items()}


def test_given_a_batch_written_and_refused_when_finished_then_one_round_trip_and_only_its_marks_cleared(
        redis_client):
    ledger = Ledger(redis_client)
    ledger.begin(WS, ["e1", "e2", "e3", "e4"])

    with RoundTrips(redis_client) as trips:
        ledger.finish(WS, {"e1": LedgerEntry("Task", "00T1", "003A"), "e2": LedgerEntry("EmailMessage", "02s2")},
                      ["e3"])

    assert trips.count == 1
    assert ledger.lookup(WS, ["e1", "e2", "e3", "e4"]) == {
        "e1": LedgerEntry("Task", "00T1", "003A"), "e2": LedgerEntry("EmailMessage", "02s2")}
    assert ledger.pending(WS, ["e1", "e2", "e3", "e4"]) == {"e4"}
    assert redis_client.ttl(key(WS, "ledger", "e1")) > 80 * 24 * 3600


def test_given_a_batch_when_begun_then_one_round_trip_marks_each_of_its_events_pending_for_a_week(redis_client):
    ledger = Ledger(redis_client)
    ids = [f"evt_{n}" for n in range(250)] + ["évt-ü:1"]
    with RoundTrips(redis_client) as trips:
        ledger.begin(WS, ids)
        ledger.begin(WS, [])
    assert trips.count == 1
    assert ledger.pending(WS, ids + ["other"]) == set(ids)
    assert 6 * 24 * 3600 < redis_client.ttl(key(WS, "pending", "évt-ü:1")) <= 7 * 24 * 3600


def test_given_nothing_to_finish_when_finished_then_no_round_trip(redis_client):
    with RoundTrips(redis_client) as trips:
        Ledger(redis_client).finish(WS, {}, [])
    assert trips.count == 0


def test_given_a_batch_of_outcomes_when_recorded_then_one_round_trip_counts_per_type_and_every_event_in_order(
        redis_client):
    log = OutcomeLog(redis_client)
    entries = [{"event_id": f"e{n}", "event_type": "email.sent", "outcome": "written"} for n in range(5)]
    entries += [{"event_id": "r1", "event_type": "email.replied", "outcome": "written"},
                {"event_id": "s1", "event_type": "email.sent", "outcome": "skipped_no_contact", "reason": None,
                 "detail": "Größe 12 \u00b7 ✓"}]

    with RoundTrips(redis_client) as trips:
        log.record(WS, entries, [0.5, 0.7])
        log.record(WS, [{"event_id": "e9", "event_type": "email.sent", "outcome": "written"}])

    assert trips.count == 2
    assert log.counts(WS) == {("email.sent", "written"): 6, ("email.replied", "written"): 1,
                              ("email.sent", "skipped_no_contact"): 1}
    stream = redis_client.xrange(key(WS, "outcomes"))
    assert [fields["event_id"] for _, fields in stream] == ["e0", "e1", "e2", "e3", "e4", "r1", "s1", "e9"]
    assert stream[6][1] == {"event_id": "s1", "event_type": "email.sent", "outcome": "skipped_no_contact",
                            "reason": "", "detail": "Größe 12 \u00b7 ✓"}
    assert WS in log.workspaces()


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_given_a_settled_batch_then_one_info_line_counts_its_outcomes_and_each_event_has_a_line_at_debug(
        redis_client, level):
    import io
    import logging

    from schemas.events import parse_event
    from tests.factories import email_event
    from workers.decide import Done
    from workers.messages import BatchItem
    from workers.observability.logs import configure_logging
    from workers.settle import Settler
    from workers.sync.outcomes import SKIPPED_NO_CONTACT, Skipped, Written

    def item(n: int) -> BatchItem:
        raw = email_event(event_id=f"evt_log_{n}", workspace_id="ws_acme")
        return BatchItem(raw=raw, event=parse_event(raw), problem=None, meta={}, task_name="sfsync.email.sent",
                         queue="email.sent", task_id=f"t{n}")

    settled = [(item(n), Written("Task", f"00T00000000000{n}", "003000000000001"), Done("written")) for n in range(3)]
    settled.append((item(9), Skipped(SKIPPED_NO_CONTACT, "nobody"), Done("skipped_no_contact")))
    stream = io.StringIO()
    root, before = logging.getLogger(), logging.getLogger().level
    handler = configure_logging(level, stream=stream)
    try:
        counts = Settler(redis_client, "ws_acme").settle(settled)
    finally:
        root.removeHandler(handler)
        root.setLevel(before)

    assert counts == {"written": 3, "skipped_no_contact": 1}
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    [summary] = [line for line in lines if line["level"] == "INFO"]
    assert summary["message"] == "batch settled: 4 event(s): 3 written, 1 skipped_no_contact"
    assert (summary["workspace_id"], summary["count"]) == ("ws_acme", 4)
    per_event = [line for line in lines if line["level"] == "DEBUG" and line.get("event_id")]
    if level == "DEBUG":
        assert [line["event_id"] for line in per_event] == ["evt_log_0", "evt_log_1", "evt_log_2", "evt_log_9"]
        assert per_event[0]["outcome"] == "written" and per_event[0]["record_id"] == "00T000000000000"
    else:
        assert per_event == []
    assert OutcomeLog(redis_client).counts("ws_acme") == {("email.sent", "written"): 3,
                                                          ("email.sent", "skipped_no_contact"): 1}
