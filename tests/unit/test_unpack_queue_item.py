"""Queue items moved to an overflow without kombu: read with the same checks and codes as the worker's read loop."""

from __future__ import annotations

import base64
import json

import pytest

from events.wire import queue_item
from tests.factories import email_event
from workers.consumer_guard import unpack_queue_item


def _item(**changes) -> dict:
    item = json.loads(queue_item("sfsync.email.sent", "email.sent", [email_event(event_id="evt_1")]))
    item.update(changes)
    return item


def test_given_a_well_formed_item_when_unpacked_then_its_task_id_args_and_routing():
    event = email_event(event_id="evt_1")
    raw = queue_item("sfsync.email.sent", "email.sent", [event], task_id="t-1")

    task_name, message = unpack_queue_item(raw)

    assert task_name == "sfsync.email.sent"
    assert (message.id, message.args, message.kwargs) == ("t-1", (event,), {})
    assert message.delivery_info["routing_key"] == "email.sent"


@pytest.mark.parametrize("raw, code, says", [
    ("not json {", "INVALID_ENVELOPE", "not JSON"),
    (json.dumps([1, 2]), "INVALID_ENVELOPE", "not a message envelope"),
    (json.dumps(_item(body="abc")), "INVALID_ENVELOPE", "base64"),
    (json.dumps(_item(headers={**_item()["headers"], "task": "celery.chord_unlock"})), "UNKNOWN_TASK", "chord_unlock"),
    (json.dumps(_item(**{"content-type": "application/x-python-serialize"})), "CONTENT_DISALLOWED", "not accepted"),
    (json.dumps(_item(body=base64.b64encode(b'{"a": 1}').decode())), "INVALID_MESSAGE", "protocol 2"),
])
def test_given_an_unusable_item_when_unpacked_then_the_read_loops_code_and_reason(raw, code, says):
    task_name, why = unpack_queue_item(raw)

    assert task_name is None
    assert why.code == code and says in why.reason


def test_given_an_item_whose_event_is_nested_too_deep_when_unpacked_then_refused_naming_the_event():
    deep: object = "x"
    for _ in range(200):
        deep = [deep]
    body = json.dumps([[{"id": "evt_deep", "type": "email.sent", "workspace_id": "ws_a", "data": deep}], {}, {}])
    raw = json.dumps(_item(body=base64.b64encode(body.encode()).decode()))

    task_name, why = unpack_queue_item(raw)

    assert task_name is None and why.code == "INVALID_EVENT"
    assert why.ids["event_id"] == "evt_deep"


from hypothesis import given, settings, strategies as st  # noqa: E402

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(["body", "headers", "properties", "content-type", "content-encoding"]), value=_json)
def test_given_any_field_of_an_item_replaced_when_unpacked_then_a_message_or_a_reason_never_an_error(field, value):
    task_name, unpacked = unpack_queue_item(json.dumps(_item(**{field: value})))

    assert (task_name is not None and unpacked.args) or (task_name is None and unpacked.code and unpacked.reason)


@settings(max_examples=200, deadline=None)
@given(raw=st.text(max_size=300))
def test_given_any_text_when_unpacked_then_a_reason_never_an_error(raw):
    task_name, why = unpack_queue_item(raw)

    assert task_name is None and why.code == "INVALID_ENVELOPE"
