"""Whoever can write to Redis cannot take a workspace's credentials: entries changed or moved there are refused.

The attacker here has what `redis-cli` gives: every registry key readable and writable, but no
SFSYNC_SECRET_KEYS. Each test changes the entries with the real `redis-cli` binary, as such an
attacker would, then asks sfsync to use them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet

from events.audit import STREAM
from events.connection_state import ConnectionState
from salesforce_emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from schemas.salesforce_hosts import HostPolicy
from schemas.workspace import SalesforceConnection, WorkspaceSpec
from tests.conftest import records_of, wait_until
from tests.factories import email_event
from tests.hostile_hosts import Answer, Listener
from workers.cli import main
from workers.local.stack import start_worker
from workers.salesforce.errors import SalesforceError
from workers.salesforce.gateway import SalesforceGateway
from workspaces.directory import REFRESH_EVERY
from workspaces.registry import ENTRIES, SEALED, Registry
from workspaces.secrets import Keyring, SecretKeyError, TamperedEntry, new_key

pytestmark = pytest.mark.integration

HOSTS = HostPolicy.parse("127.0.0.1:*")
ACME, GLOBEX = "ws_acme", "ws_globex"


def redis_cli(redis_url: str, *args: str) -> str:
    """The real redis-cli, as an attacker with network access to Redis (and nothing else) runs it."""
    binary = shutil.which("redis-cli")
    assert binary, "redis-cli is not on PATH (it ships with redis-server)"
    done = subprocess.run([binary, "-u", redis_url, *args], capture_output=True, text=True, timeout=10, check=True)
    return done.stdout.rstrip("\n")


def edit_entry(redis_url: str, ws: str, **salesforce) -> None:
    """Change fields of the workspace's connection as the registry shows it, in place."""
    entry = json.loads(redis_cli(redis_url, "HGET", ENTRIES, ws))
    entry["salesforce"].update(salesforce)
    redis_cli(redis_url, "HSET", ENTRIES, ws, json.dumps(entry))


def audited(redis_client, action: str, ws: str) -> list[dict]:
    return [fields for _, fields in redis_client.xrange(STREAM)
            if fields.get("action") == action and fields.get("workspace") == ws]


@pytest.fixture
def org(emulator):
    emulator.admin.reset_all()
    created = emulator.admin.create_org("trust")
    yield created
    emulator.admin.reset_all()


@pytest.fixture
def keys() -> str:
    return new_key()


@pytest.fixture
def registry(redis_client, keys) -> Registry:
    return Registry(redis_client, Keyring(keys), hosts=HOSTS)


def oauth(emulator) -> SalesforceConnection:
    token = emulator.admin.issue_refresh_token(client_id=DEFAULT_CLIENT_ID)
    return SalesforceConnection(login_url=emulator.url, client_id=DEFAULT_CLIENT_ID,
                                client_secret=DEFAULT_CLIENT_SECRET, refresh_token=token)


def cli(redis_url: str, keys: str, *args: str):
    env = {"SFSYNC_REDIS_URL": redis_url, "SFSYNC_SECRET_KEYS": keys, "SFSYNC_SALESFORCE_ALLOWED_HOSTS": "127.0.0.1:*"}
    return CliRunner().invoke(main, list(args), env=env)


# --- a changed login URL -------------------------------------------------------------------------------

def test_given_a_login_url_changed_with_redis_cli_when_the_org_is_tested_then_no_secret_reaches_the_listener(
        redis_url, redis_client, emulator, registry, keys):
    # given a workspace signing in with an OAuth refresh token, and a host of the attacker's
    connection = oauth(emulator)
    registry.apply([WorkspaceSpec(id=ACME, salesforce=connection)], author="test")
    with Listener() as listener:
        # when the attacker points its login URL at that host and someone tests the connection
        edit_entry(redis_url, ACME, login_url=listener.url)
        result = cli(redis_url, keys, "workspaces", "test", ACME)

    # then nothing reached the listener, the test fails with a clear error, and the refusal is audited
    assert listener.received == []
    assert result.exit_code != 0
    assert "changed outside sfsync" in result.output and "Traceback" not in result.output
    assert connection.refresh_token.get_secret_value() not in result.output
    assert audited(redis_client, "registry_entry_refused", ACME)


