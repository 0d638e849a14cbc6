"""The console's ASGI app: configuration, middleware, sign-in and the read-only pages."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

import redis
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from events.audit import AuditLog
from events.deadletter import DeadLetterStore, Retention
from events.redis_conn import connect, display_url
from schemas.settings import Settings, SettingsError
from workers.heartbeat import Heartbeat
from workers.observability.logs import configure_logging
from workers.replay import registry_signing_keys
from workers.web import activity, deadletters, fleet, mappings, overview, replays
from workers.web import connect as connections
from workers.web.fleet import fleet_view
from workers.web.jobs import ReplayJobs
from workers.web.middleware import AccessLog, BodyLimit, SecurityHeaders
from workers.web.rendering import HERE, render
from workers.web.security import (
    UNKNOWN_ACCOUNT,
    LoginThrottle,
    Sessions,
    client_ip,
    csrf_ok,
    current_user,
    requires,
    safe_next,
    sign_in,
    sign_out,
)
from workers.web.users import Roles, UsersFileError, Verifier, VerifierBusy, load_users
from workers.web.workspaces import keyring_of
from workspaces.registry import Registry
from workspaces.secrets import SecretKeyError

#: seconds a session cookie is honoured
COOKIE_MAX_AGE = 12 * 3600
#: characters of a user name or password beyond which a sign-in is refused unread
USERNAME_MAX = 200
PASSWORD_MAX = 1024
#: bytes a request body may hold (the mappings editor's is the largest a person sends)
BODY_LIMIT = 1024 * 1024
#: set (per link) once the demo's sign-in link has been used: it signs in once
DEMO_LINK_USED = "sfsync:web:demo-link-used"


@dataclass(frozen=True)
class ConsoleConfig:
    """The console's own settings, checked: a secret key and at least one way to sign in."""

    settings: Settings
    secret_key: str
    secure_cookies: bool
    users_file: Path | None
    oidc: bool
    demo_token: str | None = None
    #: SFSYNC_WEB_PUBLIC_URL: where browsers reach the console (None: the address each request names)
    public_url: str | None = None

    @property
    def public_https(self) -> bool:
        return bool(self.public_url and self.public_url.startswith("https://"))

    @classmethod
    def from_settings(cls, settings: Settings, demo_token: str | None = None) -> "ConsoleConfig":
        if settings.web_secret_key is None or len(settings.web_secret_key.get_secret_value()) < 16:
            raise SettingsError("SFSYNC_WEB_SECRET_KEY (or SFSYNC_WEB_SECRET_KEY_FILE) must be set to at least 16 "
                                "characters: it signs the console's session cookies. Make one with: "
                                "python -c 'import secrets; print(secrets.token_urlsafe(32))'")
        oidc_parts = (settings.web_oidc_issuer, settings.web_oidc_client_id, settings.web_oidc_client_secret)
        if any(oidc_parts) and not all(oidc_parts):
            raise SettingsError("OIDC sign-in needs SFSYNC_WEB_OIDC_ISSUER, SFSYNC_WEB_OIDC_CLIENT_ID and "
                                "SFSYNC_WEB_OIDC_CLIENT_SECRET together")
        if not (all(oidc_parts) or settings.web_users_file or demo_token):
            raise SettingsError("the console needs a way to sign in: SFSYNC_WEB_USERS_FILE (see `sfsync web "
                                "add-user`) or SFSYNC_WEB_OIDC_ISSUER with its client id and secret")
        if settings.web_users_file is not None:
            load_users(settings.web_users_file)  # a broken users file stops start-up, naming the entry
        try:
            keyring_of(settings)
        except SecretKeyError as exc:
            raise SettingsError(str(exc)) from None
        public = settings.web_public_url
        return cls(settings, settings.web_secret_key.get_secret_value(),
                   secure_cookies=not is_loopback(settings.web_host) or bool(public and public.startswith("https")),
                   users_file=settings.web_users_file, oidc=all(oidc_parts), demo_token=demo_token,
                   public_url=public)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def login_page(request: Request) -> Response:
    config: ConsoleConfig = request.app.state.config
    if request.method == "GET":
        return render(request, "login.html", next=safe_next(request.query_params.get("next")), error=None,
                      users=config.users_file is not None, oidc=config.oidc, username="")
    return await _password_sign_in(request, config)


