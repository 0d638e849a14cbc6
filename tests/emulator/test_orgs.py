"""Several orgs in one emulator: each with its own records, tokens, limits, faults, features, rules and users."""
from __future__ import annotations

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (SalesforceAuthenticationFailed, SalesforceExpiredSession,
                                          SalesforceGeneralError, SalesforceRefusedRequest)

from salesforce_emulator import DEFAULT_CLIENT_ID, DEFAULT_TOKEN
from salesforce_emulator.client import AdminError


@pytest.fixture
def acme(emu):
    return emu.admin.create_org("acme")


@pytest.fixture
def globex(emu):
    return emu.admin.create_org("globex")


def _query_names(sf) -> list[str]:
    return [r["LastName"] for r in sf.query("SELECT LastName FROM Contact ORDER BY LastName")["records"]]


def test_given_a_new_org_then_its_credentials_name_its_own_user_token_and_the_shared_instance_url(emu, acme):
    assert acme["id"] == "acme" and acme["organization_id"].startswith("00D")
    assert acme["username"] == "integration@acme.example" and acme["password"]
    assert acme["instance_url"] == emu.url
    assert acme["access_token"] != DEFAULT_TOKEN and acme["client_id"] == DEFAULT_CLIENT_ID
    assert acme["daily_api_requests"] == 100000 and acme["features"] == {"enhanced_email": True}
    assert {org["id"] for org in emu.admin.orgs()} == {"default", "acme"}
    assert emu.admin.for_org("acme").credentials() == acme


def test_given_two_orgs_when_one_writes_then_the_other_org_and_the_default_org_see_nothing(emu, acme, globex):
    acme_sf = emu.salesforce(token=acme["access_token"])
    globex_sf = emu.salesforce(token=globex["access_token"])
    acme_sf.Contact.create({"LastName": "Acme Person"})
    globex_sf.Contact.create({"LastName": "Globex Person"})
    assert _query_names(acme_sf) == ["Acme Person"]
    assert _query_names(globex_sf) == ["Globex Person"]
    assert _query_names(emu.salesforce()) == []
    assert emu.admin.for_org("acme").state()["counts"]["Contact"] == 1
    assert emu.admin.state()["counts"]["Contact"] == 0


def test_given_a_record_id_of_one_org_then_another_org_does_not_find_it(emu, acme, globex):
    contact = emu.salesforce(token=acme["access_token"]).Contact.create({"LastName": "Mine"})["id"]
    answer = requests.get(f"{emu.url}/services/data/v59.0/sobjects/Contact/{contact}", timeout=10,
                          headers={"Authorization": f"Bearer {globex['access_token']}"})
    assert answer.status_code == 404
    assert acme["user_id"] != globex["user_id"] != emu.admin.state()["api_user_id"]


def test_given_simple_salesforce_on_a_created_org_then_create_query_and_describe_work(emu, acme):
    sf = Salesforce(instance_url=acme["instance_url"], session_id=acme["access_token"],
                    session=emu.session(), version="59.0")
    account = sf.Account.create({"Name": "Acme Corp"})["id"]
    sf.Contact.create({"LastName": "Doe", "AccountId": account})
    found = sf.query("SELECT Account.Name, CreatedById FROM Contact")["records"][0]
    assert found["Account"]["Name"] == "Acme Corp" and found["CreatedById"] == acme["user_id"]
    assert sf.Contact.describe()["name"] == "Contact"


def test_given_a_fault_in_one_org_then_the_other_org_is_unaffected(emu, acme, globex):
    emu.admin.for_org("acme").add_fault("outage")
    with pytest.raises(SalesforceGeneralError):
        emu.salesforce(token=acme["access_token"]).query("SELECT Id FROM Contact")
    assert emu.salesforce(token=globex["access_token"]).query("SELECT Id FROM Contact")["done"]
    assert emu.salesforce().query("SELECT Id FROM Contact")["done"]
    assert emu.admin.faults() == [] and len(emu.admin.for_org("acme").faults()) == 1


def test_given_calls_in_two_orgs_then_each_org_counts_and_limits_its_own(emu, acme, globex):
    acme_sf = emu.salesforce(token=acme["access_token"])
    for _ in range(3):
        acme_sf.query("SELECT Id FROM Contact")
    emu.salesforce(token=globex["access_token"]).query("SELECT Id FROM Contact")
    assert emu.admin.for_org("acme").api_calls() == 3
    assert emu.admin.for_org("globex").api_calls() == 1
    assert emu.admin.api_calls() == 0
    emu.admin.for_org("globex").set_limits(daily_api_requests=1)
    with pytest.raises(SalesforceRefusedRequest):
        emu.salesforce(token=globex["access_token"]).query("SELECT Id FROM Contact")
    assert acme_sf.query("SELECT Id FROM Contact")["done"]
    assert acme_sf.api_usage["api-usage"].used == 4


