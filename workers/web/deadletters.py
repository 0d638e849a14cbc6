"""The Dead letters pages: filter, inspect, replay (a dry-run count first, then progress) and purge."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from starlette.datastructures import FormData, ImmutableMultiDict
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from events.deadletter import UNROUTED, DeadLetterFilter
from events.dlq_causes import cause_of
from workers.replay import parse_age
from workers.web.charts import sparkline
from workers.web.rendering import render
from workers.web.security import client_ip, requires

#: rows the list shows; the counts and the actions still cover every match
SHOWN = 500
FILTER_FIELDS = ("workspace", "code", "type", "older_than", "newer_than")


class BadFilter(ValueError):
    """A filter field the user typed cannot be read (an age like `2x`)."""


def read_filter(params: ImmutableMultiDict | FormData) -> tuple[dict[str, str], DeadLetterFilter]:
    """The filter fields as typed (to show them again) and the selection they make."""
    typed = {name: str(params.get(name) or "").strip() for name in FILTER_FIELDS}
    ages: dict[str, Any] = {}
    for name in ("older_than", "newer_than"):
        try:
            ages[name] = parse_age(typed[name]) if typed[name] else None
        except ValueError as exc:
            raise BadFilter(f"{name.replace('_', ' ')}: {exc}") from None
    selection = DeadLetterFilter.of(codes=[typed["code"]] if typed["code"] else (),
                                    types=[typed["type"]] if typed["type"] else (),
                                    workspaces=[typed["workspace"]] if typed["workspace"] else (), **ages)
    return typed, selection


def _age(record, now: datetime) -> str:
    seconds = record.age_seconds(now)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _subject(record) -> str:
    event = record.event if isinstance(record.event, dict) else {}
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    subject = data.get("subject")  # type: ignore[union-attr]  # a dict: tested above
    return subject if isinstance(subject, str) else ""


def letter_rows(records, now: datetime | None = None) -> list[dict]:
    now = now or datetime.now(timezone.utc)
    return [{"r": r, "age": _age(r, now), "subject": _subject(r)} for r in records[:SHOWN]]


def cause_rows(groups) -> list[dict]:
    """Causes with their sparklines, for the By cause table."""
    return [{"g": g, "spark": sparkline(g.spark, spark_words(g.spark))} for g in groups]


def spark_words(spark: list[int]) -> str:
    busiest = max(range(len(spark)), key=lambda i: spark[i]) if any(spark) else None
    if busiest is None:
        return "no letter failed in the last 24 hours"
    hours_ago = len(spark) - busiest
    return (f"{sum(spark):,} letter(s) failed last in the last 24 hours, most ({spark[busiest]:,}) "
            f"{hours_ago - 1} to {hours_ago} hours ago")


@requires("viewer")
async def list_page(request: Request) -> Response:
    store = request.app.state.dead_letters
    try:
        typed, selection = read_filter(request.query_params)
    except BadFilter as exc:
        return render(request, "dead_letters.html", status_code=400, typed=dict(request.query_params),
                      rows=[], total=0, error=str(exc), codes=[], filtered=True, groups=None)
    records = store.select(selection)
    every = store.causes()
    groups = None
    if not (selection.types or selection.older_than is not None or selection.newer_than is not None):
        # causes are grouped per workspace and code; a filter by type or age shows the letters only
        found = store.causes(selection.workspaces) if selection.workspaces else every
        groups = cause_rows([g for g in found if not selection.codes or g.code in selection.codes])
    return render(request, "dead_letters.html", typed=typed, rows=letter_rows(records), total=len(records),
                  error=None, codes=sorted({g.code for g in every}), filtered=selection.narrows, groups=groups)


@requires("viewer")
async def cause_page(request: Request) -> Response:
    store = request.app.state.dead_letters
    group = store.cause(request.path_params["bucket"], request.path_params["cause"])
    if group is None:
        return render(request, "error.html", status_code=404, title="No such group",
                      message="This group of dead letters is gone: its letters were replayed or purged.")
    records = store.select(DeadLetterFilter.of(ids=group.ids[:SHOWN], workspaces=[group.bucket]))
    return render(request, "cause.html", g=group, rows=letter_rows(records), spark=sparkline(group.spark, spark_words(group.spark)),
                  spark_text=spark_words(group.spark))


@requires("viewer")
async def detail_page(request: Request) -> Response:
    record = request.app.state.dead_letters.get(request.path_params["id"])
    if record is None:
        return render(request, "error.html", status_code=404, title="No such dead letter",
                      message="This dead letter is gone: it was replayed or purged, or the id is wrong.")
    event_text = json.dumps(record.event, indent=2, ensure_ascii=False) if not isinstance(record.event, str) \
        else record.event
    store = request.app.state.dead_letters
    key = cause_of(record.workspace_id, record.error_code, record.error_fields, record.error_message).key
    group = next((g for bucket in dict.fromkeys((store.bucket_of(record.workspace_id), UNROUTED))
                  if (g := store.cause(bucket, key)) is not None and record.id in g.ids), None)
    return render(request, "dead_letter.html", r=record, event_text=event_text, subject=_subject(record),
                  group=group, group_url=_cause_url(group) if group else None)


async def _selection_from_form(request: Request) -> tuple[FormData, dict[str, str], DeadLetterFilter, str]:
    """What a replay or purge form picks: the ticked ids, or everything the filter matches (`scope=matching`)."""
    form = await request.form()
    typed, selection = read_filter(form)
    scope = str(form.get("scope") or "selected")
    if scope == "selected":
        ids = [str(i) for i in form.getlist("ids")]
        selection = DeadLetterFilter.of(ids=ids) if ids else DeadLetterFilter.of(ids=["-none-"])
    elif scope == "cause":
        group = _group_of(request, form)
        # the group's letters as they are now: letters of the cause added since the page was shown count too
        selection = DeadLetterFilter.of(ids=group.ids, workspaces=[group.bucket]) if group and group.ids \
            else DeadLetterFilter.of(ids=["-none-"])
    elif not selection.narrows:
        selection = DeadLetterFilter.of(everything=True)
    return form, typed, selection, scope


def _group_of(request: Request, form: FormData):
    return request.app.state.dead_letters.cause(str(form.get("bucket") or ""), str(form.get("cause") or ""))


def _cause_url(group) -> str:
    return f"/dead-letters/causes/{quote(group.bucket, safe='')}/{group.key}"


async def _preview(request: Request, verb: str) -> Response:
    try:
        form, typed, selection, scope = await _selection_from_form(request)
    except BadFilter as exc:
        return render(request, "error.html", status_code=400, title="Filter not understood", message=str(exc))
    records = request.app.state.dead_letters.select(selection)
    group = _group_of(request, form) if scope == "cause" else None
    return render(request, "confirm.html", verb=verb, typed=typed, scope=scope, count=len(records),
                  ids=[r.id for r in records] if scope == "selected" else [], sample=records[:20], group=group,
                  back=_cause_url(group) if group else "/dead-letters")


@requires("support")
async def replay_preview(request: Request) -> Response:
    return await _preview(request, "replay")


@requires("admin")
async def purge_preview(request: Request) -> Response:
    return await _preview(request, "purge")


def _workspace_of(typed: dict[str, str], records) -> str:
    hit = {r.workspace_id for r in records if r.workspace_id}
    return typed.get("workspace") or (next(iter(hit)) if len(hit) == 1 else "")


@requires("support")
async def replay(request: Request) -> Response:
    try:
        form, typed, selection, scope = await _selection_from_form(request)
    except BadFilter as exc:
        return render(request, "error.html", status_code=400, title="Filter not understood", message=str(exc))
    records = request.app.state.dead_letters.select(selection)
    group = _group_of(request, form) if scope == "cause" else None
    what = (f"{len(records):,} × {group.code}" + (f" on {', '.join(group.fields)}" if group.fields else "") +
            f" in {group.workspace_id or group.bucket}") if group else ""
    job_id = request.app.state.jobs.start(selection, user=request.state.user, ip=client_ip(request),
                                          workspace=_workspace_of(typed, records), what=what,
                                          back=_cause_url(group) if group else "/dead-letters")
    return RedirectResponse(f"/replays/{job_id}", status_code=303)


@requires("admin")
async def purge(request: Request) -> Response:
    try:
        _, typed, selection, _ = await _selection_from_form(request)
    except BadFilter as exc:
        return render(request, "error.html", status_code=400, title="Filter not understood", message=str(exc))
    store = request.app.state.dead_letters
    records = store.select(selection)
    purged = store.purge(DeadLetterFilter.of(ids=[r.id for r in records])) if records else 0
    user = request.state.user
    request.app.state.audit.record(user=user["user"], role=user["role"], action="purge", ip=client_ip(request),
                                   workspace=_workspace_of(typed, records), ids=[r.id for r in records],
                                   detail=f"purged {purged} dead letter(s)")
    return render(request, "purged.html", purged=purged)


def routes() -> list[Route]:
    return [
        Route("/dead-letters", list_page),
        Route("/dead-letters/replay/preview", replay_preview, methods=["POST"]),
        Route("/dead-letters/replay", replay, methods=["POST"]),
        Route("/dead-letters/purge/preview", purge_preview, methods=["POST"]),
        Route("/dead-letters/purge", purge, methods=["POST"]),
        Route("/dead-letters/causes/{bucket}/{cause}", cause_page),
        Route("/dead-letters/{id}", detail_page),
    ]
