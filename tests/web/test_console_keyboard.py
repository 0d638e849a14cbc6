"""The console by keyboard alone: sign in, skip to the content, change the charts' range, open a chart's values,
open a cause of dead letters and reach its replay's dry-run count; every focused control shows its focus."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from tests.web.conftest import PASSWORDS
from tests.web.scenery import furnish

pytestmark = pytest.mark.integration


def tab_to(page, text: str, limit: int = 80) -> None:
    """Press Tab until the focused element's text (or label) holds `text`; fail naming what was passed."""
    passed = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate("() => { const e = document.activeElement; return (e.innerText || e.value || "
                                "e.getAttribute('aria-label') || '').trim(); }")
        if text in focused:
            outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
            assert outline != "none", f"{text!r} has focus but shows no outline"
            return
        passed.append(focused[:30])
    raise AssertionError(f"Tab never reached {text!r}; it went through {passed}")


def test_the_console_works_from_the_keyboard(page, console, redis_client):
    furnish(redis_client, time.time())
    page.goto(f"{console}/login")
    page.keyboard.type("sam")  # the username field has focus as the page opens
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORDS["sam"])
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()

    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#main")).to_be_focused()

    tab_to(page, "6h")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Activity, last 6 hours")).to_be_visible()
    assert page.url.endswith("/?range=6h")
    tab_to(page, "Values")
    page.keyboard.press("Enter")
    expect(page.locator('[data-chart="chart-events"] table.values')).to_be_visible()

    page.goto(f"{console}/dead-letters")
    tab_to(page, "FIELD_CUSTOM_VALIDATION_EXCEPTION on Subject")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_contain_text(re.compile(r"12 × FIELD_CUSTOM_VALIDATION_EXCEPTION"))
    tab_to(page, "Replay this group…")
    page.keyboard.press("Enter")
    expect(page.locator("#dry-run")).to_contain_text("12 dead letter(s) would be replayed")
    tab_to(page, "Replay 12 dead letter(s)")
