"""Signing in to the console through an OpenID Connect provider: the role comes from its groups claim."""

from __future__ import annotations

import re
import sys

import pytest
from playwright.sync_api import expect

from tests.conftest import WORKSPACE
from tests.web.conftest import SECRET_KEY, free_port
from tests.web.fake_idp import FakeIdentityProvider
from workers.local.stack import ManagedProcess, stack_env

pytestmark = pytest.mark.integration

CLIENT_SECRET = "oidc-client-secret-never-shown"


@pytest.fixture(scope="module")
def idp():
    with FakeIdentityProvider("sfsync-console", CLIENT_SECRET) as provider:
        yield provider


@pytest.fixture(scope="module")
def oidc_console(redis_url, emulator_server, idp):
    port = free_port()
    env = stack_env(redis_url=redis_url, instance_url=emulator_server.url, access_token=emulator_server.token,
                    workspace_id=WORKSPACE)
    env.update({"SFSYNC_WEB_SECRET_KEY": SECRET_KEY, "SFSYNC_WEB_PORT": str(port),
                "SFSYNC_WEB_OIDC_ISSUER": idp.url, "SFSYNC_WEB_OIDC_CLIENT_ID": "sfsync-console",
                "SFSYNC_WEB_OIDC_CLIENT_SECRET": CLIENT_SECRET})
    process = ManagedProcess([sys.executable, "-m", "workers.cli", "web"], env).start()
    try:
        process.wait_for("Application startup complete", timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate(timeout=10)


def test_a_user_in_the_support_group_signs_in_through_the_provider_and_may_replay(page, oidc_console, idp,
                                                                                   redis_client):
    idp.claims = {"sub": "u-17", "preferred_username": "olivia", "groups": ["staff", "sfsync-support"]}
    page.goto(f"{oidc_console}/dead-letters")
    expect(page.get_by_label("Password")).to_have_count(0)  # no users file: the provider is the only way
    page.get_by_role("link", name="Sign in with your identity provider").click()

    page.wait_for_url(re.compile(re.escape(oidc_console) + "/dead-letters$"))  # back where they were going
    expect(page.locator(".whoami")).to_contain_text("olivia")
    expect(page.locator(".whoami")).to_contain_text("support")
    assert CLIENT_SECRET not in page.content()
    page.goto(f"{oidc_console}/audit")
    expect(page.get_by_role("row").filter(has_text="olivia").first).to_contain_text("oidc")


def test_a_user_the_provider_grants_no_console_role_is_refused_and_stays_signed_out(page, oidc_console, idp,
                                                                                     redis_client):
    idp.claims = {"sub": "u-18", "preferred_username": "mallory", "groups": ["staff"]}
    page.goto(f"{oidc_console}/auth/oidc/login")

    expect(page.get_by_role("heading", name="No console role")).to_be_visible()
    page.goto(f"{oidc_console}/")
    assert page.url.startswith(f"{oidc_console}/login")
