"""`sfsync dlq`: support lists, inspects, replays and purges dead letters."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from events.deadletter import UNROUTED, DeadLetterFilter, DeadLetterStore, ReplayResult, Retention, Unreplayable
from events.outcome_log import OutcomeLog
from events.topology import ROUTES
from events.wire import named_workspace, sfsync_headers
from schemas.deadletter import DeadLetterRecord
from workers.cli import exits, summaries
from workers.cli.exits import Failure
from workers.status import summary_text

#: seconds per unit of an age such as 90s, 15m, 2h, 3d, 1w
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
#: replays at least this large show a progress bar
_PROGRESS_FROM = 50


def parse_age(text: str) -> float:
    """Seconds in an age like `2h`, `3d`, `15m`, `90s`, `1w` or a bare number of seconds."""
    match = _AGE.match(text or "")
    if not match:
        raise ValueError(f"{text!r} is not an age; use a number with s, m, h, d or w (e.g. 2h, 3d)")
    return float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]


def _age_option(ctx, param, value):
    if value is None:
        return None
    try:
        return parse_age(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _store() -> tuple[DeadLetterStore, str]:
    from events.redis_conn import connect
    from schemas.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        raise Failure(str(exc), exits.CONFIG) from None
    url = settings.redis_url.get_secret_value()
    return DeadLetterStore(connect(url), retention=Retention.from_settings(settings)), url


def _signing_keys(store: DeadLetterStore) -> SigningKeys | None:
    """The registry's emitter keys when SFSYNC_SECRET_KEYS opens it (else replays go unsigned)."""
    from schemas.settings import load_settings
    from workspaces.registry import Registry
    from workspaces.secrets import Keyring, SecretKeyError

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


SigningKeys = Callable[[str], "str | None"]


def registry_signing_keys(registry) -> SigningKeys:
    """workspace -> the key sfsync signs its replayed events with (None: unsigned, or its keys not readable)."""
    from workspaces.registry import RegistryError
    from workspaces.secrets import SecretKeyError

    def key_of(ws: str) -> str | None:
        try:
            return registry.get(ws).signing_key
        except (RegistryError, SecretKeyError):
            return None

    return key_of


def republisher(broker_url: str, signing_keys: SigningKeys | None = None) -> Callable[[DeadLetterRecord], None]:
    """Puts a dead letter's original event back on its queue, with fresh attempt meta.

    A replay is a person's decision: for a workspace that signs its events, sfsync signs the replayed
    event with the workspace's first emitter key, except an event refused for its signature
    (INVALID_SIGNATURE): that one goes back as it came, unsigned, and is refused again."""
    from events.publish import publisher_app, stamped
    from events.redis_conn import connect
    from events.signing import INVALID_SIGNATURE
    from events.wire import queue_item

    app = publisher_app(broker_url)
    client = None
    by_task = {task: queue for task, queue in ROUTES.values()}

    def republish(record: DeadLetterRecord) -> None:
        if record.event is None:
            raise Unreplayable("the entry holds no event")
        if record.task_name in by_task:
            task_name, queue = record.task_name, by_task[record.task_name]
        elif record.event_type in ROUTES:
            task_name, queue = ROUTES[record.event_type]
        else:
            raise Unreplayable(f"no queue for task {record.task_name!r} / type {record.event_type!r}")
        meta = {**stamped()["sfsync"], "attempt": 0, "replay_of": record.id,
                "replayed_at": datetime.now(timezone.utc).isoformat()}
        # the workspace header the publisher would have set: read from the event itself
        headers = sfsync_headers(named_workspace([record.event]), 1)
        if record.event_id:
            headers["sfsync_event_id"] = record.event_id
        key = signing_keys(record.workspace_id) if signing_keys and record.workspace_id and \
            record.error_code != INVALID_SIGNATURE else None
        if key is None:
            app.send_task(task_name, args=[record.event], kwargs={"sfsync": meta}, queue=queue, exchange="",
                          routing_key=queue, headers=headers)
            return
        nonlocal client
        client = client or connect(broker_url)
        client.lpush(queue, queue_item(task_name, queue, [record.event], kwargs={"sfsync": meta}, headers=headers,
                                       signing_key=key))

    return republish


def wait_for_outcomes(outcomes: OutcomeLog, marks: dict[str, str], wanted: dict[str, set[str]], timeout: float,
                      poll: float = 0.5, on_outcomes: Callable[[dict[str, dict[str, str]]], None] | None = None,
                      ) -> dict[str, dict[str, str]]:
    """event id -> final outcome entry of replayed events, recorded after `marks`; missing ones are still
    pending. `on_outcomes` hears every outcome found so far, after each look."""
    deadline = time.monotonic() + timeout
    found: dict[str, dict[str, str]] = {}

    def heard(seen: dict[str, dict[str, str]]) -> None:
        if on_outcomes is not None:
            on_outcomes({**found, **seen})

    for workspace_id, ids in wanted.items():
        found.update(outcomes.wait_final(workspace_id, ids, max(deadline - time.monotonic(), 0),
                                         since=marks.get(workspace_id, "-"), poll=poll, on_poll=heard))
    return found


def summarize(result: ReplayResult, final: dict[str, str], waited: bool) -> dict[str, int]:
    """Counts support reads after a replay: replayed / written / failed again / skipped / still pending."""
    by = Counter(final.values())
    counts = {"replayed": len(result.replayed), "not_replayed": len(result.failed) + len(result.skipped)}
    if waited:
        with_ids = sum(1 for r in result.replayed if r.event_id and r.workspace_id)
        counts.update(written=by["written"] + by["written_late"] + by["duplicate"], failed_again=by["dead_lettered"],
                      skipped=sum(n for k, n in by.items() if k.startswith("skipped_")),
                      pending=max(with_ids - len(final), 0))
    return counts


def replay_selection(store: DeadLetterStore, selection: DeadLetterFilter, broker_url: str, *, wait: bool,
                     timeout: float, on_progress: Callable[[DeadLetterRecord], None] | None = None,
                     on_replayed: Callable[[ReplayResult], None] | None = None,
                     on_outcomes: Callable[[dict[str, dict[str, str]]], None] | None = None,
                     signing_keys: SigningKeys | None = None) -> tuple[ReplayResult, dict[str, int]]:
    """Replay what `selection` picks and, when `wait`, wait for the events' outcomes; the result and its counts.

    The command line and the web console both replay through here. `on_replayed` hears the
    result once every event is back on its queue, before the wait for outcomes starts;
    `on_outcomes` the outcome entries found so far (event id -> entry) during the wait and at its end.
    """
    outcomes = OutcomeLog(store.redis)
    workspaces_hit = {r.workspace_id for r in store.select(selection) if r.workspace_id}
    # positions in each outcome stream before anything is replayed: older outcomes of the same
    # events (the failures that dead-lettered them) must not be read as the replay's result
    marks = {ws: outcomes.mark(ws) for ws in workspaces_hit}
    result = store.replay(selection, republisher(broker_url, signing_keys), on_progress=on_progress)
    if on_replayed is not None:
        on_replayed(result)
    final: dict[str, str] = {}
    if wait and result.replayed:
        wanted: dict[str, set[str]] = {}
        for r in result.replayed:
            if r.event_id and r.workspace_id:
                wanted.setdefault(r.workspace_id, set()).add(r.event_id)
        final = {event_id: entry["outcome"] for event_id, entry in
                 wait_for_outcomes(outcomes, marks, wanted, timeout, on_outcomes=on_outcomes).items()}
    return result, summarize(result, final, waited=wait)


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
