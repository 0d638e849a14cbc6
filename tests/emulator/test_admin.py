"""The /_admin/ API: seeding, reading, human edits, reset, features, limits and persistence."""
from __future__ import annotations

import pytest
import requests

from salesforce_emulator import EmulatorServer
from salesforce_emulator.client import AdminError


def test_given_seeded_records_then_they_are_listed_with_system_fields_and_no_call_is_counted(emu):
    ids = emu.admin.seed("Contact", [{"LastName": "A", "Email": "A@x.example"}, {"LastName": "B"}])
    records = emu.admin.records("Contact", email="a@X.example")
    assert [r["Id"] for r in records] == ids[:1]
    assert records[0]["SystemModstamp"] and records[0]["IsDeleted"] is False
    assert emu.admin.api_calls() == 0


def test_given_a_seed_with_an_unknown_field_then_400_and_nothing_is_written(emu):
    with pytest.raises(AdminError) as caught:
        emu.admin.seed("Contact", [{"LastName": "A"}, {"LastName": "B", "Nope": 1}])
    assert "INVALID_FIELD" in caught.value.text
    assert emu.admin.state()["counts"]["Contact"] == 0


def test_given_a_human_edit_then_last_modified_by_is_the_admin_user_and_modstamp_moves(emu, sf):
    contact = sf.Contact.create({"LastName": "Doe", "Email": "old@x.example"})["id"]
    before = emu.admin.get("Contact", contact)
    after = emu.admin.edit("Contact", contact, Email="new@x.example")
    state = emu.admin.state()
    assert after["LastModifiedById"] == state["admin_user_id"] != before["LastModifiedById"]
    assert after["SystemModstamp"] > before["SystemModstamp"]
    changed = sf.query(f"SELECT Id FROM Contact WHERE SystemModstamp > {before['SystemModstamp']}")
    assert [r["Id"] for r in changed["records"]] == [contact]


def test_given_an_edit_made_as_the_integration_user_then_it_carries_that_user_and_a_new_modstamp(emu, sf):
    contact = sf.Contact.create({"LastName": "Doe", "Email": "old@x.example"})["id"]
    before = emu.admin.get("Contact", contact)
    api_user = emu.admin.state()["api_user_id"]
    after = emu.admin.edit("Contact", contact, as_user=api_user, Title="CRO")
    assert after["LastModifiedById"] == before["LastModifiedById"] == api_user
    assert after["Title"] == "CRO" and after["SystemModstamp"] > before["SystemModstamp"]


def test_given_an_edit_as_an_unknown_user_then_400_and_nothing_changes(emu, sf):
    contact = sf.Contact.create({"LastName": "Doe"})["id"]
    with pytest.raises(AdminError) as caught:
        emu.admin.edit("Contact", contact, as_user="005000000000999AAA", Title="CRO")
    assert caught.value.status == 400 and "as_user" in caught.value.text
    assert emu.admin.get("Contact", contact)["Title"] is None


def test_given_an_admin_delete_then_the_record_is_only_in_query_all(emu, sf):
    contact = emu.admin.seed("Contact", {"LastName": "Doe"})[0]
    emu.admin.delete("Contact", contact)
    assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] == 0
    assert emu.admin.get("Contact", contact)["IsDeleted"] is True


def test_given_state_when_reset_then_records_counters_rules_faults_and_features_return_to_defaults(emu, sf):
    sf.Contact.create({"LastName": "Doe"})
    emu.admin.add_fault("latency", latency_ms=1)
    emu.admin.add_validation_rule("Task", "Subject", "always")
    emu.admin.set_features(enhanced_email=False)
    emu.admin.set_limits(daily_api_requests=50)
    emu.admin.reset()
    state = emu.admin.state()
    assert state["counts"]["Contact"] == 0 and state["counts"]["User"] == 4
    assert state["api_calls"] == 0 and state["api_limit"] == 100000 and state["features"] == {"enhanced_email": True}
    assert state["faults"] == [] and state["validation_rules"] == []


def test_given_the_seeded_users_then_the_reps_and_the_integration_user_exist(emu):
    users = {u["Username"]: u for u in emu.admin.records("User")}
    assert users["riley@seller.example"]["Name"] == "Riley Rep"
    assert users["sam@seller.example"]["Name"] == "Sam Seller"
    assert users["integration@sfsync.example"]["Id"] == emu.admin.state()["api_user_id"]


def test_given_unknown_features_or_bad_limits_then_the_admin_api_says_400(emu):
    with pytest.raises(AdminError):
        emu.admin.set_features(time_travel=True)
    with pytest.raises(AdminError):
        emu.admin.set_limits(daily_api_requests=-1)


def test_given_a_data_file_when_the_emulator_restarts_then_records_survive(tmp_path):
    data = str(tmp_path / "org.json")
    with EmulatorServer(data_file=data) as first:
        contact = first.salesforce().Contact.create({"LastName": "Persistent"})["id"]
    with EmulatorServer(data_file=data) as second:
        assert second.salesforce().Contact.get(contact)["LastName"] == "Persistent"
        fresh = second.salesforce().Contact.create({"LastName": "Next"})["id"]
        assert fresh != contact


def test_given_a_non_loopback_port_binding_request_then_serve_refuses():
    from salesforce_emulator import serve
    with pytest.raises(ValueError):
        serve(host="0.0.0.0", port=0)


def test_given_the_admin_api_then_unknown_objects_are_a_400(emu):
    answer = requests.get(f"{emu.url}/_admin/records/Widget", timeout=5)
    assert answer.status_code == 400
