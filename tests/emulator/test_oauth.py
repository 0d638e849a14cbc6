"""OAuth 2.0 as services use it: one connected app, the web-server flow with PKCE, refresh, revocation, expiry."""
from __future__ import annotations

import base64
import hashlib
import hmac
import time
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from simple_salesforce.exceptions import SalesforceExpiredSession

from salesforce_emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, sessions

CALLBACK = "http://127.0.0.1:8099/oauth/callback"
VERIFIER = "verifier-" + "x" * 50


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


def _authorization(**overrides) -> dict:
    params = {"response_type": "code", "client_id": DEFAULT_CLIENT_ID, "redirect_uri": CALLBACK,
              "state": "st-123", "code_challenge": _challenge(VERIFIER), "code_challenge_method": "S256"}
    return {k: v for k, v in {**params, **overrides}.items() if v is not None}


class _Form(HTMLParser):
    """The inputs and buttons of the authorization page, as a browser would submit them."""

    def __init__(self):
        super().__init__()
        self.action = None
        self.fields: dict[str, str] = {}
        self.labels: dict[str, str] = {}
        self.buttons: dict[str, dict] = {}
        self._open: tuple[str, dict] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.action = attrs.get("action")
        elif tag == "input":
            self.fields[attrs["name"]] = attrs.get("value") or ""
            assert attrs.get("type") == "hidden" or attrs.get("id") == attrs["name"]
        elif tag in ("label", "button"):
            self._open = (tag, attrs)

    def handle_data(self, data):
        if self._open and data.strip():
            tag, attrs = self._open
            if tag == "label":
                self.labels[attrs["for"]] = data.strip()
            else:
                self.buttons[data.strip()] = attrs
            self._open = None


def _form(html: str) -> _Form:
    form = _Form()
    form.feed(html)
    return form


def _sign_in(emu, username: str, password: str = "pw", button: str = "Allow", **overrides) -> requests.Response:
    """What a browser does: GET the page, fill the form, press a button; the redirect is not followed."""
    page = requests.get(f"{emu.url}/services/oauth2/authorize", params=_authorization(**overrides), timeout=10)
    assert page.status_code == 200, page.text
    form = _form(page.text)
    pressed = form.buttons[button]
    data = {**form.fields, "username": username, "password": password, pressed["name"]: pressed["value"]}
    return requests.post(f"{emu.url}{form.action}", data=data, allow_redirects=False, timeout=10)


