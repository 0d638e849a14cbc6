"""Who is signed in, what their role allows, CSRF tokens and sign-in throttling for the console.

A session lives in Redis; the console's (signed) cookie holds only a random reference to it and the
CSRF token. Signing out deletes it, so a copy of the cookie kept from before opens nothing; signing in
starts a new one (and ends the one before). A password user's role is read from the users file at each
request, so a demotion or removal counts from the next click; an identity provider's role claim is
read at sign-in, and such a session lasts OIDC_SESSION_LIFETIME.
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from urllib.parse import quote, urlparse

import redis
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from workers.web.users import allows

#: seconds a sign-in lasts, however active the session (the cookie itself also expires)
SESSION_LIFETIME = 12 * 3600
#: seconds a sign-in through the identity provider lasts: its role claim is read at sign-in only, so a
#: role taken away there ends here within this
OIDC_SESSION_LIFETIME = 3600
#: sessions in Redis, by a digest of the cookie's reference (Redis never holds the reference itself)
SESSION_PREFIX = "sfsync:web:session:"
#: failed sign-ins of one username from one address within THROTTLE_WINDOW before that pair must wait it out
THROTTLE_LIMIT = 5
THROTTLE_WINDOW = 300
#: failed sign-ins from one address, whatever the names, within ADDRESS_WINDOW before the address must wait
ADDRESS_LIMIT = 20
ADDRESS_WINDOW = 600
#: failed sign-ins of one account, from any address, within ACCOUNT_WINDOW after which each further try
#: waits 2, 4, 8 ... seconds, at most ACCOUNT_MAX_WAIT: guesses spread over many addresses slow to one a
#: minute, while an attacker can make the real user wait at most that long, never lock them out
ACCOUNT_LIMIT = 10
ACCOUNT_WINDOW = 3600
ACCOUNT_MAX_WAIT = 60
#: the one account every name that is not a user counts under (so made-up names cannot fill Redis)
UNKNOWN_ACCOUNT = "\0unknown"
#: every page's content security policy: this site's scripts, styles and forms only; no plugins, no <base>
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
       "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

Endpoint = Callable[[Request], Awaitable[Response]]


def csrf_token(request: Request) -> str:
    """This session's CSRF token (made on first use), for forms and htmx's request header."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


async def csrf_ok(request: Request) -> bool:
    """True when the request carries this session's CSRF token, in the X-CSRF-Token header or a form field."""
    expected = request.session.get("csrf")
    if not expected:
        return False
    sent: object = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        sent = form.get(CSRF_FIELD)
    return isinstance(sent, str) and secrets.compare_digest(sent, expected)


class Sessions:
    """Signed-in sessions in Redis, each under a digest of its random reference, expiring with its lifetime."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    @staticmethod
    def _key(reference: str) -> str:
        return SESSION_PREFIX + hashlib.sha256(reference.encode()).hexdigest()[:48]

    def start(self, username: str, role: str, via: str) -> str:
        """A new session; returns the reference the cookie carries."""
        reference = secrets.token_urlsafe(32)
        lifetime = OIDC_SESSION_LIFETIME if via == "oidc" else SESSION_LIFETIME
        record = {"user": username, "role": role, "via": via, "at": time.time(), "lifetime": lifetime}
        self.redis.set(self._key(reference), json.dumps(record), ex=lifetime)
        return reference

    def get(self, reference: str) -> dict | None:
        raw = self.redis.get(self._key(reference))
        record = json.loads(raw) if raw else None
        if not isinstance(record, dict) or time.time() - float(record.get("at", 0)) > float(
                record.get("lifetime", SESSION_LIFETIME)):
            return None
        return record

    def end(self, reference: str) -> None:
        self.redis.delete(self._key(reference))


def current_user(request: Request) -> dict | None:
    """{"user", "role", "via"} of the signed-in user, or None (never signed in, signed out, expired, or no
    longer a user). Read once per request."""
    if "sfsync_user" not in request.scope:
        request.scope["sfsync_user"] = _session_user(request)
    return request.scope["sfsync_user"]


def _session_user(request: Request) -> dict | None:
    reference = request.session.get("sid")
    if not isinstance(reference, str):
        return None
    sessions: Sessions = request.app.state.sessions
    record = sessions.get(reference)
    if record is None:
        return None
    if record.get("via") == "password":
        role = request.app.state.roles.role_of(str(record.get("user")))
        if role is None:  # removed from the users file: the session ends with it
            sessions.end(reference)
            return None
        record["role"] = role
    return record


def sign_in(request: Request, username: str, role: str, via: str) -> None:
    """Start a fresh session, ending the one before (and a new CSRF token, so one fixed before sign-in is
    useless afterwards)."""
    sign_out(request)
    request.session["sid"] = request.app.state.sessions.start(username, role, via)
    request.session["csrf"] = secrets.token_urlsafe(32)
    request.scope.pop("sfsync_user", None)


def sign_out(request: Request) -> None:
    """End the session in Redis and forget it in the cookie."""
    reference = request.session.get("sid")
    if isinstance(reference, str):
        request.app.state.sessions.end(reference)
    request.session.clear()
    request.scope.pop("sfsync_user", None)


def safe_next(target: str | None) -> str:
    """Only a path on this site: an open redirect would hand a signed-in user to anyone's page."""
    # browsers read a backslash as a slash: /\host is //host, another site
    if not target or not target.startswith("/") or target[1:2] in ("/", "\\") or urlparse(target).netloc:
        return "/"
    return target


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def _refused_unsigned(request: Request) -> Response:
    if request.method == "GET" and not request.headers.get("hx-request"):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
    # htmx follows HX-Redirect; a script or form gets a plain 401
    return PlainTextResponse("Sign in first.", status_code=401, headers={"HX-Redirect": "/login"})