def test_given_an_instance_url_or_username_changed_then_the_connection_is_refused_not_used(
        redis_url, redis_client, org, registry):
    token = SalesforceConnection(instance_url=org["instance_url"], access_token=org["access_token"])
    registry.apply([WorkspaceSpec(id=ACME, salesforce=token)], author="test")
    with Listener() as listener:
        edit_entry(redis_url, ACME, instance_url=listener.url)
        with pytest.raises(TamperedEntry, match="changed outside sfsync"):
            registry.get(ACME)
    assert listener.received == []
    assert registry.get(ACME, secrets=False).salesforce_public["instance_url"] == listener.url  # shown, never used


def test_given_a_sealed_connection_changed_with_redis_cli_then_it_does_not_open_and_is_audited(
        redis_url, redis_client, org, registry):
    registry.apply([WorkspaceSpec(id=ACME, salesforce=SalesforceConnection(
        instance_url=org["instance_url"], access_token=org["access_token"]))], author="test")
    sealed = redis_cli(redis_url, "HGET", SEALED, ACME)
    flipped = sealed[:40] + ("A" if sealed[40] != "A" else "B") + sealed[41:]
    redis_cli(redis_url, "HSET", SEALED, ACME, flipped)

    with pytest.raises(SecretKeyError, match="changed outside sfsync"):
        registry.get(ACME)
    assert audited(redis_client, "registry_entry_refused", ACME)


# --- a sealed connection moved to another workspace ------------------------------------------------------

def test_given_one_workspaces_connection_copied_under_another_then_no_event_of_the_other_reaches_its_org(
        stack, org, keys, registry):
    # given two workspaces, acme connected to its org, globex registered without a connection
    registry.apply([WorkspaceSpec(id=ACME, salesforce=SalesforceConnection(
        instance_url=org["instance_url"], access_token=org["access_token"])), WorkspaceSpec(id=GLOBEX)],
        author="test")
    env = stack.env(secret_keys=keys)
    env.pop("SFSYNC_SALESFORCE_INSTANCE_URL")  # the registry's workspaces only
    env.pop("SFSYNC_SALESFORCE_ACCESS_TOKEN")
    worker = start_worker(env)
    stack.processes.append(worker)

    # when the attacker copies acme's sealed connection and its shown copy under globex
    url = stack.redis_url
    redis_cli(url, "HSET", SEALED, GLOBEX, redis_cli(url, "HGET", SEALED, ACME))
    public = json.loads(redis_cli(url, "HGET", ENTRIES, ACME))["salesforce"]
    entry = json.loads(redis_cli(url, "HGET", ENTRIES, GLOBEX))
    redis_cli(url, "HSET", ENTRIES, GLOBEX, json.dumps({**entry, "salesforce": public,
                                                        "revision": entry["revision"] + 1}))
    redis_cli(url, "INCR", "sfsync:{_registry}:version")
    time.sleep(REFRESH_EVERY + 0.5)  # the workers see the change (a registry change is seen within this)
    event = email_event(workspace_id=GLOBEX, to="jane.doe@acme.example")
    stack.publish([event])

    # then globex's event waits, its connection refused as belonging to another workspace; acme's org has nothing
    wait_until(lambda: "another workspace" in (ConnectionState(stack.redis).read(GLOBEX) or {}).get("reason", ""),
               30, "globex shown disconnected: its connection belongs to another workspace", worker)
    assert ConnectionState(stack.redis).read(GLOBEX)["state"] == "disconnected"
    assert records_of(stack.admin.for_org(org["id"]), "EmailMessage", [event["id"]]) == {event["id"]: 0}
    assert records_of(stack.admin.for_org(org["id"]), "Task", [event["id"]]) == {event["id"]: 0}
    assert audited(stack.redis, "registry_entry_refused", GLOBEX)


