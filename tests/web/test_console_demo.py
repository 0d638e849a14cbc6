"""`sfsync demo --serve`: the demo keeps running with the console, signed in as the demo admin by the link it
prints, and every page works on the demo's own data: test connection, connecting an org through the emulator's
OAuth page, editing, saving and rolling back mappings."""

from __future__ import annotations

import os
import re
import signal
import sys

import pytest
from playwright.sync_api import expect

from tests.web.conftest import free_port
from workers.local.stack import ManagedProcess

pytestmark = pytest.mark.integration


def test_the_demo_serves_the_console_on_its_own_data_until_interrupted(page, tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFSYNC_")}
    demo = ManagedProcess([sys.executable, "-m", "workers.cli", "demo", "--serve", "--port", str(port)],
                          {**env, "PYTHONUNBUFFERED": "1"}, log_path=tmp_path / "demo.log").start()
    try:
        demo.wait_for("Application startup complete", timeout=150)
        output = demo.output()
        link = re.search(r"open (http://127\.0\.0\.1:\d+/auth/demo\?token=\S+)", output).group(1)
        username, login_url, client_id, client_secret = re.search(
            r"username (\S+), any password\): login URL (\S+), consumer key (\S+), consumer secret (\S+)\.",
            output).groups()
        base = link.split("/auth/")[0]

        page.goto(link)

        expect(page.locator(".whoami")).to_contain_text("demo-admin")
        row = page.get_by_role("row").filter(has_text="ws_demo")
        expect(row).to_contain_text("5 written, 1 skipped")

        # the demo's workspace reaches its org
        page.goto(f"{base}/workspaces/ws_demo")
        page.get_by_role("button", name="Test connection").click()
        expect(page.locator("#test-result")).to_contain_text("Connection works.", timeout=15_000)

        # its mappings are the ones the worker used; edited, saved, rolled back
        page.get_by_role("link", name="version 1").click()
        expect(page.get_by_text("Version 1 is current.")).to_be_visible()
        editor = page.get_by_label("Mappings (YAML)")
        expect(editor).to_have_value(re.compile("Unify_Sequence_Status__c"))
        without_title, removed = re.subn(r"\n\s*- source: title\n\s*target: Title", "", editor.input_value())
        assert removed == 1, editor.input_value()
        editor.fill(without_title)
        page.get_by_role("button", name="Review changes…").click()
        expect(page.get_by_label("Changes")).to_contain_text("target: Title")
        page.get_by_role("button", name="Save mappings").click()
        expect(page.get_by_text("Saved as version 2")).to_be_visible()
        page.goto(f"{base}/workspaces/ws_demo/mappings")
        expect(page.get_by_text("Version 2 is current.")).to_be_visible()
        page.get_by_role("button", name="Roll back to 1").click()
        expect(page.get_by_text("Version 1 is current again (saved as version 3).")).to_be_visible()

        # an org connected through Salesforce's (the emulator's) OAuth page
        page.goto(f"{base}/workspaces/ws_globex")
        page.get_by_role("link", name="Connect Salesforce").click()
        page.get_by_label("Login URL").fill(login_url)
        page.get_by_label("Connected app consumer key").fill(client_id)
        page.get_by_label("Connected app consumer secret").fill(client_secret)
        page.get_by_role("button", name="Continue to Salesforce").click()
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill("any-password")
        page.get_by_role("button", name="Allow").click()
        page.wait_for_url(re.compile(r"/workspaces/ws_globex\?connected=1$"))
        page.get_by_role("button", name="Test connection").click()
        expect(page.locator("#test-result")).to_contain_text("Connection works.", timeout=15_000)

        page.goto(link.split("?")[0] + "?token=wrong")
        expect(page.get_by_role("heading", name="Link not valid")).to_be_visible()
        # the link signs in once: followed again from a browser without the session, it is refused
        page.context.clear_cookies()
        page.goto(link)
        expect(page.get_by_role("heading", name="Link not valid")).to_be_visible()
        # and the sign-in page, with no other way to sign in, says how to
        page.goto(link.split("/auth/")[0] + "/login")
        expect(page.get_by_role("status")).to_contain_text("one-time link")
    finally:
        demo.signal_group(signal.SIGINT)
        code = demo.proc.wait(30)
    assert code == 0, demo.output()[-3000:]
