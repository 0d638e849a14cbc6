"""The console behind a proxy and under load: password checks off the event loop, https when it says so, quiet logs."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import yaml
from argon2 import PasswordHasher

from tests.web.conftest import form_token, signed_in

pytestmark = pytest.mark.integration


def test_while_a_slow_password_check_runs_other_requests_are_answered(own_console, tmp_path, redis_client):
    # given a user whose password hash takes a second or more to check
    slow = PasswordHasher(time_cost=60, memory_cost=64 * 1024, parallelism=1).hash("slow-password-1")
    users = tmp_path / "users.yaml"
    users.write_text(yaml.safe_dump({"users": [{"username": "slow", "password_hash": slow, "role": "viewer"}]}))
    base = own_console(users)
    finished: dict[str, float] = {}

    def sign_in_slowly() -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            token = form_token(client.get("/login").text)
            client.post("/login", data={"username": "slow", "password": "wrong-password", "csrf_token": token})
        finished["sign-in"] = time.monotonic()

    # when someone signs in with it, and another page is asked for meanwhile
    worker = threading.Thread(target=sign_in_slowly)
    worker.start()
    time.sleep(0.3)
    with httpx.Client(base_url=base, timeout=60) as client:
        assert client.get("/login").status_code == 200
    finished["page"] = time.monotonic()
    worker.join(60)

    # then the page came back while the check was still running
    assert finished["page"] < finished["sign-in"], "the password check held up another request"


def test_signed_in_pages_are_never_cached_and_static_files_may_be(console, redis_client):
    admin = signed_in(console, "ada")
    for path in ("/", "/audit", "/dead-letters", "/login"):
        assert admin.get(path).headers["cache-control"] == "no-store", path
    assert admin.get("/static/console.css").headers.get("cache-control") != "no-store"


def test_behind_a_trusted_proxy_that_says_https_the_cookie_is_secure_and_hsts_is_sent(own_console, users_file,
                                                                                      redis_client):
    base = own_console(users_file, web_trusted_proxies="127.0.0.1")
    with httpx.Client(base_url=base, timeout=15) as client:
        answer = client.get("/login", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.0.0.1"})
    assert "secure" in answer.headers["set-cookie"].lower()
    assert answer.headers["strict-transport-security"].startswith("max-age=")


def test_without_a_trusted_proxy_a_forwarded_proto_is_not_believed(console, redis_client):
    with httpx.Client(base_url=console, timeout=15) as client:
        answer = client.get("/login", headers={"X-Forwarded-Proto": "https"})
    assert "strict-transport-security" not in answer.headers
    assert "secure" not in answer.headers["set-cookie"].lower()  # plain http on loopback: the demo's case


def test_with_a_public_url_the_oauth_redirect_uri_is_built_from_it_not_from_the_host_header(own_console, users_file,
                                                                                           redis_client):
    # (plain http here, as the test's client reaches the console without TLS: an https public URL makes the
    # cookie Secure, which an http client does not send back)
    base = own_console(users_file, web_public_url="http://sfsync.example.com:8443")
    admin = signed_in(base, "ada", headers={"Host": "attacker.example"})
    token = form_token(admin.get("/workspaces/ws_acme/connect").text)

    answer = admin.post("/workspaces/ws_acme/connect/start", data={"csrf_token": token, "login": "login",
                                                                    "client_id": "app"})

    assert answer.status_code == 303
    location = httpx.URL(answer.headers["location"])
    assert location.params["redirect_uri"] == "http://sfsync.example.com:8443/oauth/salesforce/callback"


def test_the_access_log_never_holds_a_query_string(own_console, users_file, redis_client):
    base = own_console(users_file)
    with httpx.Client(base_url=base, timeout=15) as client:
        client.get("/oauth/salesforce/callback?code=aPrn3code-SECRET&state=st4te-SECRET")
        client.get("/login?next=/dead-letters%3Fcode%3DX")
    time.sleep(0.5)
    log = own_console.processes[-1].output()
    assert "/oauth/salesforce/callback" in log and "/login" in log
    assert "SECRET" not in log and "code=" not in log



def test_a_workspace_whose_logins_stopped_says_so_and_what_to_do(console, redis_client):
    from events.keys import key

    redis_client.hset(key("ws_acme", "salesforce"), mapping={
        "state": "disconnected", "code": "LOGIN_FAILED", "reason": "refused", "since": f"{time.time():.3f}",
        "login_refused": "2", "login_refused_at": f"{time.time():.3f}", "login_fingerprint": "x"})

    page = signed_in(console, "val").get("/workspaces/ws_acme").text

    assert "logins stopped after 2 refused tries" in page and "Test connection" in page
