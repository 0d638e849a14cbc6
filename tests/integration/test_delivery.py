"""Delivery guarantees end to end (issue #5): real Redis, real worker processes, the emulator with faults."""

from __future__ import annotations

import base64
import json
import os
import signal
import time
import uuid

import pytest
from click.testing import CliRunner

from events.deadletter import DeadLetterStore
from events.keys import key
from events.parking import ParkingLot
from events.publish import publisher_app
from schemas.settings import load_settings
from tests.conftest import TEST_MAPPINGS, WORKSPACE, records_of, wait_until
from tests.factories import SYNC_PLAY, email_event
from workers.cli import main as cli

pytestmark = pytest.mark.integration


def seed_jane(admin) -> str:
    return admin.seed("Contact", [{"FirstName": "Jane", "LastName": "Doe", "Email": "jane.doe@acme.example"}])[0]






def outcome_labels(stack, event_id: str) -> list[str]:
    return [e["outcome"] for e in stack.recent_outcomes(WORKSPACE, 10_000) if e.get("event_id") == event_id]


def run_cli(stack, *args, **env_overrides):
    env = stack.env(**env_overrides)
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result


# --- duplicates ------------------------------------------------------------------------------

def test_given_the_same_event_published_three_times_when_synced_then_one_record(stack):
    seed_jane(stack.admin)
    stack.start_worker()
    event = email_event()

    stack.publish([event])
    stack.wait_outcomes([event["id"]])
    stack.publish([event, event])  # a redelivery and a re-send, in one later batch
    wait_until(lambda: len(outcome_labels(stack, event["id"])) >= 3, what="three outcomes")

    assert records_of(stack.admin, "EmailMessage", [event["id"]]) == {event["id"]: 1}
    labels = outcome_labels(stack, event["id"])
    assert labels.count("written") == 1 and set(labels) <= {"written", "duplicate", "skipped_duplicate_delivery"}


def test_given_a_write_whose_ledger_update_was_lost_when_redelivered_then_salesforce_refuses_the_duplicate(stack):
    seed_jane(stack.admin)
    stack.start_worker()
    event = email_event(origin="manual")
    stack.publish([event])
    first = stack.wait_outcomes([event["id"]])[event["id"]]
    # the crash window: Salesforce wrote it, the worker died before the ledger said so
    stack.redis.delete(key(WORKSPACE, "ledger", event["id"]))
    stack.redis.set(key(WORKSPACE, "pending", event["id"]), "1")

    stack.publish([event])
    wait_until(lambda: "duplicate" in outcome_labels(stack, event["id"]), what="duplicate outcome")

    assert records_of(stack.admin, "Task", [event["id"]]) == {event["id"]: 1}
    again = [e for e in stack.recent_outcomes(WORKSPACE) if e.get("event_id") == event["id"]][0]
    assert again["record_id"] == first["record_id"]


# --- transient failures ----------------------------------------------------------------------

def test_given_a_503_outage_when_it_ends_then_all_written_once_without_spending_attempts(stack):
    # an outage of the whole org opens its breaker: the events wait parked (no further attempt spent, no
    # retry storm) and go back on the queue as soon as a probe finds the org answering
    seed_jane(stack.admin)
    stack.start_worker(max_attempts=2)
    events = [email_event() for _ in range(20)]
    stack.admin.add_fault("outage", seconds=4)

    stack.publish(events)
    outcomes = stack.wait_outcomes([e["id"] for e in events], timeout=60)

    assert {o["outcome"] for o in outcomes.values()} == {"written"}
    assert set(records_of(stack.admin, "EmailMessage", [e["id"] for e in events]).values()) == {1}
    assert DeadLetterStore(stack.redis).count() == 0
    # the first batch the org fails is retried like any failure; the second opens the breaker
    labels = [label for e in events for label in outcome_labels(stack, e["id"])]
    assert "parked" in labels
    assert max(outcome_labels(stack, e["id"]).count("retried") for e in events) <= 1


@pytest.mark.parametrize("kind, path", [("unable_to_lock_row", "composite/sobjects"), ("request_limit", ".*")])
def test_given_lock_or_concurrency_limit_errors_when_synced_then_retried_and_written(stack, kind, path):
    seed_jane(stack.admin)
    stack.start_worker()
    events = [email_event() for _ in range(5)]
    stack.admin.add_fault(kind, path=path, count=2)

    stack.publish(events)
    outcomes = stack.wait_outcomes([e["id"] for e in events], timeout=30)

    assert {o["outcome"] for o in outcomes.values()} == {"written"}
    assert set(records_of(stack.admin, "EmailMessage", [e["id"] for e in events]).values()) == {1}
    assert all("retried" in outcome_labels(stack, e["id"]) for e in events)


