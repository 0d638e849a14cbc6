"""`sfsync schema`: the JSON Schema of the event contract, generated from its pydantic models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from pydantic import TypeAdapter

from schemas.events import MAX_EVENT_BYTES, Event
from workers.cli import exits
from workers.cli.exits import Failure

#: where the generated schema is kept in the repository (a unit test fails when it is stale)
COMMITTED_SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "event.schema.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def event_json_schema() -> dict[str, Any]:
    """The contract as a JSON Schema (draft 2020-12): one of the three event types, chosen by `type`."""
    generated = TypeAdapter(Event).json_schema(by_alias=True, mode="validation")
    return {
        "$schema": DIALECT,
        "title": "sfsync event, version 1",
        "description": (
            "One Unify event as sfsync's workers accept it: email.sent, email.replied or contact.updated, "
            "chosen by `type`. Unknown fields are allowed and kept. Addresses are trimmed and lower-cased; "
            f"an event of more than {MAX_EVENT_BYTES:,} bytes of JSON is refused. See docs/events.md."
        ),
        **generated,
    }


def render_event_schema() -> str:
    """The schema as the committed file holds it: two-space indented JSON and a final newline."""
    return json.dumps(event_json_schema(), indent=2, ensure_ascii=False) + "\n"


@click.command()
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the schema to this file instead of standard output.")
def schema(output: Path | None) -> None:
    """Print the JSON Schema of the event contract (generated from the pydantic models)."""
    text = render_event_schema()
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise Failure(f"cannot write {output}: {exc.strerror or exc}", exits.CANT_CREATE) from None
    click.echo(f"wrote {output}", err=True)