async def _password_sign_in(request: Request, config: ConsoleConfig) -> Response:
    form = await request.form()
    username, password = str(form.get("username", "")).strip(), str(form.get("password", ""))
    target = safe_next(str(form.get("next", "/"))[:2000])

    def again(error: str, status: int) -> Response:
        return render(request, "login.html", status_code=status, next=target, error=error,
                      users=config.users_file is not None, oidc=config.oidc, username=username[:USERNAME_MAX])

    if not await csrf_ok(request):
        return again("The sign-in form expired. Please try again.", 403)
    if config.users_file is None:
        return again("Sign-in with a password is not set up here; use your identity provider.", 400)
    if not username or not password:
        return again("Enter your username and password.", 400)
    ip, throttle, audit = client_ip(request), request.app.state.throttle, request.app.state.audit
    # no name or password this long is anyone's: refused without hashing (argon2 takes any length)
    too_long = len(username) > USERNAME_MAX or len(password) > PASSWORD_MAX
    account = username if not too_long and request.app.state.roles.role_of(username) else UNKNOWN_ACCOUNT
    wait = throttle.blocked_for(account, username[:USERNAME_MAX], ip)
    if wait:
        audit.record(user=username, role="", action="sign_in_refused", ip=ip, detail="too many failed sign-ins",
                     anonymous=True)
        return again(f"Too many failed sign-ins. Try again in {_wait_text(wait)}.", 429)
    try:
        user = None if too_long else await request.app.state.verifier.authenticate(config.users_file, username,
                                                                                      password)
    except UsersFileError:
        return again("Sign-in is unavailable: the users file cannot be read. Tell an administrator.", 500)
    except VerifierBusy:
        return again("Sign-in is busy; please try again in a few seconds.", 503)
    if user is None:
        throttle.failed(account, username[:USERNAME_MAX], ip)
        audit.record(user=username, role="", action="sign_in_failed", ip=ip, anonymous=True)
        return again("Wrong username or password.", 401)
    throttle.succeeded(account, username, ip)
    sign_in(request, user.username, user.role, "password")
    audit.record(user=user.username, role=user.role, action="sign_in", ip=ip, detail="password")
    return RedirectResponse(target, status_code=303)


def _wait_text(seconds: int) -> str:
    return f"{seconds} seconds" if seconds < 120 else f"{seconds // 60} minutes"


async def logout(request: Request) -> Response:
    user = current_user(request)
    if user is not None and await csrf_ok(request):
        request.app.state.audit.record(user=user["user"], role=user["role"], action="sign_out",
                                       ip=client_ip(request))
        sign_out(request)
    return RedirectResponse("/login", status_code=303)


async def demo_sign_in(request: Request) -> Response:
    """`sfsync demo --serve` only: the link it prints signs in as the demo's admin."""
    token = request.app.state.config.demo_token
    if not token or not secrets.compare_digest(request.query_params.get("token", ""), token) or \
            not request.app.state.redis.set(f"{DEMO_LINK_USED}:{hashlib.sha256(token.encode()).hexdigest()[:16]}",
                                            "1", nx=True, ex=COOKIE_MAX_AGE):
        return render(request, "error.html", status_code=403, title="Link not valid",
                      message="This sign-in link is not valid, or was used already: it signs in once. Restart "
                              "`sfsync demo --serve` for a new one.")
    sign_in(request, "demo-admin", "admin", "demo")
    request.app.state.audit.record(user="demo-admin", role="admin", action="sign_in", ip=client_ip(request),
                                   detail="demo link")
    return RedirectResponse("/", status_code=303)


@requires("viewer")
async def overview_page(request: Request) -> Response:
    client = request.app.state.redis
    data = overview.overview(client, request.app.state.config.settings, request.app.state.registry,
                             request.app.state.dead_letters)
    if request.headers.get("hx-request"):
        return render(request, "_overview.html", data=data, fleet=fleet_view(client))
    span = activity.span_of(request.query_params.get("range"))
    return render(request, "overview.html", data=data, fleet=fleet_view(client),
                  activity=activity.activity(client, None, span))


@requires("viewer")
async def workspace_page(request: Request) -> Response:
    ws = request.path_params["ws"]
    client, settings, registry = request.app.state.redis, request.app.state.config.settings, request.app.state.registry
    if ws not in overview.workspace_ids(client, settings):
        return render(request, "error.html", status_code=404, title="No such workspace",
                      message=f"No workspace {ws!r} is known here.")
    data = overview.overview(client, settings, registry, request.app.state.dead_letters)
    row = next(r for r in data["workspaces"] if r["id"] == ws)
    if request.headers.get("hx-request"):
        return render(request, "_workspace.html", ws=row, shared=data)
    span = activity.span_of(request.query_params.get("range"))
    return render(request, "workspace.html", ws=row, shared=data, activity=activity.activity(client, ws, span))