# --- permanent failures, dead letters and replay ---------------------------------------------

def test_given_a_validation_rule_when_one_record_fails_then_only_it_is_dead_lettered_and_replay_writes_it_once(stack):
    seed_jane(stack.admin)
    stack.start_worker()
    rule = stack.admin.add_validation_rule("EmailMessage", "Subject", "contains", "forbidden",
                                           message="Subject may not say forbidden")
    bad = email_event(subject="A forbidden subject")
    good = [email_event() for _ in range(4)]

    stack.publish([good[0], good[1], bad, good[2], good[3]])
    outcomes = stack.wait_outcomes([e["id"] for e in [bad, *good]])

    assert outcomes[bad["id"]]["outcome"] == "dead_lettered"
    assert {outcomes[e["id"]]["outcome"] for e in good} == {"written"}
    assert not any("retried" in outcome_labels(stack, e["id"]) for e in good)
    [letter] = DeadLetterStore(stack.redis).iter_all()
    assert (letter.event_id, letter.error_code, letter.error_message) == (
        bad["id"], "FIELD_CUSTOM_VALIDATION_EXCEPTION", "Subject may not say forbidden")
    assert letter.event["id"] == bad["id"] and letter.workspace_id == WORKSPACE and letter.attempts == 1

    stack.admin.delete_validation_rule(rule)
    result = run_cli(stack, "dlq", "replay", "--code", "FIELD_CUSTOM_VALIDATION_EXCEPTION", "--timeout", "30",
                     "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["written"] == 1
    assert records_of(stack.admin, "EmailMessage", [bad["id"]]) == {bad["id"]: 1}
    assert DeadLetterStore(stack.redis).count() == 0


def replay_all_and_expect_each_written_once(stack, events) -> None:
    """`sfsync dlq replay --all` after a fix: every event written once, its Contact created, nothing left."""
    result = run_cli(stack, "dlq", "replay", "--all", "--timeout", "30")

    assert result.exit_code == 0, result.output
    assert f"written: {len(events)}" in result.output and "failed again: 0" in result.output
    assert set(records_of(stack.admin, "EmailMessage", [e["id"] for e in events]).values()) == {1}
    assert len(stack.admin.records("Contact")) == len(events)
    assert DeadLetterStore(stack.redis).count() == 0


def test_given_a_mapping_salesforce_refuses_when_fixed_and_replayed_then_each_event_written_once(stack, tmp_path):
    """A mapped value the org refuses (a validation rule on Title) fails every Contact creation;
    remove the mapping; replay writes each event once. (The multi-select case is the next test.)"""
    stack.admin.add_validation_rule("Contact", "Title", "contains", "VP", message="Title must not be an abbreviation")
    worker = stack.start_worker()  # the test mapping maps title -> Title
    events = [email_event(to=f"new{n}@prospect.example", first_name="New", last_name=f"Person{n}", title="VP Sales",
                          play=SYNC_PLAY) for n in range(3)]

    stack.publish(events)
    outcomes = stack.wait_outcomes([e["id"] for e in events])

    assert {o["outcome"] for o in outcomes.values()} == {"dead_lettered"}
    assert {r.error_code for r in DeadLetterStore(stack.redis).iter_all()} == {"FIELD_CUSTOM_VALIDATION_EXCEPTION"}
    assert stack.admin.records("Contact") == []

    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(TEST_MAPPINGS.read_text().replace("    - {source: title, target: Title}\n", ""))
    assert "Title" not in fixed.read_text()
    worker.terminate()
    stack.start_worker(mappings=fixed)
    listed = json.loads(run_cli(stack, "dlq", "list", "--code", "FIELD_CUSTOM_VALIDATION_EXCEPTION", "--json").output)
    assert sorted(r["event_id"] for r in listed) == sorted(e["id"] for e in events)
    replay_all_and_expect_each_written_once(stack, events)


def test_given_a_multi_select_mapping_when_fixed_and_replayed_then_each_event_written_once(stack, tmp_path):
    """The help article's own case: a mapping to a multi-select picklist makes syncs fail; remove it; re-sync.

    The worker's start-up check would refuse such a mapping (the harness skips it, as an org whose
    field became multi-select after start-up would); the events must then fail visibly with the
    field named, never be written with the field quietly dropped.
    """
    broken = tmp_path / "broken.yaml"
    broken.write_text(TEST_MAPPINGS.read_text().replace(
        "  alternate_email_fields:", "    - {source: company, target: Product_Interest__c}\n  alternate_email_fields:"))
    worker = stack.start_worker(mappings=broken)
    events = [email_event(to=f"ms{n}@prospect.example", last_name=f"Multi{n}", play=SYNC_PLAY) for n in range(3)]

    stack.publish(events)
    outcomes = stack.wait_outcomes([e["id"] for e in events])

    assert {o["outcome"] for o in outcomes.values()} == {"dead_lettered"}
    letters = list(DeadLetterStore(stack.redis).iter_all())
    assert {r.error_code for r in letters} == {"INVALID_MAPPING"}
    assert all("Product_Interest__c" in r.error_message and "multi" in r.error_message.lower() for r in letters)
    assert stack.admin.records("Contact") == []

    worker.terminate()
    stack.start_worker()  # the fixed mapping: the multi-select line removed
    replay_all_and_expect_each_written_once(stack, events)


def envelope(body: bytes, *, content_type: str = "application/json", task: str = "sfsync.email.sent") -> str:
    """A kombu Redis message as a broken emitter might push it: a valid envelope around a bad body."""
    task_id = str(uuid.uuid4())
    return json.dumps({
        "body": base64.b64encode(body).decode(), "content-encoding": "utf-8", "content-type": content_type,
        "headers": {"lang": "py", "task": task, "id": task_id, "root_id": task_id, "retries": 0},
        "properties": {"correlation_id": task_id, "delivery_mode": 2, "priority": 0, "body_encoding": "base64",
                       "delivery_info": {"exchange": "email.sent", "routing_key": "email.sent"},
                       "delivery_tag": str(uuid.uuid4())}})


def test_given_malformed_messages_among_valid_ones_when_consumed_then_each_dead_lettered_with_a_reason(stack):
    seed_jane(stack.admin)
    stack.start_worker()
    before = email_event()
    stack.publish([before])
    app = publisher_app(stack.redis_url)
    route = dict(queue="email.sent", exchange="email.sent", routing_key="email.sent")
    stack.redis.lpush("email.sent", envelope(b"\x00\xff\xfegarbage\x81"))
    stack.redis.lpush("email.sent", envelope(b"\x80\x04K\x01.", content_type="application/x-python-serialize"))
    stack.redis.lpush("email.sent", envelope(json.dumps({"not": "celery"}).encode()))
    stack.redis.lpush("email.sent", envelope(b"[[{}], {}, {}]", task="sfsync.email.bounced"))
    app.send_task("sfsync.email.sent", args=["{not json"], **route)
    app.send_task("sfsync.email.sent", args=[{**email_event(), "occurred_at": "yesterday"}], **route)
    app.send_task("sfsync.email.sent", args=[{**email_event(), "type": "email.bounced"}], **route)
    huge = email_event(body_html="x" * 10_000_000)
    app.send_task("sfsync.email.sent", args=[huge], headers={"sfsync_event_id": huge["id"]}, **route)
    after = email_event()
    stack.publish([after])

    outcomes = stack.wait_outcomes([before["id"], after["id"], huge["id"]], timeout=60)
    store = DeadLetterStore(stack.redis)
    letters = wait_until(lambda: (lambda rs: rs if len(rs) >= 8 else None)(list(store.iter_all())), timeout=30,
                         what="eight dead letters")

    assert outcomes[before["id"]]["outcome"] == outcomes[after["id"]]["outcome"] == "written"
    assert outcomes[huge["id"]]["outcome"] == "dead_lettered"
    assert sorted(r.error_code for r in letters) == sorted([
        "UNDECODABLE_MESSAGE", "CONTENT_DISALLOWED", "INVALID_MESSAGE", "UNKNOWN_TASK", "INVALID_JSON",
        "INVALID_EVENT", "UNKNOWN_EVENT_TYPE", "EVENT_TOO_LARGE"])
    by_code = {r.error_code: r for r in letters}
    assert "garbage" in by_code["UNDECODABLE_MESSAGE"].event and by_code["UNDECODABLE_MESSAGE"].error_message
    assert by_code["CONTENT_DISALLOWED"].content_type == "application/x-python-serialize"
    assert "occurred_at" in by_code["INVALID_EVENT"].error_message
    assert by_code["EVENT_TOO_LARGE"].truncated and by_code["EVENT_TOO_LARGE"].event_id == huge["id"]
    assert stack.redis.llen("email.sent") == 0 and stack.redis.hlen("unacked") == 0


# --- crashes and shutdown --------------------------------------------------------------------

def test_given_items_that_are_not_kombu_messages_when_popped_then_dead_lettered_and_the_worker_lives_on(stack):
    seed_jane(stack.admin)
    worker = stack.start_worker()
    before = [email_event() for _ in range(2)]
    after = [email_event() for _ in range(2)]
    stack.publish(before)
    for item in ("total garbage", "[1, 2, 3]", json.dumps({"body": "x"}),
                 envelope(b"{}").replace('"body": "', '"body": "!!!')):
        stack.redis.lpush("email.sent", item)
    stack.publish(after)

    outcomes = stack.wait_outcomes([e["id"] for e in (*before, *after)])

    assert {o["outcome"] for o in outcomes.values()} == {"written"}
    letters = list(DeadLetterStore(stack.redis).iter_all())
    assert len(letters) == 4 and {r.queue for r in letters} == {"email.sent"}
    # the first three never were kombu messages; the last is one whose body decodes to nothing
    assert sorted(r.error_code for r in letters)[:3] == ["INVALID_ENVELOPE"] * 3
    assert any(r.event == "total garbage" for r in letters)
    assert worker.running, "a stray queue item must not stop the worker"


def test_given_a_message_past_its_delivery_cap_when_delivered_again_then_dead_lettered_as_poison(stack):
    seed_jane(stack.admin)
    stack.start_worker(max_deliveries=3)
    poison, fine = email_event(), email_event()
    task_id = str(uuid.uuid4())
    # three earlier deliveries whose batches died (as a worker killed mid-batch leaves them)
    stack.redis.set(key(WORKSPACE, "deliveries", task_id), 3)
    publisher_app(stack.redis_url).send_task("sfsync.email.sent", args=[poison], task_id=task_id, queue="email.sent",
                                             exchange="email.sent", routing_key="email.sent")
    stack.publish([fine])

    outcomes = stack.wait_outcomes([poison["id"], fine["id"]])

    assert outcomes[poison["id"]]["outcome"] == "dead_lettered"
    assert outcomes[poison["id"]]["error_code"] == "POISON_MESSAGE"
    assert outcomes[fine["id"]]["outcome"] == "written"
    assert records_of(stack.admin, "EmailMessage", [poison["id"]]) == {poison["id"]: 0}


def test_given_a_culprit_among_redelivered_messages_when_delivered_again_then_only_it_is_dead_lettered(stack):
    seed_jane(stack.admin)
    stack.start_worker(max_deliveries=3)
    culprit, neighbours = email_event(), [email_event() for _ in range(4)]
    app = publisher_app(stack.redis_url)
    # every message already died once with its batch; the culprit then killed its worker twice more
    # while it was being synced on its own (as a worker leaves the marks when it dies)
    culprit_task = str(uuid.uuid4())
    for event in (culprit, *neighbours):
        task_id = culprit_task if event is culprit else str(uuid.uuid4())
        stack.redis.set(key(WORKSPACE, "deliveries", task_id), 1)
        if event is culprit:
            stack.redis.set(key(WORKSPACE, "marked", task_id), 2)
        app.send_task("sfsync.email.sent", args=[event], task_id=task_id, queue="email.sent",
                      exchange="email.sent", routing_key="email.sent")

    outcomes = stack.wait_outcomes([e["id"] for e in (culprit, *neighbours)])

    assert outcomes[culprit["id"]]["outcome"] == "dead_lettered"
    assert outcomes[culprit["id"]]["error_code"] == "POISON_MESSAGE"
    assert {outcomes[e["id"]]["outcome"] for e in neighbours} == {"written"}
    assert set(records_of(stack.admin, "EmailMessage", [e["id"] for e in neighbours]).values()) == {1}
    # the neighbours' marks were cleared when each finished alone; only the culprit's remains
    assert stack.redis.keys(key(WORKSPACE, "marked", "*")) == [key(WORKSPACE, "marked", culprit_task)]


def test_given_sigterm_during_a_batch_when_restarted_then_nothing_lost_or_doubled(stack):
    seed_jane(stack.admin)
    worker = stack.start_worker(batch_size=50)
    events = [email_event() for _ in range(300)]
    stack.admin.add_fault("latency", path="composite/sobjects", latency_ms=1500)

    stack.publish(events)
    wait_until(lambda: stack.admin.state()["api_calls_by_route"].get("POST composite/sobjects"), timeout=20,
               what="a batch writing")
    os.kill(worker.proc.pid, signal.SIGTERM)  # what Kubernetes sends the container's main process
    assert worker.proc.wait(90) is not None  # warm shutdown: the running batches finish first
    stack.admin.clear_faults()
    stack.start_worker(batch_size=50)
    outcomes = stack.wait_outcomes([e["id"] for e in events], timeout=60)

    assert {o["outcome"] for o in outcomes.values()} <= {"written", "duplicate"}
    assert set(records_of(stack.admin, "EmailMessage", [e["id"] for e in events]).values()) == {1}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_given_workers_sigkilled_at_random_moments_when_restarted_then_every_event_written_exactly_once(stack):
    import random

    seed_jane(stack.admin)
    rng = random.Random(5)
    settings = dict(visibility_timeout=30, batch_size=100)
    worker = stack.start_worker(concurrency=2, **settings)
    events = [email_event() for _ in range(2000)]
    stack.admin.add_fault("latency", path="composite/sobjects", latency_ms=300)

    stack.publish(events)
    for _ in range(3):
        time.sleep(rng.uniform(1.0, 4.0))
        worker.kill()
        worker = stack.start_worker(concurrency=2, **settings)
    outcomes = stack.wait_outcomes([e["id"] for e in events], timeout=200)

    assert {o["outcome"] for o in outcomes.values()} <= {"written", "duplicate"}
    counts = records_of(stack.admin, "EmailMessage", [e["id"] for e in events])
    assert set(counts.values()) == {1}
    assert DeadLetterStore(stack.redis).count() == 0


# --- long waits are parked ---------------------------------------------------------------------

def release_app(stack, **overrides):
    from workers.app import create_app

    return create_app(load_settings(stack.env(**overrides)))


def test_given_the_daily_quota_spent_when_synced_then_parked_not_dead_lettered_and_released_once_usage_falls(stack):
    from workers.parked import release_parked

    seed_jane(stack.admin)
    stack.start_worker(park_interval=1)
    events = [email_event() for _ in range(3)]
    stack.admin.set_limits(daily_api_requests=5000, used=5000)

    stack.publish(events)
    lot = ParkingLot(stack.redis)
    wait_until(lambda: lot.count(WORKSPACE) == 3, what="three parked events")
    assert DeadLetterStore(stack.redis).count() == 0
    assert stack.redis.hgetall(key(WORKSPACE, "api_usage"))["used"] == "5000"
    app = release_app(stack, park_interval=1)
    later = time.time() + 5

    assert release_parked(app, now=later, recheck_after=0) == 0  # still spent: nothing released
    stack.admin.set_limits(used=100)
    assert release_parked(app, now=later, recheck_after=0) == 3
    outcomes = stack.wait_outcomes([e["id"] for e in events])

    assert {o["outcome"] for o in outcomes.values()} == {"written"}
    assert set(records_of(stack.admin, "EmailMessage", [e["id"] for e in events]).values()) == {1}
    assert lot.count(WORKSPACE) == 0


def test_given_usage_above_the_ceiling_when_events_arrive_then_parked_without_api_calls_until_usage_falls(stack):
    from workers.parked import release_parked

    seed_jane(stack.admin)
    stack.start_worker(park_interval=1, api_usage_ceiling=0.8)
    stack.admin.set_limits(daily_api_requests=1000, used=0)
    warm = email_event()
    stack.publish([warm])
    stack.wait_outcomes([warm["id"]])
    stack.admin.set_limits(used=850)
    learns = email_event()  # its calls carry Sforce-Limit-Info: 85x/1000
    stack.publish([learns])
    stack.wait_outcomes([learns["id"]])
    calls = stack.admin.api_calls()

    held = [email_event() for _ in range(3)]
    stack.publish(held)
    lot = ParkingLot(stack.redis)
    wait_until(lambda: lot.count(WORKSPACE) == 3, what="three parked events")

    assert stack.admin.api_calls() == calls
    stack.admin.set_limits(used=100)
    assert release_parked(release_app(stack, park_interval=1, api_usage_ceiling=0.8), now=time.time() + 5,
                          recheck_after=0) == 3
    outcomes = stack.wait_outcomes([e["id"] for e in held])
    assert {o["outcome"] for o in outcomes.values()} == {"written"}
    assert set(records_of(stack.admin, "EmailMessage", [e["id"] for e in held]).values()) == {1}