def _redirect_query(answer: requests.Response) -> dict:
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(CALLBACK + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def _code(emu, username: str, **overrides) -> str:
    return _redirect_query(_sign_in(emu, username, **overrides))["code"]


def _token(emu, **form) -> requests.Response:
    return requests.post(f"{emu.url}/services/oauth2/token", data=form, timeout=10)


def _exchange(emu, code: str, verifier: str = VERIFIER, **overrides) -> requests.Response:
    form = {"grant_type": "authorization_code", "code": code, "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET, "redirect_uri": CALLBACK, "code_verifier": verifier}
    return _token(emu, **{k: v for k, v in {**form, **overrides}.items() if v is not None})


def _refresh(emu, refresh_token: str, **overrides) -> requests.Response:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET}
    return _token(emu, **{**form, **overrides})


@pytest.fixture
def acme(emu):
    return emu.admin.create_org("acme")


# the authorization page --------------------------------------------------------------------------------

def test_given_the_authorize_url_then_a_plain_form_with_labelled_username_password_allow_and_deny(emu):
    page = requests.get(f"{emu.url}/services/oauth2/authorize", params=_authorization(), timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<script" not in page.text
    form = _form(page.text)
    assert form.action == "/services/oauth2/authorize"
    assert form.labels == {"username": "Username", "password": "Password"}
    assert set(form.buttons) == {"Allow", "Deny"}
    assert form.fields["state"] == "st-123" and form.fields["redirect_uri"] == CALLBACK


def test_given_the_full_pkce_flow_over_http_then_the_token_answer_is_salesforces_and_works(emu, acme):
    query = _redirect_query(_sign_in(emu, acme["username"], acme["password"]))
    assert query["state"] == "st-123"
    answer = _exchange(emu, query["code"])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"access_token", "refresh_token", "instance_url", "id", "token_type", "issued_at",
                         "signature", "scope"}
    assert body["instance_url"] == emu.url and body["token_type"] == "Bearer"
    assert body["id"] == f"{emu.url}/id/{acme['organization_id']}/{acme['user_id']}"
    expected = hmac.new(DEFAULT_CLIENT_SECRET.encode(), (body["id"] + body["issued_at"]).encode(),
                        hashlib.sha256).digest()
    assert body["signature"] == base64.b64encode(expected).decode()
    sf = emu.salesforce(token=body["access_token"])
    sf.Contact.create({"LastName": "Via OAuth"})
    assert emu.admin.for_org("acme").state()["counts"]["Contact"] == 1
    assert emu.admin.for_org("acme").token_grants() == {"authorization_code": 1}


def test_given_a_wrong_verifier_then_invalid_grant_and_the_code_is_spent(emu, acme):
    code = _code(emu, acme["username"])
    wrong = _exchange(emu, code, verifier="not-the-verifier-" + "y" * 40)
    assert wrong.status_code == 400
    assert wrong.json() == {"error": "invalid_grant", "error_description": "invalid code verifier"}
    assert _exchange(emu, code).json()["error"] == "invalid_grant"


def test_given_a_code_used_once_then_using_it_again_is_refused(emu, acme):
    code = _code(emu, acme["username"])
    assert _exchange(emu, code).status_code == 200
    again = _exchange(emu, code)
    assert again.status_code == 400
    assert again.json() == {"error": "invalid_grant", "error_description": "invalid authorization code"}


def test_given_a_missing_verifier_when_a_challenge_was_sent_then_invalid_grant(emu, acme):
    code = _code(emu, acme["username"])
    assert _exchange(emu, code, verifier=None).json()["error_description"] == "invalid code verifier"


def test_given_a_plain_challenge_then_the_verifier_itself_is_compared(emu, acme):
    code = _code(emu, acme["username"], code_challenge="plain-" + "p" * 45, code_challenge_method="plain")
    assert _exchange(emu, code, verifier="plain-" + "p" * 45).status_code == 200


def test_given_no_pkce_then_the_client_secret_alone_is_enough(emu, acme):
    code = _code(emu, acme["username"], code_challenge=None, code_challenge_method=None)
    assert _exchange(emu, code, verifier=None).status_code == 200


def test_given_another_redirect_uri_at_the_exchange_then_redirect_uri_mismatch(emu, acme):
    code = _code(emu, acme["username"])
    answer = _exchange(emu, code, redirect_uri="http://127.0.0.1:8099/other")
    assert answer.json()["error"] == "redirect_uri_mismatch"


@pytest.mark.parametrize("overrides", [{"client_secret": "wrong-secret"}, {"client_secret": None},
                                       {"client_id": "unknown-client"}])
def test_given_a_bad_client_at_the_exchange_then_invalid_client(emu, acme, overrides):
    code = _code(emu, acme["username"])
    answer = _exchange(emu, code, **overrides)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_client"


def test_given_an_old_code_then_it_has_expired(emu, acme, monkeypatch):
    monkeypatch.setattr(sessions, "CODE_LIFETIME_SECONDS", 0.05)
    code = _code(emu, acme["username"])
    time.sleep(0.1)
    assert _exchange(emu, code).json() == {"error": "invalid_grant", "error_description": "invalid authorization code"}


def test_given_deny_then_the_app_gets_access_denied_with_its_state(emu, acme):
    query = _redirect_query(_sign_in(emu, acme["username"], button="Deny"))
    assert query["error"] == "access_denied" and query["state"] == "st-123" and "code" not in query


@pytest.mark.parametrize("username, password", [("integration@acme.example", "wrong-password"),
                                                ("nobody@acme.example", "pw"), ("", "")])
def test_given_bad_credentials_then_the_form_comes_back_with_an_error(emu, acme, username, password):
    answer = _sign_in(emu, username, password)
    assert answer.status_code == 200
    assert 'role="alert"' in answer.text and "Please check your username and password" in answer.text
    assert _form(answer.text).fields["code_challenge"] == _challenge(VERIFIER)


def test_given_a_username_of_no_org_then_the_authorization_page_refuses_it(emu):
    answer = _sign_in(emu, "someone@nowhere.example")
    assert answer.status_code == 200 and "Please check your username" in answer.text


def test_given_the_default_orgs_integration_user_then_the_flow_signs_in_to_the_default_org(emu):
    body = _exchange(emu, _code(emu, "integration@sfsync.example")).json()
    assert emu.salesforce(token=body["access_token"]).Contact.create({"LastName": "D"})["success"]
    assert emu.admin.state()["counts"]["Contact"] == 1


@pytest.mark.parametrize("overrides, error", [({"client_id": "unknown"}, "invalid_client_id"),
                                              ({"redirect_uri": "https://evil.example/cb"}, "redirect_uri_mismatch"),
                                              ({"redirect_uri": None}, "redirect_uri_mismatch")])
def test_given_an_unknown_client_or_redirect_uri_then_an_error_page_and_never_a_redirect(emu, overrides, error):
    params = _authorization(**overrides)
    for answer in (requests.get(f"{emu.url}/services/oauth2/authorize", params=params, allow_redirects=False,
                                timeout=10),
                   requests.post(f"{emu.url}/services/oauth2/authorize", allow_redirects=False, timeout=10,
                                 data={**params, "username": "integration@sfsync.example", "password": "pw",
                                       "action": "allow"})):
        assert answer.status_code == 400 and "location" not in answer.headers
        assert error in answer.text


def test_given_an_unsupported_response_type_then_the_app_is_told_so(emu):
    answer = requests.get(f"{emu.url}/services/oauth2/authorize", params=_authorization(response_type="token"),
                          allow_redirects=False, timeout=10)
    assert _redirect_query(answer)["error"] == "unsupported_response_type"


def test_given_a_created_connected_app_then_only_its_exact_callbacks_and_secret_work(emu, acme):
    app = emu.admin.create_connected_app(redirect_uris=["https://app.example/oauth/callback"])
    assert app["client_id"] != DEFAULT_CLIENT_ID and app["client_secret"]
    loopback = requests.get(f"{emu.url}/services/oauth2/authorize", timeout=10,
                            params=_authorization(client_id=app["client_id"]))
    assert loopback.status_code == 400
    answer = _sign_in(emu, acme["username"], client_id=app["client_id"],
                      redirect_uri="https://app.example/oauth/callback")
    code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
    default_secret = _exchange(emu, code, client_id=app["client_id"],
                               redirect_uri="https://app.example/oauth/callback")
    assert default_secret.json()["error"] == "invalid_client"


def test_given_a_scope_without_refresh_token_then_no_refresh_token_is_handed_out(emu, acme):
    body = _exchange(emu, _code(emu, acme["username"], scope="api")).json()
    assert body["scope"] == "api" and "refresh_token" not in body


# refresh, revocation, expiry -----------------------------------------------------------------------------

def test_given_a_refresh_token_then_a_new_access_token_and_no_new_refresh_token(emu, acme):
    first = _exchange(emu, _code(emu, acme["username"])).json()
    answer = _refresh(emu, first["refresh_token"])
    assert answer.status_code == 200
    body = answer.json()
    assert "refresh_token" not in body and body["access_token"] != first["access_token"]
    assert body["id"] == first["id"] and body["instance_url"] == emu.url
    assert emu.salesforce(token=body["access_token"]).query("SELECT Id FROM Contact")["done"]
    assert emu.salesforce(token=first["access_token"]).query("SELECT Id FROM Contact")["done"]
    assert emu.admin.for_org("acme").token_grants() == {"authorization_code": 1, "refresh_token": 1}
    assert [e["grant_type"] for e in emu.admin.for_org("acme").oauth_log()] == ["authorization_code",
                                                                                "refresh_token"]


@pytest.mark.parametrize("overrides", [{"client_secret": "wrong"}, {"client_id": "someone-else"}])
def test_given_a_bad_client_when_refreshing_then_invalid_client(emu, acme, overrides):
    refresh = emu.admin.for_org("acme").issue_refresh_token()
    assert _refresh(emu, refresh, **overrides).json()["error"] == "invalid_client"


def test_given_an_unknown_refresh_token_then_invalid_grant_expired(emu):
    answer = _refresh(emu, "5Aep-not-issued")
    assert answer.status_code == 400
    assert answer.json() == {"error": "invalid_grant", "error_description": "expired access/refresh token"}


def test_given_a_revoked_refresh_token_then_it_and_its_access_tokens_are_dead(emu, acme, api_as):
    body = _exchange(emu, _code(emu, acme["username"])).json()
    refreshed = _refresh(emu, body["refresh_token"]).json()["access_token"]
    answer = requests.post(f"{emu.url}/services/oauth2/revoke", data={"token": body["refresh_token"]}, timeout=10)
    assert answer.status_code == 200
    assert _refresh(emu, body["refresh_token"]).json() == {"error": "invalid_grant",
                                                           "error_description": "expired access/refresh token"}
    for token in (body["access_token"], refreshed):
        assert api_as(token)("GET", "limits/").status_code == 401
    assert api_as(acme["access_token"])("GET", "limits/").status_code == 200


def test_given_a_revoked_access_token_then_401_but_its_refresh_token_still_works(emu, acme, api_as):
    body = _exchange(emu, _code(emu, acme["username"])).json()
    assert requests.post(f"{emu.url}/services/oauth2/revoke", data={"token": body["access_token"]},
                         timeout=10).status_code == 200
    assert api_as(body["access_token"])("GET", "limits/").status_code == 401
    assert _refresh(emu, body["refresh_token"]).status_code == 200


def test_given_an_unknown_token_when_revoking_then_400_invalid_token(emu):
    answer = requests.post(f"{emu.url}/services/oauth2/revoke", data={"token": "nope"}, timeout=10)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_token"


def test_given_expired_sessions_then_401_not_counted_then_a_refresh_works(emu, acme, api_as):
    admin = emu.admin.for_org("acme")
    refresh = admin.issue_refresh_token()
    token = _refresh(emu, refresh).json()["access_token"]
    assert admin.expire_sessions() >= 2  # the preset token and the one just issued
    answer = api_as(token)("GET", "limits/")
    assert answer.status_code == 401
    assert answer.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID",
                              "fields": []}]
    assert api_as(acme["access_token"])("GET", "limits/").status_code == 401
    assert admin.api_calls() == 0
    fresh = _refresh(emu, refresh).json()["access_token"]
    assert api_as(fresh)("GET", "limits/").status_code == 200
    assert api_as(emu.token)("GET", "limits/").status_code == 200  # other orgs keep their sessions


