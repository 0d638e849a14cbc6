"""The OAuth 2.0 authorization page: a user of some org signs in and allows (or denies) a connected app."""
from __future__ import annotations

from html import escape
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from .auth import form_fields, password_ok
from .oauth import DEFAULT_SCOPE
from .orgs import Orgs

#: the authorization request's parameters, carried through the form in hidden inputs
_PARAMS = ("response_type", "client_id", "redirect_uri", "state", "scope", "code_challenge",
           "code_challenge_method")
_CHALLENGE_METHODS = ("S256", "plain")
BAD_CREDENTIALS = ("Please check your username and password. If you still can't log in, "
                   "contact your Salesforce administrator.")


async def authorize_page(request: Request) -> Response:
    orgs: Orgs = request.app.state.orgs
    form = await form_fields(request) if request.method == "POST" else {}
    params = {name: (form.get(name) if request.method == "POST" else request.query_params.get(name))
              for name in _PARAMS}
    with orgs.lock:
        app = orgs.apps.get(params["client_id"])
        # never redirect to a URI the app doesn't own: say so on a page instead
        if app is None:
            return _error_page("invalid_client_id", "client identifier invalid")
        if not app.allows_redirect(params["redirect_uri"]):
            return _error_page("redirect_uri_mismatch", "redirect_uri must match configuration")
        if params["response_type"] != "code":
            return _back(params, error="unsupported_response_type", error_description="response type not supported")
        method = params["code_challenge_method"] or "plain"
        if params["code_challenge"] and method not in _CHALLENGE_METHODS:
            return _back(params, error="invalid_request", error_description="invalid code_challenge_method")
        if request.method == "GET":
            return _login_form(params)
        if form.get("action") == "deny":
            return _back(params, error="access_denied", error_description="end-user denied authorization")
        signed_in = orgs.sign_in(form.get("username"), any_username=False) \
            if password_ok(form.get("password")) else None
        if signed_in is None:
            return _login_form(params, username=form.get("username") or "", error=BAD_CREDENTIALS)
        org, user_id = signed_in
        code = orgs.sessions.issue_code(
            org=org.name, user_id=user_id, client_id=app.client_id, redirect_uri=params["redirect_uri"],
            scope=params["scope"] or DEFAULT_SCOPE, challenge=params["code_challenge"] or None,
            challenge_method=method)
    return _back(params, code=code.value)


def _back(params: dict, **answer: str) -> Response:
    """302 to the app's redirect URI with the answer and the app's state."""
    if params["state"] is not None:
        answer["state"] = params["state"]
    uri = params["redirect_uri"]
    return RedirectResponse(f"{uri}{'&' if '?' in uri else '?'}{urlencode(answer)}", status_code=302)


def _login_form(params: dict, username: str = "", error: str | None = None) -> Response:
    hidden = "".join(f'<input type="hidden" name="{name}" value="{escape(value)}">'
                     for name, value in params.items() if value is not None)
    alert = f'<p id="error" class="error" role="alert">{escape(error)}</p>' if error else ""
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Login | Salesforce (emulator)</title></head>
<body>
<h1>Log in to allow access</h1>
<p>An app wants to access your Salesforce data.</p>
{alert}
<form method="post" action="/services/oauth2/authorize">
{hidden}
<p><label for="username">Username</label>
<input type="text" id="username" name="username" value="{escape(username)}" autocomplete="username"></p>
<p><label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password"></p>
<p><button type="submit" id="allow" name="action" value="allow">Allow</button>
<button type="submit" id="deny" name="action" value="deny">Deny</button></p>
</form>
</body></html>
"""
    return HTMLResponse(page)


def _error_page(error: str, description: str) -> Response:
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Authorization error | Salesforce (emulator)</title></head>
<body><h1>Authorization error</h1>
<p id="error" class="error" role="alert">error={escape(error)}&amp;error_description={escape(description)}</p>
</body></html>
"""
    return HTMLResponse(page, status_code=400)
