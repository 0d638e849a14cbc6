"""`sfsync status`: what an operator checks first — queues, in-flight and waiting work, dead letters, API usage, CRM cycle."""

from __future__ import annotations

import time
from typing import Any

import redis
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from events.connection_state import ConnectionState
from events.deadletter import UNROUTED, DeadLetterStore
from events.keys import key
from events.outcome_log import HISTORY, OutcomeLog
from events.overflow import Overflow
from events.parking import UsageGauge
from events.redis_conn import connect, describe_primary, display_url
from events.rollup import kind_of
from events.topology import ALL_QUEUES, OUTBOUND_QUEUE
from schemas.settings import Settings
from workers.breaker import Breakers
from workers.login_gate import held_back_reason
from workspaces.registry import Registry
from workspaces.secrets import Keyring

#: kombu's Redis transport: delivery tags of unacknowledged messages, scored by delivery time
#: (renewed every few seconds by the worker that holds them)
UNACKED_INDEX = "unacked_index"
#: the sorted sets of work waiting in Redis, per workspace, scored by the time it is due
WAITING_SETS = ("retries", "parked")


def oldest_unacked_seconds(client: redis.Redis, now: float | None = None) -> float | None:
    """Seconds since the oldest unacknowledged message was delivered or last had its lease renewed.

    A live worker renews the messages it holds every 10 s, so this stays small while someone
    works on them; once it passes the visibility timeout the holder is gone and the message
    waits for a worker's restore sweep. None when nothing is unacknowledged.
    """
    oldest = client.zrange(UNACKED_INDEX, 0, 0, withscores=True)
    if not oldest:
        return None
    now = time.time() if now is None else now
    return round(max(now - float(oldest[0][1]), 0.0), 1)


def workspaces_with_waiting_work(client: redis.Redis, ws: str | None) -> list[str]:
    """The served workspace (when given) and every other one sharing this Redis that has retries or parked work."""
    found = {ws} if ws else set()
    for name in WAITING_SETS:
        prefix, suffix = "sfsync:{", "}:" + name
        for redis_key in client.scan_iter(match=f"{prefix}*{suffix}", count=1000):
            found.add(redis_key[len(prefix):-len(suffix)])
    return sorted(found)


def workspace_ids(client: redis.Redis, settings: Settings) -> list[str]:
    """Every workspace this deployment serves or holds work of: the one list `sfsync status` and the
    console show. The registry's; the environment's (when its Salesforce credentials are set here, or
    no workspace is registered); each whose events have outcomes (the environment's workspace of the
    workers shows even where this process lacks their credentials); and each holding retries, parked
    work, overflow or dead letters. `_unrouted` is no workspace: its dead letters are counted apart."""
    registered = Registry(client, Keyring(None)).ids()
    found = {*registered, *OutcomeLog(client).workspaces(), *Overflow(client).workspaces(),
             *workspaces_with_waiting_work(client, None)}
    found |= {ws for ws in DeadLetterStore(client).workspaces() if ws != UNROUTED}
    if settings.salesforce_auth is not None or not registered:
        found.add(settings.workspace_id)
    return sorted(found)


#: the outcome counts' keys (`event type|outcome`) in words, for people
EVENT_TYPE_WORDS = {"email.sent": "emails sent", "email.replied": "replies", "contact.updated": "contact updates",
                    "": "unreadable messages"}
OUTCOME_WORDS = {"written": "written", "written_late": "written once their contact appeared",
                 "duplicate": "already written (not again)", "dead_lettered": "dead-lettered"}


def outcome_in_words(outcome: str) -> str:
    if outcome in OUTCOME_WORDS:
        return OUTCOME_WORDS[outcome]
    if outcome.startswith("skipped_"):
        return "skipped: " + outcome.removeprefix("skipped_").replace("_", " ")
    return outcome.replace("_", " ") or "no outcome"


def outcomes_in_words(counts: dict[str, int]) -> list[dict[str, Any]]:
    """The outcome counts as rows for people: [{"event_type", "outcome", "count"}], both in words, by type."""
    rows = []
    for raw, count in sorted(counts.items()):
        event_type, _, outcome = raw.partition("|")
        rows.append({"event_type": EVENT_TYPE_WORDS.get(event_type, event_type),
                     "outcome": outcome_in_words(outcome), "count": count})
    return rows