def test_given_settings_when_creating_an_org_then_it_starts_and_resets_with_them(emu):
    created = emu.admin.create_org("quiet", features={"enhanced_email": False}, daily_api_requests=50)
    quiet = emu.admin.for_org("quiet")
    assert created["features"] == {"enhanced_email": False} and created["daily_api_requests"] == 50
    quiet.set_features(enhanced_email=True)
    quiet.reset()
    state = quiet.state()
    assert state["features"] == {"enhanced_email": False} and state["api_limit"] == 50
    assert emu.admin.features() == {"enhanced_email": True}


def test_given_enhanced_email_off_in_one_org_then_only_that_org_lacks_email_message(emu, acme):
    emu.admin.for_org("acme").set_features(enhanced_email=False)
    acme_sobjects = {o["name"] for o in emu.salesforce(token=acme["access_token"]).describe()["sobjects"]}
    default_sobjects = {o["name"] for o in emu.salesforce().describe()["sobjects"]}
    assert "EmailMessage" not in acme_sobjects and "EmailMessage" in default_sobjects


def test_given_a_validation_rule_in_one_org_then_writes_in_another_org_pass(emu, acme, globex):
    emu.admin.for_org("acme").add_validation_rule("Contact", "LastName", "equals", "Blocked", "no")
    acme_result = emu.salesforce(token=acme["access_token"]).restful(
        "composite/sobjects", method="POST", json={"records": [{"attributes": {"type": "Contact"},
                                                              "LastName": "Blocked"}]})
    assert acme_result[0]["errors"][0]["statusCode"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert emu.salesforce(token=globex["access_token"]).Contact.create({"LastName": "Blocked"})["success"]


def test_given_each_org_then_it_has_its_own_seeded_users_with_usernames_unique_across_orgs(emu, acme):
    users = {u["Username"]: u for u in emu.admin.for_org("acme").records("User")}
    assert set(users) == {"integration@acme.example", "admin@acme.example", "riley@acme.example",
                          "sam@acme.example"}
    assert users["riley@acme.example"]["Email"] == "riley@seller.example"
    assert users["integration@acme.example"]["Id"] == acme["user_id"]


def test_given_a_username_of_another_org_when_seeding_a_user_then_duplicate_username(emu, acme):
    with pytest.raises(AdminError) as caught:
        emu.admin.seed("User", {"Username": "integration@acme.example", "Email": "x@x.example", "LastName": "X",
                                "Alias": "x"})
    assert "DUPLICATE_USERNAME" in caught.value.text


def test_given_an_org_reset_then_only_that_org_loses_its_records_and_issued_tokens(emu, acme, globex):
    acme_sf = emu.salesforce(token=acme["access_token"])
    acme_sf.Contact.create({"LastName": "A"})
    emu.salesforce(token=globex["access_token"]).Contact.create({"LastName": "G"})
    emu.salesforce().Contact.create({"LastName": "D"})
    issued = requests.post(f"{emu.url}/services/oauth2/token", timeout=10, data={
        "grant_type": "password", "username": acme["username"], "password": "pw"}).json()["access_token"]
    emu.admin.for_org("acme").reset()
    assert _query_names(acme_sf) == []  # the preset token survives a reset
    assert _query_names(emu.salesforce(token=globex["access_token"])) == ["G"]
    assert _query_names(emu.salesforce()) == ["D"]
    with pytest.raises(SalesforceExpiredSession):
        emu.salesforce(token=issued).query("SELECT Id FROM Contact")


def test_given_the_default_reset_then_created_orgs_are_kept(emu, acme):
    emu.salesforce(token=acme["access_token"]).Contact.create({"LastName": "Kept"})
    emu.admin.reset()
    assert _query_names(emu.salesforce(token=acme["access_token"])) == ["Kept"]


def test_given_reset_all_then_created_orgs_are_gone_and_their_tokens_refused(emu, acme):
    emu.salesforce().Contact.create({"LastName": "D"})
    emu.admin.reset_all()
    assert [org["id"] for org in emu.admin.orgs()] == ["default"]
    assert _query_names(emu.salesforce()) == []
    with pytest.raises(SalesforceExpiredSession):
        emu.salesforce(token=acme["access_token"]).query("SELECT Id FROM Contact")


def test_given_a_deleted_org_then_its_token_gets_401_and_its_admin_api_404(emu, acme, api_as):
    emu.admin.delete_org("acme")
    assert api_as(acme["access_token"])("GET", "limits/").status_code == 401
    with pytest.raises(AdminError) as caught:
        emu.admin.for_org("acme").state()
    assert caught.value.status == 404


def test_given_a_recreated_org_then_it_is_new_with_a_new_token(emu, acme, api_as):
    emu.salesforce(token=acme["access_token"]).Contact.create({"LastName": "Old"})
    emu.admin.delete_org("acme")
    again = emu.admin.create_org("acme")
    assert again["access_token"] != acme["access_token"]
    assert _query_names(emu.salesforce(token=again["access_token"])) == []


@pytest.mark.parametrize("name, status", [("acme", 409), ("default", 409), ("Not Valid", 400), ("", 400)])
def test_given_a_taken_or_malformed_org_id_when_creating_then_refused(emu, acme, name, status):
    with pytest.raises(AdminError) as caught:
        emu.admin.create_org(name)
    assert caught.value.status == status


def test_given_bad_org_settings_then_400(emu):
    for settings in ({"features": {"time_travel": True}}, {"daily_api_requests": -1},
                     {"session_ttl_seconds": 0}):
        with pytest.raises(AdminError) as caught:
            emu.admin.create_org("bad", **settings)
        assert caught.value.status == 400


def test_given_the_default_org_when_deleting_it_then_refused(emu):
    with pytest.raises(AdminError) as caught:
        emu.admin.delete_org("default")
    assert caught.value.status == 400


def test_given_the_default_org_by_name_then_it_is_the_unprefixed_admin_api(emu):
    emu.admin.for_org("default").seed("Contact", {"LastName": "Same"})
    assert [r["LastName"] for r in emu.admin.records("Contact")] == ["Same"]
    assert emu.admin.credentials()["access_token"] == DEFAULT_TOKEN


# signing in by username -----------------------------------------------------------------------------

def test_given_a_soap_login_with_an_orgs_username_then_the_session_is_in_that_org(emu, acme):
    sf = Salesforce(username=acme["username"], password=acme["password"], security_token="T",
                    domain="login", session=emu.session())
    sf.Contact.create({"LastName": "Via Soap"})
    assert emu.admin.for_org("acme").state()["counts"]["Contact"] == 1
    assert emu.admin.state()["counts"]["Contact"] == 0


def test_given_a_password_grant_with_an_orgs_username_then_the_token_is_that_orgs(emu, acme, api_as):
    answer = requests.post(f"{emu.url}/services/oauth2/token", timeout=10, data={
        "grant_type": "password", "username": "Riley@Acme.example", "password": "pw", "client_id": "c"}).json()
    assert answer["instance_url"] == emu.url and answer["id"].endswith(
        f"/id/{acme['organization_id']}/{_user_id(emu, 'acme', 'riley@acme.example')}")
    assert api_as(answer["access_token"])("GET", "limits/").status_code == 200
    assert emu.admin.for_org("acme").api_calls() == 1


def test_given_an_unknown_username_in_an_orgs_domain_then_the_login_fails(emu, acme):
    with pytest.raises(SalesforceAuthenticationFailed) as caught:
        Salesforce(username="nobody@acme.example", password="pw", security_token="T", domain="login",
                   session=emu.session())
    assert caught.value.code == "INVALID_LOGIN"
    answer = requests.post(f"{emu.url}/services/oauth2/token", timeout=10, data={
        "grant_type": "password", "username": "nobody@acme.example", "password": "pw"})
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


def test_given_another_username_with_orgs_present_then_the_default_org_still_accepts_it(emu, acme):
    sf = Salesforce(username="ops@customer.example", password="secret", security_token="T", domain="login",
                    session=emu.session())
    sf.Contact.create({"LastName": "Default"})
    assert emu.admin.state()["counts"]["Contact"] == 1


def test_given_a_token_of_a_created_org_when_asking_userinfo_then_that_orgs_user_is_named(emu, acme):
    answer = requests.get(f"{emu.url}/services/oauth2/userinfo", timeout=10,
                          headers={"Authorization": f"Bearer {acme['access_token']}"}).json()
    assert answer["user_id"] == acme["user_id"] and answer["organization_id"] == acme["organization_id"]
    assert answer["preferred_username"] == "integration@acme.example"


def test_given_a_login_as_a_seeded_human_then_writes_are_by_that_user(emu, acme):
    token = requests.post(f"{emu.url}/services/oauth2/token", timeout=10, data={
        "grant_type": "password", "username": "admin@acme.example", "password": "pw"}).json()["access_token"]
    contact = emu.salesforce(token=token).Contact.create({"LastName": "By Admin"})["id"]
    admin_id = _user_id(emu, "acme", "admin@acme.example")
    assert emu.admin.for_org("acme").get("Contact", contact)["CreatedById"] == admin_id


def _user_id(emu, org: str, username: str) -> str:
    return emu.admin.for_org(org).records("User", Username=username)[0]["Id"]
