"""Many workspaces on one fleet: each org gets its own events and mappings; one org's trouble stays its own."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from events.deadletter import DeadLetterStore
from events.parking import ParkingLot
from schemas.salesforce_hosts import HostPolicy
from schemas.workspace import SalesforceConnection, WorkspaceSpec
from tests.conftest import records_of, wait_until
from tests.factories import SYNC_PLAY, email_event
from workers.breaker import Breakers
from workspaces.registry import MappingVersions, Registry
from workspaces.secrets import Keyring, new_key

#: the emulator speaks plain http on a loopback port
HOSTS = HostPolicy.parse("127.0.0.1:*")

pytestmark = pytest.mark.integration

PW, OAUTH = "ws_pw", "ws_oauth"
#: seconds a workspace's events wait for company in these tests
LATENCY = 0.5


def mappings(*, title: bool) -> dict:
    """Contact mappings that write the person's title, or leave it out."""
    fields = [{"source": "first_name", "target": "FirstName"}, {"source": "last_name", "target": "LastName"}]
    if title:
        fields.append({"source": "title", "target": "Title"})
    return {"contact": {"fields": fields}}


@dataclass
class Fleet:
    """Two orgs in the emulator, two workspaces in the registry, and the means to run workers on them."""

    stack: Any
    keys: str
    registry: Registry
    orgs: dict[str, dict]
    apps: dict[str, dict]

    def admin(self, ws: str):
        return self.stack.admin.for_org(self.orgs[ws]["id"])

    def env(self, keys: str | None = None, **overrides) -> dict[str, str]:
        """A worker's environment: the registry's key(s), no Salesforce credentials of its own."""
        env = self.stack.env(secret_keys=keys or self.keys, **overrides)
        env.pop("SFSYNC_SALESFORCE_INSTANCE_URL")
        env.pop("SFSYNC_SALESFORCE_ACCESS_TOKEN")
        return env

    def start_worker(self, keys: str | None = None, **overrides):
        from workers.local.stack import start_worker

        process = start_worker(self.env(keys, **overrides))
        self.stack.processes.append(process)
        return process

    def start_beat(self, keys: str | None = None):
        from workers.local.stack import beat_process

        process = beat_process(self.env(keys)).start()
        self.stack.processes.append(process)
        return process

    def oauth_connection(self, refresh_token: str | None = None) -> SalesforceConnection:
        app = self.apps[OAUTH]
        token = refresh_token or self.admin(OAUTH).issue_refresh_token(client_id=app["client_id"])
        return SalesforceConnection(client_id=app["client_id"], client_secret=app["client_secret"],
                                    refresh_token=token, login_url=self.stack.emulator.url)

    def password_connection(self) -> SalesforceConnection:
        org = self.orgs[PW]
        return SalesforceConnection(username=org["username"], password=org["password"],
                                    login_url=self.stack.emulator.url)

    def events(self, ws: str, n: int, **fields) -> list[dict]:
        """`n` email events of `ws`, each to a new person (so each creates its own Contact)."""
        return [email_event(workspace_id=ws, to=f"p{uuid.uuid4().hex[:10]}@{ws.replace('_', '-')}.example",
                            play=SYNC_PLAY, **fields) for _ in range(n)]

    def outcomes(self, ws: str, events: list[dict], timeout: float = 60.0) -> dict[str, dict]:
        return self.stack.wait_outcomes([e["id"] for e in events], timeout=timeout, workspace=ws)

    def labels(self, ws: str) -> list[str]:
        return [e["outcome"] for e in self.stack.recent_outcomes(ws, 5000)]


@pytest.fixture
def fleet(stack) -> Fleet:
    suffix = uuid.uuid4().hex[:8]
    orgs = {PW: stack.admin.create_org(f"pw-{suffix}"), OAUTH: stack.admin.create_org(f"oa-{suffix}")}
    apps = {OAUTH: stack.admin.create_connected_app(org=orgs[OAUTH]["id"])}
    keys = new_key()
    fleet = Fleet(stack, keys, Registry(stack.redis, Keyring(keys), hosts=HOSTS), orgs, apps)
    fleet.registry.apply([
        WorkspaceSpec(id=PW, name="Password Co", salesforce=fleet.password_connection(),
                      max_latency_seconds=LATENCY, mappings=mappings(title=True)),
        WorkspaceSpec(id=OAUTH, name="OAuth Co", salesforce=fleet.oauth_connection(),
                      max_latency_seconds=LATENCY, mappings=mappings(title=False)),
    ], author="test")
    return fleet