def test_given_a_session_ttl_when_it_passes_then_simple_salesforce_sees_an_expired_session_and_refresh_helps(emu,
                                                                                                          acme):
    admin = emu.admin.for_org("acme")
    admin.set_session_ttl(0.3)
    refresh = admin.issue_refresh_token()
    sf = emu.salesforce(token=_refresh(emu, refresh).json()["access_token"])
    assert sf.query("SELECT Id FROM Contact")["done"]
    time.sleep(0.35)
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM Contact")
    sf = emu.salesforce(token=_refresh(emu, refresh).json()["access_token"])
    assert sf.query("SELECT Id FROM Contact")["done"]
    assert emu.salesforce(token=acme["access_token"]).query("SELECT Id FROM Contact")["done"]  # preset: no TTL
    assert admin.sessions()["session_ttl_seconds"] == 0.3
    assert admin.token_grants() == {"refresh_token": 2}


def test_given_an_org_created_with_a_session_ttl_then_tokens_it_issues_expire(emu, api_as):
    created = emu.admin.create_org("brief", session_ttl_seconds=0.2)
    assert created["session_ttl_seconds"] == 0.2
    token = requests.post(f"{emu.url}/services/oauth2/token", timeout=10, data={
        "grant_type": "password", "username": created["username"], "password": "pw"}).json()["access_token"]
    assert api_as(token)("GET", "limits/").status_code == 200
    time.sleep(0.25)
    assert api_as(token)("GET", "limits/").status_code == 401