def outcomes_text(counts: dict[str, int]) -> str:
    """`emails sent: 5 written, 1 skipped: no contact; replies: 1 written`."""
    by_type: dict[str, list[str]] = {}
    for row in outcomes_in_words(counts):
        by_type.setdefault(row["event_type"], []).append(f"{row['count']} {row['outcome']}")
    return "; ".join(f"{kind}: {', '.join(parts)}" for kind, parts in by_type.items())


def waiting_work(client: redis.Redis, ws: str, now: float | None = None) -> dict[str, dict[str, Any]]:
    """Per workspace: retries and parked work waiting in Redis, how many and when the next is due."""
    now = time.time() if now is None else now
    report: dict[str, dict[str, Any]] = {}
    for workspace in workspaces_with_waiting_work(client, ws):
        entry: dict[str, Any] = {}
        for name in WAITING_SETS:
            first = client.zrange(key(workspace, name), 0, 0, withscores=True)
            entry[name] = client.zcard(key(workspace, name))
            # negative: overdue (a release is late, or no worker/beat runs to release it)
            entry[f"{name}_next_due_in_seconds"] = round(float(first[0][1]) - now, 1) if first else None
        report[workspace] = entry
    return report


def collect_status(settings: Settings) -> dict[str, Any]:
    """A JSON-ready report; never includes secrets (the Redis URL is shown without credentials)."""
    ws = settings.workspace_id
    client = connect(settings.redis_url.get_secret_value())
    report: dict[str, Any] = {"workspace_id": ws, "redis": display_url(settings.redis_url.get_secret_value())}
    try:
        report["primary"] = describe_primary(settings.redis_url.get_secret_value())
        client.ping()
    except redis.RedisError as exc:
        report["error"] = f"Redis unreachable at {report['redis']}: {exc.__class__.__name__}"
        return report
    report["queues"] = {q: client.llen(q) for q in (*ALL_QUEUES, OUTBOUND_QUEUE)}
    report["unacked"] = client.hlen("unacked")
    report["oldest_unacked_seconds"] = oldest_unacked_seconds(client)
    store = DeadLetterStore(client)
    by_workspace = {w: n for w, n in store.count_by_workspace().items() if n}
    report["dead_letters"] = {"total": sum(by_workspace.values()), "by_error_code": dict(store.count_by_code()),
                              "by_workspace": by_workspace,
                              "dropped_by_retention": {w: sum(codes.values())
                                                       for w, codes in store.dropped_by_workspace().items()}}
    report["waiting"] = waiting_work(client, ws)
    report.update(workspace_report(client, ws))
    report["outcomes_in_words"] = outcomes_in_words(report["outcomes"])
    report["workspaces"] = workspace_lines(client, workspace_ids(client, settings), dead_letters=by_workspace)
    report["unrouted_dead_letters"] = by_workspace.get(UNROUTED, 0)
    return report


def workspace_lines(client: redis.Redis, ids: list[str], *, dead_letters: dict[str, int] | None = None,
                    now: float | None = None) -> list[dict[str, Any]]:
    """Per workspace (workspace_ids): Salesforce connection, breaker, overflow, dead letters held."""
    now = time.time() if now is None else now
    dead_letters = dead_letters if dead_letters is not None else DeadLetterStore(client).count_by_workspace()
    states = ConnectionState(client).read_many(ids)
    breakers, overflow = Breakers(client), Overflow(client)
    lines = []
    for ws in ids:
        state = states[ws] or {}
        breaker = breakers.state(ws)
        lines.append({
            "workspace_id": ws,
            "salesforce": state.get("state") or "unknown",
            "code": state.get("code") or None,
            "disconnected_seconds": (round(now - float(state.get("since") or now), 1)
                                     if state.get("state") == "disconnected" else None),
            "breaker_open_seconds": (round(now - float(breaker.get("opened_at") or now), 1) if breaker else None),
            "breaker_reason": breaker.get("reason") if breaker else None,
            "overflow": overflow.size(ws),
            "overflow_moved": overflow.moved(ws),
            "login": held_back_reason(state, now),
            "dead_letters": dead_letters.get(ws, 0),
        })
    return lines


