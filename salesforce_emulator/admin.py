"""The /_admin/ API of one org for tests and demos: reset, state, records, limits, features, rules, faults."""
from __future__ import annotations

import itertools
import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .errors import ApiError
from .org import DEFAULT_ORG
from .writes import Writer

_RULE_IDS = itertools.count(1)
_LOOPBACK = ("127.0.0.1", "::1", "localhost", "testclient")


def ok(body: object, status: int = 200) -> Response:
    return JSONResponse(body, status_code=status)


def refuse(message: str, status: int = 400) -> Response:
    return JSONResponse({"error": message}, status_code=status)


async def _body(request: Request) -> object:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise BadInput(f"body is not JSON: {exc}") from None


class BadInput(Exception):
    """An admin request that makes no sense: 400 with the reason."""


def registry_endpoint(handler):
    """Loopback only, JSON errors for bad input, the lock of every org held; `handler(request, orgs, body)`."""
    async def run(request: Request) -> Response:
        client = request.client.host if request.client else "127.0.0.1"
        if client not in _LOOPBACK:
            return refuse("the admin API only answers loopback clients", 403)
        orgs = request.app.state.orgs
        try:
            body = await _body(request) if request.method in ("POST", "PUT", "PATCH") else None
            with orgs.lock:
                return handler(request, orgs, body)
        except BadInput as exc:
            return refuse(str(exc))
        except ApiError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
    return run


def admin_endpoint(handler):
    """An endpoint of one org, `handler(request, org, body)`: the path's `{org}`, else the default org."""
    def in_org(request: Request, orgs, body) -> Response:
        name = request.path_params.get("org", DEFAULT_ORG)
        org = orgs.get(name)
        if org is None:
            return refuse(f"no org named {name}", 404)
        return handler(request, org, body)
    return registry_endpoint(in_org)


def both_scopes(table: list) -> list:
    """Each endpoint of one org at /_admin/{path} (the default org) and at /_admin/orgs/{org}/{path}."""
    return [(f"{prefix}{path}", admin_endpoint(handler), methods)
            for prefix in ("/_admin/", "/_admin/orgs/{org}/") for path, handler, methods in table]


def _catalog_type(org, name: str):
    obj = org.catalog.get(name) or next((o for n, o in org.catalog.items() if n.lower() == name.lower()), None)
    if obj is None:
        raise BadInput(f"unknown sobject {name}")
    return obj


def _public(obj, record: dict) -> dict:
    return {name: record.get(name) for name, f in obj.fields.items() if not f.write_only}


# handlers ---------------------------------------------------------------------------

def reset(request, org, body):
    request.app.state.orgs.reset(org)
    return ok({"ok": True})


def state(request, org, body):
    return ok({
        "org": org.name, "organization_id": org.org_id, "session_ttl_seconds": org.session_ttl,
        "token_grants": dict(org.token_grants),
        "api_calls": org.api_used, "api_calls_by_route": dict(org.calls_by_route), "api_limit": org.api_limit,
        "features": dict(org.features), "counts": org.counts(),
        "faults": [f.describe() for f in org.faults.faults.values()],
        "validation_rules": list(org.validation_rules.values()),
        "api_user_id": org.api_user_id, "admin_user_id": org.admin_user_id,
        "failed_logins": dict(org.failed_logins), "lockout_after": org.settings.lockout_after,
        "locked_out": sorted(u for u in org.failed_logins if org.locked_out(u)),
    })


def seed(request, org, body):
    obj = _catalog_type(org, request.path_params["sobject"])
    records = body if isinstance(body, list) else [body]
    if not all(isinstance(r, dict) for r in records):
        raise BadInput("body must be a record object or a list of them")
    if obj.name == "User":
        _check_usernames(request, org, records)
    writer = Writer(org, actor_id=org.admin_user_id, privileged=True, rules=False)
    ids = []
    for index, record in enumerate(records):
        try:
            ids.append(writer.create(obj.name, record))
        except ApiError as error:
            writer.rollback()
            return JSONResponse([{**error.body()[0], "index": index}], status_code=400)
    return ok({"ids": ids}, 201)


def _check_usernames(request, org, records: list[dict]) -> None:
    """Usernames are unique across every org, as in Salesforce (within one org the unique index says so)."""
    for record in records:
        username = next((v for k, v in record.items() if k.lower() == "username"), None)
        owner = request.app.state.orgs.username_owner(username) if isinstance(username, str) else None
        if owner is not None and owner is not org:
            raise ApiError("DUPLICATE_USERNAME", "Duplicate Username.The username already exists in this or "
                           "another Salesforce organization. Usernames must be unique across all Salesforce "
                           "organizations.", ["Username"])


def list_records(request, org, body):
    obj = _catalog_type(org, request.path_params["sobject"])
    filters = []
    for key, value in request.query_params.items():
        field = obj.field(key)
        if field is None:
            raise BadInput(f"unknown field {key} on {obj.name}")
        filters.append((field.name, value.lower()))
    out = []
    for record in org.records[obj.name].values():
        if all(_text(record.get(name)) == wanted for name, wanted in filters):
            out.append(_public(obj, record))
    return ok({"records": out})


def _text(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).lower()


