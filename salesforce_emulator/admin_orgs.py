"""The /_admin/ API for orgs (create, list, delete, reset all), their sessions and the connected apps."""
from __future__ import annotations

from .admin import BadInput, both_scopes, ok, refuse, registry_endpoint
from .auth import base_url
from .connected_apps import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from .oauth import DEFAULT_SCOPE
from .org import DEFAULT_ORG
from .orgs import session_ttl, settings_from_json


def credentials(org, base: str) -> dict:
    """Everything a test needs to reach an org: its preset token, integration user and the default app."""
    return {
        "id": org.name, "organization_id": org.org_id, "instance_url": base,
        "access_token": org.preset_token, "username": org.api_username, "password": org.password,
        "user_id": org.api_user_id, "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET,
        "features": dict(org.features), "daily_api_requests": org.api_limit,
        "session_ttl_seconds": org.session_ttl,
    }


def _object(body) -> dict:
    if not isinstance(body, dict):
        raise BadInput("body must be an object")
    return body


# orgs -----------------------------------------------------------------------------------------

def orgs_collection(request, orgs, body):
    if request.method == "GET":
        return ok({"orgs": [credentials(org, base_url(request)) for org in orgs.by_name.values()]})
    body = _object(body)
    try:
        org = orgs.create(body.get("id"), settings_from_json(body))
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    except KeyError:
        return refuse(f"an org named {body.get('id')} exists", 409)
    return ok(credentials(org, base_url(request)), 201)


def one_org(request, orgs, body):
    name = request.path_params["org"]
    org = orgs.get(name)
    if org is None:
        return refuse(f"no org named {name}", 404)
    if request.method == "GET":
        return ok(credentials(org, base_url(request)))
    if name == DEFAULT_ORG:
        raise BadInput("the default org can't be deleted; reset it instead")
    orgs.delete(name)
    return ok({"ok": True})


def reset_all(request, orgs, body):
    orgs.reset_all()
    return ok({"ok": True})


def connected_apps(request, orgs, body):
    if request.method == "GET":
        return ok({"apps": [app.describe() for app in orgs.apps.apps.values()]})
    try:
        app = orgs.apps.add(_object(body), orgs.by_name)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    return ok(app.describe(), 201)


# one org's sessions (each also at /_admin/orgs/{org}/...) ------------------------------------------

def org_credentials(request, org, body):
    return ok(credentials(org, base_url(request)))


def sessions(request, org, body):
    if request.method == "PUT":
        try:
            org.session_ttl = session_ttl(_object(body).get("session_ttl_seconds"))
        except ValueError as exc:
            raise BadInput(str(exc)) from None
    counts = request.app.state.orgs.sessions.count(org.name)
    return ok({"session_ttl_seconds": org.session_ttl, **counts})


def expire_sessions(request, org, body):
    return ok({"expired": request.app.state.orgs.sessions.expire_access(org.name)})


def issue_refresh_token(request, org, body):
    """A refresh token as if the org's user had allowed the app in the browser (for tests that skip the page)."""
    body = _object(body)
    orgs = request.app.state.orgs
    app = orgs.apps.get(body.get("client_id") or DEFAULT_CLIENT_ID)
    if app is None:
        raise BadInput(f"no connected app with client_id {body.get('client_id')}")
    user_id = org.active_user(body["username"]) if body.get("username") else org.api_user_id
    if user_id is None:
        raise BadInput(f"no active user {body.get('username')} in org {org.name}")
    token = orgs.sessions.issue_refresh(org.name, user_id, app.client_id, body.get("scope") or DEFAULT_SCOPE)
    return ok({"refresh_token": token.value, "client_id": app.client_id, "user_id": user_id}, 201)


def revoke_refresh_tokens(request, org, body):
    return ok({"revoked": request.app.state.orgs.sessions.revoke_refresh(org.name)})


def oauth_log(request, org, body):
    return ok({"token_grants": dict(org.token_grants), "log": list(org.oauth_log)})


ROUTES = [
    ("/_admin/orgs", registry_endpoint(orgs_collection), ["GET", "POST"]),
    ("/_admin/orgs/{org}", registry_endpoint(one_org), ["GET", "DELETE"]),
    ("/_admin/reset-all", registry_endpoint(reset_all), ["POST"]),
    ("/_admin/connected-apps", registry_endpoint(connected_apps), ["GET", "POST"]),
    *both_scopes([
        ("credentials", org_credentials, ["GET"]),
        ("sessions", sessions, ["GET", "PUT"]),
        ("sessions/expire", expire_sessions, ["POST"]),
        ("refresh-tokens", issue_refresh_token, ["POST"]),
        ("refresh-tokens/revoke", revoke_refresh_tokens, ["POST"]),
        ("oauth", oauth_log, ["GET"]),
    ]),
]
