"""A real worker's /metrics counts what it did: outcomes by type, Salesforce calls and writes, API usage."""

from __future__ import annotations

import re
import time
import urllib.request

import pytest

from events.redis_conn import free_port
from tests.factories import email_event

pytestmark = pytest.mark.integration


def _sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_given_events_synced_when_metrics_scraped_then_outcomes_calls_and_usage_are_counted(stack):
    stack.admin.seed("Contact", [{"LastName": "Doe", "Email": "jane.doe@acme.example"}])
    port = free_port()
    stack.start_worker(concurrency=2, metrics_port=port)
    written = [email_event() for _ in range(3)]
    skipped = email_event(to="nobody@nowhere.example")
    stack.publish([*written, skipped])
    stack.wait_outcomes([e["id"] for e in (*written, skipped)])

    deadline = time.monotonic() + 10
    text = ""
    while time.monotonic() < deadline:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        if _sample(text, "sfsync_events_total", type="email.sent", outcome="written") >= 3:
            break
        time.sleep(0.3)

    assert _sample(text, "sfsync_events_total", type="email.sent", outcome="written") == 3
    assert _sample(text, "sfsync_events_total", type="email.sent", outcome="skipped_no_contact") == 1
    assert _sample(text, "sfsync_salesforce_calls_total", kind="write") >= 1
    assert _sample(text, "sfsync_write_seconds_count") >= 1
    assert _sample(text, "sfsync_salesforce_api_limit") > 0
    assert not re.search(r"jane\.doe@acme\.example", text)
