"""Page rendering: Jinja2 templates (autoescaped) with the signed-in user and the CSRF token in every context."""

from __future__ import annotations

from pathlib import Path

import jinja2

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from workers.web.security import csrf_token, current_user

HERE = Path(__file__).parent
#: every value is HTML-escaped unless a template says otherwise (none does)
templates = Jinja2Templates(env=jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                                                   autoescape=True))


def render(request: Request, name: str, status_code: int = 200, **context) -> HTMLResponse:
    context.setdefault("user", current_user(request))
    context["csrf"] = csrf_token(request)
    return templates.TemplateResponse(request, name, context, status_code=status_code)
