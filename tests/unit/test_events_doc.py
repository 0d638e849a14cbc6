"""docs/events.md stays true: its examples are valid events and its captured queue items decode as documented."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import jsonschema
import pytest

from events.topology import route_for
from schemas.events import EmailSent, parse_event
from workers.broker_guard import envelope_problem
from workers.cli.schema import event_json_schema

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"
EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def doc_section(heading: str) -> str:
    """The text under a Markdown heading, up to the next heading of the same or a higher level."""
    text = DOC.read_text(encoding="utf-8")
    level = heading.split(" ", 1)[0]
    start = text.index(f"\n{heading}\n")
    following = re.search(rf"\n#{{1,{len(level)}}} ", text[start + 1:])
    return text[start:start + 1 + following.start()] if following else text[start:]


def json_blocks(section: str) -> list:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", section, flags=re.S)]


def _decode_body(body: str, encoding: str) -> bytes:
    assert encoding == "base64"
    return base64.b64decode(body, validate=True)


def test_given_the_examples_section_when_each_is_validated_then_models_and_schema_accept_all_four_kinds():
    examples = json_blocks(doc_section("## Examples"))
    validator = jsonschema.Draft202012Validator(event_json_schema())
    kinds = set()
    for example in examples:
        validator.validate(example)
        event = parse_event(example)
        kinds.add((event.type, event.data.origin if isinstance(event, EmailSent) else None))
    assert len(examples) == 4
    assert kinds == {("email.sent", "automated"), ("email.sent", "manual"), ("email.replied", None),
                     ("contact.updated", None)}


def test_given_the_captured_sfsync_item_when_decoded_then_it_is_the_documented_protocol_2_message():
    item, decoded = json_blocks(doc_section("### The item sfsync's publisher writes"))
    body = json.loads(_decode_body(item["body"], item["properties"]["body_encoding"]))
    automated = json_blocks(doc_section("## Examples"))[0]

    assert envelope_problem(item, _decode_body) is None
    assert body == decoded
    # kwargs carry only when the publisher queued it (the console's latency is measured from it)
    assert set(body[1]) == {"sfsync"} and set(body[1]["sfsync"]) == {"published_at"}
    assert isinstance(body[1]["sfsync"]["published_at"], float) and body[2] == EMBED
    assert parse_event(body[0][0]) == parse_event(automated)
    task_name, queue = route_for(automated["type"])
    assert item["headers"]["task"] == task_name
    assert item["properties"]["delivery_info"]["routing_key"] == queue
    assert item["content-type"] == "application/json" and item["content-encoding"] == "utf-8"


@pytest.mark.parametrize("heading", ["### The item sfsync's publisher writes", "### What `celery-node` writes"])
def test_given_a_captured_item_when_its_needed_parts_are_checked_then_all_are_present(heading):
    item, _ = json_blocks(doc_section(heading))
    body = json.loads(_decode_body(item["body"], item["properties"]["body_encoding"]))
    event = parse_event(body[0][0])

    assert envelope_problem(item, _decode_body) is None
    assert item["headers"]["id"] and item["properties"]["delivery_tag"]
    assert item["headers"]["task"] == route_for(event.type)[0]
    assert item["properties"]["delivery_info"]["routing_key"] == route_for(event.type)[1]
    assert isinstance(body[0], list) and set(body[1]) <= {"sfsync"} and isinstance(body[2], dict)


def _edited(edit) -> dict:
    import copy

    event = copy.deepcopy(json_blocks(doc_section("## Examples"))[0])
    edit(event)
    return event


def _worker_accepts(event: dict) -> bool:
    from schemas.events import InvalidEvent

    try:
        parse_event(event)
    except InvalidEvent:
        return False
    return True


def _set(*path_and_value):
    *path, value = path_and_value

    def edit(event):
        node = event
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
    return edit


#: (row of the doc's table, edit of the automated example, schema accepts, worker accepts)
SCHEMA_DIFFERENCES = [
    ("not-an-address", _set("data", "to", 0, "email", "not-an-address"), True, False),
    ("blank address", _set("data", "rep", "email", "  "), True, False),
    ("blank message_id", _set("data", "message_id", "   "), True, False),
    ("padded id", _set("id", " evt_1 "), False, True),
    ("padded workspace_id", _set("workspace_id", "ws_acme "), False, True),
    ("version 1.0", _set("version", 1.0), True, False),
    ("no time zone", _set("occurred_at", "2026-11-26T18:03:00"), True, False),
    ("not a time", _set("occurred_at", "yesterday"), True, False),
    ("unix seconds", _set("occurred_at", 1764180180), False, True),
    ("numeric string step", _set("data", "sequence", "step", "2"), False, True),
    ("yes as a boolean", _set("data", "play", {"sync_to_salesforce": "yes"}), False, True),
    ("one as a boolean", _set("data", "play", {"sync_to_salesforce": 1}), False, True),
    ("lone surrogate", _set("data", "subject", "\ud800"), True, False),
    ("too deep", _set("data", "person", "notes", json.loads("[" * 70 + "]" * 70)), True, False),
]


@pytest.mark.parametrize("name, edit, schema_accepts, worker_accepts", SCHEMA_DIFFERENCES,
                         ids=[row[0] for row in SCHEMA_DIFFERENCES])
def test_given_an_event_the_schema_and_the_worker_judge_differently_then_the_doc_lists_that_difference(
        name, edit, schema_accepts, worker_accepts):
    event = _edited(edit)
    validator = jsonschema.Draft202012Validator(event_json_schema())
    assert validator.is_valid(event) is schema_accepts
    assert _worker_accepts(event) is worker_accepts


def test_given_an_event_over_the_size_limit_when_checked_then_the_schema_accepts_and_the_worker_refuses():
    event = _edited(_set("data", "body_html", "x" * 2_000_001))
    assert jsonschema.Draft202012Validator(event_json_schema()).is_valid(event)
    assert not _worker_accepts(json.dumps(event).encode())


def test_given_sentrys_celery_headers_on_an_item_when_the_worker_checks_it_then_they_are_accepted():
    item, _ = json_blocks(doc_section("### The item sfsync's publisher writes"))
    trace = "f5c9094505d34c0b87f0db4a29c7b231-93e2242f19f66e31-1"
    baggage = "sentry-trace_id=f5c9094505d34c0b87f0db4a29c7b231,sentry-sampled=true"
    item["headers"].update({"sentry-task-enqueued-time": 1795816694.3, "sentry-trace": trace, "baggage": baggage,
                            "headers": {"sentry-trace": trace, "baggage": baggage, "sfsync_events": 1}})
    assert envelope_problem(item, _decode_body) is None
    section = doc_section("### The item sfsync's publisher writes")
    for header in ("sentry-trace", "baggage", "sentry-task-enqueued-time"):
        assert f"`{header}`" in section


def test_the_doc_tells_emitters_to_resend_what_a_replica_wait_error_left_unsent():
    section = " ".join(doc_section("## Waiting for replicas: `ReplicaWaitError`").split())
    assert "err.queued" in section and "sends nothing after it" in section
    from events import ReplicaWaitError

    assert "queued" in ReplicaWaitError.__init__.__code__.co_varnames
