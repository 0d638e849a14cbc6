"""Logging in: preset token, SOAP username-password, OAuth token flows, bad sessions."""
from __future__ import annotations

import base64
import json

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceAuthenticationFailed, SalesforceExpiredSession


def test_given_the_preset_token_when_querying_then_the_call_succeeds(sf):
    assert sf.query("SELECT Id FROM User")["totalSize"] == 4


def test_given_any_user_when_logging_in_over_soap_through_simple_salesforce_then_a_session_works(emu):
    sf = Salesforce(username="ops@customer.example", password="secret", security_token="TOKEN",
                    domain="login", session=emu.session())
    assert sf.sf_instance == emu.url.removeprefix("http://")
    created = sf.Contact.create({"LastName": "Soap"})
    assert created["success"]


def test_given_a_wrong_password_when_logging_in_over_soap_then_invalid_login_is_raised(emu):
    with pytest.raises(SalesforceAuthenticationFailed) as caught:
        Salesforce(username="ops@customer.example", password="wrong", security_token="TOKEN",
                   domain="test", session=emu.session())
    assert caught.value.code == "INVALID_LOGIN"


@pytest.mark.parametrize("form", [
    {"grant_type": "password", "username": "u@x.example", "password": "pw", "client_id": "c", "client_secret": "s"},
    {"grant_type": "client_credentials", "client_id": "c", "client_secret": "s"},
])
def test_given_valid_credentials_when_asking_the_oauth_endpoint_then_a_token_and_instance_url_come_back(emu, form):
    answer = requests.post(f"{emu.url}/services/oauth2/token", data=form, timeout=10).json()
    assert answer["instance_url"] == emu.url
    limits = requests.get(f"{emu.url}/services/data/v59.0/limits/",
                          headers={"Authorization": f"Bearer {answer['access_token']}"}, timeout=10)
    assert limits.status_code == 200


def test_given_a_jwt_assertion_when_exchanging_it_then_the_unverified_token_is_accepted(emu):
    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    assertion = f"{b64({'alg': 'RS256'})}.{b64({'sub': 'u@x.example', 'iss': 'key'})}.c2ln"
    answer = requests.post(f"{emu.url}/services/oauth2/token", timeout=10, data={
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion})
    assert answer.status_code == 200 and answer.json()["access_token"]


def test_given_a_jwt_login_through_simple_salesforce_then_it_connects(emu, tmp_path):
    # simple-salesforce signs with a real key; the emulator doesn't verify, but pyjwt needs one to sign
    pytest.importorskip("jwt")
    cryptography = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.rsa")
    from cryptography.hazmat.primitives import serialization
    key = cryptography.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    sf = Salesforce(username="u@x.example", consumer_key="key", privatekey=pem.decode(), session=emu.session())
    assert sf.query("SELECT COUNT() FROM User")["totalSize"] == 4


def test_given_a_wrong_password_when_using_the_oauth_password_flow_then_invalid_grant(emu):
    answer = requests.post(f"{emu.url}/services/oauth2/token", timeout=10, data={
        "grant_type": "password", "username": "u@x.example", "password": "wrong", "client_id": "c"})
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


def test_given_an_unknown_grant_type_then_unsupported_grant_type(emu):
    answer = requests.post(f"{emu.url}/services/oauth2/token", data={"grant_type": "magic"}, timeout=10)
    assert answer.json()["error"] == "unsupported_grant_type"


@pytest.mark.parametrize("header", [None, "Bearer not-a-token", "Basic abc"])
def test_given_no_valid_token_when_calling_the_data_api_then_401_invalid_session_and_no_call_counted(emu, header):
    headers = {"Authorization": header} if header else {}
    answer = requests.get(f"{emu.url}/services/data/v59.0/limits/", headers=headers, timeout=10)
    assert answer.status_code == 401
    assert answer.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID",
                              "fields": []}]
    assert emu.admin.api_calls() == 0


def test_given_a_bad_token_when_simple_salesforce_queries_then_it_raises_expired_session(emu):
    sf = Salesforce(instance_url=emu.url, session_id="nope", session=emu.session())
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM Contact")


def test_given_a_token_when_userinfo_asked_then_the_api_user_is_named(emu):
    emulator = emu
    import requests

    ok = requests.get(f"{emulator.url}/services/oauth2/userinfo",
                      headers={"Authorization": f"Bearer {emulator.token}"}, timeout=10)
    bad = requests.get(f"{emulator.url}/services/oauth2/userinfo",
                       headers={"Authorization": "Bearer nope"}, timeout=10)
    assert ok.status_code == 200 and ok.json()["user_id"] == emulator.admin.state()["api_user_id"]
    assert bad.status_code == 403


def _soap(emu, username: str, password: str) -> None:
    Salesforce(username=username, password=password, security_token="", domain="login", session=emu.session())


def test_given_invalid_logins_up_to_the_orgs_lockout_then_even_the_right_password_is_refused(emu):
    org = emu.admin.create_org("strict", lockout_after=3)
    admin = emu.admin.for_org("strict")
    for _ in range(3):
        with pytest.raises(SalesforceAuthenticationFailed):
            _soap(emu, org["username"], "wrong-password")

    with pytest.raises(SalesforceAuthenticationFailed) as locked:
        _soap(emu, org["username"], org["password"])

    assert locked.value.code == "INVALID_LOGIN"
    state = admin.state()
    assert state["failed_logins"] == {org["username"].lower(): 3} and state["locked_out"] == [org["username"].lower()]
    # the OAuth password grant is refused too, and counts as Salesforce counts it
    answer = requests.post(f"{emu.url}/services/oauth2/token", timeout=10, data={
        "grant_type": "password", "username": org["username"], "password": org["password"], "client_id": "c",
        "client_secret": "s"})
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


def test_given_a_good_login_before_the_lockout_then_the_count_starts_again(emu):
    org = emu.admin.create_org("strict", lockout_after=3)
    for _ in range(2):
        with pytest.raises(SalesforceAuthenticationFailed):
            _soap(emu, org["username"], "wrong-password")
    _soap(emu, org["username"], org["password"])
    for _ in range(2):
        with pytest.raises(SalesforceAuthenticationFailed):
            _soap(emu, org["username"], "wrong-password")

    _soap(emu, org["username"], org["password"])  # not locked: 2 + 2 is not 3 in a row

    assert emu.admin.for_org("strict").state()["locked_out"] == []


def test_the_default_lockout_is_salesforces_ten(emu):
    assert emu.admin.state()["lockout_after"] == 10
