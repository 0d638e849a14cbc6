"""events.wire builds the same Redis list item that Celery's publisher (events.publish) stores."""

from __future__ import annotations

import base64
import json

from events.publish import message_for, publish_many
from events.wire import queue_item
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
    ours = json.loads(queue_item(task_name, queue, [body], headers={"sfsync_events": 1}, kwargs=stamp))

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
