"""A replay's page: its progress while it runs, then its outcome with links to what was written and what failed again."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from events.deadletter import DeadLetterFilter
from events.outcome_log import OutcomeLog
from workers.web.deadletters import letter_rows
from workers.web.fleet import alive_workers
from workers.web.rendering import render
from workers.web.security import requires, safe_next
from workers.web.workspaces import instance_url_of


def _job(request: Request):
    job = request.app.state.jobs.read(request.path_params["job"])
    if job is not None:
        job["back"] = safe_next(job.get("back"))
    return job


def _gone(request: Request) -> Response:
    return render(request, "error.html", status_code=404, title="No such replay",
                  message="This replay is unknown or finished more than a day ago.")


@requires("viewer")
async def job_page(request: Request) -> Response:
    job = _job(request)
    if job is None:
        return _gone(request)
    name = "_job.html" if request.headers.get("hx-request") else "job.html"
    return render(request, name, job=job, workers=alive_workers(request.app.state.redis),
                  timeout=request.app.state.jobs.timeout)


@requires("viewer")
async def written_page(request: Request) -> Response:
    """The replayed events that were written, each with its Salesforce record (a link into the org when known)."""
    job = _job(request)
    if job is None:
        return _gone(request)
    settings, registry = request.app.state.config.settings, request.app.state.registry
    orgs = {ws: instance_url_of(ws, settings, registry) for ws in {w["workspace"] for w in job["written"]}}
    return render(request, "replay_written.html", job=job, orgs=orgs)


@requires("viewer")
async def failed_again_page(request: Request) -> Response:
    """The replayed events that failed again: their dead letters as they are now (the new error)."""
    job = _job(request)
    if job is None:
        return _gone(request)
    records = request.app.state.dead_letters.select(DeadLetterFilter.of(ids=job["failed_again"])) \
        if job["failed_again"] else []
    return render(request, "replay_failed.html", job=job, rows=letter_rows(records), total=len(records))


@requires("viewer")
async def pending_page(request: Request) -> Response:
    """The replayed events without an outcome when the replay stopped waiting, with their outcome now."""
    job = _job(request)
    if job is None:
        return _gone(request)
    log = OutcomeLog(request.app.state.redis)
    by_workspace: dict[str, set[str]] = {}
    for entry in job["pending"]:
        by_workspace.setdefault(entry["workspace"], set()).add(entry["event_id"])
    now = {}
    for ws, event_ids in by_workspace.items():
        if ws:
            now.update(log.for_events(ws, event_ids))
    return render(request, "replay_pending.html", job=job, now=now)


def routes() -> list[Route]:
    return [Route("/replays/{job}", job_page), Route("/replays/{job}/written", written_page),
            Route("/replays/{job}/failed-again", failed_again_page), Route("/replays/{job}/pending", pending_page)]