def one_record(request, org, body):
    obj = _catalog_type(org, request.path_params["sobject"])
    record_id = org.normalize_id(request.path_params["record_id"])
    record = org.records[obj.name].get(record_id) if record_id else None
    if record is None:
        return refuse(f"no {obj.name} with id {request.path_params['record_id']}", 404)
    if request.method == "GET":
        return ok(_public(obj, record))
    writer = Writer(org, actor_id=_acting_user(request, org), privileged=True, rules=False)
    if request.method == "DELETE":
        writer.delete(obj.name, record_id)
        return ok({"ok": True})
    if not isinstance(body, dict):
        raise BadInput("body must be an object of field values")
    if obj.name == "User":
        _check_usernames(request, org, [body])
    writer.update(obj.name, record_id, body)
    return ok(_public(obj, org.records[obj.name][record_id]))


def _acting_user(request, org) -> str:
    """Who a person's edit is made as: `?as_user=<User Id>` (say, someone signed in as the integration
    user), else the org's admin user."""
    wanted = request.query_params.get("as_user")
    if wanted is None:
        return org.admin_user_id
    user_id = org.normalize_id(wanted)
    if user_id is None or user_id not in org.records["User"]:
        raise BadInput(f"as_user: no User with id {wanted!r} in this org")
    return user_id


def convert_lead(request, org, body):
    """Convert a Lead as a person in Salesforce does (`{"contact_id"?, "account_id"?, "converted_on"?}`):
    Salesforce's REST API has no conversion call, so tests and demos convert here."""
    lead_id = org.normalize_id(request.path_params["lead_id"])
    if lead_id is None or lead_id not in org.records["Lead"]:
        return refuse(f"no Lead with id {request.path_params['lead_id']}", 404)
    body = body or {}
    if not isinstance(body, dict):
        raise BadInput("body must be an object")
    unknown = set(body) - {"contact_id", "account_id", "converted_on"}
    if unknown:
        raise BadInput(f"unknown keys: {', '.join(sorted(unknown))} (contact_id, account_id, converted_on)")
    for name in ("contact_id", "account_id", "converted_on"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise BadInput(f"{name} must be a string")
    writer = Writer(org, actor_id=_acting_user(request, org), privileged=True, rules=False)
    return ok(writer.convert_lead(lead_id, contact_id=body.get("contact_id"), account_id=body.get("account_id"),
                                  converted_on=body.get("converted_on")))


def reset_api_calls(request, org, body):
    org.api_used = 0
    org.calls_by_route.clear()
    return ok({"api_calls": 0})


def limits(request, org, body):
    if request.method == "PUT":
        if not isinstance(body, dict):
            raise BadInput("body must be an object")
        for key, attr in (("daily_api_requests", "api_limit"), ("used", "api_used")):
            if key in body:
                value = body[key]
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise BadInput(f"{key} must be a non-negative integer")
                setattr(org, attr, value)
    return ok({"daily_api_requests": org.api_limit, "used": org.api_used})


def features(request, org, body):
    if request.method == "PUT":
        if not isinstance(body, dict):
            raise BadInput("body must be an object")
        for key, value in body.items():
            if key not in org.features or not isinstance(value, bool):
                raise BadInput(f"unknown feature or non-boolean value: {key}")
            org.features[key] = value
    return ok(dict(org.features))


_OPERATORS = ("contains", "equals", "blank", "not_blank", "always")


def validation_rules(request, org, body):
    if request.method == "GET":
        return ok({"rules": list(org.validation_rules.values())})
    if request.method == "DELETE":
        org.validation_rules.clear()
        return ok({"ok": True})
    if not isinstance(body, dict):
        raise BadInput("body must be an object")
    obj = _catalog_type(org, str(body.get("sobject") or ""))
    operator = body.get("operator")
    if operator not in _OPERATORS:
        raise BadInput(f"operator must be one of {', '.join(_OPERATORS)}")
    field = obj.field(str(body.get("field") or ""))
    if field is None and operator != "always":
        raise BadInput(f"unknown field {body.get('field')} on {obj.name}")
    rule_id = f"rule-{next(_RULE_IDS)}"
    org.validation_rules[rule_id] = {
        "id": rule_id, "sobject": obj.name, "field": field.name if field else None, "operator": operator,
        "value": body.get("value"), "message": body.get("message") or "Validation rule failed",
    }
    return ok({"id": rule_id}, 201)


def delete_rule(request, org, body):
    if org.validation_rules.pop(request.path_params["rule_id"], None) is None:
        return refuse("no such rule", 404)
    return ok({"ok": True})


def faults(request, org, body):
    if request.method == "GET":
        return ok({"faults": [f.describe() for f in org.faults.faults.values()]})
    if request.method == "DELETE":
        org.faults.clear()
        return ok({"ok": True})
    if not isinstance(body, dict):
        raise BadInput("body must be an object")
    try:
        fault = org.faults.add(body)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    return ok({"id": fault.id}, 201)


def delete_fault(request, org, body):
    if org.faults.faults.pop(request.path_params["fault_id"], None) is None:
        return refuse("no such fault", 404)
    return ok({"ok": True})


ROUTES = both_scopes([
    ("reset", reset, ["POST"]),
    ("state", state, ["GET"]),
    ("records/{sobject}", seed, ["POST"]),
    ("records/{sobject}", list_records, ["GET"]),
    ("records/{sobject}/{record_id}", one_record, ["GET", "PATCH", "DELETE"]),
    ("leads/{lead_id}/convert", convert_lead, ["POST"]),
    ("api-calls/reset", reset_api_calls, ["POST"]),
    ("limits", limits, ["GET", "PUT"]),
    ("features", features, ["GET", "PUT"]),
    ("validation-rules", validation_rules, ["GET", "POST", "DELETE"]),
    ("validation-rules/{rule_id}", delete_rule, ["DELETE"]),
    ("faults", faults, ["GET", "POST", "DELETE"]),
    ("faults/{fault_id}", delete_fault, ["DELETE"]),
])
