"""A real worker reporting to a local stand-in for Sentry sends no address, subject or body in any envelope."""

from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, unquote_plus

import pytest

from events.deadletter import DeadLetterStore
from events.topology import ALL_QUEUES
from events.keys import key
from tests.conftest import WORKSPACE, wait_until
from tests.factories import email_event

pytestmark = pytest.mark.integration

#: prospects and reps in several scripts, with apostrophes and plus tags: what leaked before
PEOPLE = [
    ("o'brien@acme.example", "Siobhan", "O'Brien"),
    ("zoë.müller@bücher-haus.example", "Zoë", "Müller"),
    ("jürgen+sales@xn--bcher-kva.example", "Jürgen", "Weiß"),
    ("d'angelo.ruiz@café-olé.example", "D'Angelo", "Ruiz"),
    ("用户@例子.广告", "Wei", "Zhang"),
]
REP = "rené.o'neil@seller.example"
SUBJECT = "Ihr Angebot für Bücher — quick question"
BODY = "Hallo, hier ist das vertrauliche Angebot über 12.000 EUR"


class Envelopes:
    """A stand-in for Sentry's ingest endpoint that keeps every envelope it is sent, decompressed."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    raw = gzip.decompress(raw)
                elif encoding == "deflate":
                    raw = zlib.decompress(raw)
                elif encoding == "br":
                    import brotli  # only when the SDK found it installed, so it is here

                    raw = brotli.decompress(raw)
                with owner.lock:
                    owner.received.append(raw)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args) -> None:  # the test's output stays the test's
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def dsn(self) -> str:
        return f"http://publickey@127.0.0.1:{self.server.server_address[1]}/1"

    def events(self) -> list[dict]:
        """Items of type event (errors), parsed; transactions, sessions and client reports are left out."""
        found = []
        with self.lock:
            envelopes = list(self.received)
        for envelope in envelopes:
            lines = envelope.split(b"\n")
            for header, payload in zip(lines[1::2], lines[2::2]):
                try:
                    if json.loads(header).get("type") == "event":
                        found.append(json.loads(payload))
                except ValueError:
                    continue
        return found

    def all_text(self) -> str:
        """Everything received, as raw text, JSON-unescaped, and URL-decoded (twice, and form-decoded)."""
        with self.lock:
            raw = b"\n".join(self.received).decode("utf-8", errors="replace")
        views = [raw]
        for line in raw.split("\n"):
            try:
                views.append(json.dumps(json.loads(line), ensure_ascii=False))
            except ValueError:
                continue
        text = "\n".join(views)
        return "\n".join([text, unquote(text), unquote(unquote(text)), unquote_plus(text)])


@pytest.fixture
def envelopes():
    stand_in = Envelopes()
    stand_in.thread.start()
    yield stand_in
    stand_in.server.shutdown()
    stand_in.server.server_close()


def _wait_for_error_event(envelopes: Envelopes, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        errors = [e for e in envelopes.events() if e.get("level") in ("error", "fatal")]
        if errors:
            time.sleep(1.0)  # let a second report of the same failure arrive, so it is checked too
            return [e for e in envelopes.events() if e.get("level") in ("error", "fatal")]
        time.sleep(0.2)
    return []


def _forbidden() -> list[str]:
    needles = [REP, SUBJECT, BODY, "vertrauliche", "12.000 EUR", "Angebot"]
    for address, first, last in PEOPLE:
        local, _, domain = address.partition("@")
        needles += [address, local, domain, f"{first} {last}"]
    return needles


def test_given_batches_with_international_addresses_then_an_error_when_reported_then_no_address_or_content(
        stack, envelopes):
    # given a real worker reporting to the local stand-in for Sentry, and contacts for most people
    stack.admin.seed("Contact", [{"FirstName": first, "LastName": last, "Email": address}
                                 for address, first, last in PEOPLE[:3]])
    stack.start_worker(sentry_dsn=envelopes.dsn, environment="privacy-test")

    # when a few batches go through (each a SOQL lookup WHERE Email IN (...) and a composite write)
    for n, (address, first, last) in enumerate(PEOPLE):
        batch = [email_event(to=address, person_emails=[address], first_name=first, last_name=last,
                             subject=f"{SUBJECT} #{n}-{i}", body_html=f"<p>{BODY} ({i})</p>", body_text=None,
                             rep_email=REP, workspace_id=WORKSPACE, origin=("manual", "automated")[i % 2])
                 for i in range(2)]
        stack.publish(batch)
        stack.wait_outcomes([e["id"] for e in batch], timeout=60)

    # and then a failure the worker reports: the outcome counters' key holds the wrong type,
    # so settling the next batch raises inside the worker after its Salesforce calls
    stack.redis.delete(key(WORKSPACE, "counts"))
    stack.redis.set(key(WORKSPACE, "counts"), "not a hash")
    address, first, last = PEOPLE[1]
    stack.publish([email_event(to=address, person_emails=[address], first_name=first, last_name=last,
                               subject=SUBJECT, body_html=f"<p>{BODY}</p>", rep_email=REP,
                               workspace_id=WORKSPACE)])

    # then Sentry received the error, with breadcrumbs of the earlier batches
    errors = _wait_for_error_event(envelopes, timeout=60)
    assert errors, "the worker reported no error to Sentry:\n" + stack.processes[0].output()[-3000:]
    crumbs = [c for e in errors for c in (e.get("breadcrumbs") or {}).get("values", [])]
    http_crumbs = [c for c in crumbs if c.get("type") == "http" or c.get("category") == "httplib"]
    assert http_crumbs, "no HTTP breadcrumbs: the test would not see a leaking SOQL query"
    assert not [c for c in http_crumbs if "http.query" in c.get("data", {}) or "?" in c["data"].get("url", "")]

    # and nothing anywhere in what was received names a person or quotes an email
    text = envelopes.all_text()
    leaked = sorted({needle for needle in _forbidden() if needle.lower() in text.lower()})
    assert not leaked, f"sent to Sentry: {leaked}"


#: addresses that fail validation, in the shapes hostile or broken emitters send: still personal data
INVALID = ["zq.bad.address@victim-corp", "no.tld@intranet-host", "dbl.at@@victim.example", "trailing@victim.example.",
           "with space@victim.example", "ünï.côdé@victim-großhandel"]


def _raw_message(stack, args: list) -> None:
    """A message as any Celery client could push it, bypassing the publisher's validation."""
    from events.topology import route_for
    from events.wire import queue_item

    task, queue = route_for("email.sent")
    stack.redis.lpush(queue, queue_item(task, queue, args))