# --- the earlier format still opens, once, and is sealed whole -------------------------------------------

def _write_earlier_format(redis_client, keys: str, ws: str, connection: SalesforceConnection) -> None:
    """An entry as sfsync wrote it before connections were sealed whole: the secrets alone sealed."""
    entry = {"id": ws, "name": ws, "enabled": True, "email_message_writeback": True, "max_latency_seconds": 5.0,
             "api_usage_ceiling": 0.8, "salesforce": connection.public(), "revision": 1, "updated_at": 0.0}
    token = Fernet(keys.split(",")[0].encode()).encrypt(json.dumps(connection.secrets(), sort_keys=True).encode())
    redis_client.hset(ENTRIES, ws, json.dumps(entry))
    redis_client.hset(SEALED, ws, token.decode())


def test_given_an_entry_of_the_earlier_format_when_first_opened_then_it_works_and_is_sealed_whole(
        redis_url, redis_client, org, keys, registry):
    connection = SalesforceConnection(instance_url=org["instance_url"], access_token=org["access_token"])
    _write_earlier_format(redis_client, keys, ACME, connection)

    opened = registry.get(ACME).salesforce

    assert opened == connection
    sealed = Keyring(keys).open_workspace(redis_client.hget(SEALED, ACME), ACME)
    assert not sealed.earlier and sealed.connection == connection.everything()
    assert audited(redis_client, "registry_entry_resealed", ACME)
    SalesforceGateway.from_connection(opened, hosts=HOSTS).limits()  # and it still signs in
    # from now on a change in Redis is refused like any other
    with Listener() as listener:
        edit_entry(redis_url, ACME, instance_url=listener.url)
        with pytest.raises(TamperedEntry):
            registry.get(ACME)
    assert listener.received == []


def test_given_entries_of_the_earlier_format_when_rotate_keys_runs_then_all_are_sealed_whole(
        redis_url, redis_client, org, keys):
    connection = SalesforceConnection(instance_url=org["instance_url"], access_token=org["access_token"])
    for ws in (ACME, GLOBEX):
        _write_earlier_format(redis_client, keys, ws, connection)

    result = cli(redis_url, keys, "workspaces", "rotate-keys")

    assert result.exit_code == 0, result.output
    assert "2 workspace(s)" in result.output
    for ws in (ACME, GLOBEX):
        assert not Keyring(keys).open_workspace(redis_client.hget(SEALED, ws), ws).earlier


def test_given_an_entry_of_the_earlier_format_pointing_at_a_foreign_host_then_it_is_refused_not_resealed(
        redis_client, keys):
    connection = SalesforceConnection(login_url="http://169.254.169.254", client_id="app", refresh_token="rt")
    _write_earlier_format(redis_client, keys, ACME, connection)
    registry = Registry(redis_client, Keyring(keys))  # Salesforce's hosts only

    with pytest.raises(SecretKeyError, match=r"169\.254\.169\.254"):
        registry.get(ACME)
    assert Keyring(keys).open_workspace(redis_client.hget(SEALED, ACME), ACME).earlier  # left as it was


# --- only Salesforce's hosts, unless listed --------------------------------------------------------------

@pytest.mark.parametrize("where", [
    {"login_url": "http://169.254.169.254"},
    {"login_url": "https://user:pw@10.0.0.5:8443"},
    {"login_url": "http://127.0.0.1:8080"},
    {"login_url": "https://login.salesforce.com.attacker.example"},
    {"login_url": "https://acme.my.salesforce.com:8443"},
])
def test_given_a_connection_to_a_host_that_is_not_salesforces_when_applied_then_nothing_is_stored(
        redis_client, keys, where):
    registry = Registry(redis_client, Keyring(keys))  # SFSYNC_SALESFORCE_ALLOWED_HOSTS empty
    spec = WorkspaceSpec(id=ACME, salesforce=SalesforceConnection(client_id="app", refresh_token="rt", **where))

    with pytest.raises(Exception, match="is refused"):
        registry.apply([spec], author="test")
    assert registry.ids() == [] and not redis_client.hgetall(SEALED)


