"""A refused login is not tried again and again: the integration user is never locked out by sfsync."""

from __future__ import annotations

import time
import uuid

import pytest
from click.testing import CliRunner

from events.connection_state import ConnectionState
from events.keys import key
from events.parking import ParkingLot
from schemas.salesforce_hosts import HostPolicy
from schemas.workspace import SalesforceConnection, WorkspaceSpec
from tests.conftest import records_of, wait_until
from tests.factories import SYNC_PLAY, email_event
from workers.cli import main
from workers.local.stack import beat_process, start_worker
from workers.login_gate import LOGIN_RETRY_AFTER, MAX_REFUSED_LOGINS, fingerprint
from workspaces.registry import Registry
from workspaces.secrets import Keyring, new_key

pytestmark = pytest.mark.integration

WS = "ws_strict"
HOSTS = HostPolicy.parse("127.0.0.1:*")


def _registered(stack, connection: SalesforceConnection) -> tuple[str, Registry]:
    keys = new_key()
    registry = Registry(stack.redis, Keyring(keys), hosts=HOSTS)
    registry.apply([WorkspaceSpec(id=WS, salesforce=connection, max_latency_seconds=0.3)], author="test")
    return keys, registry


def _start(stack, keys: str, concurrency: int = 1):
    """A worker and beat serving the registry's workspaces (and no environment credentials)."""
    env = stack.env(secret_keys=keys, park_interval=1)
    env.pop("SFSYNC_SALESFORCE_INSTANCE_URL")
    env.pop("SFSYNC_SALESFORCE_ACCESS_TOKEN")
    worker = start_worker(env, concurrency=concurrency)
    stack.processes.append(worker)
    stack.processes.append(beat_process(env).start())
    return worker


def _strict_org(stack):
    """A new org of the emulator that locks its user out after 3 invalid logins, and its admin client."""
    name = f"strict-{uuid.uuid4().hex[:8]}"
    return stack.admin.create_org(name, lockout_after=3), stack.admin.for_org(name)


def _failed_logins(admin, username: str) -> int:
    return admin.state()["failed_logins"].get(username.lower(), 0)


def _cli(stack, keys: str, *args: str):
    env = {"SFSYNC_REDIS_URL": stack.redis_url, "SFSYNC_SECRET_KEYS": keys,
           "SFSYNC_SALESFORCE_ALLOWED_HOSTS": "127.0.0.1:*"}
    return CliRunner().invoke(main, list(args), env=env)


def test_given_a_wrong_password_then_two_logins_hours_apart_then_none_until_new_credentials(stack):
    # given an org that locks its user after 3 invalid logins, registered with a wrong password
    org, admin = _strict_org(stack)
    wrong = SalesforceConnection(login_url=stack.emulator.url, username=org["username"], password="wrong-password")
    keys, registry = _registered(stack, wrong)
    worker = _start(stack, keys, concurrency=2)

    # when events keep coming for a while (batches, beat's releases every 15 s, probes)
    events = []
    for _ in range(6):
        batch = [email_event(workspace_id=WS, to=f"p{time.monotonic_ns()}@strict.example", play=SYNC_PLAY)]
        stack.publish(batch)
        events += batch
        time.sleep(1.5)
    wait_until(lambda: ParkingLot(stack.redis).count(WS) == len(events), 30, "every event parked", worker)

    # then one login was tried, not one per batch or release
    assert _failed_logins(admin, org["username"]) == 1
    state = ConnectionState(stack.redis).read(WS)
    assert state["state"] == "disconnected" and state["login_refused"] == "1"

    # when the retry's time comes (the clock moved on by the retry interval) and more events come
    stack.redis.hset(key(WS, "salesforce"), "login_refused_at", f"{time.time() - LOGIN_RETRY_AFTER - 1:.3f}")
    more = [email_event(workspace_id=WS, to=f"p{n}{time.monotonic_ns()}@strict.example", play=SYNC_PLAY)
            for n in range(2)]
    stack.publish(more)
    events += more
    wait_until(lambda: _failed_logins(admin, org["username"]) == 2, 45, "the second (last) try", worker)
    stack.publish([email_event(workspace_id=WS, to=f"p{time.monotonic_ns()}@strict.example", play=SYNC_PLAY)
                   for _ in range(3)])
    time.sleep(16)  # those batches, and beat's releases (every 15 s)

    # then no third try: the user is not locked out, and status and the console say what to do
    assert _failed_logins(admin, org["username"]) == MAX_REFUSED_LOGINS
    assert admin.state()["locked_out"] == []
    status = _cli(stack, keys, "status")
    assert "logins stopped after 2 refused tries" in " ".join(status.output.split())
    assert records_of(admin, "EmailMessage", [e["id"] for e in events]) == {e["id"]: 0 for e in events}

    # when new credentials are given, the events are written (once each)
    right = SalesforceConnection(login_url=stack.emulator.url, username=org["username"], password=org["password"])
    registry.apply([WorkspaceSpec(id=WS, salesforce=right, max_latency_seconds=0.3)], author="test")
    outcomes = stack.wait_outcomes([e["id"] for e in events], timeout=60, workspace=WS)
    assert {o["outcome"] for o in outcomes.values()} == {"written"}
    assert "login_refused" not in ConnectionState(stack.redis).read(WS)


def test_given_logins_stopped_when_an_operator_tests_a_connection_that_works_then_the_parked_events_go_out(stack):
    # given a workspace whose logins stopped after refused ones (the org refused them for a while)
    org, admin = _strict_org(stack)
    connection = SalesforceConnection(login_url=stack.emulator.url, username=org["username"], password=org["password"])
    keys, _ = _registered(stack, connection)
    stack.redis.hset(key(WS, "salesforce"), mapping={
        "state": "disconnected", "code": "LOGIN_FAILED", "reason": "refused", "since": f"{time.time():.3f}",
        "login_refused": str(MAX_REFUSED_LOGINS), "login_refused_at": f"{time.time():.3f}",
        "login_fingerprint": fingerprint(connection)})
    worker = _start(stack, keys)
    events = [email_event(workspace_id=WS, to=f"p{n}-{time.monotonic_ns()}@strict.example", play=SYNC_PLAY)
              for n in range(3)]
    stack.publish(events)
    wait_until(lambda: ParkingLot(stack.redis).count(WS) == 3, 30, "every event parked", worker)
    time.sleep(3)
    assert _failed_logins(admin, org["username"]) == 0 and admin.state()["token_grants"] == {}

    # when an operator runs `sfsync workspaces test`
    tested = _cli(stack, keys, "workspaces", "test", WS)

    # then it logs in, says the workers' logins start again, and the parked events are written
    assert tested.exit_code == 0, tested.output
    assert "start again" in tested.output
    outcomes = stack.wait_outcomes([e["id"] for e in events], timeout=60, workspace=WS)
    assert {o["outcome"] for o in outcomes.values()} == {"written"}
