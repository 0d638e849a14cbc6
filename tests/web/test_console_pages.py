"""What the console's pages show of a workspace's state, and its workspace actions, in a real browser."""

from __future__ import annotations

import os
import re
import sys
import time

import httpx
import pytest
from playwright.sync_api import expect

from events.connection_state import ConnectionState
from events.keys import key
from events.overflow import Overflow
from events.parking import UsageGauge
from schemas.workspace import WorkspaceSpec
from tests.web.conftest import SECRET_KEY, free_port, registry, sign_in
from workers.local.stack import ManagedProcess

pytestmark = pytest.mark.integration


def test_the_overview_shows_a_disconnected_org_its_api_usage_and_its_last_crm_cycle(page, console, redis_client):
    ConnectionState(redis_client).mark_lost("ws_acme", "INVALID_SESSION_ID", "Session expired or invalid")
    UsageGauge(redis_client).store("ws_acme", 41_500, 50_000)
    redis_client.hset(key("ws_acme", "crm", "last"), mapping={
        "ok": "1", "finished_at": "2026-11-27T10:00:00+00:00", "lag_seconds": "42.0", "changed": "3"})
    redis_client.zadd(key("ws_other", "parked"), {"p1": time.time() + 60})
    Overflow(redis_client).spill([("ws_acme", Overflow.entry("sfsync.email.sent", "email.sent", "t1", [{}], {}))])

    sign_in(page, console, "val")

    row = page.get_by_role("row").filter(has_text="ws_acme")
    expect(row).to_contain_text("disconnected")
    expect(row).to_contain_text("INVALID_SESSION_ID: Session expired or invalid")
    expect(row).to_contain_text("41,500 / 50,000 (83.0%)")
    expect(row).to_contain_text("lag 42 s")
    expect(row).to_contain_text("1 queued in its overflow")
    expect(page.get_by_role("row").filter(has_text="ws_other")).to_contain_text("1 parked")


def test_an_admin_disables_enables_and_removes_a_registered_workspace(page, console, redis_client):
    registry(redis_client).apply([WorkspaceSpec(id="ws_gone", name="Gone Ltd")])
    redis_client.hset(key("ws_gone", "counts"), "email.sent|written", 5)
    sign_in(page, console, "ada")
    page.goto(f"{console}/workspaces/ws_gone")
    # disabling stops its writes: it is set apart in red, and asks first
    disable = page.get_by_role("group", name="Stop or delete").get_by_role("link", name="Disable…")
    assert "danger" in disable.get_attribute("class")
    disable.click()
    expect(page.get_by_role("heading", name="Disable workspace ws_gone?")).to_be_visible()
    assert registry(redis_client).get("ws_gone", secrets=False).enabled is True
    page.get_by_role("button", name="Disable ws_gone").click()
    expect(page.get_by_text("no: its events wait until it is enabled again")).to_be_visible()
    assert registry(redis_client).get("ws_gone", secrets=False).enabled is False
    page.get_by_role("button", name="Enable").click()
    expect(page.get_by_role("link", name="Disable…")).to_be_visible()

    page.get_by_role("link", name="Remove…").click()
    page.get_by_label("Type the workspace id to confirm").fill("ws_gon")
    page.get_by_role("button", name="Remove ws_gone").click()
    expect(page.get_by_role("alert")).to_contain_text("Type the workspace id ws_gone exactly")
    page.get_by_label("Type the workspace id to confirm").fill("ws_gone")
    page.get_by_role("button", name="Remove ws_gone").click()

    expect(page.get_by_role("heading", name="Workspace removed")).to_be_visible()
    assert "ws_gone" not in registry(redis_client).ids()
    assert not redis_client.exists(key("ws_gone", "counts"))
    page.goto(f"{console}/audit")
    expect(page.get_by_role("row").filter(has_text="removed")).to_contain_text("ws_gone")


def test_a_support_user_may_not_change_a_workspace(page, console, redis_client):
    registry(redis_client).apply([WorkspaceSpec(id="ws_kept")])
    sign_in(page, console, "sam")
    page.goto(f"{console}/workspaces/ws_kept")
    expect(page.get_by_role("button", name="Test connection")).to_be_visible()
    for role, name in (("link", "Disable…"), ("link", "Remove…"), ("link", "Connect Salesforce")):
        expect(page.get_by_role(role, name=name)).to_have_count(0)
    csrf = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    for path in ("enabled", "remove", "disconnect", "connect/start", "mappings/save"):
        answer = page.request.post(f"{console}/workspaces/ws_kept/{path}",
                                   form={"csrf_token": csrf, "confirm": "ws_kept", "enabled": "0"})
        assert answer.status == 403, path
    assert registry(redis_client).get("ws_kept", secrets=False).enabled is True


def test_when_redis_does_not_answer_the_page_says_so_without_its_password(tmp_path, users_file):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFSYNC_")}
    env.update({"SFSYNC_REDIS_URL": "redis://default:hunter2-redis@127.0.0.1:1/0", "SFSYNC_WEB_PORT": str(port),
                "SFSYNC_WEB_SECRET_KEY": SECRET_KEY, "SFSYNC_WEB_USERS_FILE": str(users_file)})
    process = ManagedProcess([sys.executable, "-m", "workers.cli", "web"], env, log_path=tmp_path / "web.log").start()
    try:
        process.wait_for("Application startup complete", timeout=30)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=15) as client:
            login = client.get("/login")
            token = re.search(r'name="csrf_token" value="([^"]+)"', login.text).group(1)
            answer = client.post("/login", data={"username": "ada", "password": "whatever-pw", "csrf_token": token})
    finally:
        process.terminate(timeout=10)
    assert answer.status_code == 503
    assert "Redis at redis://127.0.0.1:1/0 does not answer" in answer.text
    assert "hunter2-redis" not in answer.text + process.output()