@requires("viewer")
async def audit_page(request: Request) -> Response:
    action = request.query_params.get("action") or None
    audit = request.app.state.audit
    return render(request, "audit.html", entries=audit.recent(300, action), action=action or "",
                  actions=audit.actions())


async def redis_unreachable(request: Request, exc: Exception) -> Response:
    where = display_url(request.app.state.config.settings.redis_url.get_secret_value())
    return render(request, "error.html", status_code=503, title="Redis unreachable",
                  message=f"Redis at {where} does not answer ({type(exc).__name__}). The page works again as "
                          "soon as it does; nothing was changed.")


async def not_found(request: Request, exc) -> Response:
    return render(request, "error.html", status_code=404, title="Not found",
                  message="There is no page at this address.")


def create_app(config: ConsoleConfig) -> Starlette:
    routes = [
        Route("/login", login_page, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/auth/demo", demo_sign_in),
        Route("/", overview_page),
        Route("/workspaces/{ws}", workspace_page),
        Route("/audit", audit_page),
        *deadletters.routes(),
        *replays.routes(),
        *activity.routes(),
        *fleet.routes(),
        *mappings.routes(),
        *connections.routes(),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    if config.oidc:
        # deferred: authlib and httpx load only where OIDC sign-in is configured
        from workers.web import oidc

        routes += oidc.routes(config)
    # outermost first: the access log sees every answer; the headers see the session's cookie
    middleware = [Middleware(AccessLog),
                  Middleware(SecurityHeaders, always_https=config.public_https),
                  Middleware(SessionMiddleware, secret_key=config.secret_key, session_cookie="sfsync_console",
                             max_age=COOKIE_MAX_AGE, same_site="lax", https_only=config.secure_cookies),
                  Middleware(BodyLimit, limit=BODY_LIMIT)]
    app = Starlette(routes=routes, middleware=middleware, lifespan=_heartbeat,
                    exception_handlers={404: not_found, redis.RedisError: redis_unreachable})
    client = connect(config.settings.redis_url.get_secret_value())
    app.state.config = config
    app.state.redis = client
    app.state.audit = AuditLog(client)
    app.state.registry = Registry(client, keyring_of(config.settings), hosts=config.settings.salesforce_hosts,
                                  audit=app.state.audit)
    app.state.gateways = mappings.Gateways()
    app.state.throttle = LoginThrottle(client)
    app.state.verifier = Verifier()
    app.state.sessions = Sessions(client)
    app.state.roles = Roles(config.users_file)
    app.state.dead_letters = DeadLetterStore(client, retention=Retention.from_settings(config.settings))
    app.state.jobs = ReplayJobs(app.state.dead_letters, config.settings.redis_url.get_secret_value(), app.state.audit,
                                signing_keys=registry_signing_keys(app.state.registry))
    return app


@contextlib.asynccontextmanager
async def _heartbeat(app: Starlette):
    """The console is part of the fleet: it beats while it serves (its replays running as its work in flight)."""
    heartbeat = Heartbeat(app.state.redis, "console", in_flight=app.state.jobs.running)
    heartbeat.run_in_thread()
    try:
        yield
    finally:
        heartbeat.leave()


def serve_console(app, host: str, port: int, trusted_proxies: str = "") -> None:
    """Serve the console's ASGI app with uvicorn until interrupted.

    X-Forwarded-For and X-Forwarded-Proto are believed only from the proxies `trusted_proxies` names
    (SFSYNC_WEB_TRUSTED_PROXIES); with none, from nobody, so no request can choose its own address.
    uvicorn's own access log is off: the console logs each request through sfsync's logging, without
    its query string (an OAuth code and state travel there).
    """
    configure_logging("INFO")  # uvicorn's own messages go through sfsync's (redacting) handler too
    proxies = [p.strip() for p in trusted_proxies.split(",") if p.strip()]
    uvicorn.run(app, host=host, port=port, log_level="info", log_config=None, server_header=False, access_log=False,
                proxy_headers=bool(proxies), forwarded_allow_ips=proxies or "")