def contacts_by_email(admin) -> dict[str, dict]:
    return {c.get("Email"): c for c in admin.records("Contact")}


def written_once(fleet: Fleet, ws: str, events: list[dict]) -> bool:
    counts = records_of(fleet.admin(ws), "EmailMessage", [e["id"] for e in events])
    return set(counts.values()) == {1}


# --- each workspace its own org and mappings -------------------------------------------------------------

def test_given_two_workspaces_when_their_events_come_interleaved_then_each_lands_in_its_own_org_with_its_mappings(
        fleet):
    fleet.start_worker()
    pw, oauth = fleet.events(PW, 6), fleet.events(OAUTH, 6)
    fleet.stack.publish([e for pair in zip(pw, oauth) for e in pair])

    assert {o["outcome"] for o in fleet.outcomes(PW, pw).values()} == {"written"}
    assert {o["outcome"] for o in fleet.outcomes(OAUTH, oauth).values()} == {"written"}
    assert written_once(fleet, PW, pw) and written_once(fleet, OAUTH, oauth)
    assert set(records_of(fleet.admin(PW), "EmailMessage", [e["id"] for e in oauth]).values()) == {0}
    assert set(records_of(fleet.admin(OAUTH), "EmailMessage", [e["id"] for e in pw]).values()) == {0}
    pw_contacts, oauth_contacts = contacts_by_email(fleet.admin(PW)), contacts_by_email(fleet.admin(OAUTH))
    assert {pw_contacts[e["data"]["person"]["emails"][0]].get("Title") for e in pw} == {"VP Sales"}
    assert {oauth_contacts[e["data"]["person"]["emails"][0]].get("Title") for e in oauth} == {None}
    assert not set(pw_contacts) & set(oauth_contacts)
    assert DeadLetterStore(fleet.stack.redis).count() == 0


def test_given_a_new_mappings_version_when_events_follow_then_they_use_it_without_a_worker_restart(fleet):
    fleet.start_worker()
    before = fleet.events(OAUTH, 3)
    fleet.stack.publish(before)
    fleet.outcomes(OAUTH, before)

    assert MappingVersions(fleet.stack.redis).set(OAUTH, mappings(title=True), author="test") == 2
    time.sleep(1.5)  # workers see a registry change within a second
    after = fleet.events(OAUTH, 3)
    fleet.stack.publish(after)
    assert {o["outcome"] for o in fleet.outcomes(OAUTH, after).values()} == {"written"}

    contacts = contacts_by_email(fleet.admin(OAUTH))
    assert {contacts[e["data"]["person"]["emails"][0]].get("Title") for e in before} == {None}
    assert {contacts[e["data"]["person"]["emails"][0]].get("Title") for e in after} == {"VP Sales"}


# --- sessions and refresh tokens -------------------------------------------------------------------------

def test_given_short_sessions_when_they_expire_then_the_oauth_workspace_refreshes_and_nothing_is_retried(fleet):
    admin = fleet.admin(OAUTH)
    admin.set_session_ttl(2)
    fleet.start_worker()
    waves = []
    for n in range(4):
        if n == 2:
            admin.expire_sessions()
        wave = fleet.events(OAUTH, 3)
        fleet.stack.publish(wave)
        fleet.outcomes(OAUTH, wave)
        waves += wave
        time.sleep(2.5)  # the session of the wave before has expired

    assert admin.token_grants()["refresh_token"] >= 3
    assert set(fleet.labels(OAUTH)) == {"written"}
    assert written_once(fleet, OAUTH, waves)
    assert ParkingLot(fleet.stack.redis, "retries").count(OAUTH) == 0
    assert ParkingLot(fleet.stack.redis).count(OAUTH) == 0