def test_given_admin_revoked_refresh_tokens_then_refresh_fails_with_invalid_grant(emu, acme):
    admin = emu.admin.for_org("acme")
    refresh = admin.issue_refresh_token()
    assert admin.revoke_refresh_tokens() == 1
    assert _refresh(emu, refresh).json()["error"] == "invalid_grant"


def test_given_an_issued_refresh_token_for_a_named_user_then_userinfo_names_that_user(emu, acme):
    refresh = emu.admin.for_org("acme").issue_refresh_token(username="riley@acme.example")
    token = _refresh(emu, refresh).json()["access_token"]
    info = requests.get(f"{emu.url}/services/oauth2/userinfo", headers={"Authorization": f"Bearer {token}"},
                        timeout=10).json()
    assert info["preferred_username"] == "riley@acme.example"
    assert info["organization_id"] == acme["organization_id"]


def test_given_the_identity_url_of_a_token_answer_then_it_describes_the_user(emu, acme):
    body = _refresh(emu, emu.admin.for_org("acme").issue_refresh_token()).json()
    identity = requests.get(body["id"], headers={"Authorization": f"Bearer {body['access_token']}"}, timeout=10)
    assert identity.status_code == 200 and identity.json()["username"] == acme["username"]


def test_given_a_connected_app_bound_to_an_org_then_client_credentials_run_as_its_integration_user(emu, acme):
    app = emu.admin.create_connected_app(org="acme")
    body = _token(emu, grant_type="client_credentials", client_id=app["client_id"],
                  client_secret=app["client_secret"]).json()
    assert body["id"].endswith(f"/{acme['organization_id']}/{acme['user_id']}")
    assert emu.admin.for_org("acme").token_grants() == {"client_credentials": 1}


def test_given_the_client_in_an_http_basic_header_then_the_exchange_accepts_it(emu, acme):
    code = _code(emu, acme["username"])
    answer = requests.post(f"{emu.url}/services/oauth2/token", auth=(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET),
                           timeout=10, data={"grant_type": "authorization_code", "code": code,
                                             "redirect_uri": CALLBACK, "code_verifier": VERIFIER})
    assert answer.status_code == 200 and answer.json()["refresh_token"]


def test_given_non_ascii_secrets_and_verifiers_then_plain_refusals_not_server_errors(emu, acme):
    code = _code(emu, acme["username"], code_challenge="ché" * 15, code_challenge_method="plain")
    assert _exchange(emu, code, verifier="ça-" * 20).json()["error"] == "invalid_grant"
    assert _refresh(emu, "x", client_secret="sécret").json()["error"] == "invalid_client"
