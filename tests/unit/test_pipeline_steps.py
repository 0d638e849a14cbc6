"""The pool's pipeline (parse, history, triage, gate, sync, decide, settle) on in-memory stores."""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from schemas.codes import ErrorCode
from tests.factories import email_event
from workers.decide import Bury, Clock, Done, History, HoldForRetry, Park, RetryPolicy
from workers.broker_guard import Unreadable
from workers.messages import unusable_item
from workers.pipeline import Pipeline, SignatureCheck, triage
from workers.salesforce.errors import SalesforceError
from workers.sync.outcomes import DeadLetter, Retry, Written
from workspaces.secrets import SecretKeyError

NOW = 1_800_000_000.0
POLICY = RetryPolicy(max_attempts=8, budget=3600, backoff=2, backoff_max=300, max_deliveries=5, park_interval=900,
                     reconnect_interval=60)
TASK, QUEUE = "sfsync.email.sent", "email.sent"


def message(raw, task_id: str, meta: dict | None = None):
    return SimpleNamespace(args=(raw,), kwargs={"sfsync": meta or {}}, id=task_id, delivery_info={})


def groups(*messages):
    return [(TASK, QUEUE, list(messages))]


@dataclass
class FakeHistories:
    """Deliveries and strikes by task id; marks noted as the groups synced under them."""

    deliveries: dict[str, int] = field(default_factory=dict)
    strikes: dict[str, int] = field(default_factory=dict)
    marked_groups: list[list[str]] = field(default_factory=list)
    finished_ids: list[str] = field(default_factory=list)

    def histories(self, items):
        return [History(attempt=it.attempt, deliveries=self.deliveries.get(it.task_id, 1),
                        strikes=self.strikes.get(it.task_id, 0)) for it in items]

    @contextmanager
    def marked(self, items):
        self.marked_groups.append([it.task_id for it in items])
        yield

    def finished(self, items):
        self.finished_ids.extend(it.task_id for it in items)


@dataclass
class FakeStanding:
    served: set[str] = field(default_factory=lambda: {"ws_acme", "ws_b"})
    breaker: set[str] = field(default_factory=set)

    def config(self, ws):
        return SimpleNamespace(enabled=True) if ws in self.served else None

    def breaker_open(self, ws):
        return ws in self.breaker

    def breaker_refusal(self, ws):
        return Retry(SalesforceError(ErrorCode.ORG_UNAVAILABLE, "down"))

    def over_quota(self, ws):
        return False

    def quota_refusal(self, ws):
        raise AssertionError("not over")


@dataclass
class FakeOrgs:
    """Every event written, unless `answer` says otherwise; the batches synced are noted."""

    answer: object = None
    synced: list[tuple[str, list[str]]] = field(default_factory=list)

    def sync(self, ws, events):
        self.synced.append((ws, [e.id for e in events]))
        if self.answer is not None:
            return [self.answer for _ in events]
        return [Written("Task", f"00T{n}", "0031") for n, _ in enumerate(events)]


@dataclass
class FakeBreakers:
    strikes: int = 0
    tripped: list[str] = field(default_factory=list)

    def strike(self, ws):
        self.strikes += 1
        return self.strikes >= 2

    def trip(self, ws, reason):
        self.tripped.append(ws)

    def refusal(self, ws):
        return Retry(SalesforceError(ErrorCode.ORG_UNAVAILABLE, "down"))


@dataclass
class FakeSettler:
    settled: list = field(default_factory=list)

    def settle(self, triples):
        self.settled.extend(triples)
        return Counter(type(d).__name__ for _, _, d in triples)


def pipeline(orgs=None, histories=None, standing=None, breakers=None, signature=lambda item: None, batch_size=100):
    settler = FakeSettler()
    return Pipeline(policy=POLICY, histories=histories or FakeHistories(), signature=signature,
                    standing=standing or FakeStanding(), orgs=orgs or FakeOrgs(), breakers=breakers or FakeBreakers(),
                    settler=lambda ws: settler, batch_size=batch_size, clock=lambda: Clock(NOW)), settler


def fates(settler):
    return {(it.event.id if it.event else None): decision for it, _, decision in settler.settled}


def test_given_a_fresh_batch_when_processed_then_synced_once_decided_and_settled():
    run, settler = pipeline()
    a, b = email_event(), email_event()
    counts = run.process_batch(groups(message(a, "t1"), message(b, "t2")))
    assert counts == Counter(Done=2)
    assert fates(settler) == {a["id"]: Done("written"), b["id"]: Done("written")}
    assert run.orgs.synced == [("ws_acme", [a["id"], b["id"]])]
    assert run.histories.finished_ids == ["t1", "t2"]


