"""The console refuses what it must: no session, the wrong role, no CSRF token; it never runs or shows what it must not."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect
from starlette.routing import Route

from events.deadletter import DeadLetterStore
from events.parking import UsageGauge
from schemas.settings import load_settings
from tests.factories import email_event
from tests.web.conftest import PASSWORDS, REDIS_PASSWORD, SECRET_KEY, SECRET_KEYS, sign_in
from workers.web.app import ConsoleConfig, create_app

pytestmark = pytest.mark.integration

#: reachable without a session: the sign-in page, the demo's link (refused without its token) and
#: signing out (which, without a session, only leads back to the sign-in page)
PUBLIC = {"/login", "/auth/demo", "/logout"}


def _letter(redis_client, subject: str = "Quick question", event_id: str = "evt_sec_1"):
    return DeadLetterStore(redis_client).add(
        event=email_event(subject=subject, event_id=event_id), event_id=event_id, event_type="email.sent",
        workspace_id="ws_acme", error_code="FIELD_CUSTOM_VALIDATION_EXCEPTION",
        error_message=f"bad value in {subject}")


def _console_routes(users_file) -> list[tuple[str, str]]:
    settings = load_settings({}, web_secret_key=SECRET_KEY, web_users_file=str(users_file))
    app = create_app(ConsoleConfig.from_settings(settings))
    found = []
    for route in app.routes:
        if isinstance(route, Route) and route.path not in PUBLIC:
            path = re.sub(r"\{[^}]+\}", "x", route.path)
            found += [(method, path) for method in sorted(route.methods - {"HEAD"})]
    return found


def _csrf(page) -> str:
    return page.locator('input[name="csrf_token"]').first.get_attribute("value")


def test_without_a_session_every_console_route_is_refused(console, users_file, redis_client):
    routes = _console_routes(users_file)
    assert ("POST", "/dead-letters/replay") in routes and ("GET", "/") in routes
    with httpx.Client(base_url=console, follow_redirects=False, timeout=10) as client:
        for method, path in routes:
            response = client.request(method, path)
            if method == "GET":
                assert response.status_code == 303, (method, path)
                assert response.headers["location"].startswith("/login?next="), (method, path)
            else:
                assert response.status_code == 401, (method, path)


def test_a_viewer_sees_no_replay_button_and_a_replay_request_is_refused(page, console, redis_client):
    letter = _letter(redis_client)
    sign_in(page, console, "val")
    page.goto(f"{console}/dead-letters")
    expect(page.get_by_role("link", name=letter.id)).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Replay"))).to_have_count(0)

    response = page.request.post(f"{console}/dead-letters/replay",
                                 form={"csrf_token": _csrf(page), "scope": "selected", "ids": letter.id})

    assert response.status == 403 and "needs the support role" in response.text()
    assert DeadLetterStore(redis_client).get(letter.id) is not None


def test_a_support_user_cannot_purge(page, console, redis_client):
    letter = _letter(redis_client)
    sign_in(page, console, "sam")
    page.goto(f"{console}/dead-letters")
    expect(page.get_by_role("button", name=re.compile("Purge"))).to_have_count(0)
    response = page.request.post(f"{console}/dead-letters/purge",
                                 form={"csrf_token": _csrf(page), "scope": "selected", "ids": letter.id})
    assert response.status == 403
    assert DeadLetterStore(redis_client).get(letter.id) is not None


def test_a_post_without_the_csrf_token_is_refused_even_for_a_signed_in_admin(page, console, redis_client):
    letter = _letter(redis_client)
    sign_in(page, console, "ada")
    for path in ("/dead-letters/purge", "/dead-letters/replay", "/dead-letters/purge/preview"):
        missing = page.request.post(f"{console}{path}", form={"scope": "selected", "ids": letter.id})
        wrong = page.request.post(f"{console}{path}", form={"scope": "selected", "ids": letter.id,
                                                            "csrf_token": "forged"})
        assert (missing.status, wrong.status) == (403, 403), path
    assert DeadLetterStore(redis_client).get(letter.id) is not None


def test_an_event_subject_holding_a_script_is_shown_as_text_and_never_runs(page, console, redis_client):
    hostile = '<script>alert("pwned")</script><img src=x onerror="alert(1)">'
    letter = _letter(redis_client, subject=hostile)
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_in(page, console, "ada")

    for path in ("/dead-letters", f"/dead-letters/{letter.id}"):
        page.goto(f"{console}{path}")
        expect(page.get_by_text(hostile).first).to_be_visible()
        assert page.locator("main script").count() == 0 and page.locator("main img").count() == 0
    assert dialogs == []


def test_no_page_shows_a_secret_and_the_session_cookie_is_http_only_and_lax(page, console, stack):
    letter = _letter(stack.redis)
    sign_in(page, console, "ada")
    pages = ["/", "/workspaces/ws_acme", "/dead-letters", f"/dead-letters/{letter.id}", "/audit"]
    page.goto(f"{console}/dead-letters/{letter.id}")
    page.get_by_role("button", name="Replay…").click()
    seen = [page.content()]
    for path in pages:
        page.goto(f"{console}{path}")
        seen.append(page.content())

    secrets = [SECRET_KEY, SECRET_KEYS, REDIS_PASSWORD, stack.emulator.token, *PASSWORDS.values()]
    for html in seen:
        for secret in secrets:
            assert secret not in html
    [cookie] = [c for c in page.context.cookies() if c["name"] == "sfsync_console"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"


def test_sign_in_is_refused_after_five_failures_even_with_the_right_password(page, console, redis_client):
    for _ in range(5):
        page.goto(f"{console}/login")
        page.get_by_label("Username").fill("val")
        page.get_by_label("Password").fill("wrong-password")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")

    page.get_by_label("Password").fill(PASSWORDS["val"])
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("alert")).to_contain_text("Too many failed sign-ins")
    page.goto(f"{console}/audit")
    assert page.url.startswith(f"{console}/login")


@pytest.mark.parametrize("width", [390, 1280])
def test_every_page_fits_the_width_without_sideways_scrolling_or_console_errors(page, console, redis_client, width):
    letter = _letter(redis_client, subject="A rather long subject line " * 4)
    errors = []  # a script or style the page's own policy refuses would show here
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.set_viewport_size({"width": width, "height": 900})
    sign_in(page, console, "ada")
    UsageGauge(redis_client).store("ws_acme", 41_500, 50_000)
    for path in ("/", "/workspaces/ws_acme", "/dead-letters", f"/dead-letters/{letter.id}", "/audit",
                 "/workspaces/ws_acme/mappings", "/workspaces/ws_acme/connect"):
        page.goto(f"{console}{path}")
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{path} is {overflow}px wider than {width}px"
    assert errors == []


def test_sign_in_and_the_main_pages_work_from_the_keyboard_alone(page, console, redis_client):
    page.goto(f"{console}/login")
    # the username field has focus on arrival; typing before the focus lands (a loaded machine) loses keys
    expect(page.get_by_label("Username")).to_be_focused()
    page.keyboard.type("ada")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORDS["ada"])
    page.keyboard.press("Enter")
    page.wait_for_url(f"{console}/")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    for _ in range(3):
        page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Dead letters")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Dead letters")).to_be_visible()
