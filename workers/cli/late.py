"""`sfsync late`: emails waiting for their contact (or lead) to appear in Salesforce, per workspace."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import click
from rich.console import Console
from rich.table import Table

from events.late_contacts import LateContacts, wait_span
from events.redis_conn import connect
from schemas.settings import SettingsError, load_settings
from workers.cli import exits, summaries
from workers.cli.exits import Failure
from workspaces.registry import ENTRIES


@dataclass(frozen=True)
class LateSettings:
    """A workspace's late-contact settings, as workers apply them."""

    workspace_id: str
    days: float
    max_waiting: int


def late_settings(client, settings, workspace_id: str) -> LateSettings:
    """From the registry, or the environment's workspace; a DATA failure when no such workspace is served."""
    raw = client.hget(ENTRIES, workspace_id)
    if raw:
        entry = json.loads(raw)
        return LateSettings(workspace_id, float(entry.get("late_contact_days", settings.late_contact_days)),
                            int(entry.get("late_contact_max", settings.late_contact_max)))
    if workspace_id == settings.workspace_id:
        return LateSettings(workspace_id, settings.late_contact_days, settings.late_contact_max)
    raise Failure(f"no workspace {workspace_id!r} is served here (see `sfsync workspaces list`)", exits.DATA)


def _open(workspace_id: str | None) -> tuple[LateContacts, LateSettings]:
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise Failure(str(exc), exits.CONFIG) from None
    client = connect(settings.redis_url.get_secret_value())
    return LateContacts(client), late_settings(client, settings, workspace_id or settings.workspace_id)


def _iso(epoch: float | None) -> str | None:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds") if epoch else None


@click.group(cls=summaries.Group)
def late() -> None:
    """Emails skipped because nobody in Salesforce had the person's address, waiting for them to appear."""


_WORKSPACE = click.option("--workspace", "workspace_id", default=None,
                          help="Workspace id (default: SFSYNC_WORKSPACE_ID).")


@late.command("count")
@_WORKSPACE
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def count(workspace_id, as_json) -> None:
    """How many emails wait, for how long the oldest has, and what became of the others."""
    store, config = _open(workspace_id)
    now = time.time()
    summary = store.summary(config.workspace_id, days=config.days, now=now)
    body = {"workspace_id": config.workspace_id, **summary.as_dict(now), "oldest_since": _iso(summary.oldest_since),
            "late_contact_days": config.days, "late_contact_max": config.max_waiting}
    if as_json:
        click.echo(json.dumps(body))
        return
    if config.days <= 0:
        click.echo(f"{config.workspace_id}: late contacts are off (late_contact_days 0): skipped emails do not wait")
    else:
        oldest = f" (the oldest for {body['oldest_wait']})" if summary.waiting else ""
        click.echo(f"{config.workspace_id}: {summary.waiting} email(s) wait for their contact{oldest}; each waits "
                   f"up to {config.days:g} days, at most {config.max_waiting} at once")
    click.echo(f"since the start: {summary.waited} waited, {summary.released} released to be written, "
               f"{summary.expired} waited out, {summary.dropped} dropped (over the bound, the oldest first)")


@late.command("list")
@_WORKSPACE
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000),
              help="How many, the longest waiting first.")
@click.option("--json", "as_json", is_flag=True, help="Print the waiting emails as JSON.")
def listing(workspace_id, limit, as_json) -> None:
    """The waiting emails, the longest waiting first: event, addresses, since when and until when."""
    store, config = _open(workspace_id)
    rows = store.listing(config.workspace_id, days=config.days, limit=limit)
    if as_json:
        click.echo(json.dumps([{**row, "workspace_id": config.workspace_id,
                                "sent_at": _iso(row["sent_at_ms"] / 1000 if row["sent_at_ms"] else None),
                                "waiting_since": _iso(row["waiting_since"]),
                                "waiting_until": _iso(row["waiting_until"])} for row in rows]))
        return
    if not rows:
        click.echo(f"{config.workspace_id}: no email waits for its contact")
        return
    table = Table(title=f"emails of {config.workspace_id} waiting for their contact")
    for column in ("event", "type", "addresses", "sent", "waiting for", "until"):
        table.add_column(column)
    now = time.time()
    for row in rows:
        table.add_row(row["event_id"], row["event_type"] or "-", ", ".join(row["addresses"]),
                      _iso(row["sent_at_ms"] / 1000 if row["sent_at_ms"] else None) or "-",
                      wait_span(now - row["waiting_since"]), _iso(row["waiting_until"]))
    Console().print(table)