def workspace_report(client: redis.Redis, ws: str) -> dict[str, Any]:
    """One workspace: parked work, Salesforce connection, API usage, outcome counts, last CRM cycle."""
    return {"parked": client.zcard(key(ws, "parked")),
            "salesforce_connection": ConnectionState(client).read(ws),
            "salesforce_api": api_usage(client, ws),
            "outcomes": {k: int(v) for k, v in sorted(client.hgetall(key(ws, "counts")).items())},
            "crm_cycle": _crm_cycle(client, ws)}


def api_usage(client: redis.Redis, ws: str) -> dict[str, Any] | None:
    """The org's daily API usage as a worker last saw it, or None before any worker has."""
    reading = UsageGauge(client).read(ws)
    if reading is None:
        return None
    return {"used": reading.used, "limit": reading.limit, "share": round(reading.used / max(reading.limit, 1), 4),
            "seen_seconds_ago": round(time.time() - reading.at, 1)}


def outcomes_since(client: redis.Redis, ws: str, seconds: float, now: float | None = None) -> dict[str, int]:
    """Written / skipped / dead-lettered / other outcomes of the last `seconds`, from the outcome history.

    The history keeps the newest HISTORY outcomes of a workspace; `capped` is 1 when the window
    reaches past its start, so the counts are a lower bound.
    """
    now = time.time() if now is None else now
    counts = {"written": 0, "skipped": 0, "dead_lettered": 0, "other": 0, "capped": 0}
    start = f"{int((now - seconds) * 1000)}-0"
    entries = client.xrange(key(ws, "outcomes"), min=start, max="+", count=HISTORY)
    for _, fields in entries:
        kind = kind_of(fields.get("outcome", ""))
        counts[kind if kind in counts else "other"] += 1
    if len(entries) >= HISTORY:
        counts["capped"] = 1
    return counts


#: fields of the last CRM cycle's hash (workers/crm.py) that are counts
_CRM_COUNTS = ("changed", "published", "skipped_no_email", "own_changes_ignored", "deleted", "already_handled",
               "pages", "api_calls", "leads_published", "late_released")


def _crm_cycle(client: redis.Redis, ws: str) -> dict[str, Any] | None:
    """The last CRM cycle as typed values, plus the watermark and how many cycles ran, failed or were locked out."""
    last = client.hgetall(key(ws, "crm", "last"))
    if not last:
        return None
    crm: dict[str, Any] = {k: v for k, v in last.items() if k not in _CRM_COUNTS}
    crm.update({k: int(last[k]) for k in _CRM_COUNTS if k in last})
    crm["ok"] = last.get("ok") == "1"
    crm["error"] = last.get("error") or None
    for name in ("lag_seconds", "duration_seconds"):
        if name in last:
            crm[name] = float(last[name])
    crm["watermark"] = client.hget(key(ws, "crm", "watermark"), "stamp")
    crm["totals"] = {k: int(v) for k, v in client.hgetall(key(ws, "crm", "totals")).items()}
    return crm


def summary_text(held: dict[str, int], dropped: dict[str, int]) -> str:
    """`held: ws_a 2, _unrouted 1; dropped by retention: ws_a 10`, or "" when there is nothing to say."""
    parts = []
    if held:
        parts.append("held: " + ", ".join(f"{ws} {n}" for ws, n in sorted(held.items())))
    if any(dropped.values()):
        parts.append("dropped by retention: " + ", ".join(f"{ws} {n}" for ws, n in sorted(dropped.items()) if n))
    return "; ".join(parts)


