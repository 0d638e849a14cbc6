"""The console people keep open, in a real browser: charts that move while a burst is written, a killed worker
going stale, and a group of 500 dead letters replayed in one action once its cause is removed in the emulator."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest
from playwright.sync_api import expect

from events.deadletter import DeadLetterStore
from events.fleet import STALE_AFTER
from tests.conftest import records_of, wait_until
from tests.factories import email_event
from tests.web.conftest import sign_in

pytestmark = pytest.mark.integration

#: seconds between two refreshes of the overview's charts and of the Fleet page (the 1h span's and the page's)
REFRESH = 5


def _nav(page, name: str):
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name)


def _totals(page, chart: str) -> dict:
    return json.loads(page.locator(f'[data-chart="{chart}"]').get_attribute("data-totals") or "{}")


def test_the_charts_follow_a_burst_while_it_is_written(page, console, stack):
    stack.admin.seed("Contact", [{"FirstName": "Jane", "LastName": "Doe", "Email": "jane.doe@acme.example"}])
    stack.start_worker()
    sign_in(page, console, "val")
    expect(page.get_by_role("img", name=re.compile(r"^Events per minute\. All workspaces, last hour: 0 written"))) \
        .to_be_visible()

    # given a burst of 200 emails published in four parts, three seconds apart
    burst = [email_event() for _ in range(200)]

    def publish() -> None:
        for start in range(0, 200, 50):
            stack.publish(burst[start:start + 50])
            time.sleep(3)

    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()

    # when the page is watched while it is written, then the chart's counts climb to the whole burst
    seen: list[float] = []

    def written() -> bool:
        value = _totals(page, "chart-events").get("written", 0)
        if not seen or seen[-1] != value:
            seen.append(value)
        return value >= 200

    wait_until(written, 90, "the chart showing 200 written")
    publisher.join(30)
    assert any(0 < value < 200 for value in seen), f"the chart never showed the burst part-written: {seen}"
    assert seen == sorted(seen)
    events = page.get_by_role("img", name=re.compile(r"^Events per minute"))
    expect(events).to_have_attribute("aria-label", re.compile(r"200 written, 0 skipped, 0 dead-lettered"))
    latency = _totals(page, "chart-latency")
    assert 0 < latency["p50"] <= latency["p99"] < 60
    # its values are there as a table too
    box = page.locator('[data-chart="chart-events"]')
    box.get_by_text("Values").click()
    cells = box.locator("table.values tbody tr td:first-of-type").all_inner_texts()
    assert sum(int(c.replace(",", "")) for c in cells) == 200

    # and the workspace's own page draws the same
    page.goto(f"{console}/workspaces/ws_acme")
    assert _totals(page, "chart-events")["written"] == 200


def test_a_killed_worker_shows_stale_on_the_fleet_page_within_its_heartbeat_interval(page, console, stack):
    worker = stack.start_worker(concurrency=2)
    pid = worker.proc.pid
    sign_in(page, console, "val")
    _nav(page, "Fleet").click()
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name=str(pid), exact=True))
    expect(row).to_contain_text("alive", timeout=15_000)
    expect(row).to_contain_text("0 of 2")  # batches in flight of its pool's processes

    worker.kill()
    killed = time.monotonic()
    expect(row).to_contain_text("stale", timeout=(STALE_AFTER + REFRESH + 5) * 1000)
    # stale once two beats are missed, seen at the page's next refresh
    assert time.monotonic() - killed <= STALE_AFTER + REFRESH + 1
    _nav(page, "Overview").click()
    expect(page.get_by_role("region", name="Fleet")).to_contain_text("0 alive, 1 stale")
    expect(page.get_by_role("region", name="Fleet")).to_contain_text("No worker is alive")


def test_a_group_of_500_letters_is_replayed_in_one_action_once_its_cause_is_removed(page, console, stack):
    stack.admin.seed("Contact", [{"FirstName": "Jane", "LastName": "Doe", "Email": "jane.doe@acme.example"}])
    acme = stack.admin.add_validation_rule("EmailMessage", "Subject", "contains", "ACME",
                                           message="Subject must not name ACME")
    stack.admin.add_validation_rule("EmailMessage", "Subject", "contains", "BETA", message="No beta offers")
    stack.start_worker(concurrency=2)
    group = [email_event(subject=f"ACME-{n} renewal") for n in range(500)]
    others = [email_event(subject=f"BETA-{n} offer") for n in range(3)]
    stack.publish(group + others)
    outcomes = stack.wait_outcomes([e["id"] for e in group + others], timeout=180)
    assert {o["outcome"] for o in outcomes.values()} == {"dead_lettered"}

    sign_in(page, console, "sam")
    _nav(page, "Dead letters").click()
    causes = page.get_by_role("region", name="By cause")
    big = causes.get_by_role("row").filter(has_text="Subject must not name ACME")
    expect(big.get_by_role("rowheader")).to_have_text("500")
    expect(big).to_contain_text("FIELD_CUSTOM_VALIDATION_EXCEPTION on Subject")
    expect(big).to_contain_text("ws_acme")
    expect(big.get_by_role("img")).to_have_attribute("aria-label", re.compile(r"^500 letter\(s\) failed last"))

    # a group whose cause is still there fails again, and the outcome leads to its letters
    causes.get_by_role("row").filter(has_text="No beta offers").get_by_role("link").click()
    page.get_by_role("button", name="Replay this group…").click()
    expect(page.locator("#dry-run")).to_contain_text("3 dead letter(s) would be replayed")
    page.get_by_role("button", name="Replay 3 dead letter(s)").click()
    expect(page.locator("#outcome")).to_have_text("Done.", timeout=60_000)
    expect(page.locator('[data-count="failed_again"]')).to_have_text("3")
    page.get_by_role("link", name="What failed again (3)").click()
    expect(page.locator("table.letters tbody tr")).to_have_count(3)
    expect(page.locator("table.letters")).to_contain_text("No beta offers")

    # once its cause is removed in the org, the group of 500 goes back in one action
    stack.admin.delete_validation_rule(acme)
    _nav(page, "Dead letters").click()
    page.get_by_role("region", name="By cause").get_by_role("row").filter(has_text="Subject must not name ACME") \
        .get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("500 × FIELD_CUSTOM_VALIDATION_EXCEPTION on Subject in ws_acme since")
    page.get_by_role("button", name="Replay this group…").click()
    expect(page.locator("#dry-run")).to_contain_text("500 dead letter(s) would be replayed")
    page.get_by_role("button", name="Replay 500 dead letter(s)").click()

    expect(page.get_by_role("heading", level=1)).to_contain_text("Replay of 500 × FIELD_CUSTOM_VALIDATION_EXCEPTION")
    steps = page.locator("ol.steps")
    expect(steps).to_contain_text("Back on their queues")
    expect(page.locator("#outcome")).to_have_text("Done.", timeout=120_000)
    # the progress stays when it ends: both steps, complete
    expect(page.locator("#queued-count")).to_have_text("500 of 500")
    expect(page.locator("#outcome-count")).to_have_text("500 of 500")
    expect(page.locator('[data-count="written"]')).to_have_text("500")
    expect(page.locator('[data-count="failed_again"]')).to_have_text("0")
    expect(page.locator('[data-count="pending"]')).to_have_text("0")
    page.get_by_role("link", name="What was written (500)").click()
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(500)
    expect(rows.first).to_contain_text("EmailMessage")

    assert records_of(stack.admin, "EmailMessage", [e["id"] for e in group]) == {e["id"]: 1 for e in group}
    left = DeadLetterStore(stack.redis).causes()
    assert [(g.count, g.pattern) for g in left] == [(3, "No beta offers")]
    _nav(page, "Audit").click()
    expect(page.get_by_role("row").filter(has_text="replay_finished").first).to_contain_text("500")
