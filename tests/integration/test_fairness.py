"""Fair share per workspace with a real worker: a flood of one workspace does not starve another."""

from __future__ import annotations

import time
import uuid
from contextlib import contextmanager

import pytest

from schemas.salesforce_hosts import HostPolicy
from schemas.workspace import SalesforceConnection, WorkspaceSpec
from tests.conftest import records_of, wait_until
from tests.factories import email_event
from tests.integration.test_delivery import seed_jane
from workers.local.stack import local_hosts
from workspaces.registry import Registry
from workspaces.secrets import Keyring, new_key

pytestmark = pytest.mark.integration


@pytest.fixture
def small_org(emulator):
    org_id = f"small-{uuid.uuid4().hex[:8]}"
    credentials = emulator.admin.create_org(org_id)
    admin = emulator.admin.for_org(org_id)
    seed_jane(admin)
    yield credentials, admin
    emulator.admin.delete_org(org_id)


def _register(stack, key: str, credentials: dict, ws: str) -> None:
    connection = SalesforceConnection(login_url=stack.emulator.url, username=credentials["username"],
                                      password=credentials["password"])
    Registry(stack.redis, Keyring(key), hosts=HostPolicy.parse(local_hosts(stack.emulator.url))).apply([WorkspaceSpec(id=ws, name="Small", salesforce=connection,
                                                             max_latency_seconds=0.3)])


@contextmanager
def _slow_writes(admin, latency_ms: int = 1500):
    """The org answers collection writes slowly while the block runs: a backlog made by the org's
    pace, not by how fast this machine reads the queue (a fast machine would read past it)."""
    fault = admin.add_fault("latency", path="composite/sobjects", latency_ms=latency_ms)
    try:
        yield
    finally:
        admin.delete_fault(fault)


def _worker_with_a_small_workspace_active(stack, credentials: dict) -> None:
    """A worker serving the environment's workspace and ws_small, which has just sent an event
    (it is active, as a steady trickle would be)."""
    key = new_key()
    _register(stack, key, credentials, "ws_small")
    seed_jane(stack.admin)
    stack.start_worker(concurrency=1, batch_size=50, secret_keys=key)
    warm = email_event(workspace_id="ws_small")
    stack.publish([warm])
    stack.wait_outcomes([warm["id"]], workspace="ws_small")


def test_given_one_workspace_flooding_the_queue_when_another_sends_then_its_events_pass_the_flood(stack, small_org):
    credentials, small_admin = small_org
    _worker_with_a_small_workspace_active(stack, credentials)

    flood = [email_event() for _ in range(8000)]
    stack.publish(flood)
    time.sleep(1.0)  # the worker is well into the flood
    small = [email_event(workspace_id="ws_small") for _ in range(5)]
    sent_at = time.monotonic()
    stack.publish(small)
    stack.wait_outcomes([e["id"] for e in small], timeout=60, workspace="ws_small")
    waited = time.monotonic() - sent_at

    written_of_flood = sum(records_of(stack.admin, "EmailMessage", [e["id"] for e in flood]).values())
    assert written_of_flood < len(flood), "the flood was already written: the test proves nothing"
    assert set(records_of(small_admin, "EmailMessage", [e["id"] for e in small]).values()) == {1}
    # and the flood itself is written, each event once, from its overflow (counted in the org: the
    # outcome log is capped, so it no longer holds the first of 8,000 outcomes)
    ids = [e["id"] for e in flood]
    wait_until(lambda: min(records_of(stack.admin, "EmailMessage", ids).values()) == 1, timeout=120,
               what="the whole flood written")
    flood_done = time.monotonic() - sent_at
    assert set(records_of(stack.admin, "EmailMessage", ids).values()) == {1}
    # behind a plain queue the small workspace would wait for the whole flood; passing it, it waits
    # only for the worker to read past the flood (a fraction of the time to write it)
    assert waited < 0.5 * flood_done, f"the small workspace waited {waited:.1f}s of the flood's {flood_done:.1f}s"
    wait_until(lambda: not stack.redis.exists("sfsync:{ws_acme}:overflow"), timeout=10, what="overflow drained")


def _hostile_items_of(workspace_event: dict) -> list[str]:
    """Queue items that name the flooding workspace in their `sfsync_workspace` header, as a sieve
    recognises them, but that no batch can use: a body that is not JSON, and a task that is not an
    event task."""
    import base64
    import json

    from events.wire import queue_item

    headers = {"sfsync_workspace": workspace_event["workspace_id"], "sfsync_events": 1}
    undecodable = json.loads(queue_item("sfsync.email.sent", "email.sent", [workspace_event], headers=headers))
    undecodable["body"] = base64.b64encode(b"{not json").decode()
    foreign = json.loads(queue_item("celery.chord_unlock", "email.sent", [workspace_event], headers=headers))
    return [json.dumps(undecodable), json.dumps(foreign)]


