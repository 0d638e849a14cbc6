"""Releasing parked work (beat's task): due events go back on their queues once the org can take them."""

from __future__ import annotations

import logging
import time

from events.parking import ParkingLot, UsageGauge
from events.deadletter import Retention
from events.redis_conn import connect
from schemas.settings import Settings, with_fresh_secrets
from workers.decide import SESSION_CODES
from workers.governor import USAGE_RECHECK, Governor
from workers.salesforce.errors import SalesforceError
from workers.salesforce.gateway import SalesforceGateway
from workers.settle import DeadLetters

log = logging.getLogger("sfsync.delivery")

#: seconds a releaser holds the entries it claimed before another worker or beat may take them
RETRY_LEASE = 30.0


def _daily_usage(settings: Settings) -> tuple[int, int] | None:
    """(used, limit) from Salesforce's cheap `limits/` resource (one API call)."""
    gateway = SalesforceGateway.from_settings(settings)
    daily = (gateway.limits() or {}).get("DailyApiRequests") or {}
    if "Max" in daily and "Remaining" in daily:
        return int(daily["Max"]) - int(daily["Remaining"]), int(daily["Max"])
    return (gateway.usage.used, gateway.usage.limit) if gateway.usage is not None else None


def _can_log_in(settings: Settings) -> bool:
    """Do the credentials work again? A login, or for a bare access token one userinfo request
    (neither spends the daily API allowance)."""
    try:
        gateway = SalesforceGateway.from_settings(with_fresh_secrets(settings))
        if gateway.current_user_id() is None:
            raise SalesforceError("INVALID_SESSION_ID", "the access token is refused")
    except SalesforceError as error:
        log.warning("parked work waits: Salesforce still refuses the credentials: %s", error)
        return False
    return True


def release_parked(app, *, now: float | None = None, recheck_after: float = USAGE_RECHECK) -> int:
    """Put parked work whose time has come back on its queue; returns how many.

    Nothing is released while API usage is at or above the ceiling, and work parked because
    the org's session was lost waits until a login works again. Each message is republished
    before its parking entry is removed: a crash in between doubles it (the ledger absorbs
    that), it never loses it.
    """
    settings: Settings = app.sfsync_settings
    ws = settings.workspace_id
    client = connect(settings.redis_url.get_secret_value())
    lot = ParkingLot(client)
    now = time.time() if now is None else now
    due = lot.due(ws, now)
    if not due:
        return 0
    if Governor(UsageGauge(client), ws, settings.api_usage_ceiling).still_over(
            lambda: _daily_usage(settings), recheck_after):
        log.info("%d parked event(s) due, but API usage is still at or above the ceiling", len(due))
        return 0
    if any(parked is not None and parked.reason in SESSION_CODES for _, parked in due) \
            and not _can_log_in(settings):
        return 0
    # claimed (leased) rather than read: two beats releasing at once take each entry once
    released = republish_due(app, client, lot, ws, lot.claim_due(ws, now, RETRY_LEASE))
    if released:
        log.info("released %d parked event(s)", released)
    return released


def republish_due(app, client, lot: ParkingLot, ws: str, due) -> int:
    """Put due entries back on their queues, then remove them (a crash in between doubles an
    entry, which the idempotency ledger absorbs; it never loses one). Returns how many."""
    released = 0
    for member, parked in due:
        if parked is None:
            DeadLetters(client, ws, retention=Retention.from_settings(app.sfsync_settings)).keep(member, {"event_id": None, "event_type": None, "workspace_id": ws},
                                         "INVALID_PARKED_ENTRY", "unreadable parking entry")
            lot.remove(ws, member)
            continue
        app.send_task(parked.task_name, args=[parked.raw], kwargs={"sfsync": parked.meta}, queue=parked.queue,
                      exchange="", routing_key=parked.queue)
        if lot.remove(ws, member):
            released += 1
    return released


def release_retries(app, client, *, now: float | None = None) -> int:
    """Every worker, every second: retries whose backoff has passed go back on their queues."""
    ws = app.sfsync_settings.workspace_id
    lot = ParkingLot(client, "retries")
    due = lot.claim_due(ws, time.time() if now is None else now, RETRY_LEASE)
    return republish_due(app, client, lot, ws, due) if due else 0