def test_given_a_token_endpoint_that_redirects_then_the_secrets_are_not_sent_on(redis_client):
    with Listener() as elsewhere, Listener(Answer(307, b"", {"Location": "/x"})) as redirecting:
        redirecting.answer = Answer(307, b"", {"Location": f"{elsewhere.url}/services/oauth2/token"})
        connection = SalesforceConnection(login_url=redirecting.url, client_id="app", client_secret="app-secret",
                                          refresh_token="the-refresh-token")
        with pytest.raises(SalesforceError) as refused:
            SalesforceGateway.from_connection(connection, timeout=5, hosts=HOSTS)
    assert refused.value.code == "LOGIN_FAILED"
    assert len(redirecting.received) == 1 and elsewhere.received == []


def test_given_a_token_response_naming_an_instance_elsewhere_then_the_login_is_refused_and_no_data_goes_there():
    answer = Answer(200, json.dumps({"access_token": "at", "instance_url": "https://169.254.169.254"}).encode())
    with Listener(answer) as token_host:
        connection = SalesforceConnection(login_url=token_host.url, client_id="app", refresh_token="rt")
        with pytest.raises(SalesforceError) as refused:
            SalesforceGateway.from_connection(connection, timeout=5, hosts=HOSTS)
    assert refused.value.code == "LOGIN_FAILED"
    assert "instance URL of the token response" in refused.value.message and "169.254.169.254" in refused.value.message


def test_given_a_refusing_token_endpoint_then_only_its_error_code_is_kept_never_its_text():
    body = {"error": "invalid_grant", "error_description": "<img src=x onerror=alert(1)> see https://phish.example"}
    with Listener(Answer(400, json.dumps(body).encode())) as token_host:
        connection = SalesforceConnection(login_url=token_host.url, client_id="app", refresh_token="rt")
        with pytest.raises(SalesforceError) as refused:
            SalesforceGateway.from_connection(connection, timeout=5, hosts=HOSTS)
    assert "invalid_grant" in refused.value.message
    assert "phish" not in refused.value.message and "onerror" not in refused.value.message


# --- key rotation, one entry at a time --------------------------------------------------------------------

def test_given_a_disconnect_while_keys_rotate_then_it_stands_and_the_rest_is_re_sealed(redis_client, org, keys):
    # given two connected workspaces sealed with the old key, and a new key put first
    token = SalesforceConnection(instance_url=org["instance_url"], access_token=org["access_token"])
    Registry(redis_client, Keyring(keys), hosts=HOSTS).apply(
        [WorkspaceSpec(id=ACME, salesforce=token), WorkspaceSpec(id=GLOBEX, salesforce=token)], author="test")
    new = new_key()
    both = f"{new},{keys}"

    class ConsoleActsMeanwhile(Keyring):
        """While the first entry is being re-sealed, someone disconnects the other workspace (a real write)."""
        acted = False

        def rotate(self, sealed: str, workspace_id: str = "?") -> str:
            if not ConsoleActsMeanwhile.acted:
                ConsoleActsMeanwhile.acted = True
                Registry(redis_client, Keyring(both), hosts=HOSTS).disconnect(GLOBEX)
            return super().rotate(sealed, workspace_id)

    # when the keys are rotated
    Registry(redis_client, ConsoleActsMeanwhile(both), hosts=HOSTS).rotate_keys()

    # then the disconnect stands, and acme opens with the new key alone
    assert redis_client.hget(SEALED, GLOBEX) is None
    assert Registry(redis_client, Keyring(new), hosts=HOSTS).get(GLOBEX).salesforce is None
    assert Registry(redis_client, Keyring(new), hosts=HOSTS).get(ACME).salesforce == token