def test_given_revoked_refresh_tokens_when_events_come_then_they_wait_parked_until_reconnected_then_written_once(
        fleet):
    from events.connection_state import ConnectionState

    fleet.start_worker()
    fleet.start_beat()
    warm = fleet.events(OAUTH, 2)
    fleet.stack.publish(warm)
    fleet.outcomes(OAUTH, warm)

    fleet.admin(OAUTH).revoke_refresh_tokens()
    held, other = fleet.events(OAUTH, 5), fleet.events(PW, 5)
    fleet.stack.publish([e for pair in zip(held, other) for e in pair])
    assert {o["outcome"] for o in fleet.outcomes(PW, other).values()} == {"written"}
    lot = ParkingLot(fleet.stack.redis)
    wait_until(lambda: lot.count(OAUTH) == 5, 30, "five parked events", fleet.stack.processes[0])
    state = ConnectionState(fleet.stack.redis).read(OAUTH)
    assert state["state"] == "disconnected" and state["code"] in ("LOGIN_FAILED", "INVALID_SESSION_ID")
    time.sleep(3)  # parked, not retried: nothing moves
    assert lot.count(OAUTH) == 5 and DeadLetterStore(fleet.stack.redis).count() == 0
    assert "retried" not in fleet.labels(OAUTH)

    fleet.registry.connect(OAUTH, fleet.oauth_connection())
    outcomes = fleet.outcomes(OAUTH, held, timeout=30)  # beat's next release, not the 60 s park
    assert {o["outcome"] for o in outcomes.values()} == {"written"}
    assert written_once(fleet, OAUTH, warm + held) and written_once(fleet, PW, other)
    assert lot.count(OAUTH) == 0 and DeadLetterStore(fleet.stack.redis).count() == 0
    wait_until(lambda: ConnectionState(fleet.stack.redis).read(OAUTH)["state"] == "connected", 10, "connected")


def test_given_one_workspaces_token_revoked_then_every_worker_stays_ready_and_readyz_names_that_workspace(fleet):
    import json
    import urllib.request

    from events.connection_state import ConnectionState
    from events.redis_conn import free_port

    health = free_port()
    worker = fleet.start_worker(health_port=health)
    warm = fleet.events(OAUTH, 1) + fleet.events(PW, 1)
    fleet.stack.publish(warm)
    fleet.outcomes(OAUTH, warm[:1])
    fleet.outcomes(PW, warm[1:])

    fleet.admin(OAUTH).revoke_refresh_tokens()
    fleet.stack.publish(fleet.events(OAUTH, 2))
    state = ConnectionState(fleet.stack.redis)
    wait_until(lambda: (state.read(OAUTH) or {}).get("state") == "disconnected", 30, "ws_oauth disconnected", worker)

    def readyz() -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{health}/readyz", timeout=3) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    wait_until(lambda: OAUTH in readyz()[1].get("detail", ""), 15, "/readyz naming ws_oauth", worker)
    code, body = readyz()
    assert code == 200 and body["status"] == "ready", body
    assert "salesforce disconnected in 1 of 2 workspace(s)" in body["detail"] and PW not in body["detail"]


# --- one org down ----------------------------------------------------------------------------------------

def written_at(fleet: Fleet, ws: str, events: list[dict]) -> dict[str, float]:
    """Event id -> wall-clock time its final outcome was recorded (the outcome stream's entry id)."""
    wanted = {e["id"] for e in events}
    times = {}
    for entry_id, fields in fleet.stack.redis.xrange(f"sfsync:{{{ws}}}:outcomes"):
        if fields.get("event_id") in wanted and fields.get("outcome") == "written":
            raw = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            times.setdefault(fields["event_id"], int(raw.split("-")[0]) / 1000)
    return times


