"""`sfsync workspaces` and per-workspace `sfsync mappings` against real Redis and the emulator's orgs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from events.deadletter import DeadLetterStore
from events.keys import key
from events.parking import ParkingLot
from salesforce_emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from tests.conftest import TEST_MAPPINGS, records_of
from tests.factories import email_event
from events.keys import BREAKERS_OPEN
from workers.breaker import Breakers
from workers.cli import exits, main
from workspaces.registry import ENTRIES, SEALED
from workspaces.secrets import new_key

#: a mapping the emulator's orgs cannot take: Contact has no such field
MISFIT = {"contact": {"fields": [{"source": "title", "target": "Job_Title_Typo__c"}]}}


@pytest.fixture
def orgs(emulator):
    emulator.admin.reset_all()
    yield emulator.admin.create_org("acme"), emulator.admin.create_org("globex")
    emulator.admin.reset_all()


@pytest.fixture
def cli(redis_url, redis_client):
    """`cli(*args, keys=..., input=...)`: run sfsync with the test Redis and a secret key."""
    keys = new_key()

    def run(*args, keys_: str | None = None, input: str | None = None):
        env = {"SFSYNC_REDIS_URL": redis_url, "SFSYNC_SECRET_KEYS": keys if keys_ is None else keys_,
               "SFSYNC_SALESFORCE_ALLOWED_HOSTS": "127.0.0.1:*"}
        return CliRunner().invoke(main, [str(a) for a in args], env=env, input=input, catch_exceptions=False)

    run.keys = keys
    return run


def _write(tmp_path: Path, *workspaces, name: str = "workspaces.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"workspaces": list(workspaces)}))
    return path


def _token_ws(ws: str, org: dict, tmp_path: Path, **extra) -> dict:
    """A workspace signing in with its org's access token, kept in a file beside the registry file."""
    (tmp_path / f"{ws}.token").write_text(org["access_token"])
    return {"id": ws, "name": ws.title(), **extra,
            "salesforce": {"instance_url": org["instance_url"], "access_token_file": f"{ws}.token"}}


def _oauth_ws(ws: str, emulator, refresh_token: str) -> dict:
    return {"id": ws, "salesforce": {"login_url": emulator.url, "client_id": DEFAULT_CLIENT_ID,
                                     "client_secret": DEFAULT_CLIENT_SECRET, "refresh_token": refresh_token}}


def _registry_dump(redis_client) -> str:
    """Every registry key and every workspace key's value, as text."""
    parts = []
    for name in redis_client.scan_iter(match="sfsync:*"):
        kind = redis_client.type(name)
        value = (redis_client.hgetall(name) if kind == "hash" else redis_client.get(name) if kind == "string"
                 else redis_client.lrange(name, 0, -1) if kind == "list" else "")
        parts.append(f"{name} {value}")
    return "\n".join(parts)


def test_apply_creates_the_workspaces_then_a_second_apply_changes_nothing(cli, orgs, tmp_path):
    acme, globex = orgs
    path = _write(tmp_path, _token_ws("acme", acme, tmp_path, mappings_file=str(TEST_MAPPINGS)),
                  _token_ws("globex", globex, tmp_path))
    first = cli("workspaces", "apply", path)
    assert first.exit_code == 0, first.output
    assert "created: acme, globex" in first.output and "mappings of acme: saved as version 1" in first.output
    second = cli("workspaces", "apply", path)
    assert second.exit_code == 0, second.output
    assert "unchanged: acme, globex" in second.output and "created" not in second.output
    assert "mappings" not in second.output


def test_a_dry_run_says_what_would_change_and_changes_nothing(cli, orgs, tmp_path, redis_client):
    path = _write(tmp_path, _token_ws("acme", orgs[0], tmp_path))
    result = cli("workspaces", "apply", "--dry-run", path)
    assert result.exit_code == 0, result.output
    assert "would be created: acme" in result.output and redis_client.hlen(ENTRIES) == 0


