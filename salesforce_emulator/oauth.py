"""OAuth 2.0 on the login host: the token endpoint's grants, token revocation, and userinfo / identity URLs."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .auth import base_url, form_fields
from .clock import format_millis
from .connected_apps import ConnectedApp
from .org import Org
from .orgs import Orgs
from .sessions import RefreshToken

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: what a grant gives when the request names no scope; refresh_token lets the web-server flow hand one out
DEFAULT_SCOPE = "api refresh_token"
_REFRESH_SCOPES = ("refresh_token", "offline_access", "full")
_BAD_SECRET_PREFIX = "wrong"


class OAuthError(Exception):
    """A refusal the token endpoint answers with 400 `{"error", "error_description"}`."""

    def __init__(self, error: str, description: str):
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description

    def response(self) -> Response:
        return JSONResponse({"error": self.error, "error_description": self.description}, status_code=400)


_EXPIRED = ("invalid_grant", "expired access/refresh token")
_BAD_CLIENT = ("invalid_client", "invalid client credentials")


@dataclass
class Grant:
    """Who a successful grant signs in, and whether it hands out a refresh token."""

    org: Org
    user_id: str
    scope: str = "api"
    app: ConnectedApp | None = None
    #: the refresh token the access token hangs from (new for a code exchange, the presented one for a refresh)
    refresh: RefreshToken | None = None
    new_refresh: bool = False


async def token(request: Request) -> Response:
    orgs: Orgs = request.app.state.orgs
    form = {**_basic_client(request), **await form_fields(request)}
    grant_type = form.get("grant_type")
    handler = _GRANTS.get(grant_type or "")
    if handler is None:
        return OAuthError("unsupported_grant_type", "grant type not supported").response()
    with orgs.lock:
        try:
            grant = handler(orgs, form)
        except OAuthError as refusal:
            return refusal.response()
        return JSONResponse(_issue(orgs, grant, grant_type, base_url(request)))  # type: ignore[arg-type]  # had a handler


def _issue(orgs: Orgs, grant: Grant, grant_type: str, base: str) -> dict:
    org = grant.org
    refresh_value = grant.refresh.value if grant.refresh else None
    access = orgs.sessions.issue_access(org.name, org.org_id, grant.user_id, refresh_token=refresh_value)
    issued_at = str(int(time.time() * 1000))
    identity = f"{base}/id/{org.org_id}/{grant.user_id}"
    body = {"access_token": access.value, "instance_url": base, "id": identity, "token_type": "Bearer",
            "issued_at": issued_at, "signature": _signature(grant.app, identity, issued_at), "scope": grant.scope}
    if grant.new_refresh and grant.refresh is not None:
        body["refresh_token"] = grant.refresh.value
    org.token_grants[grant_type] += 1
    org.oauth_log.append({"grant_type": grant_type, "client_id": grant.app.client_id if grant.app else None,
                          "user_id": grant.user_id, "at": format_millis(int(time.time() * 1000))})
    return body


def _signature(app: ConnectedApp | None, identity: str, issued_at: str) -> str:
    """As Salesforce signs: base64 HMAC-SHA256 of id + issued_at keyed with the client secret."""
    if app is None:
        return base64.b64encode(secrets.token_bytes(32)).decode()
    digest = hmac.new(app.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


# clients -------------------------------------------------------------------------------------

def _basic_client(request: Request) -> dict:
    """client_secret_basic: the client id and secret in an HTTP Basic header instead of the body."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return {}
    try:
        client_id, _, secret = base64.b64decode(encoded.strip()).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return {}
    return {"client_id": unquote(client_id), "client_secret": unquote(secret)}


def _registered_client(orgs: Orgs, form: dict) -> ConnectedApp:
    """The web-server and refresh flows need a connected app of this emulator and its exact secret."""
    app = orgs.apps.get(form.get("client_id"))
    if app is None or not app.secret_ok(form.get("client_secret")):
        raise OAuthError(*_BAD_CLIENT)
    return app


def _any_client(orgs: Orgs, form: dict) -> ConnectedApp | None:
    """The older flows accept any client id, as the emulator always did; a registered app needs its secret."""
    app = orgs.apps.get(form.get("client_id"))
    secret = form.get("client_secret")
    if app is not None and secret is not None and not app.secret_ok(secret):
        raise OAuthError(*_BAD_CLIENT)
    if secret is not None and secret.startswith(_BAD_SECRET_PREFIX):
        raise OAuthError(*_BAD_CLIENT)
    return app


# grants ----------------------------------------------------------------------------------------

def _password(orgs: Orgs, form: dict) -> Grant:
    app = _any_client(orgs, form)
    signed_in = orgs.password_sign_in(form.get("username"), form.get("password"))
    if signed_in is None:
        raise OAuthError("invalid_grant", "authentication failure")
    return Grant(*signed_in, app=app)


