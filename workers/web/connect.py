"""Connecting a workspace's org: OAuth 2.0 web-server flow with PKCE, test, disconnect, enable and disable."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import urlencode, urlparse

import requests
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from schemas.salesforce_hosts import SALESFORCE_DOMAINS, HostNotAllowed, HostPolicy
from schemas.codes import ErrorCode
from schemas.workspace import SalesforceConnection, WorkspaceSpec, is_workspace_id
from workers.salesforce.errors import SalesforceError
from events.connection_state import ConnectionState
from workers.login_gate import operator_login
from workers.salesforce.session import build_session
from workers.salesforce.login import token_error
from workers.web.rendering import render
from workers.web.security import CSP, client_ip, requires
from workers.web.workspaces import connection_for
from workspaces.secrets import SecretKeyError

#: seconds between sending the browser to Salesforce and its coming back
PENDING_TTL = 600
#: what sfsync asks the org for: the REST API, and a refresh token to keep signing in
SCOPE = "api refresh_token"
LOGIN_HOSTS = {"login": "https://login.salesforce.com", "test": "https://test.salesforce.com"}
#: seconds the token call may take
TOKEN_TIMEOUT = 30


def connect_csp(hosts: HostPolicy) -> str:
    """The connect page's policy: as every page's, but its form's answer may lead to a Salesforce login host
    (or one SFSYNC_SALESFORCE_ALLOWED_HOSTS lists), and nowhere else."""
    targets = [f"https://*.{domain}" for domain in SALESFORCE_DOMAINS]
    for host, port in hosts.listed:
        suffix = ":*" if port is None else f":{port}" if port else ""
        targets += [f"http://{host}{suffix}", f"https://{host}{suffix}"]
    return CSP.replace("form-action 'self'", "form-action 'self' " + " ".join(targets))


def _pending_key(state: str) -> str:
    return f"sfsync:web:oauth:{hashlib.sha256(state.encode()).hexdigest()[:32]}"


def login_url_of(text: str, hosts: HostPolicy) -> str:
    """A login URL from what an admin typed: `login`, `test`, a My Domain host or a full https URL on a
    Salesforce host (or one SFSYNC_SALESFORCE_ALLOWED_HOSTS lists); ValueError saying what is wrong."""
    text = text.strip().rstrip("/")
    if text in LOGIN_HOSTS or not text:
        return LOGIN_HOSTS.get(text or "login")  # type: ignore[return-value]  # a key: tested above
    if not text.startswith(("https://", "http://")):
        if not all(c.isalnum() or c in ".-" for c in text) or len(text) > 200:
            raise ValueError("that is not a login URL: use login, test, a My Domain (acme.my.salesforce.com) "
                             "or https://host")
        text = f"https://{text if '.' in text else text + '.my.salesforce.com'}"
    try:
        origin = hosts.check(text, "the login URL")
    except HostNotAllowed as exc:
        raise ValueError(str(exc)) from None
    if urlparse(text).path not in ("", "/") or "?" in text or "#" in text:
        raise ValueError("the login URL must be just scheme and host, e.g. https://acme.my.salesforce.com")
    return str(origin)


def _user(request: Request) -> dict:
    return request.state.user


def _audit(request: Request, action: str, ws: str, detail: str = "") -> None:
    user = _user(request)
    request.app.state.audit.record(user=user["user"], role=user["role"], action=action, ip=client_ip(request),
                                   workspace=ws, detail=detail)


@requires("admin")
async def connect_form(request: Request) -> Response:
    ws = request.path_params["ws"]
    return _connect_page(request, ws, None, "login", "")


def _connect_page(request: Request, ws: str, error: str | None, login: str, client_id: str,
                  status_code: int = 200) -> Response:
    response = render(request, "connect.html", status_code=status_code, ws=ws, error=error, login=login,
                      client_id=client_id)
    # this form's answer redirects to the org's own login host, which the typed login URL names
    response.headers["content-security-policy"] = connect_csp(request.app.state.config.settings.salesforce_hosts)
    return response


@requires("admin")
async def start(request: Request) -> Response:
    """Remember the flow's state and PKCE verifier in Redis, then send the browser to the org's login page."""
    ws = request.path_params["ws"]
    form = await request.form()
    client_id, client_secret = str(form.get("client_id", "")).strip(), str(form.get("client_secret", ""))
    login = str(form.get("login", "login"))

    def again(error: str) -> Response:
        return _connect_page(request, ws, error, login, client_id, status_code=400)

    if not is_workspace_id(ws):
        return again("This workspace id cannot be registered: use letters, digits, `_`, `.` or `-`.")
    if not client_id:
        return again("Enter the connected app's consumer key (client id).")
    keyring = request.app.state.registry.keyring
    try:
        login_url = login_url_of(login, request.app.state.config.settings.salesforce_hosts)
        keyring.seal({})  # no key: say so now, not after the round trip
    except (ValueError, SecretKeyError) as exc:
        return again(str(exc))
    state, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(64)
    # sealed whole and bound to its state: nobody who can write to Redis can change where the code,
    # the verifier and the secret go, or hand one flow's answer to another
    pending = {"purpose": "salesforce-connect", "state": state, "ws": ws, "login_url": login_url,
               "client_id": client_id, "verifier": verifier, "client_secret": client_secret}
    request.app.state.redis.set(_pending_key(state), keyring.seal(pending), ex=PENDING_TTL)
    request.session["oauth_state"] = state
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    query = urlencode({"response_type": "code", "client_id": client_id, "redirect_uri": _callback_url(request),
                       "state": state, "scope": SCOPE, "code_challenge": challenge,
                       "code_challenge_method": "S256", "prompt": "login consent"})
    _audit(request, "connect_started", ws, f"login {login_url}")
    return RedirectResponse(f"{login_url}/services/oauth2/authorize?{query}", status_code=303)


def _callback_url(request: Request) -> str:
    """Where Salesforce sends the browser back: under SFSYNC_WEB_PUBLIC_URL when set, never a Host header's."""
    public = request.app.state.config.public_url
    if public:
        return public + request.app.url_path_for("salesforce_callback")
    return str(request.url_for("salesforce_callback"))


