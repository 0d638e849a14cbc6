"""The Starlette application: data API gate (org by token, faults, call counting, limit header), logins, admin."""
from __future__ import annotations

import asyncio
import json
import logging
from functools import wraps

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import admin, admin_orgs, auth, authorize, oauth
from .errors import ApiError
from .faults import fault_error
from .org import Org
from .orgs import Orgs
from .reply import Reply
from .rest import DataApi

log = logging.getLogger(__name__)
_UNKNOWN = ApiError("UNKNOWN_EXCEPTION", "An unexpected error occurred in the emulator. Please check its log.",
                    status=500)


def guarded(handler):
    """Last resort: a Salesforce-shaped 500 instead of a traceback page."""
    @wraps(handler)
    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception:  # the whole point is to never leak a traceback
            log.exception("emulator error on %s %s", request.method, request.url.path)
            return JSONResponse(_UNKNOWN.body(), status_code=500)
    return run


def _json(reply: Reply, headers: dict) -> Response:
    headers = {**reply.headers, **headers}
    if reply.status == 204 or reply.body is None:
        return Response(status_code=reply.status, headers=headers)
    return Response(json.dumps(reply.body), status_code=reply.status, headers=headers,
                    media_type="application/json;charset=UTF-8")


def _version_ok(version: str) -> bool:
    major, dot, minor = version.partition(".")
    return bool(dot) and major.isdigit() and minor.isdigit()


@guarded
async def data_api(request: Request) -> Response:
    orgs: Orgs = request.app.state.orgs
    version = request.path_params["version"]
    path = _raw_rest(request, version)
    method = request.method
    if not _version_ok(version):
        return _json(Reply.error(ApiError("NOT_FOUND", "The requested resource does not exist", status=404)), {})
    with orgs.lock:
        signed_in = orgs.resolve(_token(request))
    if signed_in is None:
        return _json(Reply.error(ApiError("INVALID_SESSION_ID", "Session expired or invalid", status=401)), {})
    org, session = signed_in
    with org.lock:
        delay, fault = org.faults.take(method, path)
    if delay:
        await asyncio.sleep(delay)
    raw = await request.body()
    with org.lock:
        if fault is not None and fault.kind in ("outage", "invalid_session"):
            # the call never reached the org, so it isn't counted
            return _json(Reply.error(fault_error(fault)), {})
        if fault is None and org.api_used >= org.api_limit:
            error = ApiError("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", status=403)
            return _json(Reply.error(error), _limit_header(org))
        org.api_used += 1
        route = f"{method} {DataApi.route_label(path)}"
        org.calls_by_route[route] += 1
        if fault is not None:
            return _json(_fault_reply(fault, method, path, raw), _limit_header(org))
        api = DataApi(org, actor_id=session.user_id)
        reply, _ = api.dispatch(method, version, path, dict(request.query_params), request.headers, raw)
        return _json(reply, _limit_header(org))


def _raw_rest(request: Request, version: str) -> str:
    """The still-encoded path after the version, so an external id containing `/` stays one segment."""
    raw = request.scope.get("raw_path")
    if not raw:
        return request.path_params.get("rest", "")
    text = raw.decode("latin-1").split("?", 1)[0]
    marker = text.find("/v" + version)
    return text[marker + 2 + len(version):].lstrip("/") if marker >= 0 else request.path_params.get("rest", "")


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization") or ""
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() in ("bearer", "oauth") else None


def _limit_header(org: Org) -> dict:
    return {"Sforce-Limit-Info": f"api-usage={org.api_used}/{org.api_limit}"}


def _fault_reply(fault, method: str, path: str, raw: bytes) -> Reply:
    """Row locks in a collection fail each record in a 200, as Salesforce reports them."""
    error = fault_error(fault)
    if fault.kind == "unable_to_lock_row" and path.strip("/").startswith("composite/sobjects") \
            and method in ("POST", "PATCH"):
        try:
            records = json.loads(raw).get("records") or []
        except (ValueError, AttributeError):
            records = []
        if records:
            results = [{"success": False, "errors": [error.record_error()]} for _ in records]
            if method == "PATCH":
                results = [{"id": r.get("Id") if isinstance(r, dict) else None, **res}
                           for r, res in zip(records, results)]
            return Reply(200, results)
    return Reply.error(error)


@guarded
async def versions(request: Request) -> Response:
    base = request.url.path.rstrip("/")
    return JSONResponse([{"label": f"v{v}", "url": f"{base}/v{v}", "version": v}
                         for v in ("57.0", "58.0", "59.0", "60.0", "61.0", "62.0")])


def build_app(orgs: Orgs) -> Starlette:
    routes = [
        Route("/services/data", versions, methods=["GET"]),
        Route("/services/data/", versions, methods=["GET"]),
        Route("/services/data/v{version}", data_api, methods=["GET", "POST", "PATCH", "DELETE", "PUT", "HEAD"]),
        Route("/services/data/v{version}/{rest:path}", data_api,
              methods=["GET", "POST", "PATCH", "DELETE", "PUT", "HEAD"]),
        Route("/services/Soap/u/{version}", guarded(auth.soap_login), methods=["POST"]),
        Route("/services/Soap/u/{version}/", guarded(auth.soap_login), methods=["POST"]),
        Route("/services/oauth2/authorize", guarded(authorize.authorize_page), methods=["GET", "POST"]),
        Route("/services/oauth2/token", guarded(oauth.token), methods=["POST"]),
        Route("/services/oauth2/revoke", guarded(oauth.revoke), methods=["GET", "POST"]),
        Route("/services/oauth2/userinfo", guarded(oauth.userinfo), methods=["GET", "POST"]),
        Route("/id/{org_id}/{user_id}", guarded(oauth.userinfo), methods=["GET", "POST"]),
        *[Route(path, guarded(endpoint), methods=methods)
          for path, endpoint, methods in (*admin.ROUTES, *admin_orgs.ROUTES)],
    ]
    app = Starlette(routes=routes)
    app.state.orgs = orgs
    return app
