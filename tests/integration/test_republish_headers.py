"""Every path that puts sfsync's own work back on the queues names the workspace in `sfsync_workspace`."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest

from events.overflow import Overflow
from events.parking import ParkedMessage, ParkingLot
from schemas.settings import load_settings
from tests.factories import email_event

pytestmark = pytest.mark.integration


def _queued_headers(redis_client, queue: str = "email.sent") -> list[dict]:
    return [json.loads(item)["headers"] for item in redis_client.lrange(queue, 0, -1)]


def test_given_due_retries_when_released_then_each_message_names_its_events_workspace(stack):
    from workers.app import create_app
    from workers.parked import release_retries

    lot = ParkingLot(stack.redis, "retries")
    lot.park("ws_globex", [ParkedMessage("sfsync.email.sent", "email.sent", email_event(workspace_id="ws_globex"),
                                         {"attempt": 1}, "TIMEOUT")], time.time() - 1)
    # an event sent as JSON text, and one too broken to name a workspace (the header is left out)
    lot.park("ws_globex", [ParkedMessage("sfsync.email.sent", "email.sent",
                                         json.dumps(email_event(workspace_id="ws_globex")), {}, "TIMEOUT"),
                           ParkedMessage("sfsync.email.sent", "email.sent", "{not json", {}, "TIMEOUT")],
             time.time() - 1)

    assert release_retries(create_app(load_settings(stack.env())), stack.redis) == 3

    headers = _queued_headers(stack.redis)
    assert sorted(h.get("sfsync_workspace", "-") for h in headers) == ["-", "ws_globex", "ws_globex"]
    assert {h["sfsync_events"] for h in headers} == {1}


def test_given_a_dead_letter_when_replayed_then_its_message_names_the_events_workspace(stack):
    from schemas.deadletter import DeadLetterRecord
    from workers.replay import republisher

    now = datetime.now(timezone.utc)
    record = DeadLetterRecord(id="dl_1", event_id="evt_1", event_type="email.sent", workspace_id="ws_globex",
                              error_code="TIMEOUT", event=email_event(workspace_id="ws_globex", event_id="evt_1"),
                              error_message="x", first_failure_at=now, last_failure_at=now, sfsync_version="0",
                              task_name="sfsync.email.sent")

    republisher(stack.redis_url)(record)

    [headers] = _queued_headers(stack.redis)
    assert (headers["sfsync_workspace"], headers["sfsync_events"], headers["sfsync_event_id"]) == (
        "ws_globex", 1, "evt_1")


def test_given_parked_work_when_its_breaker_closes_then_its_overflow_entries_carry_the_workspace(stack):
    from workers.app import create_app
    from workers.parked import release_all

    ParkingLot(stack.redis).park("ws_globex", [ParkedMessage(
        "sfsync.email.sent", "email.sent", email_event(workspace_id="ws_globex"), {}, "SERVER_UNAVAILABLE")],
        time.time() + 3600)

    assert release_all(create_app(load_settings(stack.env())), stack.redis, "ws_globex") == 1

    _, [entry] = Overflow(stack.redis).claim("ws_globex", 10, lease=60)
    assert entry["headers"] == {"sfsync_events": 1, "sfsync_workspace": "ws_globex"} and entry["events"] == 1
