"""`sfsync status` tells an operator what is queued, failed, parked and spent — without secrets (issue #8)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from events.deadletter import DeadLetterStore
from events.publish import publisher_app
from tests.conftest import wait_until
from tests.factories import email_event

pytestmark = pytest.mark.integration


def test_given_traffic_when_status_asked_then_queues_outcomes_dead_letters_and_no_secret(stack):
    stack.admin.seed("Contact", [{"LastName": "Doe", "Email": "jane.doe@acme.example"}])
    worker = stack.start_worker()
    good, unknown = email_event(), email_event(to="nobody@nowhere.example")
    stack.publish([good, unknown])
    publisher_app(stack.redis_url).send_task("sfsync.email.sent", args=["{broken"], queue="email.sent",
                                             exchange="email.sent", routing_key="email.sent")
    stack.wait_outcomes([good["id"], unknown["id"]])
    # the broken message travels on its own connection: it may come after the two events
    wait_until(lambda: DeadLetterStore(stack.redis).count() == 1, 30, "the broken message dead-lettered", worker)
    # outcomes are recorded before a batch's messages are acknowledged: stopping the worker in between
    # would hand one back to the queue
    wait_until(lambda: stack.redis.hlen("unacked") == 0 and stack.redis.llen("email.sent") == 0, 30,
               "every message acknowledged", worker)
    worker.terminate()
    stack.publish([email_event()])  # stays queued: no worker runs now

    env = stack.env()
    result = subprocess.run([sys.executable, "-m", "workers.cli", "status", "--json"], env=env,
                            capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["queues"]["email.sent"] == 1
    assert report["outcomes"]["email.sent|written"] == 1
    assert report["outcomes"]["email.sent|skipped_no_contact"] == 1
    assert report["dead_letters"]["by_error_code"] == {"INVALID_JSON": 1}
    assert stack.emulator.token not in result.stdout
    human = subprocess.run([sys.executable, "-m", "workers.cli", "status"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert human.returncode == 0 and "email.sent" in human.stdout
    assert stack.emulator.token not in human.stdout


# --- many workspaces: one disconnected org is that workspace's trouble, not the fleet's -------------------

def _register(redis_client, *workspaces: str) -> None:
    from schemas.workspace import SalesforceConnection, WorkspaceSpec
    from workspaces.registry import Registry
    from workspaces.secrets import Keyring, new_key

    connection = SalesforceConnection(instance_url="https://org.my.salesforce.com", access_token="tok-not-used")
    Registry(redis_client, Keyring(new_key())).apply(
        [WorkspaceSpec(id=ws, salesforce=connection) for ws in workspaces], author="test")


def _readiness(redis_client, env_workspace: str = "ws_env"):
    from workers.observability.wiring import SalesforceReadiness

    return SalesforceReadiness(redis_client, env_workspace, every=0)


def test_given_no_registry_when_the_environments_org_is_disconnected_then_the_worker_is_not_ready(redis_client):
    from events.connection_state import ConnectionState

    readiness = _readiness(redis_client)
    assert readiness.reason() is None and readiness.note() is None
    ConnectionState(redis_client).mark_lost("ws_env", "INVALID_SESSION_ID", "Session expired or invalid")
    assert "INVALID_SESSION_ID" in readiness.reason()
    assert readiness.note() is None


def test_given_registered_workspaces_when_one_is_disconnected_then_the_worker_stays_ready_and_names_it(
        redis_client):
    from events.connection_state import ConnectionState

    _register(redis_client, "ws_a", "ws_b", "ws_c")
    state = ConnectionState(redis_client)
    state.mark_connected("ws_a")
    state.mark_lost("ws_b", "LOGIN_FAILED", "refresh token revoked")
    readiness = _readiness(redis_client)
    assert readiness.reason() is None
    note = readiness.note()
    assert "1 of 4 workspace(s)" in note and "ws_b (LOGIN_FAILED" in note
    assert "ws_a" not in note and "ws_c" not in note
    state.mark_connected("ws_b")
    assert readiness.note() is None


def test_given_many_disconnected_workspaces_then_readyz_names_the_first_twenty_and_counts_the_rest(redis_client):
    from events.connection_state import ConnectionState

    many = [f"ws_{n:02d}" for n in range(25)]
    _register(redis_client, *many)
    for ws in many:
        ConnectionState(redis_client).mark_lost(ws, "LOGIN_FAILED", "revoked")
    note = _readiness(redis_client).note()
    assert "25 of 26 workspace(s)" in note and note.endswith("and 5 more")
    assert "ws_19" in note and "ws_20" not in note


def test_given_a_ready_worker_with_a_note_when_readyz_is_asked_then_200_with_the_note_as_detail(redis_url):
    from workers.observability.health import Health, HealthState, RedisCheck

    state = HealthState(heartbeat_required=False)
    state.mark_ready()
    state.notes.append(lambda: "salesforce disconnected in 1 of 2 workspace(s): ws_b (LOGIN_FAILED, 3s)")
    state.notes.append(lambda: None)
    ok, body = Health(state, RedisCheck(redis_url)).readiness()
    assert ok and body["status"] == "ready"
    assert body["detail"] == "salesforce disconnected in 1 of 2 workspace(s): ws_b (LOGIN_FAILED, 3s)"


def test_given_registered_workspaces_when_status_asked_then_one_line_each_with_connection_breaker_and_overflow(
        stack):
    from events.connection_state import ConnectionState
    from events.overflow import Overflow
    from workers.breaker import Breakers

    _register(stack.redis, "ws_a", "ws_b")
    ConnectionState(stack.redis).mark_connected("ws_a")
    ConnectionState(stack.redis).mark_lost("ws_b", "LOGIN_FAILED", "refresh token revoked")
    Breakers(stack.redis).trip("ws_a", "the org timed out [3 times]")
    Overflow(stack.redis).spill([("ws_a", Overflow.entry("sfsync.email.sent", "email.sent", "t1", [{}], {}))] * 3)
    env = stack.env()
    env.pop("SFSYNC_SALESFORCE_INSTANCE_URL")  # a fleet served from the registry alone
    env.pop("SFSYNC_SALESFORCE_ACCESS_TOKEN")

    result = subprocess.run([sys.executable, "-m", "workers.cli", "status", "--json"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = {line["workspace_id"]: line for line in json.loads(result.stdout)["workspaces"]}
    assert set(lines) == {"ws_a", "ws_b"}
    assert lines["ws_a"]["salesforce"] == "connected" and lines["ws_a"]["overflow"] == 3
    assert lines["ws_a"]["breaker_open_seconds"] is not None
    assert lines["ws_b"]["salesforce"] == "disconnected" and lines["ws_b"]["code"] == "LOGIN_FAILED"
    assert lines["ws_b"]["breaker_open_seconds"] is None and lines["ws_b"]["overflow"] == 0
    human = subprocess.run([sys.executable, "-m", "workers.cli", "status"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert human.returncode == 0, human.stderr
    text = " ".join(human.stdout.split())
    assert re.search(r"workspace ws_a: connected; breaker open for \d+s \(the org timed out \[3 times\]\); "
                     r"overflow 3", text), text
    assert re.search(r"workspace ws_b: disconnected \(LOGIN_FAILED\) for \d+s; overflow 0", text), text