def test_an_apply_with_one_bad_workspace_changes_nothing(cli, orgs, tmp_path, redis_client):
    acme, _ = orgs
    path = _write(tmp_path, _token_ws("acme", acme, tmp_path),
                  {"id": "globex", "salesforce": {"username": "only-a-user@globex.example"}})
    result = cli("workspaces", "apply", path)
    assert result.exit_code == exits.DATA
    assert "workspaces.1.salesforce" in result.output and "no complete way to sign in" in result.output
    assert redis_client.hlen(ENTRIES) == 0 and redis_client.hlen(SEALED) == 0


def test_a_mapping_that_does_not_fit_the_org_is_refused_with_the_field_named(cli, orgs, tmp_path, redis_client):
    path = _write(tmp_path, _token_ws("acme", orgs[0], tmp_path, mappings=MISFIT))
    result = cli("workspaces", "apply", path)
    assert result.exit_code == exits.DATA
    assert "Contact.Job_Title_Typo__c" in result.output and "nothing was changed" in result.output
    assert redis_client.hlen(ENTRIES) == 0 and not redis_client.exists(key("acme", "mappings", "current"))


def test_an_org_that_does_not_answer_refuses_the_apply_unless_no_check(cli, tmp_path, redis_client, orgs):
    path = _write(tmp_path, {"id": "acme", "salesforce": {"instance_url": "http://127.0.0.1:9",
                                                          "access_token": "tok"}})
    refused = cli("workspaces", "apply", path)
    assert refused.exit_code == exits.UNAVAILABLE and "cannot check its org" in refused.output and redis_client.hlen(ENTRIES) == 0
    assert "written in" in refused.output  # the inline secret is warned about
    applied = cli("workspaces", "apply", "--no-check", path)
    assert applied.exit_code == 0 and "created: acme" in applied.output


def test_secrets_never_appear_in_list_show_json_or_in_redis_in_clear(cli, orgs, tmp_path, redis_client, emulator):
    acme, _ = orgs
    refresh = emulator.admin.for_org("acme").issue_refresh_token()
    path = _write(tmp_path, _oauth_ws("acme", emulator, refresh))
    assert cli("workspaces", "apply", path).exit_code == 0
    outputs = [cli("workspaces", "list").output, cli("workspaces", "list", "--json").output,
               cli("workspaces", "show", "acme").output, cli("workspaces", "show", "acme", "--json").output]
    for text in outputs + [_registry_dump(redis_client)]:
        assert refresh not in text and DEFAULT_CLIENT_SECRET not in text
    shown = json.loads(outputs[3])
    assert shown["salesforce"]["secrets_set"] == ["client_secret", "refresh_token"]
    assert shown["salesforce"]["auth"] == "oauth" and shown["enabled"] is True


def test_rotate_keys_with_a_new_first_key_then_dropping_the_old_one_still_reads(cli, orgs, tmp_path):
    path = _write(tmp_path, _token_ws("acme", orgs[0], tmp_path), _token_ws("globex", orgs[1], tmp_path))
    assert cli("workspaces", "apply", path).exit_code == 0
    fresh = cli("workspaces", "new-key").output.strip()
    rotated = cli("workspaces", "rotate-keys", keys_=f"{fresh},{cli.keys}")
    assert rotated.exit_code == 0 and "2 workspace(s)" in rotated.output
    tested = cli("workspaces", "test", "acme", keys_=fresh)
    assert tested.exit_code == 0, tested.output


def test_the_wrong_key_gives_the_clear_error_and_no_traceback(cli, orgs, tmp_path):
    assert cli("workspaces", "apply", _write(tmp_path, _token_ws("acme", orgs[0], tmp_path))).exit_code == 0
    wrong = cli("workspaces", "test", "acme", keys_=new_key())
    assert wrong.exit_code == exits.CONFIG and "Traceback" not in wrong.output
    assert "do not open with SFSYNC_SECRET_KEYS" in wrong.output
    malformed = cli("workspaces", "apply", _write(tmp_path, _token_ws("acme", orgs[0], tmp_path)), keys_="nope")
    assert malformed.exit_code == exits.CONFIG and "key 1 of 1 is not a Fernet key" in malformed.output
    missing = cli("workspaces", "apply", _write(tmp_path, _token_ws("acme", orgs[0], tmp_path)), keys_="")
    assert missing.exit_code == exits.CONFIG and "SFSYNC_SECRET_KEYS is not set" in missing.output


