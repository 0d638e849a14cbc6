"""Registry files as parsed and checked before anything is stored: ids, ways to sign in, *_file keys, mappings."""

from __future__ import annotations

import pytest

from schemas.workspace import SalesforceConnection, is_workspace_id, resolve_files
from workspaces.registry import RegistryError, parse_registry_file
from workspaces.secrets import Keyring, SecretKeyError, new_key

TOKEN = {"instance_url": "https://acme.my.salesforce.com", "access_token": "00Dsecret!token"}


def _file(*workspaces):
    return {"workspaces": list(workspaces)}


def test_a_workspace_with_a_token_connection_parses_with_its_defaults():
    [spec] = parse_registry_file(_file({"id": "acme", "salesforce": TOKEN}))
    assert spec.id == "acme" and spec.enabled and spec.max_latency_seconds == 5.0
    assert spec.salesforce.auth == "token" and spec.mappings is None


@pytest.mark.parametrize("bad", ["", "-acme", "a b", "a{b}", "_registry", "x" * 65, "acme:1"])
def test_an_id_that_could_not_name_redis_keys_is_refused_naming_it(bad):
    assert not is_workspace_id(bad)
    with pytest.raises(RegistryError, match="not a workspace id"):
        parse_registry_file(_file({"id": bad}))


def test_two_workspaces_with_the_same_id_are_refused():
    with pytest.raises(RegistryError, match="declared twice"):
        parse_registry_file(_file({"id": "acme"}, {"id": "acme"}))


@pytest.mark.parametrize("connection, auth", [
    ({"username": "u@x", "password": "pw"}, "password"),
    ({"client_id": "app", "refresh_token": "rt"}, "oauth"),
    ({"username": "u@x", "client_id": "app", "private_key": "-----BEGIN"}, "jwt"),
    (TOKEN, "token"),
])
def test_each_complete_way_to_sign_in_is_recognised(connection, auth):
    assert SalesforceConnection(**connection).auth == auth


@pytest.mark.parametrize("connection", [
    {"username": "u@x"}, {"client_id": "app"}, {"access_token": "t"}, {"instance_url": "https://x.example"}])
def test_an_incomplete_way_to_sign_in_is_refused_saying_what_would_be_complete(connection):
    with pytest.raises(RegistryError, match="no complete way to sign in"):
        parse_registry_file(_file({"id": "acme", "salesforce": connection}))


def test_an_unknown_key_is_refused_with_its_place():
    with pytest.raises(RegistryError, match=r"workspaces\.0\.salesforce\.passwrd"):
        parse_registry_file(_file({"id": "acme", "salesforce": {**TOKEN, "passwrd": "x"}}))


def test_the_public_view_of_a_connection_names_the_secrets_but_holds_none():
    connection = SalesforceConnection(username="u@x", password="pw-secret", security_token="st-secret")
    public = connection.public()
    assert public["secrets_set"] == ["password", "security_token"] and public["auth"] == "password"
    assert "pw-secret" not in repr(public) and "st-secret" not in repr(public)


def test_secret_file_keys_are_read_relative_to_the_registry_file(tmp_path):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "acme.token").write_text("tok-from-file\n")
    (tmp_path / "m.yaml").write_text("contact:\n  fields:\n    - {source: title, target: Title}\n")
    data = _file({"id": "acme", "mappings_file": "m.yaml",
                  "salesforce": {"instance_url": "https://x.example", "access_token_file": "secrets/acme.token"}})
    [spec] = parse_registry_file(resolve_files(data, tmp_path))
    assert spec.salesforce.access_token.get_secret_value() == "tok-from-file"
    assert spec.mappings["contact"]["fields"][0]["target"] == "Title"


def test_a_missing_secret_file_is_named_with_its_workspace_and_key(tmp_path):
    data = _file({"id": "acme", "salesforce": {"instance_url": "https://x.example", "access_token_file": "nope"}})
    with pytest.raises(ValueError, match=r"workspaces\[0\] \(acme\)\.salesforce\.access_token_file: cannot read"):
        resolve_files(data, tmp_path)


