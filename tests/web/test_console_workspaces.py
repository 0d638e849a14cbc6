"""Mappings and Salesforce connections managed in the console, in a real browser against workers and the emulator."""

from __future__ import annotations

import re
import time

import pytest
import yaml
from playwright.sync_api import expect

from events.late_contacts import LATE_CONTACT, LateContacts, WaitingEmail
from events.parking import ParkedMessage
from salesforce_emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from schemas.workspace import SalesforceConnection, WorkspaceSpec
from tests.conftest import TEST_MAPPINGS, WORKSPACE, wait_until
from tests.factories import contact_updated_event
from tests.web.conftest import SECRET_KEYS, registry, sign_in
from workspaces.registry import MappingVersions

pytestmark = pytest.mark.integration

STATUS_LINE = "    - {source: sequence_status, target: Unify_Sequence_Status__c, policy: always}\n"


def _mappings_without_status() -> str:
    return TEST_MAPPINGS.read_text().replace(STATUS_LINE, "")


def _jane_status(stack) -> str | None:
    [jane] = [c for c in stack.admin.records("Contact") if c.get("LastName") == "Doe"]
    return jane.get("Unify_Sequence_Status__c")


def test_an_admin_sees_a_mapping_error_as_they_type_fixes_it_saves_and_the_next_event_uses_it(page, console, stack):
    assert STATUS_LINE in TEST_MAPPINGS.read_text()
    stack.admin.seed("Contact", [{"FirstName": "Jane", "LastName": "Doe", "Email": "jane.doe@acme.example"}])
    connection = SalesforceConnection(instance_url=stack.emulator.url, access_token=stack.emulator.token)
    registry(stack.redis).apply([WorkspaceSpec(id=WORKSPACE, salesforce=connection,
                                               mappings=yaml.safe_load(_mappings_without_status()))])
    stack.start_worker(secret_keys=SECRET_KEYS)
    before = contact_updated_event(emails=["jane.doe@acme.example"], changes={"sequence_status": "Completed"})
    stack.publish([before])
    stack.wait_outcomes([before["id"]])
    assert not _jane_status(stack)  # the status is not mapped yet

    sign_in(page, console, "ada")
    page.goto(f"{console}/workspaces/{WORKSPACE}")
    page.get_by_role("link", name="version 1").click()
    editor = page.get_by_label("Mappings (YAML)")
    expect(editor).to_contain_text("Secondary_Email__c")  # as saved: what differs from the defaults
    typo = _mappings_without_status().replace("  alternate_email_fields",
                                              STATUS_LINE.replace("Status__c", "Stat__c") + "  alternate_email_fields")
    editor.fill(typo)
    expect(page.locator("#check")).to_contain_text("Unify_Sequence_Stat__c", timeout=15_000)
    expect(page.locator("#check")).to_contain_text("cannot be saved")
    # an error naming a line shows that line, numbered, since the editor has no line numbers
    editor.fill("contact:\n  fields:\n    - source: title\n      target: Title\n      policy: sometimes\n")
    expect(page.locator("#check")).to_contain_text("line 5, contact.fields[0].policy: unknown policy", timeout=15_000)
    expect(page.locator("#check .hit-line")).to_have_text("5      policy: sometimes")

    editor.fill(TEST_MAPPINGS.read_text())
    expect(page.locator("#check")).to_contain_text("These mappings fit the org.", timeout=15_000)
    page.get_by_role("button", name="Review changes…").click()
    expect(page.get_by_label("Changes")).to_contain_text(re.compile(r"\+\s*- source: sequence_status"))
    page.get_by_label("Note (optional)").fill("map the sequence status")
    page.get_by_role("button", name="Save mappings").click()
    expect(page.get_by_role("status")).to_contain_text("Saved as version 2")

    after = contact_updated_event(emails=["jane.doe@acme.example"], changes={"sequence_status": "Completed"})
    stack.publish([after])
    stack.wait_outcomes([after["id"]])
    assert _jane_status(stack) == "Completed"

    page.goto(f"{console}/workspaces/{WORKSPACE}/mappings")
    expect(page.get_by_role("row").filter(has_text="map the sequence status")).to_contain_text("ada")
    page.get_by_role("button", name="Roll back to 1").click()
    expect(page.get_by_role("status")).to_contain_text("Version 1 is current again (saved as version 3)")
    assert MappingVersions(stack.redis).current(WORKSPACE)[0] == 3