def test_remove_deletes_that_workspaces_keys_and_not_anothers(cli, orgs, tmp_path, redis_client):
    path = _write(tmp_path, _token_ws("acme", orgs[0], tmp_path, mappings_file=str(TEST_MAPPINGS)),
                  _token_ws("globex", orgs[1], tmp_path, mappings_file=str(TEST_MAPPINGS)))
    assert cli("workspaces", "apply", path).exit_code == 0
    redis_client.set(key("acme", "ledger", "x"), "1")
    store = DeadLetterStore(redis_client)
    for ws in ("acme", "globex"):
        store.add(event={"id": f"e-{ws}"}, event_id=f"e-{ws}", event_type="email.sent", workspace_id=ws,
                  error_code="INVALID_FIELD", error_message="no")
        Breakers(redis_client).trip(ws, "down")
        redis_client.sadd(ParkingLot(redis_client).index, ws)
    declined = cli("workspaces", "remove", "acme", input="n\n")
    assert declined.exit_code == 1 and redis_client.hexists(ENTRIES, "acme")
    removed = cli("workspaces", "remove", "acme", "--yes")
    assert removed.exit_code == 0, removed.output
    assert "1 registry entry" in removed.output and "mappings" in removed.output
    assert not list(redis_client.scan_iter(match="sfsync:{acme}:*"))
    assert not redis_client.hexists(ENTRIES, "acme") and not redis_client.hexists(SEALED, "acme")
    assert "1 dead letters" in removed.output and [r.workspace_id for r in store.iter_all()] == ["globex"]
    assert redis_client.smembers(ParkingLot(redis_client).index) == {"globex"}
    assert redis_client.zrange(BREAKERS_OPEN, 0, -1) == ["globex"]
    assert redis_client.hexists(SEALED, "globex") and redis_client.exists(key("globex", "mappings", "current"))
    again = cli("workspaces", "remove", "acme", "--yes")
    assert again.exit_code == exits.DATA and "no workspace 'acme'" in again.output


def test_disable_then_enable_shows_in_list_and_enable_makes_the_parked_events_due(cli, orgs, tmp_path,
                                                                                   redis_client):
    assert cli("workspaces", "apply", _write(tmp_path, _token_ws("acme", orgs[0], tmp_path))).exit_code == 0
    assert "events wait parked" in cli("workspaces", "disable", "acme").output
    assert json.loads(cli("workspaces", "list", "--json").output)[0]["enabled"] is False
    redis_client.zadd(key("acme", "parked"), {"a-parked-message": time.time() + 900})
    enabled = cli("workspaces", "enable", "acme")
    assert enabled.exit_code == 0 and "1 parked event(s)" in enabled.output
    assert redis_client.zscore(key("acme", "parked"), "a-parked-message") <= time.time()
    assert json.loads(cli("workspaces", "list", "--json").output)[0]["enabled"] is True


def test_mappings_set_history_show_and_rollback(cli, orgs, tmp_path):
    assert cli("workspaces", "apply", _write(tmp_path, _token_ws("acme", orgs[0], tmp_path))).exit_code == 0
    first = cli("mappings", "set", "acme", TEST_MAPPINGS, "--note", "first")
    assert first.exit_code == 0 and "version 1" in first.output, first.output
    smaller = tmp_path / "smaller.yaml"
    smaller.write_text("contact:\n  fields:\n    - {source: title, target: Title}\n")
    assert "version 2" in cli("mappings", "set", "acme", smaller).output
    history = json.loads(cli("mappings", "history", "acme", "--json").output)
    assert [h["version"] for h in history] == [2, 1] and history[1]["note"] == "first"
    assert history[0]["author"].startswith("cli:") and history[0]["current"]
    rolled = cli("mappings", "rollback", "acme", "1")
    assert rolled.exit_code == 0 and "as version 3" in rolled.output, rolled.output
    shown = yaml.safe_load(cli("mappings", "show", "acme").output)
    assert shown == yaml.safe_load(cli("mappings", "show", "acme", "--version", "1").output)
    assert {"source": "phone", "target": "Phone"} in shown["contact"]["fields"]


