"""What sfsync would send to Sentry carries no address, email content or credential."""

from __future__ import annotations

import logging

import pytest
import sentry_sdk
from celery import Celery
from sentry_sdk.transport import Transport

from tests.factories import email_event
from workers.observability.redact import scrub_text
from workers.observability.sentry import init_sentry, scrub_breadcrumb, scrub_event

ADDRESS = "jane.doe@acme.example"
HOME_ADDRESS = "jane@home.example"
REP_ADDRESS = "riley@seller.example"
SUBJECT = "Quick question about your Q4 budget"
BODY = "Hi Jane, a private note on pricing"
TOKEN = "00D5g000004XyZaEAK!AQ8AQJsecretsessionvalue"
FORBIDDEN = (ADDRESS, HOME_ADDRESS, REP_ADDRESS, SUBJECT, BODY, TOKEN, "acme.example",
             "Q4 budget", "private note", "secretsessionvalue", "{{person.firstName}}")


class CapturingTransport(Transport):
    """Keeps the bytes the SDK would put on the wire instead of sending them."""

    def __init__(self, options=None):
        super().__init__(options)
        self.sent: list[bytes] = []

    def capture_envelope(self, envelope) -> None:
        self.sent.append(envelope.serialize())

    def text(self) -> str:
        return b"\n".join(self.sent).decode("utf-8", errors="replace")


@pytest.fixture
def transport():
    captured = CapturingTransport()
    init_sentry("https://public@sentry.invalid/1", environment="test", transport=captured)
    yield captured
    sentry_sdk.flush()
    sentry_sdk.init()  # no DSN: a disabled client for whatever runs next


def _assert_clean(text: str) -> None:
    leaked = [needle for needle in FORBIDDEN if needle.lower() in text.lower()]
    assert not leaked, f"sent to Sentry: {leaked}"


def _event() -> dict:
    return email_event(to=ADDRESS, person_emails=[ADDRESS, HOME_ADDRESS], subject=SUBJECT,
                       body_html=f"<p>{BODY}</p>", body_text=BODY, rep_email=REP_ADDRESS,
                       event_id="evt_scrub_1")


def _failing_app() -> Celery:
    app = Celery("scrub-test", set_as_current=False)
    app.conf.task_always_eager = False
    log = logging.getLogger("sfsync.test.task")

    @app.task(name="sfsync.test.sync_event")
    def sync_event(event, session_id=None):
        data = event["data"]
        log.info("resolving contact for %s", data["to"][0]["email"])
        raise RuntimeError(
            f"STRING_TOO_LONG: Subject: data value too large: {data['subject']} (max length=20); "
            f"no contact for {data['to'][0]['email']} with session {session_id}")

    return app


@pytest.mark.parametrize("sdk_attaches_args", [False, True], ids=["sdk-default", "args-attached"])
def test_failing_task_with_a_full_event_sends_only_ids(transport, monkeypatch, sdk_attaches_args):
    # given a Celery task that fails with an event as its argument; older sentry-sdk versions
    # attaches task args whatever send_default_pii says
    if sdk_attaches_args:
        monkeypatch.setattr("sentry_sdk.integrations.celery.should_send_default_pii", lambda: True)
    logging.getLogger().setLevel(logging.INFO)
    app = _failing_app()

    # when the task runs through Celery's tracer and fails
    result = app.tasks["sfsync.test.sync_event"].apply(args=(_event(),), kwargs={"session_id": TOKEN})
    sentry_sdk.flush()

    # then Sentry got the error, with the event's id but no address, subject, body or token
    assert result.failed()
    sent = transport.text()
    assert "STRING_TOO_LONG" in sent and "RuntimeError" in sent
    assert "sfsync.test.sync_event" in sent
    _assert_clean(sent)
    if sdk_attaches_args:
        assert "evt_scrub_1" in sent and "ws_acme" in sent
    assert '"release":"sfsync@' in sent.replace(" ", "")
    assert '"environment":"test"' in sent.replace(" ", "")


