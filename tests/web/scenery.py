"""Fixed data for looking at the console: an hour of activity, a fleet, dead letters of a few causes, an audit trail.

Everything is placed relative to the minute `now` falls in, so the pages draw the same picture
whenever they are shown within that minute (the screenshot checks rely on it).
"""

from __future__ import annotations

import math

from events.connection_state import ConnectionState
from events.deadletter import DeadLetterStore
from events.fleet import Fleet
from events.keys import key
from events.parking import ParkedMessage, ParkingLot, UsageGauge
from events.rollup import MINUTE, Rollup, deployment_key, workspace_key
from events.audit import AuditLog

WORKSPACE = "ws_acme"
OTHER = "ws_globex"


def _activity(client, now: float) -> None:
    """An hour of a steady workspace with a burst 20 minutes ago, a quieter one, and a backlog that drains."""
    rollup = Rollup(client)
    last = int(now // MINUTE)
    for back in range(60):
        minute = last - back
        at = minute * MINUTE + 1
        wave = 30 + 20 * math.sin(back / 6)
        burst = 180 if 18 <= back <= 21 else 0
        pipe = client.pipeline(transaction=False)
        written = int(wave + burst)
        rollup.add(pipe, WORKSPACE, {"written": written, "skipped": 3 + back % 4, "dead_lettered": 2 if back in (19, 20) else 0},
                   [0.4 + (i % 7) * 0.3 + (8 if burst and i % 5 == 0 else 0) for i in range(written)], now=at)
        rollup.add(pipe, OTHER, {"written": 8 + back % 3, "skipped": 1}, [0.8] * (8 + back % 3), now=at)
        pipe.execute()
        backlog = {WORKSPACE: {"retries": max(0, 40 - abs(back - 18) * 6), "parked": 0,
                               "overflow": max(0, 300 - abs(back - 19) * 90)},
                   OTHER: {"retries": 0, "parked": 12 if back > 30 else 0, "overflow": 0}}
        api = {WORKSPACE: (41_500 - back * 90, 50_000), OTHER: (3_100 - back * 5, 15_000)}
        rollup.sample(backlog, api, {"queued": max(0, 900 - abs(back - 20) * 250), "unacked": 40 if burst else 6},
                      now=at + 30)
    # the current minute's sample stays as drawn whatever a worker might add
    client.hset(deployment_key(last), "sm", "1")
    client.expire(workspace_key(WORKSPACE, last), 3 * 86400)


def _fleet(client, now: float) -> None:
    # seven-digit pids, as wide as any (pid_max is at most 4,194,304): the console's own row never widens the column
    fleet = Fleet(client)
    fleet.beat("worker:worker-a.internal:4100042", kind="worker", started=now - 7200, version="0.9.0", in_flight=2,
               concurrency=4, workspaces=[WORKSPACE, OTHER], now=now - 2)
    fleet.beat("worker:worker-b.internal:4100051", kind="worker", started=now - 7000, version="0.9.0", in_flight=1,
               concurrency=4, workspaces=[WORKSPACE], now=now - 45)
    fleet.beat("beat:worker-a.internal:4100007", kind="beat", started=now - 7200, version="0.9.0", now=now - 3)


def _dead_letters(client) -> DeadLetterStore:
    store = DeadLetterStore(client)
    for n in range(12):
        store.add(event={"id": f"evt_subject_{n:03d}", "workspace_id": WORKSPACE, "type": "email.sent",
                         "data": {"subject": f"Quick question #{n}"}},
                  event_id=f"evt_subject_{n:03d}", event_type="email.sent", workspace_id=WORKSPACE,
                  error_code="FIELD_CUSTOM_VALIDATION_EXCEPTION",
                  error_message=f"Subject must not contain 'ACME-{100 + n}'", error_fields=["Subject"],
                  task_name="sfsync.email.sent", queue="email.sent")
    for n in range(3):
        store.add(event={"id": f"evt_title_{n}", "workspace_id": WORKSPACE, "type": "contact.updated"},
                  event_id=f"evt_title_{n}", event_type="contact.updated", workspace_id=WORKSPACE,
                  error_code="INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                  error_message=f"Title: bad value for restricted picklist field: Chief Wizard {n}",
                  error_fields=["Title"], task_name="sfsync.contact.updated", queue="contact.updated")
    store.add(event="{not json", event_id=None, event_type=None, workspace_id=None, error_code="INVALID_JSON",
              error_message="Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
              task_name="sfsync.email.sent", queue="email.sent")
    return store


def _audit(client) -> None:
    audit = AuditLog(client)
    for user, role, action, detail in (("ada", "admin", "sign_in", "password"),
                                       ("sam", "support", "replay", "replay of 12 dead letter(s) started; job 1"),
                                       ("ada", "admin", "mappings_saved", "version 3"),
                                       ("ada", "admin", "disabled", "")):
        audit.record(user=user, role=role, action=action, ip="10.0.0.7", workspace=WORKSPACE, detail=detail)


def furnish(client, now: float) -> None:
    """Everything at once, on an empty database."""
    _activity(client, now)
    _fleet(client, now)
    _dead_letters(client)
    _audit(client)
    ConnectionState(client).mark_connected(WORKSPACE)
    UsageGauge(client).store(WORKSPACE, 41_500, 50_000, at=now - 4)
    UsageGauge(client).store(OTHER, 3_100, 15_000, at=now - 4)
    lot = ParkingLot(client, "parked")
    lot.park(OTHER, [ParkedMessage("sfsync.email.sent", "email.sent", {"n": n}, {}, "REQUEST_LIMIT_EXCEEDED", now)
                     for n in range(12)], now + 600)
    client.hset(key(WORKSPACE, "counts"), mapping={"email.sent|written": 1830, "email.sent|skipped_no_contact": 120,
                                                   "email.sent|dead_lettered": 29})