def test_given_two_copies_of_one_event_when_processed_then_synced_once_and_the_copy_is_a_duplicate():
    run, settler = pipeline()
    a = email_event()
    run.process_batch(groups(message(a, "t1"), message(a, "t2")))
    assert [d for _, _, d in settler.settled] == [Done("written"), Done("duplicate")]
    assert run.orgs.synced == [("ws_acme", [a["id"]])]


def test_given_an_invalid_event_when_processed_then_dead_lettered_with_its_code_and_the_rest_synced():
    run, settler = pipeline()
    good = email_event()
    run.process_batch(groups(message({"id": "evt_bad", "type": "email.sent"}, "t1"), message(good, "t2")))
    [(bad_item, _, bad)] = [s for s in settler.settled if s[0].event is None]
    assert isinstance(bad, Bury) and bad.code == "INVALID_EVENT"
    assert run.orgs.synced == [("ws_acme", [good["id"]])]


@pytest.mark.parametrize("deliveries, strikes", [(6, 0), (2, 2)])
def test_given_poison_when_processed_then_buried_without_a_sync(deliveries, strikes):
    run, settler = pipeline(histories=FakeHistories(deliveries={"t1": deliveries}, strikes={"t1": strikes}))
    a = email_event()
    run.process_batch(groups(message(a, "t1")))
    [decision] = fates(settler).values()
    assert isinstance(decision, Bury) and decision.code == ErrorCode.POISON_MESSAGE
    assert run.orgs.synced == []


def test_given_a_refused_signature_when_processed_then_buried_without_a_sync():
    refusal = DeadLetter(ErrorCode.INVALID_SIGNATURE, "unsigned")
    run, settler = pipeline(signature=lambda item: refusal)
    run.process_batch(groups(message(email_event(), "t1")))
    [decision] = fates(settler).values()
    assert decision == Bury("INVALID_SIGNATURE", "unsigned", (), attempts=1)
    assert run.orgs.synced == []


def test_given_redelivered_and_suspect_messages_when_processed_then_synced_apart_under_marks():
    histories = FakeHistories(deliveries={"t2": 2, "t3": 2, "t4": 2}, strikes={"t4": 1})
    run, _ = pipeline(histories=histories)
    events = [email_event() for _ in range(4)]
    run.process_batch(groups(*[message(e, f"t{n + 1}") for n, e in enumerate(events)]))
    assert [ids for _, ids in run.orgs.synced] == [[events[0]["id"]], [events[1]["id"], events[2]["id"]],
                                                   [events[3]["id"]]]
    assert histories.marked_groups == [["t2", "t3"], ["t4"]]


def test_given_events_of_an_unserved_workspace_when_processed_then_the_gate_dead_letters_them_unsynced():
    run, settler = pipeline()
    stranger, ours = email_event(workspace_id="ws_gone"), email_event()
    run.process_batch(groups(message(stranger, "t1"), message(ours, "t2")))
    assert fates(settler)[stranger["id"]].code == ErrorCode.WORKSPACE_NOT_SERVED
    assert run.orgs.synced == [("ws_acme", [ours["id"]])]


def test_given_an_open_breaker_when_processed_then_parked_unsynced():
    run, settler = pipeline(standing=FakeStanding(breaker={"ws_acme"}))
    run.process_batch(groups(message(email_event(), "t1")))
    [decision] = fates(settler).values()
    assert decision == Park(NOW + 120, ErrorCode.ORG_UNAVAILABLE, "down")
    assert run.orgs.synced == []


def test_given_the_org_fails_two_batches_as_a_whole_when_processed_then_the_breaker_trips_and_the_second_parks():
    down = Retry(SalesforceError("SERVER_UNAVAILABLE", "503", status=503))
    run, settler = pipeline(orgs=FakeOrgs(answer=down))
    run.process_batch(groups(message(email_event(), "t1")))
    run.process_batch(groups(message(email_event(), "t2")))
    first, second = [d for _, _, d in settler.settled]
    assert isinstance(first, HoldForRetry) and first.attempt == 1  # a first failure is retried like any other
    assert isinstance(second, Park) and second.code == ErrorCode.ORG_UNAVAILABLE
    assert run.breakers.tripped == ["ws_acme"]