def requires(role: str) -> Callable[[Endpoint], Endpoint]:
    """An endpoint only a signed-in user of `role` or above reaches; unsafe methods also need the CSRF token."""

    def decorate(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            user = current_user(request)
            if user is None:
                return _refused_unsigned(request)
            if request.method in UNSAFE_METHODS and not await csrf_ok(request):
                return PlainTextResponse("Refused: the form's security token is missing or stale. "
                                         "Reload the page and try again.", status_code=403)
            if not allows(user.get("role"), role):
                return PlainTextResponse(f"Refused: this needs the {role} role; you are signed in as "
                                         f"{user.get('role')}.", status_code=403)
            request.state.user = user
            return await endpoint(request)

        guarded.required_role = role  # type: ignore[attr-defined]
        return guarded

    return decorate


def account_wait(failures: int, since_last: float) -> int:
    """Seconds an account with `failures` recent failed sign-ins still waits, `since_last` seconds after the
    last one: none below ACCOUNT_LIMIT, then 2, 4, 8 ... up to ACCOUNT_MAX_WAIT."""
    if failures < ACCOUNT_LIMIT:
        return 0
    wait = min(2 ** min(failures - ACCOUNT_LIMIT + 1, 16), ACCOUNT_MAX_WAIT)
    return max(int(wait - since_last + 0.999), 0)


class LoginThrottle:
    """Failed sign-ins counted in Redis three ways: per username and address (THROTTLE_*), per address
    (ADDRESS_*), and per account from any address (ACCOUNT_*, a growing wait rather than a lockout).

    `account` is the user's name when they are a user, else UNKNOWN_ACCOUNT: made-up names share one count.
    """

    def __init__(self, client: redis.Redis):
        self.redis = client

    @staticmethod
    def _key(kind: str, *parts: str) -> str:
        digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]
        return f"sfsync:web:login-failures:{kind}:{digest}"

    def blocked_for(self, account: str, username: str, ip: str) -> int:
        """Seconds until this name may try again from this address; 0 when it may now."""
        pair, address, per_account = (self._key("pair", username.lower(), ip), self._key("address", ip),
                                      self._key("account", account))
        pipe = self.redis.pipeline()
        for name in (pair, address):
            pipe.get(name)
            pipe.ttl(name)
        pipe.hgetall(per_account)
        pair_n, pair_ttl, address_n, address_ttl, held = pipe.execute()
        waits = [max(int(pair_ttl), 1) if int(pair_n or 0) >= THROTTLE_LIMIT else 0,
                 max(int(address_ttl), 1) if int(address_n or 0) >= ADDRESS_LIMIT else 0]
        if held:
            waits.append(account_wait(int(held.get("failures", 0)), time.time() - float(held.get("last", 0))))
        return max(waits)

    def failed(self, account: str, username: str, ip: str) -> None:
        pipe = self.redis.pipeline()
        for name, window in ((self._key("pair", username.lower(), ip), THROTTLE_WINDOW),
                             (self._key("address", ip), ADDRESS_WINDOW)):
            pipe.set(name, 0, nx=True, ex=window)  # the window starts at the first failure and is not extended
            pipe.incr(name)
        per_account = self._key("account", account)
        pipe.hincrby(per_account, "failures", 1)
        pipe.hset(per_account, "last", f"{time.time():.3f}")
        pipe.expire(per_account, ACCOUNT_WINDOW)
        pipe.execute()

    def succeeded(self, account: str, username: str, ip: str) -> None:
        self.redis.delete(self._key("pair", username.lower(), ip), self._key("account", account))

