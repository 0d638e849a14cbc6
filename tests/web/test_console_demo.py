"""`sfsync demo --serve`: the demo keeps running with the console, signed in as the demo admin by the link it prints."""

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
        link = re.search(r"open (http://127\.0\.0\.1:\d+/auth/demo\?token=\S+)", demo.output()).group(1)

        page.goto(link)

        expect(page.locator(".whoami")).to_contain_text("demo-admin")
        row = page.get_by_role("row").filter(has_text="ws_demo")
        expect(row).to_contain_text("5 written, 1 skipped")
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
