"""Whatever a queue holds, the worker stays up: malformed raw items pushed straight onto the queues of a real worker."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from events.deadletter import DeadLetterStore
from events.topology import EVENT_QUEUES, route_for
from schemas.deadletter import DeadLetterRecord
from schemas.events import MAX_EVENT_DEPTH
from tests.factories import email_event
from tests.hostile_items import (
    ENVELOPE_CORRUPTIONS, corrupted, deep_json_text, item, nested, task_envelope, with_body)
from tests.integration.test_delivery import records_of, seed_jane, wait_until

pytestmark = pytest.mark.integration


def valid_item(event: dict, *, queue: str | None = None, task: str | None = None) -> tuple[str, str]:
    """(queue, item) for an event sent as the contract says: its own task, on its own queue."""
    own_task, own_queue = route_for(event["type"])
    queue = queue or own_queue
    return queue, item(task_envelope([event], task=task or own_task, queue=queue))


def push(stack, items: list[tuple[str, str]]) -> None:
    for queue, text in items:
        stack.redis.lpush(queue, text)


def wait_letters(stack, count: int, timeout: float = 30.0) -> list[DeadLetterRecord]:
    store = DeadLetterStore(stack.redis)
    wait_until(lambda: store.count() >= count, timeout=timeout, what=f"{count} dead letters")
    return list(store.iter_all())


def assert_all_settled(stack, worker, valid: list[dict], bad: int) -> list[DeadLetterRecord]:
    """The valid events written once each, one dead letter per bad item, queues drained, the worker up."""
    outcomes = stack.wait_outcomes([e["id"] for e in valid], timeout=60) if valid else {}
    letters = wait_letters(stack, bad)
    time.sleep(1.0)  # a second dead letter for one item would come within the same fetch
    letters = list(DeadLetterStore(stack.redis).iter_all())

    assert {o["outcome"] for o in outcomes.values()} <= {"written"}
    assert set(records_of(stack.admin, "EmailMessage", [e["id"] for e in valid]).values()) <= {1}
    assert len(letters) == bad, [(r.error_code, r.error_message) for r in letters]
    assert all(r.error_message.strip() and r.error_code for r in letters)
    wait_until(lambda: sum(stack.redis.llen(q) for q in EVENT_QUEUES) == 0 and stack.redis.hlen("unacked") == 0,
               timeout=20, what="queues drained and nothing left unacked")
    assert worker.running, f"the worker stopped:\n{worker.output()[-3000:]}"
    assert "Unrecoverable error" not in worker.output()
    return letters


def run_corruptions(stack, corruptions: list[tuple[tuple[str, ...], object, str]]) -> list[DeadLetterRecord]:
    """Each corruption of a valid envelope pushed between valid events: each dead-lettered naming its field."""
    seed_jane(stack.admin)
    worker = stack.start_worker()
    valid, items, expected, unnamed = [], [], {}, []
    for path, value, reason in corruptions:
        before, carried = email_event(), email_event()
        valid.append(before)
        items += [valid_item(before),
                  ("email.sent", item(corrupted(task_envelope([carried]), path, value)))]
        if path == ("body",):
            unnamed.append(reason)  # without a body there is no event to name
        else:
            expected[carried["id"]] = reason
    after = email_event()
    valid.append(after)
    push(stack, items + [valid_item(after)])

    letters = assert_all_settled(stack, worker, valid, len(corruptions))

    by_event = {r.event_id: r for r in letters}
    for event_id, reason in expected.items():
        # the event the broken envelope carried is still named, and the reason names the field
        assert event_id in by_event, (event_id, reason)
        assert reason in by_event[event_id].error_message, (reason, by_event[event_id].error_message)
        assert by_event[event_id].event is not None and by_event[event_id].queue == "email.sent"
    for reason in unnamed:
        # kept raw: the whole queue item as it came
        assert [r for r in letters if r.event_id is None and reason in r.error_message
                and r.event.startswith('{"body"')], reason
    return letters


def corruptions_of(*paths: tuple[str, ...]) -> list[tuple[tuple[str, ...], object, str]]:
    return [c for c in ENVELOPE_CORRUPTIONS if c[0] in paths]


# --- one regression test per class of malformed item found by the black-box run -------------------

def test_given_delivery_info_missing_null_empty_a_string_or_without_routing_key_when_popped_then_dead_lettered(stack):
    letters = run_corruptions(stack, corruptions_of(("properties", "delivery_info"),
                                                    ("properties", "delivery_info", "routing_key"),
                                                    ("properties", "delivery_info", "exchange")))
    assert {r.error_code for r in letters} == {"INVALID_ENVELOPE"}


def test_given_delivery_tag_null_an_object_or_a_list_when_popped_then_dead_lettered(stack):
    letters = run_corruptions(stack, corruptions_of(("properties", "delivery_tag")))
    assert {r.error_code for r in letters} == {"INVALID_ENVELOPE"}


def test_given_headers_a_list_or_a_string_when_popped_then_dead_lettered(stack):
    run_corruptions(stack, corruptions_of(("headers",)))


def test_given_body_encoding_unknown_or_a_number_when_popped_then_dead_lettered(stack):
    run_corruptions(stack, corruptions_of(("properties", "body_encoding")))


def test_given_a_task_name_that_is_not_a_string_when_popped_then_dead_lettered(stack):
    run_corruptions(stack, [c for c in corruptions_of(("headers", "task")) if not isinstance(c[1], str)])


def test_given_a_celery_builtin_task_name_on_an_event_queue_when_popped_then_dead_lettered_as_unknown_task(stack):
    letters = run_corruptions(stack, [c for c in corruptions_of(("headers", "task")) if isinstance(c[1], str)])
    assert {r.error_code for r in letters} == {"UNKNOWN_TASK"}
    assert {r.task_name for r in letters} >= {"celery.chord_unlock", "celery.backend_cleanup"}


def test_given_other_celery_headers_and_properties_of_the_wrong_type_when_popped_then_dead_lettered(stack):
    run_corruptions(stack, corruptions_of(("properties",), ("properties", "priority"), ("headers", "id"),
                                          ("headers", "timelimit"), ("headers", "retries"), ("headers", "eta"),
                                          ("headers", "expires"),
                                          ("headers", "deep"), ("body",), ("content-type",),
                                          ("content-encoding",)))


def test_given_args_with_two_events_when_synced_then_both_are_written(stack):
    seed_jane(stack.admin)
    worker = stack.start_worker()
    first, second, single = email_event(), email_event(), email_event()

    push(stack, [("email.sent", item(task_envelope([first, second]))), valid_item(single)])

    assert_all_settled(stack, worker, [first, second, single], 0)


def test_given_an_envelope_nested_100000_deep_when_popped_then_kept_raw_and_the_worker_lives_on(stack):
    seed_jane(stack.admin)
    worker = stack.start_worker()
    before, after = email_event(), email_event()
    deep = item(corrupted(task_envelope([email_event()]), ("headers", "stamps"), "DEEP")).replace(
        '"DEEP"', deep_json_text(100_000))

    push(stack, [valid_item(before), ("email.sent", deep), valid_item(after)])

    [letter] = assert_all_settled(stack, worker, [before, after], 1)
    assert letter.error_code == "INVALID_ENVELOPE" and "nested too deeply" in letter.error_message
    assert letter.event.startswith('{"body"') and letter.truncated is False


def test_given_an_event_nested_900_deep_when_consumed_then_dead_lettered_and_its_batch_written(stack):
    seed_jane(stack.admin)
    worker = stack.start_worker()
    neighbours = [email_event() for _ in range(10)]
    too_deep, just_too_deep = email_event(extra=nested(900)), email_event(extra=nested(MAX_EVENT_DEPTH + 1))

    push(stack, [valid_item(e) for e in neighbours[:5]] + [valid_item(too_deep), valid_item(just_too_deep)]
         + [valid_item(e) for e in neighbours[5:]])

    letters = {r.event_id: r for r in assert_all_settled(stack, worker, neighbours, 2)}
    assert "nested deeper than" in letters[too_deep["id"]].error_message
    assert letters[just_too_deep["id"]].error_message.startswith("data.extra.")
    assert f"event nested deeper than {MAX_EVENT_DEPTH} levels" in letters[just_too_deep["id"]].error_message


def test_given_lone_surrogates_in_id_subject_or_body_when_synced_then_each_dead_lettered_with_its_path(stack):
    seed_jane(stack.admin)
    worker = stack.start_worker()
    neighbours = [email_event() for _ in range(10)]
    bad_id = email_event(event_id="evt_\ud800_lone")
    bad_subject = email_event(subject="Quick one\ud800")
    bad_body = email_event(body_html="<p>Hi \udfff</p>")

    push(stack, [valid_item(e) for e in neighbours[:5]] + [valid_item(e) for e in (bad_id, bad_subject, bad_body)]
         + [valid_item(e) for e in neighbours[5:]])

    letters = assert_all_settled(stack, worker, neighbours, 3)
    reasons = {r.event_id: r.error_message for r in letters}
    assert reasons["evt_\\ud800_lone"].startswith("id: contains a lone UTF-16 surrogate (\\ud800) at character 4")
    assert reasons[bad_subject["id"]].startswith("data.subject: contains a lone UTF-16 surrogate (\\ud800) at "
                                                 "character 9; events must be valid Unicode")
    assert reasons[bad_body["id"]].startswith("data.body_html: contains a lone UTF-16 surrogate (\\udfff)")
    assert {r.error_code for r in letters} == {"INVALID_EVENT"}
    assert all("\\ud" in json.dumps(r.event) for r in letters)  # the raw event is kept, escaped


def test_given_an_email_sent_event_on_the_contact_updated_task_when_synced_then_routed_by_its_type_and_logged(stack):
    seed_jane(stack.admin)
    worker = stack.start_worker()
    event = email_event()

    push(stack, [valid_item(event, queue="contact.updated", task="sfsync.contact.updated")])

    assert_all_settled(stack, worker, [event], 0)
    assert records_of(stack.admin, "EmailMessage", [event["id"]]) == {event["id"]: 1}
    wait_until(lambda: "arrived as task sfsync.contact.updated on queue contact.updated" in worker.output(),
               timeout=10, what="the routing logged")


# --- property: a generated mix of malformed and valid items -----------------------------------

#: corruptions of the event inside a well-formed envelope: (name, event -> message args)
EVENT_CORRUPTIONS = {
    "surrogate in subject": lambda e: [{**e, "data": {**e["data"], "subject": "x\ud800"}}],
    "surrogate in id": lambda e: [{**e, "id": e["id"] + "\udc80"}],
    "version true": lambda e: [{**e, "version": True}],
    "nested 900 deep": lambda e: [{**e, "data": {**e["data"], "extra": nested(900)}}],
    "nested past the limit": lambda e: [{**e, "data": {**e["data"], "extra": nested(MAX_EVENT_DEPTH + 3)}}],
    "no event": lambda e: [],
    "event not an object": lambda e: [[[e["id"]]]],
    "unknown type": lambda e: [{**e, "type": "email.bounced"}],
}


@st.composite
def queue_items(draw) -> tuple[str, str, dict | None]:
    """(queue, item, the valid event it carries or None): a valid event, or one malformed item."""
    queue = draw(st.sampled_from(EVENT_QUEUES))
    event = email_event(event_type=draw(st.sampled_from(["email.sent", "email.replied"])),
                        to="jane.doe@acme.example")
    kind = draw(st.sampled_from(["valid", "valid", "envelope", "event", "raw"]))
    if kind == "valid":
        return (*valid_item(event), event)
    envelope = task_envelope([event], queue=queue)
    if kind == "envelope":
        path, value, _ = draw(st.sampled_from(ENVELOPE_CORRUPTIONS))
        return queue, item(corrupted(envelope, path, value)), None
    if kind == "event":
        args = EVENT_CORRUPTIONS[draw(st.sampled_from(sorted(EVENT_CORRUPTIONS)))](event)
        return queue, item(with_body(envelope, json.dumps([args, {}, {}]).encode())), None
    raw = draw(st.sampled_from(["not json at all", "[1, 2, 3]", "null", '{"body": "x"}', "DEEP"]))
    if raw == "DEEP":
        raw = item(corrupted(envelope, ("headers", "stamps"), "DEEP")).replace('"DEEP"', deep_json_text(100_000))
    return queue, raw, None


def run_mix(stack, examples: int, items_per_example: int) -> None:
    seed_jane(stack.admin)
    worker = stack.start_worker()
    totals = {"valid": [], "bad": 0}

    # generation only: shrinking would replay examples against a live worker for minutes
    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.lists(queue_items(), min_size=1, max_size=items_per_example))
    def one_fetch(items):
        push(stack, [(queue, text) for queue, text, _ in items])
        totals["valid"] += [event for _, _, event in items if event is not None]
        totals["bad"] += sum(1 for _, _, event in items if event is None)
        assert_all_settled(stack, worker, totals["valid"], totals["bad"])

    one_fetch()
    letters = list(DeadLetterStore(stack.redis).iter_all())
    named = Counter(r.event_id for r in letters if r.event_id)
    assert not [e for e, n in named.items() if n > 1], "an item was dead-lettered twice"


@pytest.mark.timeout(120)
def test_given_a_generated_mix_of_malformed_and_valid_items_when_consumed_then_each_accounted_for_once(stack):
    run_mix(stack, examples=4, items_per_example=40)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_given_a_long_generated_mix_of_malformed_and_valid_items_when_consumed_then_each_accounted_for_once(stack):
    run_mix(stack, examples=25, items_per_example=80)
