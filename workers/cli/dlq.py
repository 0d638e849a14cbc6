"""`sfsync dlq`: support lists, inspects, replays and purges dead letters."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from events.deadletter import UNROUTED, DeadLetterFilter, DeadLetterStore, ReplayResult, Retention
from events.redis_conn import connect
from schemas.deadletter import DeadLetterRecord
from schemas.settings import SettingsError, load_settings
from workers.cli import exits, summaries
from workers.cli.exits import Failure
from workers.replay import SigningKeys, parse_age, registry_signing_keys, replay_selection
from workers.status import summary_text
from workspaces.registry import Registry
from workspaces.secrets import Keyring, SecretKeyError

#: replays at least this large show a progress bar
_PROGRESS_FROM = 50


def _age_option(ctx, param, value):
    if value is None:
        return None
    try:
        return parse_age(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _store() -> tuple[DeadLetterStore, str]:
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise Failure(str(exc), exits.CONFIG) from None
    url = settings.redis_url.get_secret_value()
    return DeadLetterStore(connect(url), retention=Retention.from_settings(settings)), url


def _signing_keys(store: DeadLetterStore) -> SigningKeys | None:
    """The registry's emitter keys when SFSYNC_SECRET_KEYS opens it (else replays go unsigned)."""
    settings = load_settings()
    try:
        keyring = Keyring(settings.secret_keys.get_secret_value() if settings.secret_keys else None)
    except SecretKeyError:
        return None
    if not keyring.usable:
        return None
    return registry_signing_keys(Registry(store.redis, keyring, hosts=settings.salesforce_hosts))


def filter_options(fn):
    """The selection options every dlq command shares."""
    options = [
        click.option("--code", "codes", multiple=True, help="Salesforce or sfsync error code (repeatable)."),
        click.option("--type", "types", multiple=True, help="Event type, e.g. email.sent (repeatable)."),
        click.option("--workspace", "workspaces", multiple=True,
                     help=f"Workspace id (repeatable); reads only its dead letters and those in {UNROUTED} "
                          f"naming it. {UNROUTED} itself: every dead letter naming no known workspace."),
        click.option("--older-than", callback=_age_option, help="Last failure at least this long ago (2h, 3d)."),
        click.option("--newer-than", callback=_age_option, help="Last failure at most this long ago (2h, 3d)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _selection(ids=(), codes=(), types=(), workspaces=(), older_than=None, newer_than=None,
               everything=False) -> DeadLetterFilter:
    return DeadLetterFilter.of(ids=ids, codes=codes, types=types, workspaces=workspaces, older_than=older_than,
                               newer_than=newer_than, everything=everything)


def _require_selection(selection: DeadLetterFilter, verb: str) -> None:
    if not selection.narrows and not selection.everything:
        raise click.UsageError(f"say which dead letters to {verb}: ids, a filter (--code, --type, --workspace, "
                               f"--older-than, --newer-than) or --all")


def _age_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


@click.group(name="dlq", cls=summaries.Group)
def dlq() -> None:
    """List, inspect, replay and purge dead letters (events that could not be written)."""


@dlq.command(name="list")
@filter_options
@click.option("--limit", type=int, default=None, help="Show at most this many (oldest first).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON records.")
def list_(codes, types, workspaces, older_than, newer_than, limit, as_json) -> None:
    """List dead letters, oldest first."""
    store, _ = _store()
    records = store.select(_selection(codes=codes, types=types, workspaces=workspaces, older_than=older_than,
                                      newer_than=newer_than))
    if limit is not None:
        records = records[:limit]
    if as_json:
        click.echo(json.dumps([r.model_dump(mode="json") for r in records], indent=2))
        return
    render_dead_letters(records, Console(), summary=store_summary(store, workspaces))


def store_summary(store: DeadLetterStore, workspaces=()) -> str:
    """Dead letters held and dropped by retention, per workspace (only the named ones and `_unrouted`, if any)."""
    shown = set(workspaces) | {UNROUTED} if workspaces else None
    held = {ws: n for ws, n in store.count_by_workspace().items() if n and (shown is None or ws in shown)}
    dropped = {ws: sum(codes.values()) for ws, codes in store.dropped_by_workspace().items()
               if shown is None or ws in shown}
    return summary_text(held, dropped)


#: columns besides the two ids need about this many characters to stay readable in a table
_OTHER_COLUMNS_WIDTH = 70


def render_dead_letters(records: list[DeadLetterRecord], console: Console, summary: str = "") -> None:
    """Dead letters for support, ids always whole on one line so they can be copied into show or replay.

    Not a terminal: tab-separated lines after one header line (which ends with `summary`). A wide
    terminal: a table. A narrow one: one block per dead letter, id first, because a table would
    have to wrap or cut the ids.
    """
    title = f"{len(records)} dead letter(s)" + (f"; {summary}" if summary else "")
    now = datetime.now(timezone.utc)
    rows = [(r.id, _age_text(r.age_seconds(now)), r.error_code, r.event_type or "-", r.workspace_id or "-",
             r.event_id or "-", str(r.attempts), " ".join(r.error_message[:80].split())) for r in records]
    if not console.is_terminal:
        click.echo(title)
        for row in rows:
            click.echo("\t".join(row))
        return
    id_width = max((len(row[0]) for row in rows), default=2)
    event_width = max((len(row[5]) for row in rows), default=8)
    if console.width < id_width + event_width + _OTHER_COLUMNS_WIDTH:
        console.print(title, style="bold", highlight=False)
        for row in rows:
            console.print(row[0], style="bold", no_wrap=True, crop=False, highlight=False, soft_wrap=True)
            console.print(f"  {row[1]} {row[2]} {row[3]} {row[4]} event {row[5]} attempts {row[6]}",
                          highlight=False, soft_wrap=True)
            console.print(f"  {row[7]}", highlight=False)
        return
    table = Table(title=title)
    for column in ("id", "age", "code", "type", "workspace", "event id", "attempts", "message"):
        if column in ("id", "event id"):
            table.add_column(column, no_wrap=True, min_width=id_width if column == "id" else event_width)
        else:
            table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)


