"""One truth about workspaces: after a mixed run (the environment's workspace, a registered one, unroutable
messages), `sfsync status`, the overview, each workspace's page and the dead letters page list the same
workspaces with the same dead-letter counts, `_unrouted` apart, and outcomes in words."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from playwright.sync_api import expect

from events.deadletter import UNROUTED, DeadLetterStore
from events.publish import publisher_app
from schemas.workspace import SalesforceConnection, WorkspaceSpec
from tests.conftest import WORKSPACE, wait_until
from tests.factories import email_event
from tests.web.conftest import SECRET_KEYS, registry, sign_in

pytestmark = pytest.mark.integration

REGISTERED = "ws_reg"


def _send_raw(redis_url: str, body) -> None:
    publisher_app(redis_url).send_task("sfsync.email.sent", args=[body], queue="email.sent",
                                       routing_key="email.sent")


def _status(redis_url: str) -> dict:
    """`sfsync status --json` as a process with Redis alone: no Salesforce credentials of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFSYNC_")}
    result = subprocess.run([sys.executable, "-m", "workers.cli", "status", "--json"], capture_output=True,
                            text=True, timeout=60, env={**env, "SFSYNC_REDIS_URL": redis_url})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _dlq_count(redis_url: str, workspace: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFSYNC_")}
    result = subprocess.run([sys.executable, "-m", "workers.cli", "dlq", "list", "--workspace", workspace, "--json"],
                            capture_output=True, text=True, timeout=60, env={**env, "SFSYNC_REDIS_URL": redis_url})
    assert result.returncode == 0, result.stderr
    return len(json.loads(result.stdout))


def test_given_a_mixed_run_when_status_and_the_pages_are_read_then_they_agree(page, console, stack):
    # given: the worker's environment workspace (ws_acme) and a registered one, each writing and failing
    stack.admin.seed("Contact", [{"FirstName": "Jane", "LastName": "Doe", "Email": "jane.doe@acme.example"}])
    connection = SalesforceConnection(instance_url=stack.emulator.url, access_token=stack.emulator.token)
    registry(stack.redis).apply([WorkspaceSpec(id=REGISTERED, salesforce=connection, max_latency_seconds=0.3)])
    stack.start_worker(secret_keys=SECRET_KEYS)
    written = {WORKSPACE: email_event(), REGISTERED: email_event(workspace_id=REGISTERED)}
    stack.publish(list(written.values()))
    for ws, event in written.items():
        stack.wait_outcomes([event["id"]], workspace=ws)
    # when: each workspace gets an invalid event, and two messages name no workspace served here
    for ws in written:
        _send_raw(stack.redis_url, {"id": f"evt_invalid_{ws}", "type": "email.sent", "version": 1,
                                    "workspace_id": ws})
    stack.publish([email_event(workspace_id="ws_stranger")])
    _send_raw(stack.redis_url, "{not json")
    store = DeadLetterStore(stack.redis)
    wait_until(lambda: store.count() == 4, timeout=60, what="four dead letters")
    expected = {WORKSPACE: 1, REGISTERED: 1, UNROUTED: 2}
    assert store.count_by_workspace() == expected

    # then: `sfsync status` lists both workspaces (the environment's too, though it has no credentials
    # of its own) with their dead letters, `_unrouted` apart, and outcomes in words
    status = _status(stack.redis_url)
    lines = {line["workspace_id"]: line for line in status["workspaces"]}
    assert sorted(lines) == [WORKSPACE, REGISTERED]
    assert {ws: line["dead_letters"] for ws, line in lines.items()} == {WORKSPACE: 1, REGISTERED: 1}
    assert status["unrouted_dead_letters"] == 2
    assert status["dead_letters"]["by_workspace"] == expected
    for ws, count in expected.items():
        assert _dlq_count(stack.redis_url, ws) == count, ws

    # and the console shows the same rows and counts, everywhere
    sign_in(page, console, "val")
    rows = page.locator("#overview tbody tr")
    expect(rows).to_have_count(3)
    for ws, count in expected.items():
        row = rows.filter(has_text=ws)
        expect(row.locator("td[data-label='Dead letters']")).to_have_text(str(count))
        page.goto(f"{console}/dead-letters?workspace={ws}")
        expect(page.locator("main")).to_contain_text(f"{count} dead letter(s)")
        page.goto(f"{console}/")
    for ws in (WORKSPACE, REGISTERED):
        page.goto(f"{console}/workspaces/{ws}")
        expect(page.locator("dt:has-text('Dead letters') + dd")).to_have_text("1")
        outcomes = page.locator("#workspace table")
        expect(outcomes).to_contain_text("emails sent")
        expect(outcomes).to_contain_text("written")
        expect(outcomes).to_contain_text("dead-lettered")
        assert not re.search(r"\w\|\w", outcomes.inner_text())