def test_logging_error_with_an_address_is_masked(transport):
    # given the logging integration is on
    log = logging.getLogger("sfsync.test.logging")
    log.setLevel(logging.INFO)

    # when code logs an error that names a person and a rep
    log.info("about to write for %s", HOME_ADDRESS)
    log.error("no contact for %s (rep %s), subject=%r", ADDRESS, REP_ADDRESS, SUBJECT)
    sentry_sdk.flush()

    # then the event and its breadcrumbs arrive without the addresses or the subject
    sent = transport.text()
    assert "no contact for" in sent
    _assert_clean(sent)


def test_captured_exception_and_message_are_scrubbed(transport):
    try:
        raise ValueError(f"bad picklist for {ADDRESS}: Authorization: Bearer abcdefghijkl123456")
    except ValueError:
        sentry_sdk.capture_exception()
    sentry_sdk.capture_message(f"Description='{BODY}' for {HOME_ADDRESS}")
    sentry_sdk.flush()
    sent = transport.text()
    assert "bad picklist for" in sent
    _assert_clean(sent)
    assert "abcdefghijkl123456" not in sent


def test_scrub_event_covers_request_extra_and_breadcrumbs():
    # given an event shaped as the SDK builds it, with PII in every corner
    sync_event = _event()
    event = {
        "message": f"mail to {ADDRESS}",
        "request": {"headers": {"Authorization": "Bearer abcdefghijkl123456", "X-Session-Id": TOKEN,
                                "Cookie": "sid=xyz"},
                    "data": {"Subject": SUBJECT, "HtmlBody": f"<p>{BODY}</p>", "TextBody": BODY,
                             "Description": BODY, "WhoId": "003000000000001"},
                    "url": "https://user:hunter2@example.invalid/services"},
        "extra": {"celery-job": {"task_name": "sfsync.sync_batch", "args": [[sync_event]], "kwargs": {}},
                  "redis_url": "rediss://sfsync:hunter2@redis.example:6380/0"},
        "exception": {"values": [{"type": "SalesforceError", "value": f"{ADDRESS}: {{'subject': '{SUBJECT}'}}"}]},
        "breadcrumbs": {"values": [{"message": f"sent to {HOME_ADDRESS}", "data": {"template": BODY}}]},
        "spans": [{"description": "sfsync.sync_batch", "data": {"body_text": BODY}}],
    }

    # when it passes the before_send hook
    cleaned = scrub_event(event, {})

    # then nothing personal or secret is left, but ids and structure are
    text = repr(cleaned)
    _assert_clean(text)
    assert "hunter2" not in text and "abcdefghijkl123456" not in text and "sid=xyz" not in text
    assert cleaned["extra"]["celery-job"]["args"] == [[{
        "id": "evt_scrub_1", "type": "email.sent", "version": 1, "workspace_id": "ws_acme",
        "occurred_at": sync_event["occurred_at"]}]]
    assert cleaned["request"]["data"]["WhoId"] == "003000000000001"
    assert cleaned["spans"][0]["description"] == "sfsync.sync_batch"


def test_breadcrumb_hook_masks_addresses_and_bodies():
    crumb = {"category": "sfsync", "message": f"matched {ADDRESS}", "data": {"body_html": BODY}}
    cleaned = scrub_breadcrumb(crumb, {})
    assert ADDRESS not in repr(cleaned) and BODY not in repr(cleaned)
    assert cleaned["category"] == "sfsync"


@pytest.mark.parametrize("text, kept", [
    ("o'brien@x.example replied", " replied"),
    ("release sfsync@0.1.0 failed", "release sfsync@0.1.0 failed"),
    ("UNABLE_TO_LOCK_ROW on 003000000000001", "UNABLE_TO_LOCK_ROW on 003000000000001"),
    ("redis://:s3cret@redis:6379/0 down", "redis://:[Filtered]@redis:6379/0 down"),
    ("{\"subject\": \"Hello \\\"Jane\\\"\", \"id\": \"evt_1\"}", "\"id\": \"evt_1\""),
    ("'body_html': '<p>cut off by the size lim", "'body_html': '[Filtered]'"),
])
def test_scrub_text_masks_only_what_it_must(text, kept):
    cleaned = scrub_text(text)
    assert kept in cleaned
    assert "@x.example" not in cleaned and "s3cret" not in cleaned and "Jane" not in cleaned
    assert "<p>" not in cleaned
