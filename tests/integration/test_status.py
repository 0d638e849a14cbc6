"""`sfsync status` tells an operator what is queued, failed, parked and spent — without secrets (issue #8)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from events.publish import publisher_app
from tests.factories import email_event

pytestmark = pytest.mark.integration


def test_given_traffic_when_status_asked_then_queues_outcomes_dead_letters_and_no_secret(stack):
    stack.admin.seed("Contact", [{"LastName": "Doe", "Email": "jane.doe@acme.example"}])
    worker = stack.start_worker()
    good, unknown = email_event(), email_event(to="nobody@nowhere.example")
    stack.publish([good, unknown])
    publisher_app(stack.redis_url).send_task("sfsync.email.sent", args=["{broken"], queue="email.sent",
                                             exchange="email.sent", routing_key="email.sent")
    stack.wait_outcomes([good["id"], unknown["id"]])
    worker.terminate()
    stack.publish([email_event()])  # stays queued: no worker runs now

    env = stack.env()
    result = subprocess.run([sys.executable, "-m", "workers.cli", "status", "--json"], env=env,
                            capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["queues"]["email.sent"] == 1
    assert report["outcomes"]["email.sent|written"] == 1
    assert report["outcomes"]["email.sent|skipped_no_contact"] == 1
    assert report["dead_letters"]["by_error_code"] == {"INVALID_JSON": 1}
    assert stack.emulator.token not in result.stdout
    human = subprocess.run([sys.executable, "-m", "workers.cli", "status"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert human.returncode == 0 and "email.sent" in human.stdout
    assert stack.emulator.token not in human.stdout
