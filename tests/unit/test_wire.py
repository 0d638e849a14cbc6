"""events.wire builds the same Redis list item that Celery's publisher (events.publish) stores."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.publish import message_for, message_headers, publish_many
from events.wire import queue_item, sfsync_headers, sfsync_headers_of, workspace_of
from schemas.events import parse_event
from tests.factories import email_event

#: fields that are new per message or per process; everything else must be equal
VARYING_HEADERS = {"id", "root_id", "origin"}
VARYING_PROPERTIES = {"correlation_id", "reply_to", "delivery_tag"}
#: headers sentry-sdk's Celery integration adds to every sent task once a test has installed it
SENTRY_HEADERS = {"sentry-trace", "baggage", "headers", "sentry-task-enqueued-time", "sentry-monitor-start-timestamp-s"}


def _celery_item(redis_client, redis_url, raw_event) -> dict:
    publish_many([raw_event], broker_url=redis_url)
    task_name, queue, _ = message_for(parse_event(raw_event))
    (stored,) = redis_client.lrange(queue, 0, -1)
    item = json.loads(stored)
    item["headers"] = {k: v for k, v in item["headers"].items() if k not in SENTRY_HEADERS}
    return item


def test_given_one_event_when_built_by_wire_then_it_equals_celerys_item_field_by_field(redis_client, redis_url):
    raw = email_event()
    celery_item = _celery_item(redis_client, redis_url, raw)
    task_name, queue, body = message_for(parse_event(raw))

    # the publisher stamps when it queued the message; the same stamp makes the same item
    stamp = json.loads(base64.b64decode(celery_item["body"]))[1]
    assert set(stamp) == {"sfsync"} and set(stamp["sfsync"]) == {"published_at"}
    ours = json.loads(queue_item(task_name, queue, [body], headers=message_headers([parse_event(raw)]), kwargs=stamp))

    assert set(ours) == set(celery_item)
    for key in ("content-encoding", "content-type"):
        assert ours[key] == celery_item[key]
    assert json.loads(base64.b64decode(ours["body"])) == json.loads(base64.b64decode(celery_item["body"]))
    assert set(ours["headers"]) == set(celery_item["headers"])
    for name, value in celery_item["headers"].items():
        if name not in VARYING_HEADERS:
            assert ours["headers"][name] == value, name
    assert set(ours["properties"]) == set(celery_item["properties"])
    for name, value in celery_item["properties"].items():
        if name not in VARYING_PROPERTIES:
            assert ours["properties"][name] == value, name


def test_given_a_built_item_when_read_then_its_ids_tie_together_and_are_fresh():
    first = json.loads(queue_item("sfsync.email.sent", "email.sent", [{}], task_id="t-1"))
    second = json.loads(queue_item("sfsync.email.sent", "email.sent", [{}], task_id="t-2"))

    assert first["headers"]["id"] == first["headers"]["root_id"] == first["properties"]["correlation_id"] == "t-1"
    assert first["properties"]["delivery_tag"] != second["properties"]["delivery_tag"]
    assert first["properties"]["delivery_info"] == {"exchange": "", "routing_key": "email.sent"}


def test_given_a_published_event_when_its_item_is_read_then_it_names_its_workspace_and_event_count(
        redis_client, redis_url):
    item = _celery_item(redis_client, redis_url, email_event(workspace_id="ws_globex"))

    assert item["headers"]["sfsync_workspace"] == "ws_globex"
    assert item["headers"]["sfsync_events"] == 1


EVENT = {"id": "evt_1", "workspace_id": "ws_body"}


@pytest.mark.parametrize("headers, args, expected", [
    ({"sfsync_workspace": "ws_header"}, [EVENT], "ws_header"),          # the header decides
    ({}, [EVENT], "ws_body"),                                           # no header: the parsed body
    ({"sfsync_workspace": "no spaces allowed"}, [EVENT], "ws_body"),    # not a workspace id: ignored
    ({"sfsync_workspace": ["ws_x"]}, [EVENT], "ws_body"),
    (None, [json.dumps(EVENT)], "ws_body"),                             # an event sent as JSON text
    ({}, [[EVENT, {"workspace_id": "ws_other"}]], "ws_body"),           # a bundle: its first event
    ({}, [json.dumps([EVENT])], "ws_body"),                             # a bundle sent as JSON text
    ({}, [{"note": "workspace_id: ws_fake"}], ""),                      # text is never searched
    ({}, ['{"workspace_id": "ws_a"'], ""),                              # broken JSON: nothing named
    ({}, ["[" * 5000], ""),                                             # too deep to parse
    ({}, [], ""),
    ({}, [{"workspace_id": "../../etc"}], ""),
])
def test_given_a_message_when_its_workspace_is_read_then_the_header_wins_and_the_body_is_parsed_not_searched(
        headers, args, expected):
    assert workspace_of(headers, args) == expected


def test_given_headers_when_handed_to_a_pool_process_then_only_sfsyncs_own_go_along():
    headers = {"argsrepr": "x" * 1000, "id": "t", "sfsync_workspace": "ws_a", "sfsync_events": 2, 3: "odd"}

    assert sfsync_headers_of(headers) == {"sfsync_workspace": "ws_a", "sfsync_events": 2}
    assert sfsync_headers_of(["not", "a", "dict"]) == {}
    assert sfsync_headers("not an id!", 3) == {"sfsync_events": 3}


@given(headers=st.one_of(st.none(), st.dictionaries(st.text(max_size=20), st.recursive(
           st.none() | st.booleans() | st.integers() | st.text(max_size=30),
           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)),
           max_size=4)),
       args=st.lists(st.recursive(st.none() | st.integers() | st.text(max_size=60) | st.binary(max_size=30),
                                  lambda inner: st.lists(inner, max_size=3)
                                  | st.dictionaries(st.sampled_from(["workspace_id", "id", "x"]), inner, max_size=3)),
                     max_size=3))
def test_given_any_headers_and_arguments_when_the_workspace_is_read_then_it_is_a_workspace_id_or_empty(headers, args):
    from schemas.workspace import is_workspace_id

    found = workspace_of(headers, args)

    assert found == "" or is_workspace_id(found)
