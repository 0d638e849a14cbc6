"""From a Celery request to its events: every positional argument counted, the event's own type deciding."""

from __future__ import annotations

from types import SimpleNamespace

from tests.factories import contact_updated_event, email_event
from workers.messages import _items


def request(args, kwargs=None, task_id="t-1"):
    return SimpleNamespace(args=args, kwargs=kwargs or {}, id=task_id, delivery_info={})


def test_given_one_event_when_read_then_one_item_without_a_part():
    [only] = _items(request([email_event()]), "sfsync.email.sent", "email.sent")
    assert only.event is not None and only.part is None and only.key == "t-1"


def test_given_args_with_two_events_when_read_then_both_are_items_like_a_bundle():
    first, second = email_event(), email_event()
    items = _items(request([first, second]), "sfsync.email.sent", "email.sent")
    assert [it.event.id for it in items] == [first["id"], second["id"]]
    assert [it.key for it in items] == ["t-1#0", "t-1#1"]


def test_given_a_bundle_then_an_event_and_an_empty_bundle_when_read_then_each_accounted_for():
    a, b, c = email_event(), email_event(), email_event()
    items = _items(request([[a, b], c, []]), "sfsync.email.sent", "email.sent")
    assert [it.event.id if it.event else it.problem.code for it in items] == [a["id"], b["id"], c["id"],
                                                                                "INVALID_MESSAGE"]
    assert "args[2]" in items[3].problem.reason


def test_given_no_args_when_read_then_one_item_saying_so():
    [only] = _items(request([]), "sfsync.email.sent", "email.sent")
    assert only.problem.code == "INVALID_MESSAGE" and "no event" in only.problem.reason


def test_given_an_email_sent_event_on_the_contact_updated_task_when_read_then_routed_by_its_own_type():
    [routed] = _items(request([email_event()]), "sfsync.contact.updated", "contact.updated")
    assert (routed.task_name, routed.queue) == ("sfsync.email.sent", "email.sent")
    [kept] = _items(request([contact_updated_event(emails=["a@b.example"])]), "sfsync.contact.updated",
                    "contact.updated")
    assert (kept.task_name, kept.queue) == ("sfsync.contact.updated", "contact.updated")


def test_given_retry_metadata_of_the_wrong_types_when_read_then_only_well_typed_fields_are_kept():
    meta = {"attempt": "three", "parked": True, "first_failure_at": 5, "last_error": "UNABLE_TO_LOCK_ROW",
            "replay_of": "dl_1", "surprise": {"x": 1}}
    [item] = _items(request([email_event()], kwargs={"sfsync": meta}), "sfsync.email.sent", "email.sent")
    assert item.meta == {"last_error": "UNABLE_TO_LOCK_ROW", "replay_of": "dl_1"}
    [item] = _items(request([email_event()], kwargs={"sfsync": ["not", "a", "dict"]}), "sfsync.email.sent",
                    "email.sent")
    assert item.meta == {} and item.attempt == 0