def test_given_a_batch_larger_than_the_batch_size_when_processed_then_synced_in_chunks():
    run, _ = pipeline(batch_size=2)
    run.process_batch(groups(*[message(email_event(), f"t{n}") for n in range(5)]))
    assert [len(ids) for _, ids in run.orgs.synced] == [2, 2, 1]


def test_given_a_batch_that_failed_unexpectedly_when_settled_then_each_event_is_retried_spending_an_attempt():
    run, settler = pipeline()
    run.settle_failed_batch(groups(message(email_event(), "t1", {"attempt": 2})))
    [(_, outcome, decision)] = settler.settled
    assert outcome.error.code == ErrorCode.INTERNAL_ERROR
    assert isinstance(decision, HoldForRetry) and decision.attempt == 3


def test_given_items_and_histories_when_triaged_then_refused_fresh_again_and_alone_apart():
    items = [SimpleNamespace(task_id=f"t{n}") for n in range(4)]
    histories = [History(), History(deliveries=9), History(deliveries=2), History(deliveries=2, strikes=1)]
    sorted_ = triage(items, histories, POLICY, lambda item: None)
    assert [it.task_id for it, _, _ in sorted_.refused] == ["t1"]
    assert ([it.task_id for it, _ in sorted_.fresh], [it.task_id for it, _ in sorted_.again],
            [it.task_id for it, _ in sorted_.alone]) == (["t0"], ["t2"], ["t3"])


# --- triage's signature check -------------------------------------------------------------------

class KeyDirectory:
    def __init__(self, keys=(), broken=False):
        self.keys, self.broken = tuple(keys), broken

    def get(self, ws):
        if self.broken:
            raise SecretKeyError("no key")
        return SimpleNamespace(emitter_keys=self.keys)


def signed_item(key: str | None):
    from events.signing import signature

    body = b'[["x"], {}, {}]'
    return SimpleNamespace(event=SimpleNamespace(workspace_id="ws_acme"), body=body, meta={},
                           signature=signature(body, key) if key else None)


@pytest.mark.parametrize("keys, signed_with, broken, refused, marked", [
    ((), None, False, False, False),             # the workspace takes unsigned events
    (("k1",), "k1", False, False, True),         # signed with its key: passes, marked for sfsync to sign again
    (("k0", "k1"), "k1", False, False, True),    # any of its keys
    (("k1",), None, False, True, False),         # unsigned
    (("k1",), "k2", False, True, False),         # signed with another key
    (("k1",), None, True, False, False),         # its keys cannot be read now: it waits (the gate parks it)
])
def test_given_a_workspaces_keys_when_an_item_is_checked_then_refused_or_passed(keys, signed_with, broken, refused,
                                                                               marked):
    item = signed_item(signed_with)
    verdict = SignatureCheck(KeyDirectory(keys, broken))(item)
    assert (verdict is not None, bool(item.meta.get("verified"))) == (refused, marked)
    if refused:
        assert verdict.code == ErrorCode.INVALID_SIGNATURE


# --- what no batch can use ---------------------------------------------------------------------

def test_given_an_unreadable_queue_item_when_made_an_item_then_its_problem_is_its_outcome_with_what_it_names():
    why = Unreadable(ErrorCode.INVALID_ENVELOPE, "headers: must be an object",
                     {"event_id": "evt_1", "event_type": "email.sent", "workspace_id": "ws_acme"}, "sfsync.email.sent",
                     "task-1", "application/json")
    item = why.item(b"raw", "email.sent")
    assert (item.raw, item.event, item.queue, item.task_name, item.task_id, item.content_type, item.attempt) == (
        b"raw", None, "email.sent", "sfsync.email.sent", "task-1", "application/json", 0)
    assert item.ids() == {"event_id": "evt_1", "event_type": "email.sent", "workspace_id": "ws_acme"}
    assert (item.problem.code, item.problem.reason) == ("INVALID_ENVELOPE", "headers: must be an object")


def test_given_a_broken_parking_entry_when_made_an_item_then_it_names_only_its_workspace():
    item = unusable_item("not json", {"workspace_id": "ws_acme"}, ErrorCode.INVALID_PARKED_ENTRY, "unreadable")
    assert item.ids() == {"event_id": None, "event_type": None, "workspace_id": "ws_acme"}
    assert (item.task_name, item.queue, item.task_id, item.content_type) == (None, None, None, None)