@pytest.mark.slow
def test_given_one_org_down_then_the_other_keeps_its_latency_the_broken_org_sees_few_calls_and_gets_its_backlog(
        fleet):
    fleet.start_worker()
    warm = fleet.events(PW, 2) + fleet.events(OAUTH, 2)
    fleet.stack.publish(warm)
    fleet.outcomes(PW, warm[:2])
    fleet.outcomes(OAUTH, warm[2:])

    broken = fleet.admin(PW)
    fault = broken.add_fault("outage")
    breakers = Breakers(fleet.stack.redis)
    backlog, latencies, started = [], [], time.monotonic()
    # 12 s from the breaker's opening: past its probes at 2, 4 and 8 s, before the one at 16 s
    while not (state := breakers.state(PW)) or time.time() < float(state["opened_at"]) + 12:
        assert time.monotonic() - started < 30, "the broken org's breaker never opened"
        waiting, healthy = fleet.events(PW, 3), fleet.events(OAUTH, 3)
        sent = time.time()
        fleet.stack.publish([e for pair in zip(waiting, healthy) for e in pair])
        fleet.outcomes(OAUTH, healthy, timeout=10)
        latencies += [at - sent for at in written_at(fleet, OAUTH, healthy).values()]
        backlog += waiting
        time.sleep(1.0)
    calls_in_outage = next(f["hits"] for f in broken.faults() if f["id"] == fault)
    broken.delete_fault(fault)
    ended = time.time()

    outcomes = fleet.outcomes(PW, backlog, timeout=60)
    recovered = max(written_at(fleet, PW, backlog).values()) - ended
    print(f"\nhealthy org's worst latency {max(latencies):.2f}s; {calls_in_outage} calls to the broken org; "
          f"backlog written {recovered:.1f}s after the outage")
    assert len(latencies) >= 15 and max(latencies) <= LATENCY + 1.0
    assert calls_in_outage <= 8
    assert {o["outcome"] for o in outcomes.values()} == {"written"}
    assert recovered <= 8.0
    assert written_once(fleet, PW, backlog) and DeadLetterStore(fleet.stack.redis).count() == 0


# --- removing a workspace --------------------------------------------------------------------------------

def keys_of(client, ws: str) -> set[str]:
    return {k.decode() if isinstance(k, bytes) else k for k in client.scan_iter(match=f"sfsync:{{{ws}}}:*")}


def test_given_two_workspaces_with_data_when_one_is_removed_then_all_its_data_goes_and_the_others_stays(fleet):
    fleet.start_worker()
    for ws in (PW, OAUTH):
        written = fleet.events(ws, 3)
        fleet.admin(ws).add_validation_rule("EmailMessage", "Subject", "equals", "Blocked", "blocked subject")
        refused = fleet.events(ws, 1, subject="Blocked")
        fleet.stack.publish(written + refused)
        outcomes = fleet.outcomes(ws, written + refused)
        assert outcomes[refused[0]["id"]]["outcome"] == "dead_lettered"
    fleet.registry.set_enabled(PW, False)
    time.sleep(1.5)
    parked = fleet.events(PW, 2)
    fleet.stack.publish(parked)
    lot = ParkingLot(fleet.stack.redis)
    wait_until(lambda: lot.count(PW) == 2, 30, "two parked events", fleet.stack.processes[0])
    fleet.stack.processes[0].terminate(timeout=20)

    client, store = fleet.stack.redis, DeadLetterStore(fleet.stack.redis)
    others_before = keys_of(client, OAUTH)
    assert {"ledger", "outcomes", "parked", "mappings"} <= {k.split(":")[2] for k in keys_of(client, PW)}
    assert {r.workspace_id for r in store.iter_all()} == {PW, OAUTH}

    deleted = fleet.registry.remove(PW)

    assert keys_of(client, PW) == set() and deleted["registry entry"] == 1
    assert PW not in fleet.registry.ids() and not client.hexists("sfsync:{_registry}:secrets", PW)
    assert {r.workspace_id for r in store.iter_all()} == {OAUTH}
    assert PW not in lot.workspaces()
    assert keys_of(client, OAUTH) == others_before
    assert fleet.registry.get(OAUTH).salesforce is not None


# --- keys of the registry's secrets ----------------------------------------------------------------------

def test_given_credentials_sealed_with_one_key_when_a_new_key_is_rotated_in_then_they_read_with_both_then_the_new_alone(
        fleet):
    old, new = fleet.keys, new_key()
    both = Registry(fleet.stack.redis, Keyring(f"{new},{old}"), hosts=HOSTS)
    assert both.get(PW).salesforce == fleet.registry.get(PW).salesforce

    assert both.rotate_keys() == 2
    fresh = Registry(fleet.stack.redis, Keyring(new), hosts=HOSTS)
    assert fresh.get(PW).salesforce.password.get_secret_value() == fleet.orgs[PW]["password"]
    assert fresh.get(OAUTH).salesforce.refresh_token is not None
    fleet.start_worker(keys=new)
    events = fleet.events(PW, 2) + fleet.events(OAUTH, 2)
    fleet.stack.publish(events)
    assert {o["outcome"] for o in fleet.outcomes(PW, events[:2]).values()} == {"written"}
    assert {o["outcome"] for o in fleet.outcomes(OAUTH, events[2:]).values()} == {"written"}


