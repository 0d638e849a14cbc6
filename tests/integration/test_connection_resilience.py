"""An org that is down at start-up, or whose session ends: events wait, nothing is retried to death or lost."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest
from click.testing import CliRunner

from events.deadletter import DeadLetterStore
from events.parking import ParkingLot
from events.redis_conn import free_port
from tests.conftest import TEST_MAPPINGS, WORKSPACE, records_of, wait_until
from tests.factories import email_event
from workers.cli import main as cli
from workers.local.stack import ManagedProcess

pytestmark = pytest.mark.integration


def _get(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return 0, {}






def checked_worker(stack, **overrides) -> ManagedProcess:
    """The real `sfsync worker`, with its start-up check (the local stack's test worker skips it)."""
    argv = [sys.executable, "-m", "workers.cli", "worker", "--concurrency", "1", "--loglevel", "INFO",
            "--without-heartbeat", "--hostname", f"checked-{time.monotonic_ns()}@%h"]
    process = ManagedProcess(argv, stack.env(**overrides)).start()
    stack.processes.append(process)
    return process


@pytest.mark.parametrize("outage", [pytest.param(12, id="12s"), pytest.param(30, id="30s", marks=pytest.mark.slow)])
def test_given_salesforce_down_at_start_up_when_it_recovers_then_the_worker_waits_not_ready_and_writes_everything(
        stack, outage):
    """A worker and beat started during an outage (a rolling deploy in a maintenance window)."""
    from workers.local.stack import beat_process

    stack.admin.seed("Contact", [{"LastName": "Doe", "Email": "jane.doe@acme.example"}])
    stack.admin.add_fault("outage", seconds=outage)
    ends_at = time.monotonic() + outage
    health = free_port()
    worker = checked_worker(stack, health_port=health)
    stack.processes.append(beat_process(stack.env()).start())
    events = [email_event() for _ in range(10)]
    stack.publish(events)

    # while the org answers 503 the worker is alive, not ready, says why, and has not exited
    live = wait_until(lambda: _get(health, "/livez")[0] == 200 and _get(health, "/readyz"), 20,
                      "health endpoints", worker)
    code, ready = _get(health, "/readyz")
    assert code == 503 and "waiting for Salesforce" in ready["reason"] and "SERVER_UNAVAILABLE" in ready["reason"]
    assert live and worker.running

    outcomes = stack.wait_outcomes([e["id"] for e in events], timeout=outage + 60)
    written_after = time.monotonic() - ends_at
    print(f"\nstarted during a {outage}s outage: every event written {written_after:.0f}s after it ended")
    assert written_after <= 60
    assert {o["outcome"] for o in outcomes.values()} == {"written"}
    assert set(records_of(stack.admin, "EmailMessage", [e["id"] for e in events]).values()) == {1}
    assert DeadLetterStore(stack.redis).count() == 0
    wait_until(lambda: _get(health, "/readyz")[0] == 200, 30, "ready after recovery", worker)


def test_given_a_mapping_that_does_not_fit_when_started_then_the_worker_stops_with_the_named_error(stack, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(TEST_MAPPINGS.read_text().replace(
        "  alternate_email_fields:", "    - {source: company, target: Product_Interest__c}\n  alternate_email_fields:"))
    worker = checked_worker(stack, mappings=broken)
    wait_until(lambda: not worker.running, 60, "the worker to stop", worker)
    assert worker.proc.returncode != 0
    assert "Product_Interest__c" in worker.output() and "multi" in worker.output().lower()


def test_given_password_login_when_the_session_expires_then_it_logs_in_again_and_nothing_is_retried(stack):
    org = stack.admin.create_org(f"pw-{uuid.uuid4().hex[:8]}")
    admin = stack.admin.for_org(org["id"])
    admin.seed("Contact", [{"LastName": "Doe", "Email": "jane.doe@acme.example"}])
    from workers.local.stack import start_worker

    env = stack.env(salesforce_username=org["username"], salesforce_password=org["password"],
                    salesforce_domain=stack.emulator.url)
    env.pop("SFSYNC_SALESFORCE_INSTANCE_URL")
    env.pop("SFSYNC_SALESFORCE_ACCESS_TOKEN")
    stack.processes.append(start_worker(env))
    first = [email_event() for _ in range(3)]
    stack.publish(first)
    stack.wait_outcomes([e["id"] for e in first])

    admin.expire_sessions()
    second = [email_event() for _ in range(3)]
    stack.publish(second)
    outcomes = stack.wait_outcomes([e["id"] for e in second])

    assert {o["outcome"] for o in outcomes.values()} == {"written"}
    labels = [e["outcome"] for e in stack.recent_outcomes(WORKSPACE, 1000)]
    assert "retried" not in labels and "parked" not in labels
    assert set(records_of(admin, "EmailMessage", [e["id"] for e in first + second]).values()) == {1}


def fresh_token(base_url: str, org: dict) -> str:
    """A new access token for the org's integration user (OAuth password grant)."""
    import requests

    answer = requests.post(f"{base_url}/services/oauth2/token", timeout=10, data={
        "grant_type": "password", "username": org["username"], "password": org["password"],
        "client_id": org["client_id"], "client_secret": org["client_secret"]})
    answer.raise_for_status()
    return answer.json()["access_token"]


def test_given_an_access_token_that_expires_when_events_arrive_then_parked_and_released_once_a_new_token_works(
        stack, tmp_path, monkeypatch):
    from schemas.settings import load_settings
    from workers.app import create_app
    from workers.local.stack import start_worker
    from workers.parked import release_parked

    org = stack.admin.create_org(f"tok-{uuid.uuid4().hex[:8]}")
    admin = stack.admin.for_org(org["id"])
    admin.seed("Contact", [{"LastName": "Doe", "Email": "jane.doe@acme.example"}])
    token_file = tmp_path / "token"
    token_file.write_text(fresh_token(stack.emulator.url, org))
    health = free_port()
    env = {**stack.env(park_interval=1, health_port=health), "SFSYNC_SALESFORCE_ACCESS_TOKEN_FILE": str(token_file)}
    env.pop("SFSYNC_SALESFORCE_ACCESS_TOKEN")
    worker = start_worker(env)
    stack.processes.append(worker)
    warm = email_event()
    stack.publish([warm])
    stack.wait_outcomes([warm["id"]])

    admin.expire_sessions()
    held = [email_event() for _ in range(3)]
    stack.publish(held)
    lot = ParkingLot(stack.redis)
    wait_until(lambda: lot.count(WORKSPACE) == 3, 30, "three parked events", worker)
    assert DeadLetterStore(stack.redis).count() == 0
    status = json.loads(CliRunner().invoke(cli, ["status", "--json"], env=env).output)
    assert status["salesforce_connection"]["state"] == "disconnected"
    code, ready = _get(health, "/readyz")
    assert code == 503 and "disconnected" in ready["reason"]
    monkeypatch.setenv("SFSYNC_SALESFORCE_ACCESS_TOKEN_FILE", str(token_file))  # beat's own environment
    app = create_app(load_settings(env))
    assert release_parked(app, now=time.time() + 120, recheck_after=0) == 0  # the token is still refused

    # the operator puts a fresh token in the secret file; beat's release finds that it works
    token_file.write_text(fresh_token(stack.emulator.url, org))
    assert release_parked(app, now=time.time() + 120, recheck_after=0) == 3
    outcomes = stack.wait_outcomes([e["id"] for e in held], timeout=60)
    assert {o["outcome"] for o in outcomes.values()} == {"written"}
    assert set(records_of(admin, "EmailMessage", [e["id"] for e in held]).values()) == {1}
    wait_until(lambda: _get(health, "/readyz")[0] == 200, 30, "ready again", worker)


def _listening_on(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp shows them) of the sockets listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_given_a_monitoring_host_then_the_health_and_metrics_endpoints_bind_only_there(stack):
    health, metrics = free_port(), free_port()
    worker = stack.start_worker(health_port=health, metrics_port=metrics, monitoring_host="127.0.0.1")
    wait_until(lambda: _get(health, "/livez")[0] == 200, 30, "/livez answering", worker)

    assert _listening_on(health) == {"0100007F"}  # 127.0.0.1, and nothing else
    assert _listening_on(metrics) == {"0100007F"}
