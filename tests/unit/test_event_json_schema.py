"""The event contract's JSON Schema: the committed file is current, and it agrees with the pydantic models."""

from __future__ import annotations

import json

import jsonschema
import pytest
from click.testing import CliRunner

from schemas.events import InvalidEvent, parse_event
from tests.factories import SYNC_PLAY, contact_updated_event, email_event
from workers.cli import main
from workers.cli.schema import COMMITTED_SCHEMA, event_json_schema, render_event_schema

REGENERATE = "sfsync schema --output schemas/event.schema.json"


def test_given_the_models_when_the_schema_is_regenerated_then_the_committed_file_is_identical():
    committed = COMMITTED_SCHEMA.read_text(encoding="utf-8")
    assert committed == render_event_schema(), f"schemas/event.schema.json is stale: run `{REGENERATE}`"


def test_given_the_cli_when_schema_is_run_then_stdout_and_output_file_hold_the_generated_schema(tmp_path):
    runner = CliRunner()
    printed = runner.invoke(main, ["schema"])
    written = runner.invoke(main, ["schema", "--output", str(tmp_path / "event.schema.json")])

    assert printed.exit_code == 0 and written.exit_code == 0, printed.output + written.output
    assert printed.stdout == render_event_schema()
    assert (tmp_path / "event.schema.json").read_text(encoding="utf-8") == render_event_schema()


def test_given_the_schema_when_checked_then_it_is_a_valid_draft_2020_12_schema_of_three_event_types():
    schema = event_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["discriminator"]["propertyName"] == "type"
    assert set(schema["discriminator"]["mapping"]) == {"email.sent", "email.replied", "contact.updated"}
    assert schema["$defs"]["EmailData"]["properties"]["from"]["description"]


@pytest.mark.parametrize("event", [
    email_event(origin="automated"),
    email_event(origin="manual", play=SYNC_PLAY),
    email_event(event_type="email.replied"),
    contact_updated_event(emails=["jane@acme.example"], changes={"title": "CRO"}, title="CRO"),
    {**email_event(), "emitter": "unify-web"},
], ids=["sent-automated", "sent-manual-play", "replied", "contact-updated", "unknown-field"])
def test_given_an_event_the_models_accept_when_validated_by_the_schema_then_accepted(event):
    parse_event(event)
    jsonschema.Draft202012Validator(event_json_schema()).validate(event)


@pytest.mark.parametrize("mutate", [
    lambda e: e.pop("workspace_id"),
    lambda e: e.update(version=2),
    lambda e: e.update(id="has space"),
    lambda e: e["data"].update(origin="robot"),
    lambda e: e["data"].update(to=[]),
    lambda e: e["data"].pop("from"),
], ids=["no-workspace", "version-2", "id-with-space", "bad-origin", "no-recipient", "no-sender"])
def test_given_an_event_the_models_refuse_when_validated_by_the_schema_then_refused_too(mutate):
    event = email_event()
    mutate(event)
    with pytest.raises(InvalidEvent):
        parse_event(event)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(event_json_schema()).validate(event)


def test_given_the_committed_file_when_loaded_then_it_is_json_with_the_dialect_and_a_title():
    loaded = json.loads(COMMITTED_SCHEMA.read_text(encoding="utf-8"))
    assert loaded["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert loaded["title"] == "sfsync event, version 1"
