"""Console sessions live in Redis: signing out ends them, a new sign-in starts a new one, a role change counts now."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.web.conftest import form_token, signed_in
from workers.web.users import save_user

pytestmark = pytest.mark.integration

COOKIE = "sfsync_console"


def _cookie(client: httpx.Client) -> str:
    return client.cookies[COOKIE]


def _with_cookie(base: str, value: str) -> httpx.Client:
    return httpx.Client(base_url=base, follow_redirects=False, timeout=15, cookies={COOKIE: value})


def test_given_a_cookie_kept_from_before_sign_out_when_replayed_then_it_opens_nothing(console, redis_client):
    # given an admin signed in, who keeps a copy of the session cookie
    client = signed_in(console, "ada")
    kept = _cookie(client)
    assert client.get("/audit").status_code == 200

    # when they sign out, and the kept cookie is sent again
    page = client.get("/")
    assert client.post("/logout", data={"csrf_token": form_token(page.text)}).status_code == 303
    with _with_cookie(console, kept) as replay:
        answer = replay.get("/audit")

    # then it leads to the sign-in page, like no cookie at all
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")


def test_given_a_support_user_demoted_to_viewer_when_they_replay_then_the_new_role_applies_at_once(
        own_console, tmp_path, redis_client):
    # given a support user signed in to a console of its own users file
    users = tmp_path / "users.yaml"
    save_user(users, "riley", "riley-password-1", "support")
    base = own_console(users)
    client = signed_in(base, "riley", "riley-password-1")
    token = form_token(client.get("/dead-letters").text)
    assert client.post("/dead-letters/replay/preview", data={"csrf_token": token, "code": "NONE_SUCH"}).status_code != 403

    # when an administrator demotes them to viewer in the users file
    save_user(users, "riley", "riley-password-1", "viewer")

    # then their very next request is a viewer's: the replay is refused
    answer = client.post("/dead-letters/replay/preview", data={"csrf_token": token, "code": "NONE_SUCH"})
    assert answer.status_code == 403 and "viewer" in answer.text


def test_given_a_user_removed_from_the_users_file_then_their_session_ends(own_console, tmp_path, redis_client):
    users = tmp_path / "users.yaml"
    save_user(users, "riley", "riley-password-1", "support")
    base = own_console(users)
    client = signed_in(base, "riley", "riley-password-1")
    assert client.get("/").status_code == 200

    others = tmp_path / "others.yaml"
    save_user(others, "kim", "kim-password-1", "admin")
    users.write_text(others.read_text())  # riley is no longer a user

    answer = client.get("/")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")


def test_given_a_session_cookie_from_before_sign_in_then_signing_in_gives_a_new_one(console, redis_client):
    with httpx.Client(base_url=console, follow_redirects=False, timeout=15) as client:
        token = form_token(client.get("/login").text)
        before = client.cookies.get(COOKIE)
        answer = client.post("/login", data={"username": "val", "password": "viewer-password-1",
                                             "csrf_token": token, "next": "/"})
        assert answer.status_code == 303
        after = _cookie(client)
    assert before and after != before
    # the cookie from before sign-in opens nothing
    with _with_cookie(console, before) as fixed:
        assert fixed.get("/").status_code == 303


def test_the_session_cookie_carries_no_user_or_role_only_a_reference(console, redis_client):
    client = signed_in(console, "sam")
    signed = _cookie(client).split(".")[0]
    carried = json.loads(base64.b64decode(signed + "=" * (-len(signed) % 4)))

    assert set(carried) == {"sid", "csrf"}
    assert "sam" not in json.dumps(carried) and "support" not in json.dumps(carried)
    # Redis holds the session under a digest of the reference, never the reference itself
    assert not [k for k in redis_client.scan_iter(match="sfsync:web:session:*") if carried["sid"] in k]