def test_given_unusable_items_inside_a_flood_when_the_flood_is_moved_aside_then_each_is_dead_lettered_once(
        stack, small_org):
    from events.deadletter import DeadLetterStore
    from events.overflow import Overflow

    credentials, _ = small_org
    _worker_with_a_small_workspace_active(stack, credentials)

    flood = [email_event() for _ in range(6000)]
    with _slow_writes(stack.admin):  # the flood outruns the worker on any machine: it is moved aside
        stack.publish(flood[:3000])
        for n in range(10):
            for item in _hostile_items_of(email_event(event_id=f"evt_hostile_{n}")):
                stack.redis.lpush("email.sent", item)
        stack.publish(flood[3000:])
        stack.publish([email_event(workspace_id="ws_small")])
        wait_until(lambda: Overflow(stack.redis).moved("ws_acme") > 0, timeout=60,
                   what="the flood moved aside", process=stack.processes[-1])

    ids = [e["id"] for e in flood]
    wait_until(lambda: min(records_of(stack.admin, "EmailMessage", ids).values()) == 1, timeout=180,
               what="the whole flood written")
    assert set(records_of(stack.admin, "EmailMessage", ids).values()) == {1}
    codes = wait_until(lambda: (c := DeadLetterStore(stack.redis).count_by_code()) and sum(c.values()) >= 20 and c,
                       timeout=60, what="the unusable items dead-lettered")
    assert dict(codes) == {"UNDECODABLE_MESSAGE": 10, "UNKNOWN_TASK": 10}


def test_given_a_backlog_of_two_workspaces_when_sorted_then_each_event_is_written_once_in_whole_batches(
        stack, small_org):
    # a quiet workspace's events spread thinly over a long backlog: while the backlog lasts the
    # worker sorts it (the busy workspace's messages, or the quiet one's, or both, into their
    # overflows: which depends on how much the consumer has read when it first looks); every event
    # of the quiet workspace is written once, in whole batches, long before the backlog around them
    from events.overflow import Overflow

    credentials, small_admin = small_org
    key = new_key()
    _register(stack, key, credentials, "ws_small")
    seed_jane(stack.admin)
    busy = [email_event() for _ in range(6000)]
    small = [email_event(workspace_id="ws_small") for _ in range(150)]
    for n, event in enumerate(small):  # one small message among every 40 of the busy workspace
        stack.publish(busy[40 * n:40 * (n + 1)])
        stack.publish([event])
    # given: a backlog that lasts, whatever the machine's speed — the busy org answers its writes
    # slowly until the worker has sorted the backlog, so the consumer cannot read past it first
    with _slow_writes(stack.admin):
        stack.start_worker(concurrency=1, batch_size=50, secret_keys=key)
        overflow = Overflow(stack.redis)
        wait_until(lambda: overflow.moved("ws_small") + overflow.moved("ws_acme") > 0, timeout=60,
                   what="the backlog sorted into an overflow", process=stack.processes[-1])
    started = time.monotonic()
    # the busy org keeps a pace of its own (its 120 batches take 12 s or more), so the comparison
    # below measures the order the worker writes in, not how fast this machine is
    with _slow_writes(stack.admin, latency_ms=100):
        stack.wait_outcomes([e["id"] for e in small], timeout=120, workspace="ws_small")
        small_done = time.monotonic() - started
        ids = [e["id"] for e in busy]
        wait_until(lambda: min(records_of(stack.admin, "EmailMessage", ids).values()) == 1, timeout=180,
                   what="the busy workspace's backlog written")
        busy_done = time.monotonic() - started
    writes = small_admin.state()["api_calls_by_route"].get("POST composite/sobjects", 0)
    assert set(records_of(small_admin, "EmailMessage", [e["id"] for e in small]).values()) == {1}
    # 150 events make 3 batches of 50, and they are not held back by the backlog around them
    assert writes <= 6, f"{writes} collection writes for 150 events of the quiet workspace"
    assert small_done < 0.5 * busy_done, f"the quiet workspace took {small_done:.1f}s of the backlog's {busy_done:.1f}s"


def _publish_without_workspace_header(stack, events: list[dict]) -> None:
    """Publish as an emitter that does not set `sfsync_workspace` does (bundles of 5, no header)."""
    from events.publish import bundles
    from events.wire import queue_item
    from schemas.events import parse_event

    pipe = stack.redis.pipeline(transaction=False)
    for task_name, queue, _, bodies in bundles([parse_event(e) for e in events]):
        pipe.lpush(queue, queue_item(task_name, queue, [bodies[0] if len(bodies) == 1 else bodies],
                                     headers={"sfsync_events": len(bodies)}))
    pipe.execute()


def test_given_a_flood_without_the_workspace_header_when_another_workspace_sends_then_all_is_written_once(
        stack, small_org):
    # an older emitter's messages: the worker reads each one's workspace from its body, sets the
    # flood aside in its overflow once read (the sieve, which reads only the header, leaves it on the
    # queue), and writes every event of both workspaces once
    from events.overflow import Overflow

    credentials, small_admin = small_org
    _worker_with_a_small_workspace_active(stack, credentials)
    flood = [email_event() for _ in range(4000)]
    small = [email_event(workspace_id="ws_small") for _ in range(5)]
    with _slow_writes(stack.admin):  # the flood outruns the worker on any machine
        _publish_without_workspace_header(stack, flood)
        _publish_without_workspace_header(stack, small)
        wait_until(lambda: Overflow(stack.redis).size("ws_acme") > 0, timeout=60,
                   what="the flood set aside once read", process=stack.processes[-1])
        stack.wait_outcomes([e["id"] for e in small], timeout=60, workspace="ws_small")

    ids = [e["id"] for e in flood]
    wait_until(lambda: min(records_of(stack.admin, "EmailMessage", ids).values()) == 1, timeout=180,
               what="the whole flood written")
    assert set(records_of(stack.admin, "EmailMessage", ids).values()) == {1}
    assert set(records_of(small_admin, "EmailMessage", [e["id"] for e in small]).values()) == {1}
    assert Overflow(stack.redis).moved("ws_acme") == 0, "the sieve moved messages that carry no workspace header"
