"""The Fleet page: every worker, beat and console process with its heartbeat; stale ones are shown as such."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from events.fleet import HEARTBEAT, STALE_AFTER, Fleet, Member, summary
from workers.web.rendering import render
from workers.web.security import requires


def fleet_view(client: Any, now: float | None = None) -> dict[str, Any]:
    """The processes, each with its state, and the counts per kind, for the Fleet page and the overview."""
    now = time.time() if now is None else now
    members = Fleet(client).members()
    return {"members": [{"m": m, "state": m.state(now)} for m in members], "summary": summary(members, now),
            "heartbeat": HEARTBEAT, "stale_after": STALE_AFTER}


def alive_workers(client: Any, now: float | None = None) -> list[Member]:
    """Workers whose heartbeat is fresh: the ones that will take replayed events off their queues."""
    now = time.time() if now is None else now
    return [m for m in Fleet(client).members() if m.kind == "worker" and m.state(now) == "alive"]


@requires("viewer")
async def fleet_page(request: Request) -> Response:
    name = "_fleet.html" if request.headers.get("hx-request") else "fleet.html"
    return render(request, name, fleet=fleet_view(request.app.state.redis))


def routes() -> list[Route]:
    return [Route("/fleet", fleet_page)]
