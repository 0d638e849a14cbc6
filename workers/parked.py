"""Releasing parked work (beat's task): due events go back on their queues once the org can take them."""

from __future__ import annotations

import logging
import time

from events.connection_state import ConnectionState
from events.deadletter import DeadLetterStore, Retention
from events.overflow import Overflow
from events.parking import ParkingLot
from events.signing import VERIFIED, signature
from events.wire import message_body, named_workspace, queue_item, sfsync_headers
from schemas.codes import ErrorCode
from workers.decide import SESSION_CODES, RetryPolicy
from workers.gate import StoredStanding, gate
from workers.governor import USAGE_RECHECK
from workers.login_gate import gated_login
from workers.observability import metrics
from workers.process import runtime_of
from workers.salesforce.errors import SalesforceError
from workers.salesforce.gateway import SalesforceGateway
from workers.messages import unusable_item
from workers.settle import Settler
from workspaces.directory import Directory
from workspaces.secrets import SecretKeyError

log = logging.getLogger("sfsync.delivery")

#: seconds between prunes of the dead-letter store (age retention)
PRUNE_EVERY = 300.0
#: seconds a releaser holds the entries it claimed before another worker or beat may take them
RETRY_LEASE = 30.0


def _gateway(directory: Directory, ws: str, timeout: float) -> SalesforceGateway:
    """A gateway of the workspace's org, through the login gate (no login while refused ones are rationed)."""
    config = directory.for_login(ws)
    if config is None or config.salesforce is None:
        raise SalesforceError(ErrorCode.LOGIN_FAILED, f"workspace {ws!r} has no Salesforce connection")
    return gated_login(ConnectionState(directory.registry.redis), ws, config.salesforce, timeout=timeout,
                       hosts=directory.settings.salesforce_hosts)


def _daily_usage(gateway: SalesforceGateway) -> tuple[int, int] | None:
    """(used, limit) from Salesforce's cheap `limits/` resource (one API call)."""
    daily = (gateway.limits() or {}).get("DailyApiRequests") or {}
    if "Max" in daily and "Remaining" in daily:
        return int(daily["Max"]) - int(daily["Remaining"]), int(daily["Max"])
    return (gateway.usage.used, gateway.usage.limit) if gateway.usage is not None else None


def _can_log_in(directory: Directory, ws: str, timeout: float) -> bool:
    """Do the credentials work again? A login, or for a bare access token one userinfo request
    (neither spends the daily API allowance)."""
    try:
        gateway = _gateway(directory, ws, timeout)
        if gateway.current_user_id() is None:
            raise SalesforceError(ErrorCode.INVALID_SESSION_ID, "the access token is refused")
    except (SalesforceError, SecretKeyError) as error:
        log.warning("parked work of %s waits: Salesforce still refuses the credentials: %s", ws, error,
                    extra={"workspace_id": ws})
        return False
    return True


def prune_dead_letters(runtime, every: float = PRUNE_EVERY) -> dict[str, int]:
    """Drop dead letters past their retention (at most once per `every` seconds across workers)."""
    if not runtime.redis.set("sfsync:dlq:prune-lock", "1", nx=True, ex=int(every)):
        return {}
    store = DeadLetterStore(runtime.redis, known=runtime.directory.known, retention=runtime.retention,
                            on_drop=metrics.record_dead_letters_dropped)
    return store.prune()


def release_parked(app, *, now: float | None = None, recheck_after: float = USAGE_RECHECK) -> int:
    """Put parked work whose time has come back on its queue, for every workspace; returns how many."""
    runtime = runtime_of(app)
    try:
        prune_dead_letters(runtime)
    except Exception:  # retention is housekeeping: the release below matters more
        log.exception("could not prune the dead-letter store")
    lot = ParkingLot(runtime.redis)
    now = time.time() if now is None else now
    released = 0
    for ws in lot.due_workspaces(now):
        try:
            released += release_workspace(app, runtime, lot, ws, now, recheck_after)
        except Exception:  # one workspace's trouble must not hold back the others' parked work
            log.exception("could not release the parked work of %s", ws, extra={"workspace_id": ws})
    return released


def release_workspace(app, runtime, lot: ParkingLot, ws: str, now: float, recheck_after: float) -> int:
    """Release one workspace's due parked work, unless what parked it still holds.

    Nothing is released while API usage is at or above the ceiling, while the workspace is disabled or
    its org's breaker open, and work parked because the session was lost waits until a login works.
    """
    due = lot.due(ws, now)
    if not due:
        return 0
    timeout = runtime.settings.salesforce_timeout
    governor = runtime.governor
    standing = StoredStanding(runtime.directory, runtime.breakers, governor, over_quota=lambda _: governor(ws).still_over(
        lambda: _daily_usage(_gateway(runtime.directory, ws, timeout)), recheck_after))
    held = gate(ws, standing)
    if held is not None and held.waits:
        if held.code == ErrorCode.API_USAGE_CEILING:
            log.info("%d parked event(s) of %s due, but API usage is still at or above the ceiling", len(due), ws,
                     extra={"workspace_id": ws})
        return 0
    # not held, or held for a workspace no longer served: released, its events are dead-lettered as they come
    config = runtime.directory.get(ws)
    if any(parked is not None and parked.reason in SESSION_CODES for _, parked in due) \
            and not _can_log_in(runtime.directory, ws, timeout):
        return 0
    # claimed (leased) rather than read: two beats releasing at once take each entry once
    released = republish_due(app, runtime.redis, lot, ws, lot.claim_due(ws, now, RETRY_LEASE),
                             config.signing_key if config is not None else None)
    if released:
        log.info("released %d parked event(s) of %s", released, ws, extra={"workspace_id": ws})
    return released


