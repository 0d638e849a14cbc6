"""The console's connect form sends credentials only to Salesforce's hosts (or those listed), and says why not."""

from __future__ import annotations

import json

import pytest

from salesforce_emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from schemas.workspace import SalesforceConnection, WorkspaceSpec
from tests.hostile_hosts import Listener
from tests.web.conftest import form_token, registry, signed_in
from workspaces.registry import ENTRIES

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("login, why", [
    ("http://169.254.169.254", "plain http"),
    ("https://169.254.169.254", "not a Salesforce host"),
    ("https://user:pw@10.0.0.5:8443", "user:password"),
    ("https://acme.my.salesforce.com.attacker.example", "not a Salesforce host"),
    ("http://127.0.0.2:8080", "plain http"),
    ("https://acme.my.salesforce.com/path", "just scheme and host"),
])
def test_a_login_url_that_is_not_salesforces_is_refused_on_the_form_and_nothing_is_started(
        console, redis_client, login, why):
    admin = signed_in(console, "ada")
    token = form_token(admin.get("/workspaces/ws_acme/connect").text)

    answer = admin.post("/workspaces/ws_acme/connect/start",
                        data={"csrf_token": token, "login": login, "client_id": "app", "client_secret": "s3cret"})

    assert answer.status_code == 400
    assert why in answer.text
    assert list(redis_client.scan_iter(match="sfsync:web:oauth:*")) == []


def test_a_listed_host_and_salesforces_own_lead_to_their_authorize_page_with_the_state_sealed(
        console, redis_client, emulator):
    admin = signed_in(console, "ada")
    page = admin.get("/workspaces/ws_acme/connect")
    token = form_token(page.text)
    csp = page.headers["content-security-policy"]
    assert "form-action 'self' https://*.salesforce.com" in csp and "http://127.0.0.1:*" in csp
    assert " https: " not in csp and " http: " not in csp and "base-uri 'none'" in csp

    for login, where in ((emulator.url, emulator.url), ("acme", "https://acme.my.salesforce.com")):
        answer = admin.post("/workspaces/ws_acme/connect/start",
                            data={"csrf_token": token, "login": login, "client_id": "app", "client_secret": "s3cret"})
        assert answer.status_code == 303
        assert answer.headers["location"].startswith(f"{where}/services/oauth2/authorize?")
    # what waits for Salesforce's answer is sealed: neither the login host nor the secret is readable in Redis
    pending = [redis_client.get(k) for k in redis_client.scan_iter(match="sfsync:web:oauth:*")]
    assert len(pending) == 2 and not [p for p in pending if "s3cret" in p or "127.0.0.1" in p or "acme" in p]


def test_a_login_url_changed_in_redis_when_support_tests_the_connection_then_nothing_reaches_the_listener(
        console, redis_client, emulator):
    # given an OAuth-connected workspace, and an attacker's host its clear login URL is pointed at
    token = emulator.admin.issue_refresh_token(client_id=DEFAULT_CLIENT_ID)
    registry(redis_client).apply([WorkspaceSpec(id="ws_oauth", salesforce=SalesforceConnection(
        login_url=emulator.url, client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET,
        refresh_token=token))], author="test")
    with Listener() as listener:
        entry = json.loads(redis_client.hget(ENTRIES, "ws_oauth"))
        entry["salesforce"]["login_url"] = listener.url
        redis_client.hset(ENTRIES, "ws_oauth", json.dumps(entry))

        # when a support user presses Test connection
        support = signed_in(console, "sam")
        token_field = form_token(support.get("/workspaces/ws_oauth").text)
        answer = support.post("/workspaces/ws_oauth/test-connection", data={"csrf_token": token_field})

    # then the console says the entry was changed, and the listener got nothing
    assert "changed outside sfsync" in answer.text
    assert listener.received == []