@dlq.command()
@click.argument("record_id")
@click.option("--json", "as_json", is_flag=True, help="Print compact JSON.")
def show(record_id, as_json) -> None:
    """Show one dead letter in full: the original event, the error, attempts and times."""
    store, _ = _store()
    record = store.get(record_id)
    if record is None:
        raise Failure(f"no dead letter {record_id!r}", exits.DATA)
    text = record.model_dump_json()
    if as_json:
        click.echo(text)
    else:
        Console().print_json(text)


@dlq.command()
@click.argument("ids", nargs=-1)
@filter_options
@click.option("--all", "everything", is_flag=True, help="Replay every dead letter.")
@click.option("--dry-run", is_flag=True, help="Only say what would be replayed.")
@click.option("--no-wait", is_flag=True, help="Do not wait for the replayed events' outcomes.")
@click.option("--timeout", type=float, default=120.0, show_default=True,
              help="Seconds to wait for the replayed events' outcomes.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def replay(ids, codes, types, workspaces, older_than, newer_than, everything, dry_run, no_wait, timeout,
           as_json) -> None:
    """Put dead letters' original events back on their queues (after fixing what made them fail)."""
    selection = _selection(ids, codes, types, workspaces, older_than, newer_than, everything)
    _require_selection(selection, "replay")
    store, url = _store()
    if dry_run:
        records = store.select(selection)
        if as_json:
            click.echo(json.dumps({"would_replay": len(records), "ids": [r.id for r in records]}))
        else:
            click.echo(f"would replay {len(records)} dead letter(s)")
            for r in records:
                click.echo(f"  {r.id}  {r.error_code}  {r.event_type or '-'}  {r.event_id or '-'}")
        return
    matching = len(store.select(selection))

    def announce(result: ReplayResult) -> None:
        if result.replayed and not (as_json or no_wait):
            click.echo(f"replayed {len(result.replayed)}; waiting up to {timeout:.0f}s for outcomes...")

    if matching >= _PROGRESS_FROM and not as_json:
        with Progress(transient=True) as progress:
            task = progress.add_task("replaying", total=matching)
            result, counts = replay_selection(store, selection, url, wait=not no_wait, timeout=timeout,
                                              on_progress=lambda _: progress.advance(task), on_replayed=announce,
                                              signing_keys=_signing_keys(store))
    else:
        result, counts = replay_selection(store, selection, url, wait=not no_wait, timeout=timeout,
                                          on_replayed=announce, signing_keys=_signing_keys(store))
    if as_json:
        click.echo(json.dumps({**counts, "failed": result.failed, "skipped": result.skipped}))
    else:
        click.echo(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in counts.items()))
        for record_id, reason in result.failed + result.skipped:
            click.echo(f"  not replayed {record_id}: {reason}", err=True)
    if result.failed or counts.get("failed_again"):
        raise SystemExit(exits.FAILED)


@dlq.command()
@click.argument("ids", nargs=-1)
@filter_options
@click.option("--all", "everything", is_flag=True, help="Purge every dead letter.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def purge(ids, codes, types, workspaces, older_than, newer_than, everything, yes, as_json) -> None:
    """Delete dead letters for good."""
    selection = _selection(ids, codes, types, workspaces, older_than, newer_than, everything)
    _require_selection(selection, "purge")
    store, _ = _store()
    count = len(store.select(selection))
    if count == 0:
        click.echo(json.dumps({"purged": 0}) if as_json else "nothing to purge")
        return
    if not yes:
        click.confirm(f"delete {count} dead letter(s) for good?", abort=True)
    purged = store.purge(selection)
    click.echo(json.dumps({"purged": purged}) if as_json else f"purged {purged} dead letter(s)")