def test_mappings_that_do_not_parse_are_refused_naming_the_workspace():
    with pytest.raises(RegistryError, match="workspace acme mappings"):
        parse_registry_file(_file({"id": "acme", "mappings": {"contact": {"fields": [{"source": "titel",
                                                                                    "target": "Title"}]}}}))


def test_a_malformed_key_is_refused_naming_which_one():
    with pytest.raises(SecretKeyError, match="key 2 of 2 is not a Fernet key"):
        Keyring(f"{new_key()},not-a-key")


def test_sealed_secrets_open_with_any_key_of_the_list_and_rotate_to_the_first():
    old, new = new_key(), new_key()
    token = Keyring(old).seal({"password": "pw"})
    both = Keyring(f"{new},{old}")
    rotated = both.rotate(token, "acme")
    assert Keyring(new).open(rotated, "acme") == {"password": "pw"}
    with pytest.raises(SecretKeyError, match="workspace 'acme'"):
        Keyring(new).rotate(token, "acme")


@pytest.mark.parametrize("spec, named", [
    ({"id": "acme", "mappings": {}, "mappings_file": "m.yaml"}, "mappings or mappings_file"),
    ({"id": "acme", "salesforce": {"username": "u", "password": "inline", "password_file": "pw"}},
     "password or password_file"),
])
def test_a_value_given_both_inline_and_as_a_file_is_refused(tmp_path, spec, named):
    (tmp_path / "m.yaml").write_text("{}\n")
    (tmp_path / "pw").write_text("from-file\n")
    with pytest.raises(ValueError, match=f"give {named}, not both"):
        resolve_files(_file(spec), tmp_path)


def test_leads_late_contacts_and_the_already_logged_check_have_their_documented_defaults():
    [spec] = parse_registry_file(_file({"id": "acme"}))
    assert (spec.match_leads, spec.play_creates, spec.late_contact_days, spec.late_contact_max,
            spec.skip_already_logged) == (False, "contact", 30, 100_000, True)
    [spec] = parse_registry_file(_file({"id": "acme", "match_leads": True, "play_creates": "lead",
                                        "late_contact_days": 0, "late_contact_max": 10,
                                        "skip_already_logged": False}))
    assert (spec.match_leads, spec.play_creates, spec.late_contact_days, spec.late_contact_max,
            spec.skip_already_logged) == (True, "lead", 0, 10, False)


@pytest.mark.parametrize("key, value, named", [
    ("play_creates", "account", "play_creates"), ("late_contact_days", -1, "late_contact_days"),
    ("late_contact_max", 0, "late_contact_max"), ("match_leads", "sometimes", "match_leads"),
])
def test_a_bad_lead_or_late_contact_setting_is_refused_naming_it(key, value, named):
    with pytest.raises(RegistryError, match=named):
        parse_registry_file(_file({"id": "acme", key: value}))


def test_given_a_misspelt_key_when_the_registry_file_is_parsed_then_the_close_known_key_is_suggested():
    with pytest.raises(RegistryError) as caught:
        parse_registry_file({"workspaces": [{"id": "ws_a", "max_latency_secnds": 5,
                                             "salesforce": {"instance_url": "https://a.my.salesforce.com",
                                                            "acess_token": "t"}}]})
    message = str(caught.value)
    assert "workspaces.0.max_latency_secnds: unknown key; did you mean max_latency_seconds?" in message
    assert "workspaces.0.salesforce.acess_token: unknown key; did you mean access_token?" in message
    assert "Extra inputs" not in message


def test_given_several_unreadable_files_when_resolved_then_every_one_is_named(tmp_path):
    data = {"workspaces": [
        {"id": "ws_a", "salesforce": {"username": "u", "password_file": "missing_a.txt"}},
        {"id": "ws_b", "mappings_file": "missing_b.yaml",
         "salesforce": {"username": "u", "password_file": "missing_c.txt"}},
    ]}
    with pytest.raises(ValueError) as caught:
        resolve_files(data, tmp_path)
    for name in ("missing_a.txt", "missing_b.yaml", "missing_c.txt"):
        assert name in str(caught.value)
