"""Page rendering: Jinja2 templates (autoescaped) with the signed-in user and the CSRF token in every context."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import jinja2

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from workers.web.security import csrf_token, current_user

HERE = Path(__file__).parent
#: every value is HTML-escaped unless a template says otherwise (none does)
templates = Jinja2Templates(env=jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                                                   autoescape=True, undefined=jinja2.StrictUndefined))


def render(request: Request, name: str, status_code: int = 200, **context) -> HTMLResponse:
    context.setdefault("user", current_user(request))
    context["csrf"] = csrf_token(request)
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


templates.env.filters["timestamp"] = _timestamp