def republish_due(app, client, lot: ParkingLot, ws: str, due, signing_key: str | None = None) -> int:
    """Put due entries back on their queues, then remove them (a crash in between doubles an
    entry, which the idempotency ledger absorbs; it never loses one). Returns how many.

    For a workspace that signs its events (`signing_key`, its first emitter key), an entry that passed
    the check when it came is sent again signed by sfsync; one that did not is sent as it came, unsigned,
    and refused again."""
    released = 0
    broken = [member for member, parked in due if parked is None]
    if broken:
        # settled like any event no batch can use: its problem is its outcome, it is dead-lettered as it was
        settings = app.sfsync_settings
        Settler(client, ws, retention=Retention.from_settings(settings), policy=RetryPolicy.from_settings(settings)
                ).refuse([unusable_item(member, {"workspace_id": ws}, ErrorCode.INVALID_PARKED_ENTRY,
                                        "unreadable parking entry") for member in broken])
        for member in broken:
            lot.remove(ws, member)
    for member, parked in due:
        if parked is None:
            continue
        # the workspace header the publisher would have set: read from the event itself
        headers = sfsync_headers(named_workspace([parked.raw]), 1)
        if signing_key is not None and parked.meta.get(VERIFIED):
            client.lpush(parked.queue, queue_item(parked.task_name, parked.queue, [parked.raw], headers=headers,
                                                  kwargs={"sfsync": parked.meta}, signing_key=signing_key))
        else:
            app.send_task(parked.task_name, args=[parked.raw], kwargs={"sfsync": parked.meta}, queue=parked.queue,
                          exchange="", routing_key=parked.queue, headers=headers)
        if lot.remove(ws, member):
            released += 1
    return released


def signing_key_of(directory: Directory | None, ws: str) -> str | None:
    """The key sfsync signs a workspace's events with when it sends them again (None: it takes them unsigned,
    or its keys cannot be read now: then they are sent unsigned and checked as they come)."""
    if directory is None:
        return None
    try:
        config = directory.get(ws)
    except SecretKeyError:
        return None
    return config.signing_key if config is not None else None


def release_retries(app, client, directory: Directory | None = None, *, now: float | None = None) -> int:
    """Every worker, every second: retries whose backoff has passed go back on their queues."""
    lot = ParkingLot(client, "retries")
    now = time.time() if now is None else now
    released = 0
    for ws in lot.due_workspaces(now):
        due = lot.claim_due(ws, now, RETRY_LEASE)
        released += republish_due(app, client, lot, ws, due, signing_key_of(directory, ws)) if due else 0
    return released


def release_all(app, client, ws: str, directory: Directory | None = None) -> int:
    """Every parked event of one workspace into its overflow now (its org's breaker just closed):
    written from there a batch per turn, so a large backlog does not crowd the shared queues and
    delay the other workspaces. Each entry is removed after it is in the overflow (a crash in
    between doubles it, which the idempotency ledger absorbs)."""
    lot, overflow = ParkingLot(client), Overflow(client)
    key = signing_key_of(directory, ws)
    now = time.time()
    lot.make_due(ws, now)
    released = 0
    while True:
        due = lot.claim_due(ws, now, RETRY_LEASE)
        if not due:
            return released
        readable = [(m, p) for m, p in due if p is not None]
        overflow.spill([(ws, _overflow_entry(p, key)) for _, p in readable])
        released += sum(1 for m, _ in readable if lot.remove(ws, m))
        republish_due(app, client, lot, ws, [(m, p) for m, p in due if p is None])  # dead-letters them


def _overflow_entry(parked, signing_key: str | None) -> str:
    """A parked event as an overflow entry; one that passed its workspace's check signed by sfsync."""
    kwargs = {"sfsync": parked.meta}
    headers = sfsync_headers(named_workspace([parked.raw]), 1)
    if signing_key is None or not parked.meta.get(VERIFIED):
        return Overflow.entry(parked.task_name, parked.queue, None, [parked.raw], kwargs, headers=headers)
    body = message_body([parked.raw], kwargs)
    return Overflow.entry(parked.task_name, parked.queue, None, [parked.raw], kwargs, headers=headers,
                          signature=signature(body, signing_key), body=body)