@requires("admin")
async def callback(request: Request) -> Response:
    state = request.query_params.get("state", "")
    expected = request.session.pop("oauth_state", None)
    raw = request.app.state.redis.getdel(_pending_key(state)) if state else None
    pending = _opened(request, raw, state) if expected and raw is not None else None
    if not expected or not secrets.compare_digest(state, expected) or pending is None:
        return render(request, "error.html", status_code=400, title="Connection not completed",
                      message="This answer from Salesforce does not belong to a connection started in this "
                              "browser in the last 10 minutes. Start again from the workspace page.")
    ws = pending["ws"]
    if request.query_params.get("error"):
        # a code from the fixed OAuth list, never the free text that came with it
        code = token_error({"error": request.query_params.get("error")}, 400)
        _audit(request, "connect_refused", ws, code)
        return render(request, "error.html", status_code=400, title="Salesforce did not connect",
                      message=f"Salesforce answered {code}. Nothing was changed.")
    try:
        connection = await run_in_threadpool(_exchange, request, pending, request.query_params.get("code", ""))
        request.app.state.gateways.forget(ws)
        registry = request.app.state.registry
        if ws not in registry.ids():
            registry.apply([WorkspaceSpec(id=ws, name=ws)], author=_user(request)["user"])
        registry.connect(ws, connection)
    except (SalesforceError, SecretKeyError, ValidationError) as exc:
        _audit(request, "connect_failed", ws, str(exc)[:300])
        return render(request, "error.html", status_code=502, title="Salesforce did not connect",
                      message=f"{exc}. Nothing was changed.")
    _audit(request, "connected", ws, f"instance {connection.instance_url}")
    return RedirectResponse(f"/workspaces/{ws}?connected=1", status_code=303)


def _opened(request: Request, raw: str, state: str) -> dict | None:
    """The pending flow as sealed at its start, or None when it does not open or belongs to another state."""
    try:
        pending = request.app.state.registry.keyring.open(raw if isinstance(raw, str) else raw.decode(), "")
    except (SecretKeyError, ValueError):
        return None
    if not isinstance(pending, dict) or pending.get("purpose") != "salesforce-connect" or \
            not secrets.compare_digest(str(pending.get("state", "")), state):
        return None
    return pending


def _exchange(request: Request, pending: dict, code: str) -> SalesforceConnection:
    """The authorization code traded for tokens; the connection keeps the refresh token (sealed by the registry).

    The token call goes only to a host the policy allows, follows no redirect, and its answer's instance
    URL is held to the same policy; what a refusal says is reduced to its OAuth error code."""
    hosts = request.app.state.config.settings.salesforce_hosts
    form = {"grant_type": "authorization_code", "code": code, "client_id": pending["client_id"],
            "redirect_uri": _callback_url(request), "code_verifier": pending["verifier"]}
    secret = pending["client_secret"] or None
    if secret:
        form["client_secret"] = secret
    host = urlparse(pending["login_url"]).netloc
    session = build_session(None, pending["login_url"], hosts=hosts, timeout=TOKEN_TIMEOUT)
    try:
        answer = session.post(f"{pending['login_url']}/services/oauth2/token", data=form)
        body = answer.json() if answer.status_code == 200 else {}
    except HostNotAllowed as exc:
        raise SalesforceError(ErrorCode.LOGIN_FAILED, str(exc)) from None
    except (requests.RequestException, ValueError) as exc:
        raise SalesforceError(ErrorCode.CONNECTION_ERROR, f"the token request to {host} failed: "
                                                  f"{type(exc).__name__}") from None
    finally:
        session.close()
    if answer.status_code != 200 or not isinstance(body, dict) or "refresh_token" not in body:
        try:
            reason = token_error(answer.json(), answer.status_code)
        except ValueError:
            reason = f"HTTP {answer.status_code}"
        raise SalesforceError(ErrorCode.LOGIN_FAILED, f"{host} refused the authorization code ({reason})")
    instance_url = str(body.get("instance_url") or "")
    try:
        instance_url = str(hosts.check(instance_url, "the instance URL of the token response"))
    except HostNotAllowed as exc:
        raise SalesforceError(ErrorCode.LOGIN_FAILED, f"{host}: {exc}") from None
    return SalesforceConnection(instance_url=instance_url, login_url=pending["login_url"],
                                client_id=pending["client_id"], client_secret=secret,
                                refresh_token=str(body["refresh_token"]))