def test_an_admin_connects_an_org_through_salesforces_oauth_page_tests_it_and_disconnects(page, console, stack):
    registry(stack.redis).apply([WorkspaceSpec(id="ws_oauth", name="OAuth Inc")])
    sign_in(page, console, "ada")
    page.get_by_role("link", name="ws_oauth").click()
    expect(page.get_by_text("none: connect it to Salesforce")).to_be_visible()
    page.get_by_role("link", name="Connect Salesforce").click()
    page.get_by_label("Login URL").fill(stack.emulator.url)
    page.get_by_label("Connected app consumer key").fill(DEFAULT_CLIENT_ID)
    page.get_by_label("Connected app consumer secret").fill(DEFAULT_CLIENT_SECRET)
    page.get_by_role("button", name="Continue to Salesforce").click()

    # Salesforce's own page (the emulator's): sign in and allow
    page.get_by_label("Username").fill("integration@sfsync.example")
    page.get_by_label("Password").fill("any-password")
    page.get_by_role("button", name="Allow").click()

    page.wait_for_url(re.compile(r"/workspaces/ws_oauth\?connected=1$"))
    expect(page.get_by_text("Connected to Salesforce.")).to_be_visible()
    expect(page.get_by_text(f"oauth sign-in to {stack.emulator.url}")).to_be_visible()
    stored = registry(stack.redis).get("ws_oauth", secrets=True).salesforce
    assert stored.auth == "oauth" and stored.refresh_token is not None
    assert stored.refresh_token.get_secret_value() not in page.content()
    assert DEFAULT_CLIENT_SECRET not in page.content()

    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#test-result")).to_contain_text("Connection works.", timeout=15_000)

    page.get_by_role("link", name="Disconnect…").click()
    page.get_by_role("button", name="Disconnect").click()
    expect(page.get_by_text("none: connect it to Salesforce")).to_be_visible()
    assert registry(stack.redis).get("ws_oauth", secrets=False).salesforce_public is None
    page.goto(f"{console}/audit")
    for action in ("connected", "disconnected"):
        expect(page.get_by_role("row").filter(has_text=action).first).to_contain_text("ws_oauth")


def test_an_org_that_denies_access_leaves_the_workspace_unconnected(page, console, stack):
    registry(stack.redis).apply([WorkspaceSpec(id="ws_denied")])
    sign_in(page, console, "ada")
    page.goto(f"{console}/workspaces/ws_denied/connect")
    page.get_by_label("Login URL").fill(stack.emulator.url)
    page.get_by_label("Connected app consumer key").fill(DEFAULT_CLIENT_ID)
    page.get_by_role("button", name="Continue to Salesforce").click()
    page.get_by_role("button", name="Deny").click()

    expect(page.get_by_role("alert")).to_contain_text("access_denied")
    wait_until(lambda: registry(stack.redis).get("ws_denied", secrets=False).salesforce_public is None, 5)


def test_the_workspace_page_shows_the_emails_waiting_for_their_contact_and_lead_mappings_are_checked(
        page, console, stack):
    connection = SalesforceConnection(instance_url=stack.emulator.url, access_token=stack.emulator.token)
    registry(stack.redis).apply([WorkspaceSpec(id="ws_waits", salesforce=connection, late_contact_days=10)])
    now = time.time()
    LateContacts(stack.redis).wait("ws_waits", [
        WaitingEmail(f"evt_{n}", "email.sent",
                     ParkedMessage("sfsync.email.sent", "email.sent", {"id": f"evt_{n}"}, {}, LATE_CONTACT),
                     (f"p{n}@startup.example",), 0, now - 7200 + n) for n in range(2)], days=10, max_waiting=100)

    sign_in(page, console, "ada")
    page.goto(f"{console}/workspaces/ws_waits")
    expect(page.locator("#late-contacts")).to_contain_text("2 email(s), the oldest for 2 h 0 min")
    expect(page.locator("#late-contacts")).to_contain_text("up to 10 days")

    page.goto(f"{console}/workspaces/ws_waits/mappings")
    page.get_by_label("Mappings (YAML)").fill("lead:\n  fields:\n    - {source: country, target: Country}\n")
    expect(page.locator("#check")).to_contain_text("Lead.Country", timeout=15_000)
    expect(page.locator("#check")).to_contain_text("CountryCode")
    expect(page.locator("#check")).to_contain_text("cannot be saved")