def test_given_a_worker_with_a_wrong_key_when_events_come_then_they_wait_parked_with_a_clear_error_until_it_is_right(
        fleet):
    from schemas.settings import load_settings
    from workers.app import create_app
    from workers.parked import release_parked

    wrong = fleet.start_worker(keys=new_key())
    events = fleet.events(PW, 3)
    fleet.stack.publish(events)
    lot = ParkingLot(fleet.stack.redis)
    wait_until(lambda: lot.count(PW) == 3, 30, "three parked events", wrong)
    time.sleep(2)
    assert wrong.running and DeadLetterStore(fleet.stack.redis).count() == 0
    log = wrong.output()
    assert "ws_pw" in log and "SFSYNC_SECRET_KEYS" in log and "Traceback" not in log
    assert fleet.orgs[PW]["password"] not in log
    wrong.terminate(timeout=20)

    fleet.start_worker()
    app = create_app(load_settings(fleet.env()))
    assert release_parked(app, now=time.time() + 120, recheck_after=0) == 3
    assert {o["outcome"] for o in fleet.outcomes(PW, events).values()} == {"written"}
    assert written_once(fleet, PW, events)


# --- disabled and unknown workspaces ---------------------------------------------------------------------

def test_given_a_disabled_workspace_when_its_events_come_then_they_wait_parked_and_enabling_releases_them(fleet):
    from schemas.settings import load_settings
    from workers.app import create_app
    from workers.parked import release_parked

    fleet.start_worker()
    fleet.start_beat()
    fleet.registry.set_enabled(PW, False)
    time.sleep(1.5)  # workers see a registry change within a second
    held, other = fleet.events(PW, 4), fleet.events(OAUTH, 4)
    fleet.stack.publish([e for pair in zip(held, other) for e in pair])
    assert {o["outcome"] for o in fleet.outcomes(OAUTH, other).values()} == {"written"}
    lot = ParkingLot(fleet.stack.redis)
    wait_until(lambda: lot.count(PW) == 4, 30, "four parked events", fleet.stack.processes[0])
    app = create_app(load_settings(fleet.env()))
    assert release_parked(app, now=time.time() + 3600, recheck_after=0) == 0  # disabled: nothing leaves
    assert records_of(fleet.admin(PW), "EmailMessage", [e["id"] for e in held]) == {e["id"]: 0 for e in held}

    fleet.registry.set_enabled(PW, True)
    outcomes = fleet.outcomes(PW, held, timeout=40)  # beat's next release, within 15 s
    assert {o["outcome"] for o in outcomes.values()} == {"written"}
    assert written_once(fleet, PW, held) and lot.count(PW) == 0
    assert DeadLetterStore(fleet.stack.redis).count() == 0


def test_given_events_of_an_unregistered_workspace_then_dead_lettered_not_served_and_replayed_once_registered(fleet):
    from click.testing import CliRunner

    from workers.cli import main as cli
    from workers.decide import WORKSPACE_NOT_SERVED

    fleet.start_worker()
    newcomer = "ws_new"
    events = fleet.events(newcomer, 3)
    fleet.stack.publish(events)
    store = DeadLetterStore(fleet.stack.redis)
    wait_until(lambda: store.count() == 3, 30, "three dead letters", fleet.stack.processes[0])
    assert {(r.workspace_id, r.error_code) for r in store.iter_all()} == {(newcomer, WORKSPACE_NOT_SERVED)}
    assert {r.event_id for r in store.iter_all()} == {e["id"] for e in events}

    fleet.registry.apply([WorkspaceSpec(id=newcomer, salesforce=fleet.password_connection(),
                                        max_latency_seconds=LATENCY, mappings=mappings(title=True))])
    time.sleep(1.5)  # workers see a registry change within a second
    replay = CliRunner().invoke(cli, ["dlq", "replay", "--code", WORKSPACE_NOT_SERVED, "--json", "--timeout", "60"],
                                env=fleet.env())
    assert replay.exit_code == 0, replay.output
    assert '"written": 3' in replay.output
    assert store.count() == 0
    assert written_once(fleet, PW, events)  # the newcomer shares the password workspace's org