@requires("support")
async def test_connection(request: Request) -> Response:
    ws = request.path_params["ws"]
    try:
        connection = connection_for(ws, request.app.state.config.settings, request.app.state.registry)
        if connection is None:
            raise SalesforceError(ErrorCode.NOT_CONNECTED, "this workspace has no Salesforce connection")
        limits, resumed = await run_in_threadpool(_daily_api_requests, request, ws, connection)
    except (SalesforceError, SecretKeyError) as exc:
        return render(request, "_test_result.html", ok=False, message=str(exc))
    used = limits.get("Max", 0) - limits.get("Remaining", 0)
    if resumed:
        _audit(request, "logins_resumed", ws, "a test connection worked after refused logins had stopped them")
    return render(request, "_test_result.html", ok=True,
                  message=f"Signed in to {urlparse(connection.instance_url or connection.login_host).netloc}; "
                          f"API requests today: {used:,} of {limits.get('Max', 0):,}." +
                          (" The workers' logins, stopped after refused ones, start again; parked events are "
                           "released." if resumed else ""))


def _daily_api_requests(request: Request, ws: str, connection: SalesforceConnection) -> tuple[dict, bool]:
    """Today's API usage, read through a login a person asked for (it opens a gate refused logins closed)."""
    gateway, resumed = operator_login(ConnectionState(request.app.state.redis), ws, connection, timeout=15,
                                      hosts=request.app.state.config.settings.salesforce_hosts)
    return gateway.limits().get("DailyApiRequests") or {}, resumed


@requires("admin")
async def disconnect(request: Request) -> Response:
    ws = request.path_params["ws"]
    if request.method == "GET":
        return render(request, "confirm_disconnect.html", ws=ws)
    registry = request.app.state.registry
    if ws not in registry.ids():
        return render(request, "error.html", status_code=400, title="Not registered",
                      message="Only a workspace of the registry can be disconnected here; this one's credentials "
                              "come from the environment.")
    try:
        registry.disconnect(ws)
    except SecretKeyError as exc:
        return render(request, "error.html", status_code=409, title="Not disconnected", message=str(exc))
    request.app.state.gateways.forget(ws)
    _audit(request, "disconnected", ws)
    return RedirectResponse(f"/workspaces/{ws}", status_code=303)


@requires("admin")
async def set_enabled(request: Request) -> Response:
    """Enable at once; disabling stops a workspace's writes, so GET asks first and the form POSTs."""
    ws = request.path_params["ws"]
    registry = request.app.state.registry
    if ws not in registry.ids():
        return render(request, "error.html", status_code=400, title="Not registered",
                      message="Only a workspace of the registry can be enabled or disabled.")
    if request.method == "GET":
        return render(request, "confirm_disable.html", ws=ws)
    enabled = str((await request.form()).get("enabled")) == "1"
    registry.set_enabled(ws, enabled)
    _audit(request, "enabled" if enabled else "disabled", ws)
    return RedirectResponse(f"/workspaces/{ws}", status_code=303)


@requires("admin")
async def remove(request: Request) -> Response:
    """Delete a registered workspace and all its data in Redis, once its id is typed again."""
    ws = request.path_params["ws"]
    registry = request.app.state.registry
    if ws not in registry.ids():
        return render(request, "error.html", status_code=400, title="Not registered",
                      message="Only a workspace of the registry can be removed here.")
    if request.method == "GET":
        return render(request, "confirm_remove.html", ws=ws, error=None)
    if str((await request.form()).get("confirm", "")).strip() != ws:
        return render(request, "confirm_remove.html", status_code=400, ws=ws,
                      error=f"Type the workspace id {ws} exactly to remove it.")
    deleted = registry.remove(ws)
    request.app.state.gateways.forget(ws)
    _audit(request, "removed", ws, ", ".join(f"{kind}={n}" for kind, n in sorted(deleted.items())))
    return render(request, "removed.html", ws=ws, keys=sum(deleted.values()))


def routes() -> list[Route]:
    return [Route("/workspaces/{ws}/connect", connect_form),
            Route("/workspaces/{ws}/connect/start", start, methods=["POST"]),
            Route("/oauth/salesforce/callback", callback, name="salesforce_callback"),
            Route("/workspaces/{ws}/test-connection", test_connection, methods=["POST"]),
            Route("/workspaces/{ws}/disconnect", disconnect, methods=["GET", "POST"]),
            Route("/workspaces/{ws}/enabled", set_enabled, methods=["GET", "POST"]),
            Route("/workspaces/{ws}/remove", remove, methods=["GET", "POST"])]
