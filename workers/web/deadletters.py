"""The Dead letters pages: filter, inspect, replay (a dry-run count first, then progress) and purge."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from starlette.datastructures import FormData, ImmutableMultiDict
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from events.deadletter import DeadLetterFilter
from workers.cli.dlq import parse_age
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
    ages = {}
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
    subject = data.get("subject")
    return subject if isinstance(subject, str) else ""


@requires("viewer")
async def list_page(request: Request) -> Response:
    store = request.app.state.dead_letters
    try:
        typed, selection = read_filter(request.query_params)
    except BadFilter as exc:
        return render(request, "dead_letters.html", status_code=400, typed=dict(request.query_params),
                      rows=[], total=0, error=str(exc), codes=[], filtered=True)
    records = store.select(selection)
    now = datetime.now(timezone.utc)
    rows = [{"r": r, "age": _age(r, now), "subject": _subject(r)} for r in records[:SHOWN]]
    return render(request, "dead_letters.html", typed=typed, rows=rows, total=len(records), error=None,
                  codes=sorted(store.count_by_code()), filtered=selection.narrows)


@requires("viewer")
async def detail_page(request: Request) -> Response:
    record = request.app.state.dead_letters.get(request.path_params["id"])
    if record is None:
        return render(request, "error.html", status_code=404, title="No such dead letter",
                      message="This dead letter is gone: it was replayed or purged, or the id is wrong.")
    event_text = json.dumps(record.event, indent=2, ensure_ascii=False) if not isinstance(record.event, str) \
        else record.event
    return render(request, "dead_letter.html", r=record, event_text=event_text, subject=_subject(record))


async def _selection_from_form(request: Request) -> tuple[FormData, dict[str, str], DeadLetterFilter, str]:
    """What a replay or purge form picks: the ticked ids, or everything the filter matches (`scope=matching`)."""
    form = await request.form()
    typed, selection = read_filter(form)
    scope = str(form.get("scope") or "selected")
    if scope == "selected":
        ids = [str(i) for i in form.getlist("ids")]
        selection = DeadLetterFilter.of(ids=ids) if ids else DeadLetterFilter.of(ids=["-none-"])
    elif not selection.narrows:
        selection = DeadLetterFilter.of(everything=True)
    return form, typed, selection, scope


async def _preview(request: Request, verb: str) -> Response:
    try:
        form, typed, selection, scope = await _selection_from_form(request)
    except BadFilter as exc:
        return render(request, "error.html", status_code=400, title="Filter not understood", message=str(exc))
    records = request.app.state.dead_letters.select(selection)
    return render(request, "confirm.html", verb=verb, typed=typed, scope=scope, count=len(records),
                  ids=[r.id for r in records] if scope == "selected" else [], sample=records[:20])


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
        _, typed, selection, _ = await _selection_from_form(request)
    except BadFilter as exc:
        return render(request, "error.html", status_code=400, title="Filter not understood", message=str(exc))
    records = request.app.state.dead_letters.select(selection)
    job_id = request.app.state.jobs.start(selection, user=request.state.user, ip=client_ip(request),
                                          workspace=_workspace_of(typed, records))
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


@requires("viewer")
async def job_page(request: Request) -> Response:
    job = request.app.state.jobs.read(request.path_params["job"])
    if job is None:
        return render(request, "error.html", status_code=404, title="No such replay",
                      message="This replay is unknown or finished more than a day ago.")
    name = "_job.html" if request.headers.get("hx-request") else "job.html"
    return render(request, name, job=job)


def routes() -> list[Route]:
    return [
        Route("/dead-letters", list_page),
        Route("/dead-letters/replay/preview", replay_preview, methods=["POST"]),
        Route("/dead-letters/replay", replay, methods=["POST"]),
        Route("/dead-letters/purge/preview", purge_preview, methods=["POST"]),
        Route("/dead-letters/purge", purge, methods=["POST"]),
        Route("/dead-letters/{id}", detail_page),
        Route("/replays/{job}", job_page),
    ]
