"""Anonymous requests cannot flood Redis or the audit log, nor guess past the sign-in throttle from many addresses."""

from __future__ import annotations

import httpx
import pytest

from events.audit import ANONYMOUS_STREAM, STREAM
from tests.web.conftest import PASSWORDS, form_token, signed_in
from workers.web.users import save_user

pytestmark = pytest.mark.integration


def _attempt(base: str, username: str, password: str, forwarded_for: str | None = None,
             client: httpx.Client | None = None) -> httpx.Response:
    """One sign-in through the form, from a fresh browser (optionally behind a proxy naming an address)."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    own = client is None
    client = client or httpx.Client(base_url=base, follow_redirects=False, timeout=30)
    try:
        token = form_token(client.get("/login", headers=headers).text)
        return client.post("/login", headers=headers, data={"username": username, "password": password,
                                                            "csrf_token": token, "next": "/"})
    finally:
        if own:
            client.close()


def _redis_bytes(redis_client) -> int:
    """Bytes the keys of the test's database take (the server's total also counts other databases' users)."""
    return sum(int(redis_client.memory_usage(k) or 0) for k in redis_client.scan_iter(count=1000))


def test_given_a_900_kb_user_name_when_sign_in_fails_then_one_short_audit_entry_and_little_memory(
        console, redis_client):
    before = _redis_bytes(redis_client)
    name = "x" * 900_000

    answer = _attempt(console, name, "wrong-password")

    assert answer.status_code == 401
    [entry] = [fields for _, fields in redis_client.xrange(ANONYMOUS_STREAM)] + \
              [fields for _, fields in redis_client.xrange(STREAM)]
    assert entry["action"] == "sign_in_failed" and sum(len(v) for v in entry.values()) < 2000
    assert entry["user"].endswith("(900,000 characters)")
    # twenty-five of them (23 MB of entries before) leave Redis about as it was
    for _ in range(24):
        _attempt(console, name, "wrong-password")
    assert _redis_bytes(redis_client) - before < 1_000_000
    # and the audit page stays small
    admin = signed_in(console, "ada")
    assert len(admin.get("/audit").content) < 500_000


def test_a_request_body_over_the_limit_is_refused_before_it_is_read(console, redis_client):
    with httpx.Client(base_url=console, timeout=30) as client:
        token = form_token(client.get("/login").text)
        answer = client.post("/login", content=b"username=" + b"x" * 2_000_000 + f"&csrf_token={token}".encode(),
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 413
    assert redis_client.xlen(ANONYMOUS_STREAM) == 0 if redis_client.exists(ANONYMOUS_STREAM) else True


def test_given_a_flood_of_failed_sign_ins_then_few_are_audited_and_real_history_is_kept(console, redis_client):
    admin = signed_in(console, "ada")
    kept = [fields for _, fields in redis_client.xrange(STREAM) if fields.get("action") == "sign_in"]
    assert kept

    with httpx.Client(base_url=console, follow_redirects=False, timeout=30) as client:
        for n in range(80):
            _attempt(console, f"nobody-{n}", "wrong-password", client=client)

    anonymous = redis_client.xlen(ANONYMOUS_STREAM)
    assert 1 <= anonymous <= 40
    # the signed-in history is where it was, untouched by the flood
    assert [fields for _, fields in redis_client.xrange(STREAM) if fields.get("action") == "sign_in"][:len(kept)] == kept
    assert "sign_in_failed" in admin.get("/audit").text


def test_without_a_trusted_proxy_a_forwarded_address_changes_nothing(console, redis_client):
    for n in range(6):
        _attempt(console, "val", "wrong-password", forwarded_for=f"10.9.0.{n}")

    answer = _attempt(console, "val", PASSWORDS["val"], forwarded_for="10.9.9.9")

    assert answer.status_code == 429


def test_behind_a_trusted_proxy_the_account_itself_is_throttled_whatever_the_address(own_console, tmp_path,
                                                                                      redis_client):
    users = tmp_path / "users.yaml"
    save_user(users, "root", "root-password-1", "admin")
    base = own_console(users, web_trusted_proxies="127.0.0.1")

    # twelve wrong tries spread over three addresses meet a 429 ...
    codes = [_attempt(base, "root", "wrong-password", forwarded_for=f"10.0.0.{n % 3}").status_code
             for n in range(12)]
    assert 429 in codes
    # ... and the right password from a fourth address waits too (a short, growing wait: not a lockout)
    answer = _attempt(base, "root", "root-password-1", forwarded_for="10.0.0.99")
    assert answer.status_code == 429 and "seconds" in answer.text


def test_behind_a_trusted_proxy_one_address_guessing_many_names_is_stopped(own_console, tmp_path, redis_client):
    users = tmp_path / "users.yaml"
    save_user(users, "root", "root-password-1", "admin")
    base = own_console(users, web_trusted_proxies="127.0.0.1")

    codes = [_attempt(base, f"user{n}", "wrong-password", forwarded_for="10.1.1.1").status_code for n in range(25)]

    assert codes[-1] == 429
    # another address is not held back by it
    assert _attempt(base, "root", "root-password-1", forwarded_for="10.2.2.2").status_code == 303