def render_status(report: dict[str, Any]) -> None:
    console = Console()
    console.print(f"[bold]workspace[/] {report['workspace_id']}   [bold]redis[/] {report['redis']}" +
                  (f"   [bold]primary[/] {report['primary']}" if report.get("primary") else ""))
    if "error" in report:
        console.print(f"[red]{report['error']}[/]")
        return
    table = Table(title="queues")
    table.add_column("queue")
    table.add_column("depth", justify="right")
    for queue, depth in report["queues"].items():
        table.add_row(queue, str(depth))
    table.add_row("(unacked, in flight)", str(report["unacked"]))
    console.print(table)
    age = report["oldest_unacked_seconds"]
    if age is not None:
        console.print(f"[bold]oldest unacked[/] {age:.0f}s since its delivery or last lease renewal"
                      " (a live worker renews every 10 s; above the visibility timeout its worker is gone)")
    dl = report["dead_letters"]
    summary = summary_text(dl.get("by_workspace", {}), dl.get("dropped_by_retention", {}))
    console.print(f"[bold]dead letters[/] {dl['total']}" + (f" ({summary})" if summary else ""), highlight=False)
    console.print("".join(f"  {code}: {n}\n" for code, n in sorted(dl["by_error_code"].items())), end="")
    _render_waiting(console, report["waiting"])
    connection = report.get("salesforce_connection") or {}
    if connection.get("state") == "disconnected":
        console.print(f"[bold]Salesforce[/] [red]disconnected[/] ({connection.get('code')}: "
                      f"{connection.get('reason')}); events wait parked until the credentials work again",
                      highlight=False)
        held = held_back_reason(connection, time.time())
        if held:
            console.print(f"[bold]Salesforce logins[/] [red]{escape(held)}[/]", highlight=False)
    elif connection:
        console.print("[bold]Salesforce[/] connected")
    api = report["salesforce_api"]
    console.print("[bold]Salesforce API[/] " + (f"{api['used']:,} / {api['limit']:,} ({api['share']:.1%})"
                                                if api else "not seen yet"))
    if report["outcomes"]:
        console.print(f"[bold]outcomes[/] of {escape(report['workspace_id'])}: "
                      f"{escape(outcomes_text(report['outcomes']))}", highlight=False)
    _render_crm(console, report["crm_cycle"])
    _render_workspaces(console, report.get("workspaces", []), report.get("unrouted_dead_letters", 0))


def _ago(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else \
        f"{seconds / 3600:.1f} h"


def workspace_text(line: dict[str, Any]) -> str:
    """`ws_a: disconnected (INVALID_SESSION_ID) for 5 min; breaker open for 3 min; overflow 12`."""
    if line["salesforce"] == "disconnected":
        text = f"disconnected ({line['code'] or 'no code'}) for {_ago(line['disconnected_seconds'])}"
    else:
        text = line["salesforce"] if line["salesforce"] != "unknown" else "not contacted yet"
    if line["breaker_open_seconds"] is not None:
        text += f"; breaker open for {_ago(line['breaker_open_seconds'])}"
        if line["breaker_reason"]:
            text += f" ({line['breaker_reason']})"
    if line.get("login"):
        text += f"; {line['login']}"
    moved = line.get("overflow_moved") or 0
    aside = f" ({moved:,} moved off the queues during floods and backlogs)" if moved else ""
    return (f"{line['workspace_id']}: {text}; overflow {line['overflow']}{aside}; "
            f"dead letters {line.get('dead_letters', 0)}")


def _render_workspaces(console: Console, lines: list[dict[str, Any]], unrouted: int = 0) -> None:
    for line in lines:
        console.print(f"[bold]workspace[/] {escape(workspace_text(line))}", highlight=False)
    if unrouted:
        console.print(f"[bold]{UNROUTED}[/] dead letters {unrouted} (messages naming no workspace served here; "
                      f"sfsync dlq list --workspace {UNROUTED})", highlight=False)


def _due(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f", next due in {seconds:.0f}s" if seconds >= 0 else f", next overdue by {-seconds:.0f}s"


def _render_waiting(console: Console, waiting: dict[str, dict[str, Any]]) -> None:
    for workspace, entry in waiting.items():
        console.print(f"[bold]waiting[/] {workspace}: retries {entry['retries']}"
                      f"{_due(entry['retries_next_due_in_seconds'])}; parked {entry['parked']}"
                      f"{_due(entry['parked_next_due_in_seconds'])}")


def _render_crm(console: Console, crm: dict[str, Any] | None) -> None:
    if not crm:
        console.print("[bold]last CRM cycle[/] never")
        return
    result = "[green]ok[/]" if crm["ok"] else f"[red]failed[/] ({crm['error']})"
    console.print(f"[bold]last CRM cycle[/] {result} at {crm.get('finished_at')}, "
                  f"lag {crm.get('lag_seconds', 0):.1f}s, watermark {crm.get('watermark') or 'none yet'}")
    console.print("  " + ", ".join(f"{k}={crm[k]}" for k in _CRM_COUNTS if k in crm))
    if crm["totals"]:
        console.print("  cycles: " + ", ".join(f"{k}={v}" for k, v in sorted(crm["totals"].items())))
