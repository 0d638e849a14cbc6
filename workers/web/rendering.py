"""Page rendering: Jinja2 templates (autoescaped) with the signed-in user and the CSRF token in every context."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import jinja2
from markupsafe import Markup, escape

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


def _isotime(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


def _ago(seconds: float | None) -> str:
    """How long ago a moment (Unix seconds) was, as a person says it: 4 s, 12 min, 3.5 h, 2 d."""
    if seconds is None:
        return "never"
    age = max(time.time() - seconds, 0.0)
    if age < 120:
        return f"{age:.0f} s ago"
    if age < 7200:
        return f"{age / 60:.0f} min ago"
    if age < 172800:
        return f"{age / 3600:.1f} h ago"
    return f"{age / 86400:.0f} d ago"


def _breakable(text: str | None) -> Markup:
    """An identifier that may wrap only after its underscores (FIELD_CUSTOM_VALIDATION_EXCEPTION), never mid-word."""
    return Markup("_<wbr>").join(escape(part) for part in str(text or "").split("_"))


templates.env.filters["timestamp"] = _timestamp
templates.env.filters["isotime"] = _isotime
templates.env.filters["ago"] = _ago
templates.env.filters["breakable"] = _breakable