def _client_credentials(orgs: Orgs, form: dict) -> Grant:
    if not form.get("client_id"):
        raise OAuthError(*_BAD_CLIENT)
    app = _any_client(orgs, form)
    org = orgs.get(app.org) if app is not None and app.org else orgs.default
    if org is None:
        raise OAuthError("invalid_grant", "no client credentials user enabled")
    return Grant(org, org.api_user_id, app=app)


def _jwt_bearer(orgs: Orgs, form: dict) -> Grant:
    claims = _jwt_claims(form.get("assertion") or "")
    signed_in = orgs.sign_in(claims.get("sub"), any_username=True) if claims else None
    if signed_in is None:
        raise OAuthError("invalid_grant", "invalid assertion")
    return Grant(*signed_in, app=orgs.apps.get(claims.get("iss")))  # type: ignore[union-attr]  # signed in: claims


def _jwt_claims(assertion: str) -> dict | None:
    """The payload of a JWT; the signature is deliberately not checked."""
    parts = assertion.split(".")
    if len(parts) != 3:
        return None
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


def _authorization_code(orgs: Orgs, form: dict) -> Grant:
    # the code is spent by this exchange whatever its outcome, so a refused exchange can't be retried
    code = orgs.sessions.take_code(form.get("code") or "")
    app = _registered_client(orgs, form)
    if code is None or code.client_id != app.client_id:
        raise OAuthError("invalid_grant", "invalid authorization code")
    if form.get("redirect_uri") != code.redirect_uri:
        raise OAuthError("redirect_uri_mismatch", "redirect_uri must match configuration")
    if not code.verifier_ok(form.get("code_verifier")):
        raise OAuthError("invalid_grant", "invalid code verifier")
    org = orgs.get(code.org)
    if org is None:
        raise OAuthError("invalid_grant", "invalid authorization code")
    refresh = None
    if any(scope in code.scope.split() for scope in _REFRESH_SCOPES):
        refresh = orgs.sessions.issue_refresh(org.name, code.user_id, app.client_id, code.scope)
    return Grant(org, code.user_id, scope=code.scope, app=app, refresh=refresh, new_refresh=True)


def _refresh_token(orgs: Orgs, form: dict) -> Grant:
    app = _registered_client(orgs, form)
    refresh = orgs.sessions.refresh.get(form.get("refresh_token") or "")
    org = orgs.get(refresh.org) if refresh else None
    if refresh is None or org is None or refresh.client_id != app.client_id:
        raise OAuthError(*_EXPIRED)
    return Grant(org, refresh.user_id, scope=refresh.scope, app=app, refresh=refresh)


_GRANTS = {
    "password": _password,
    "client_credentials": _client_credentials,
    JWT_BEARER: _jwt_bearer,
    "authorization_code": _authorization_code,
    "refresh_token": _refresh_token,
}


# revocation and identity -----------------------------------------------------------------------

async def revoke(request: Request) -> Response:
    """An access token, or a refresh token with every access token issued from it; 200, or 400 when unknown."""
    orgs: Orgs = request.app.state.orgs
    form = await form_fields(request) if request.method == "POST" else dict(request.query_params)
    with orgs.lock:
        revoked = orgs.sessions.revoke(form.get("token") or "")
    if not revoked:
        return JSONResponse({"error": "invalid_token", "error_description": "invalid token"}, status_code=400)
    return Response(status_code=200)


async def userinfo(request: Request) -> Response:
    """OpenID Connect userinfo, or the identity URL `/id/{orgId}/{userId}` a token response names.

    Who the bearer token belongs to; not a data API call, not counted.
    """
    orgs: Orgs = request.app.state.orgs
    header = request.headers.get("authorization", "")
    bearer = header[7:].strip() if header.lower().startswith("bearer ") else ""
    with orgs.lock:
        signed_in = orgs.resolve(bearer)
        if signed_in is None:
            return JSONResponse({"error": "invalid_token", "error_description": "Bad_OAuth_Token"}, status_code=403)
        org, session = signed_in
        user_id = session.user_id
        if "user_id" in request.path_params:
            user_id = org.normalize_id(request.path_params["user_id"])  # type: ignore[assignment]  # None: unknown, below
            if request.path_params["org_id"][:15] != org.org_id[:15] or org.records["User"].get(user_id) is None:
                return JSONResponse({"error": "invalid_request", "error_description": "Bad_Id"}, status_code=403)
        user = org.records["User"][user_id]
    identity = f"{base_url(request)}/id/{org.org_id}/{user_id}"
    return JSONResponse({"sub": identity, "id": identity, "user_id": user_id, "organization_id": org.org_id,
                         "preferred_username": user["Username"], "username": user["Username"],
                         "email": user["Email"], "name": user["Name"], "given_name": user["FirstName"],
                         "family_name": user["LastName"], "active": user["IsActive"] is not False})
