"""The dead-letter store's replay and purge, and the parking lot, against a real Redis (no worker)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from events.deadletter import DeadLetterFilter, DeadLetterStore, Unreplayable
from events.parking import ParkedMessage, ParkingLot, UsageGauge

pytestmark = pytest.mark.integration


def add(store: DeadLetterStore, event_id: str, code: str = "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        event_type: str = "email.sent"):
    return store.add(event={"id": event_id, "type": event_type}, event_id=event_id, event_type=event_type,
                     workspace_id="ws_acme", error_code=code, error_message="refused", attempts=1,
                     task_name="sfsync.email.sent", queue="email.sent")


class RecordingRepublisher:
    """A fake executor: records what it was asked to republish, refusing the ids it is told to."""

    def __init__(self, refuse: set[str] = frozenset(), unroutable: set[str] = frozenset()):
        self.sent: list[str] = []
        self.refuse = refuse
        self.unroutable = unroutable

    def __call__(self, record) -> None:
        if record.event_id in self.unroutable:
            raise Unreplayable("no queue")
        if record.event_id in self.refuse:
            raise ConnectionError("broker down")
        self.sent.append(record.event_id)


def test_given_dead_letters_when_replayed_by_code_then_only_those_republished_and_removed(redis_client):
    store = DeadLetterStore(redis_client)
    add(store, "evt_1")
    add(store, "evt_2")
    kept = add(store, "evt_3", code="INVALID_JSON")
    republish = RecordingRepublisher()

    result = store.replay(DeadLetterFilter.of(codes=["FIELD_CUSTOM_VALIDATION_EXCEPTION"]), republish)

    assert sorted(republish.sent) == ["evt_1", "evt_2"]
    assert result.counts() == {"matched": 2, "replayed": 2, "failed": 0, "skipped": 0}
    assert [r.id for r in store.iter_all()] == [kept.id]


def test_given_a_republish_that_fails_when_replaying_then_that_entry_stays_and_the_rest_go(redis_client):
    store = DeadLetterStore(redis_client)
    for event_id in ("evt_1", "evt_2", "evt_3"):
        add(store, event_id)
    republish = RecordingRepublisher(refuse={"evt_2"}, unroutable={"evt_3"})

    result = store.replay(DeadLetterFilter.of(everything=True), republish)

    assert result.counts() == {"matched": 3, "replayed": 1, "failed": 1, "skipped": 1}
    assert sorted(r.event_id for r in store.iter_all()) == ["evt_2", "evt_3"]


def test_given_the_same_event_failing_twice_when_stored_then_one_entry_with_both_attempts(redis_client):
    store = DeadLetterStore(redis_client)
    first = add(store, "evt_1")
    again = add(store, "evt_1", code="INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST")

    assert first.id == again.id and store.count() == 1
    assert again.attempts == 2 and again.error_code == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert again.first_failure_at == first.first_failure_at and again.sfsync_version


def test_given_dead_letters_when_purged_by_age_then_only_old_ones_removed(redis_client):
    store = DeadLetterStore(redis_client)
    add(store, "evt_old")
    add(store, "evt_new")
    later = datetime.now(timezone.utc) + timedelta(hours=3)

    assert store.purge(DeadLetterFilter.of(older_than=3600), now=later) == 2
    add(store, "evt_fresh")
    assert store.purge(DeadLetterFilter.of(older_than=3600)) == 0
    assert store.count() == 1


def test_given_parked_messages_when_released_then_only_due_ones_come_out(redis_client):
    lot = ParkingLot(redis_client)
    lot.park("ws_acme", [ParkedMessage("sfsync.email.sent", "email.sent", {"id": "evt_1"}, {}, "X")], 100.0)
    lot.park("ws_acme", [ParkedMessage("sfsync.email.sent", "email.sent", {"id": "evt_2"}, {}, "X")], 200.0)

    assert lot.due("ws_acme", 99.0) == []
    due = lot.due("ws_acme", 150.0)
    assert [m.raw["id"] for _, m in due] == ["evt_1"]
    assert lot.remove("ws_acme", due[0][0]) and not lot.remove("ws_acme", due[0][0])
    assert lot.count("ws_acme") == 1
    assert redis_client.zrange("sfsync:{ws_acme}:parked", 0, 0, withscores=True)[0][1] == 200.0


def test_given_a_usage_reading_when_stored_then_over_the_ceiling_is_shared_and_rechecks_are_throttled(redis_client):
    gauge = UsageGauge(redis_client)
    assert not gauge.over("ws_acme", 0.8)
    gauge.store("ws_acme", 850, 1000)
    assert gauge.over("ws_acme", 0.8) and not gauge.over("ws_acme", 0.9)
    assert gauge.claim_recheck("ws_acme", 60) and not gauge.claim_recheck("ws_acme", 60)


def test_given_retries_when_settled_then_waiting_on_a_contact_spends_no_attempt_and_budget_ends_in_dlq(redis_client):
    import time

    from schemas.events import parse_event
    from schemas.settings import load_settings
    from tests.factories import email_event
    from workers.decide import Clock, History, RetryPolicy, decide
    from workers.messages import BatchItem
    from workers.salesforce.errors import SalesforceError
    from workers.settle import Settler
    from workers.sync.engine import CONTACT_BEING_CREATED
    from workers.sync.outcomes import Retry

    settings = load_settings({"SFSYNC_WORKSPACE_ID": "ws_acme", "SFSYNC_MAX_ATTEMPTS": "3",
                              "SFSYNC_RETRY_BUDGET": "0"})
    settler = Settler(redis_client, "ws_acme")

    def item(attempt: int) -> BatchItem:
        raw = email_event()
        return BatchItem(raw=raw, event=parse_event(raw), problem=None, meta={"attempt": attempt},
                         task_name="sfsync.email.sent", queue="email.sent", task_id=f"t{attempt}")

    pairs = [
        (item(1), Retry(SalesforceError(CONTACT_BEING_CREATED, "another worker"), after=3.0)),
        (item(1), Retry(SalesforceError("UNABLE_TO_LOCK_ROW", "busy"))),
        (item(2), Retry(SalesforceError("UNABLE_TO_LOCK_ROW", "busy"))),
    ]
    clock = Clock(time.time())
    counts = settler.settle([(it, outcome, decide(outcome, History(attempt=it.attempt), RetryPolicy.from_settings(
        settings), clock)) for it, outcome in pairs])

    assert counts == {"retried": 2, "dead_lettered": 1}
    held = redis_client.zrange("sfsync:{ws_acme}:retries", 0, -1, withscores=True)
    retries = [(ParkedMessage.decode(member), due) for member, due in held]
    assert sorted(p.meta["attempt"] for p, _ in retries) == [1, 2]
    waiting = [(p, due) for p, due in retries if p.reason == CONTACT_BEING_CREATED][0]
    assert waiting[0].queue == "email.sent" and 2.5 < waiting[1] - time.time() <= 3.0
    assert [r.error_code for r in DeadLetterStore(redis_client).iter_all()] == ["UNABLE_TO_LOCK_ROW"]


def test_given_redis_lost_its_queue_bindings_when_a_running_publisher_publishes_then_the_event_is_still_queued(
        redis_url, redis_client):
    """A Redis restart without persistence, a failover or a flush drops kombu's binding keys; a
    publisher that routed through them would drop every later event silently."""
    from events.publish import publish_many
    from tests.factories import email_event

    publish_many([email_event()], broker_url=redis_url)  # the publisher is now cached, bindings declared
    redis_client.flushdb()
    publish_many([email_event()], broker_url=redis_url)

    assert redis_client.llen("email.sent") == 1


def test_given_retry_meta_with_a_naive_first_failure_time_when_dead_lettered_then_stored_with_an_aware_time(
        redis_client):
    """Retry meta travels in the message, so any client can set it; a naive time must not stop the batch."""
    from schemas.events import parse_event
    from tests.factories import email_event
    from workers.decide import Bury
    from workers.messages import BatchItem
    from workers.settle import Settler
    from workers.sync.outcomes import DeadLetter

    raw = email_event()
    item = BatchItem(raw=raw, event=parse_event(raw), problem=None,
                     meta={"attempt": 2, "first_failure_at": "2026-11-26T18:00:00"},
                     task_name="sfsync.email.sent", queue="email.sent", task_id="t1")

    counts = Settler(redis_client, "ws_acme").settle([(item, DeadLetter("INVALID_FIELD", "no such field"),
                                                       Bury("INVALID_FIELD", "no such field", attempts=3))])

    assert counts == {"dead_lettered": 1}
    [letter] = DeadLetterStore(redis_client).iter_all()
    assert letter.first_failure_at.tzinfo is not None and letter.attempts == 3