def test_given_a_whole_hostile_run_when_reported_and_logged_then_no_address_valid_or_not_appears(stack, envelopes):
    # given a real worker reporting to the local stand-in for Sentry, its log kept
    stack.admin.seed("Contact", [{"FirstName": "Ann", "LastName": "Valid", "Email": "ann.valid@victim.example"}])
    worker = stack.start_worker(sentry_dsn=envelopes.dsn, environment="hostile-test")

    # when hostile events come: invalid addresses in every field, as event id, type and workspace id,
    # events that are not events, and valid ones around them
    hostile = []
    for n, bad in enumerate(INVALID):
        hostile.append(email_event(to=bad, person_emails=[bad], subject=f"hostile {n}", workspace_id=WORKSPACE))
        hostile.append(email_event(rep_email=bad, subject=f"hostile rep {n}", workspace_id=WORKSPACE))
    for event in hostile:
        _raw_message(stack, [event])
    _raw_message(stack, [{**email_event(workspace_id=WORKSPACE), "id": INVALID[0]}])
    _raw_message(stack, [{**email_event(workspace_id=WORKSPACE), "type": INVALID[1]}])
    _raw_message(stack, [{**email_event(workspace_id=WORKSPACE), "version": INVALID[2]}])
    _raw_message(stack, [email_event(workspace_id=INVALID[0])])
    _raw_message(stack, [INVALID[3]])
    _raw_message(stack, [[INVALID[4], {"workspace_id": WORKSPACE, "note": INVALID[5]}]])
    good = [email_event(to="ann.valid@victim.example", workspace_id=WORKSPACE) for _ in range(2)]
    stack.publish(good)
    stack.wait_outcomes([e["id"] for e in good], timeout=60)
    wait_until(lambda: DeadLetterStore(stack.redis).count() >= 6 and not stack.redis.hlen("unacked") and
               not any(stack.redis.llen(q) for q in ALL_QUEUES), 60, "every hostile message handled", worker)
    # and an error the worker reports, with the run's breadcrumbs
    stack.redis.delete(key(WORKSPACE, "counts"))
    stack.redis.set(key(WORKSPACE, "counts"), "not a hash")
    stack.publish([email_event(to="ann.valid@victim.example", workspace_id=WORKSPACE)])
    assert _wait_for_error_event(envelopes, timeout=60), "the worker reported no error to Sentry"

    # then neither Sentry nor the log holds any of the addresses, nor their parts
    needles = {"ann.valid@victim.example", "victim-corp", "victim.example", "intranet-host", "victim-großhandel"}
    for bad in INVALID:
        local = bad.split("@")[0]
        needles |= {bad, local}
    text = envelopes.all_text().lower()
    log = worker.output().lower()
    assert not sorted(n for n in needles if n.lower() in text), "sent to Sentry"
    assert not sorted(n for n in needles if n.lower() in log), "written to the log"