def test_mappings_set_refuses_a_misfit_with_the_field_named_and_saves_nothing(cli, orgs, tmp_path, redis_client):
    assert cli("workspaces", "apply", _write(tmp_path, _token_ws("acme", orgs[0], tmp_path))).exit_code == 0
    misfit = tmp_path / "misfit.yaml"
    misfit.write_text(yaml.safe_dump(MISFIT))
    refused = cli("mappings", "set", "acme", misfit, "--no-check")
    assert refused.exit_code == exits.DATA and "Job_Title_Typo__c" in refused.output
    assert not redis_client.exists(key("acme", "mappings", "current"))
    checked = cli("mappings", "validate", "--workspace", "acme", misfit)
    assert checked.exit_code == exits.DATA and "Job_Title_Typo__c" in checked.output
    assert cli("mappings", "validate", "--workspace", "acme").exit_code == 0


def test_test_passes_on_a_good_refresh_token_and_fails_on_a_revoked_one(cli, orgs, tmp_path, emulator):
    admin = emulator.admin.for_org("acme")
    path = _write(tmp_path, _oauth_ws("acme", emulator, admin.issue_refresh_token()))
    assert cli("workspaces", "apply", path).exit_code == 0
    good = cli("workspaces", "test", "acme")
    assert good.exit_code == 0, good.output
    assert "ok   sign in (oauth)" in good.output and "API usage:" in good.output
    admin.revoke_refresh_tokens()
    revoked = cli("workspaces", "test", "acme")
    assert revoked.exit_code == 1 and "FAIL sign in (oauth)" in revoked.output
    assert "invalid_grant" in revoked.output


def test_an_apply_whose_key_cannot_open_a_stored_secret_changes_nothing(cli, orgs, tmp_path, redis_client):
    acme, globex = orgs
    assert cli("workspaces", "apply", _write(tmp_path, _token_ws("acme", acme, tmp_path))).exit_code == 0
    both = _write(tmp_path, _token_ws("globex", globex, tmp_path), _token_ws("acme", acme, tmp_path), name="2.yaml")
    refused = cli("workspaces", "apply", "--no-check", both, keys_=new_key())
    assert refused.exit_code == exits.CONFIG and "workspace 'acme'" in refused.output
    assert not redis_client.hexists(ENTRIES, "globex")


def test_validate_without_a_workspace_still_checks_a_file_against_the_environments_org(cli, emulator, redis_url):
    env = {"SFSYNC_REDIS_URL": redis_url, "SFSYNC_SALESFORCE_INSTANCE_URL": emulator.url,
           "SFSYNC_SALESFORCE_ACCESS_TOKEN": emulator.token, "SFSYNC_SALESFORCE_ALLOWED_HOSTS": "127.0.0.1:*"}
    result = CliRunner().invoke(main, ["mappings", "validate", str(TEST_MAPPINGS)], env=env)
    assert result.exit_code == 0, result.output
    assert "OK" in result.output


def test_a_workspace_registered_with_apply_gets_its_events_written_to_its_own_org(cli, orgs, tmp_path, stack):
    _, globex = orgs
    globex_admin = stack.admin.for_org("globex")
    globex_admin.seed("Contact", [{"FirstName": "Jane", "LastName": "Doe", "Email": "jane.doe@acme.example"}])
    path = _write(tmp_path, _token_ws("globex", globex, tmp_path, mappings_file=str(TEST_MAPPINGS)))
    assert cli("workspaces", "apply", path).exit_code == 0
    stack.start_worker(secret_keys=cli.keys)
    event = email_event(workspace_id="globex")
    stack.publish([event])
    outcome = stack.wait_outcomes([event["id"]], workspace="globex")[event["id"]]
    assert outcome["outcome"] == "written", outcome
    assert records_of(globex_admin, "EmailMessage", [event["id"]]) == {event["id"]: 1}
    assert records_of(stack.admin, "EmailMessage", [event["id"]]) == {event["id"]: 0}
