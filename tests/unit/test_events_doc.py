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
    assert body[1:] == [{}, EMBED]
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
    assert isinstance(body[0], list) and body[1] == {} and isinstance(body[2], dict)
