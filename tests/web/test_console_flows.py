"""The console in a real browser: sign in, find a failed event, fix its cause, replay it, see it written."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from events.deadletter import DeadLetterStore
from tests.conftest import records_of
from tests.factories import email_event
from tests.web.conftest import sign_in

pytestmark = pytest.mark.integration


def test_a_support_user_fixes_a_failed_event_replays_it_and_sees_it_written(page, console, stack):
    stack.admin.seed("Contact", [{"FirstName": "Jane", "LastName": "Doe", "Email": "jane.doe@acme.example"}])
    stack.start_worker()
    rule = stack.admin.add_validation_rule("EmailMessage", "Subject", "contains", "forbidden",
                                           message="Subject may not say forbidden")
    bad = email_event(subject="A forbidden subject")
    stack.publish([bad])
    assert stack.wait_outcomes([bad["id"]])[bad["id"]]["outcome"] == "dead_lettered"
    [letter] = DeadLetterStore(stack.redis).iter_all()

    sign_in(page, console, "sam")
    page.get_by_role("link", name="Dead letters").click()
    row = page.get_by_role("row").filter(has_text=letter.id)
    expect(row).to_contain_text("FIELD_CUSTOM_VALIDATION_EXCEPTION")
    expect(row).to_contain_text("A forbidden subject")
    row.get_by_role("link", name=letter.id).click()
    expect(page.get_by_role("definition").filter(has_text="Subject may not say forbidden")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="FIELD_CUSTOM_VALIDATION_EXCEPTION")).to_have_count(1)  # one failure
    expect(page.locator("pre.event")).to_contain_text(bad["id"])

    stack.admin.delete_validation_rule(rule)  # the cause, fixed
    page.get_by_role("button", name="Replay…").click()
    expect(page.locator("#dry-run")).to_contain_text("1 dead letter(s) would be replayed")
    page.get_by_role("button", name="Replay 1 dead letter(s)").click()

    expect(page.locator("#outcome")).to_have_text("Done.", timeout=45_000)
    expect(page.locator('[data-count="written"]')).to_have_text("1")
    expect(page.locator('[data-count="failed_again"]')).to_have_text("0")
    assert records_of(stack.admin, "EmailMessage", [bad["id"]]) == {bad["id"]: 1}
    assert DeadLetterStore(stack.redis).count() == 0

    page.get_by_role("link", name="Audit").click()
    expect(page.get_by_role("row").filter(has_text="replay_finished")).to_contain_text(letter.id)


def test_the_overview_shows_the_workspace_connected_with_its_outcomes_and_refreshes_itself(page, console, stack):
    stack.admin.seed("Contact", [{"FirstName": "Jane", "LastName": "Doe", "Email": "jane.doe@acme.example"}])
    stack.start_worker()
    sign_in(page, console, "val")
    expect(page.get_by_role("row").filter(has_text="ws_acme")).to_contain_text("0 written")

    event = email_event()
    stack.publish([event])
    stack.wait_outcomes([event["id"]])

    # no reload: the overview polls by itself
    row = page.get_by_role("row").filter(has_text="ws_acme")
    expect(row).to_contain_text("1 written", timeout=15_000)
    expect(row).to_contain_text("connected")
    page.get_by_role("link", name="ws_acme").click()
    expect(page.get_by_role("heading", name="Workspace ws_acme")).to_be_visible()
    written = page.locator("#workspace table tr").filter(has_text="emails sent").filter(has_text="written")
    expect(written).to_contain_text("1")


def test_an_admin_purges_a_filtered_selection_after_confirming(page, console, redis_client):
    store = DeadLetterStore(redis_client)
    keep = store.add(event=email_event(), event_id="evt_keep", event_type="email.sent", workspace_id="ws_acme",
                     error_code="INVALID_FIELD", error_message="bad field")
    for n in range(3):
        store.add(event=email_event(), event_id=f"evt_gone_{n}", event_type="email.sent", workspace_id="ws_acme",
                  error_code="REQUIRED_FIELD_MISSING", error_message="LastName missing")

    sign_in(page, console, "ada")
    page.goto(f"{console}/dead-letters")
    page.get_by_label("Error code").fill("REQUIRED_FIELD_MISSING")
    page.get_by_role("button", name="Filter").click()
    page.get_by_role("button", name="Purge all 3 matching…").click()
    expect(page.locator("#dry-run")).to_contain_text("3 dead letter(s) would be deleted for good")
    page.get_by_role("button", name="Purge 3 dead letter(s)").click()

    expect(page.get_by_role("status")).to_have_text("Purged 3 dead letter(s).")
    assert [r.id for r in store.iter_all()] == [keep.id]
    page.goto(f"{console}/audit?action=purge")
    expect(page.get_by_role("row").filter(has_text="purge")).to_contain_text("ada")


def test_with_no_dead_letters_the_page_says_so(page, console, redis_client):
    sign_in(page, console, "val")
    page.goto(f"{console}/dead-letters")
    expect(page.get_by_text("No dead letters")).to_be_visible()
    page.goto(f"{console}/dead-letters?code=NOPE")
    expect(page.get_by_text("No dead letter matches this filter.")).to_be_visible()
    page.goto(f"{console}/dead-letters?older_than=2x")
    expect(page.get_by_role("alert")).to_contain_text("older than")
