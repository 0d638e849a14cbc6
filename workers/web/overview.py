"""What the Overview and workspace pages show, gathered with the same functions as `sfsync status`."""

from __future__ import annotations

import time
from typing import Any

import redis

from events.deadletter import UNROUTED, DeadLetterStore
from events.overflow import Overflow
from events.redis_conn import display_url
from events.topology import ALL_QUEUES, OUTBOUND_QUEUE
from schemas.settings import Settings
from events.late_contacts import LateContacts
from workers.login_gate import held_back_reason
from workers.status import oldest_unacked_seconds, outcomes_in_words, outcomes_since, waiting_work, workspace_report
from workers.status import workspace_ids as status_workspace_ids
from workers.web import workspaces
from workspaces.registry import Registry

HOUR, DAY = 3600, 86400


def workspace_ids(client: redis.Redis, settings: Settings) -> list[str]:
    """Every workspace the console lists: the same list as `sfsync status` (workers.status.workspace_ids)."""
    return status_workspace_ids(client, settings)


def shared_state(client: redis.Redis, settings: Settings) -> dict[str, Any]:
    """What all workspaces share: queue depths, messages in flight, the Redis shown without credentials."""
    return {"redis": display_url(settings.redis_url.get_secret_value()),
            "queues": {q: client.llen(q) for q in (*ALL_QUEUES, OUTBOUND_QUEUE)},
            "unacked": client.hlen("unacked"), "oldest_unacked_seconds": oldest_unacked_seconds(client)}


def workspace_summary(client: redis.Redis, ws: str, waiting: dict[str, Any] | None, dead_letters: int,
                      entry: dict[str, Any] | None = None, late_days: float = 0.0) -> dict[str, Any]:
    """One workspace's row: connection, waiting work, outcomes of the last hour and day, API usage, CRM cycle,
    and the emails waiting for their contact (`late_days`: how long they wait, from its settings)."""
    report = workspace_report(client, ws)
    days = float((entry or {}).get("late_contact_days", late_days))
    connection = report["salesforce_connection"] or {}
    since = connection.get("since")
    return {"id": ws, **report, "waiting": waiting or {"retries": 0, "parked": 0, "retries_next_due_in_seconds": None,
                                                       "parked_next_due_in_seconds": None},
            "state": connection.get("state") or "unknown", "login": held_back_reason(connection, time.time()),
            "state_for_seconds": round(time.time() - float(since)) if since else None,
            "last_hour": outcomes_since(client, ws, HOUR), "last_day": outcomes_since(client, ws, DAY),
            "outcomes_in_words": outcomes_in_words(report["outcomes"]),
            "dead_letters": dead_letters, "registered": entry is not None, "overflow": Overflow(client).size(ws),
            "enabled": entry["enabled"] if entry else True, "name": (entry or {}).get("name") or "",
            "connection": (entry or {}).get("salesforce"), "mappings_version": (entry or {}).get("mappings_version"),
            "late": {**LateContacts(client).summary(ws, days=days).as_dict(), "days": days}}


def overview(client: redis.Redis, settings: Settings, registry: Registry, store: DeadLetterStore) -> dict[str, Any]:
    by_ws = store.count_by_workspace()
    waiting = waiting_work(client, settings.workspace_id)
    entries = workspaces.registered(registry)
    rows = [workspace_summary(client, ws, waiting.get(ws), by_ws.get(ws, 0), entries.get(ws), settings.late_contact_days)
            for ws in workspace_ids(client, settings)]
    # dead letters of messages naming no workspace served here: a row of their own, under no workspace
    return {**shared_state(client, settings), "workspaces": rows, "unrouted": by_ws.get(UNROUTED, 0),
            "dead_letters_total": sum(by_ws.values())}
