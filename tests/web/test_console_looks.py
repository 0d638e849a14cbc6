"""The console's main pages look as they did: screenshots at 390 and 1280 px compared with committed references.

The pages show fixed data (tests/web/scenery.py) placed relative to the current minute; what
still varies between runs (times, ages, the console's own process, the test database's number)
is masked. A reference is made or renewed with SFSYNC_UPDATE_LOOKS=1; look at the new images
before committing them. A page differs when more than TOLERANCE of its pixels change by more
than CHANNEL in a colour channel: antialiasing noise stays far below it, a moved or broken block
far above (tests/unit/test_looks_compare.py).
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import pytest
from PIL import Image

from events.deadletter import DeadLetterStore
from events.fleet import Fleet
from tests.conftest import wait_until
from schemas.workspace import WorkspaceSpec
from tests.web.conftest import ARTIFACTS, registry, sign_in
from tests.web.looks_compare import CHANNEL, TOLERANCE, compare, diff_image
from tests.web.scenery import OTHER, WORKSPACE, furnish

pytestmark = pytest.mark.integration

LOOKS = Path(__file__).parent / "looks"
WIDTHS = (390, 1280)
#: what varies from run to run and is masked in every screenshot
VOLATILE = ("time", ".axis-time", ".chart-summary", "table.fleet td.mono", "#overview > p.muted",
            "#workspace dd:has(.pill)", "#workspace dd:has(meter)", "#workspace dd:has-text(\"next \")")
JOB = "0123456789abcdef"


def _steady_minute() -> float:
    """Now, or the start of the next minute when this one is nearly over: the charts place their data by the
    minute, and a minute passing between furnishing and the screenshot would move every bar."""
    second = time.time() % 60
    if second > 45:
        time.sleep(60.5 - second)
    return time.time()


def _replay_done(client) -> None:
    client.hset(f"sfsync:web:job:{JOB}", mapping={
        "state": "done", "total": 12, "done": 12, "replayed": 12, "user": "sam", "started": f"{time.time() - 40:.0f}",
        "what": "12 × FIELD_CUSTOM_VALIDATION_EXCEPTION on Subject in ws_acme", "back": "/dead-letters",
        "counts": json.dumps({"replayed": 12, "not_replayed": 0, "written": 9, "failed_again": 3, "skipped": 0,
                              "pending": 0}),
        "live": json.dumps({"written": 9, "failed_again": 3, "skipped": 0, "pending": 0}),
        "problems": "[]", "written": json.dumps([{"event_id": f"evt_subject_{n:03d}", "workspace": WORKSPACE,
                                                  "outcome": "written", "sobject": "EmailMessage",
                                                  "record_id": f"02s5g00000000{n:02d}AAA", "contact_id": ""}
                                                 for n in range(9)]),
        "failed_again": json.dumps(["dl_0000000000000001", "dl_0000000000000002", "dl_0000000000000003"]),
        "pending": "[]"})


def _path(name: str, client) -> str:
    store = DeadLetterStore(client)
    if name == "cause":
        group = store.causes([WORKSPACE])[0]
        return f"/dead-letters/causes/{group.bucket}/{group.key}"
    if name == "dead-letter":
        return f"/dead-letters/{store.causes([WORKSPACE])[0].sample_id}"
    return {"overview": "/", "workspace": f"/workspaces/{OTHER}", "dead-letters": "/dead-letters",
            "fleet": "/fleet", "replay": f"/replays/{JOB}", "audit": "/audit", "login": "/login"}[name]


PAGES = ("overview", "workspace", "dead-letters", "cause", "dead-letter", "fleet", "replay", "audit", "login")


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", PAGES)
def test_the_page_looks_as_its_reference(browser, console, redis_client, name, width):
    furnish(redis_client, _steady_minute())
    registry(redis_client).apply([WorkspaceSpec(id=OTHER, name="Globex Corp")])  # its page shows an admin's actions
    _replay_done(redis_client)
    if name in ("overview", "fleet"):
        # the console's own heartbeat (every few seconds) is part of the picture: wait for it after the flush
        wait_until(lambda: any(m.kind == "console" for m in Fleet(redis_client).members()), 15,
                   "the console's heartbeat")
    context = browser.new_context(viewport={"width": width, "height": 900}, device_scale_factor=1,
                                  reduced_motion="reduce")
    page = context.new_page()
    try:
        if name != "login":
            sign_in(page, console, "ada")
        page.goto(console + _path(name, redis_client))
        page.wait_for_load_state("networkidle")
        # usable at this width: nothing wider than the window, so nothing needs a sideways scroll
        assert page.evaluate("document.documentElement.scrollWidth") <= width, f"{name} is wider than {width} px"
        shot = page.screenshot(full_page=True, animations="disabled", caret="hide",
                               mask=[page.locator(f"{selector}:visible") for selector in VOLATILE], mask_color="#ff00ff")
    finally:
        context.close()
    reference = LOOKS / f"{name}-{width}.png"
    actual_path = ARTIFACTS / f"looks-{name}-{width}.png"
    if os.environ.get("SFSYNC_UPDATE_LOOKS") == "1":
        LOOKS.mkdir(exist_ok=True)
        with Image.open(io.BytesIO(shot)) as image:
            image.save(reference, optimize=True)
        return
    ARTIFACTS.mkdir(exist_ok=True)
    actual_path.write_bytes(shot)
    assert reference.exists(), (f"no reference image {reference.name}: run this test with SFSYNC_UPDATE_LOOKS=1, "
                                f"look at the image, and commit it")
    with Image.open(reference) as expected, Image.open(actual_path) as actual:
        verdict = compare(expected, actual)
        if not verdict.same:
            diff_image(expected, actual).save(ARTIFACTS / f"looks-{name}-{width}.diff.png")
    assert verdict.same, (f"{name} at {width} px differs from its reference: {verdict.describe()} (a pixel counts "
                          f"when a channel moves by more than {CHANNEL}; at most {TOLERANCE:.2%} may). See "
                          f"{actual_path.name} and its .diff.png in {ARTIFACTS}; if the change is meant, renew the "
                          f"reference with SFSYNC_UPDATE_LOOKS=1")
    actual_path.unlink()
