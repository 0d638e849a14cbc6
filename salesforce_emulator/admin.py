"""The /_admin/ API for tests and demos: reset, state, records, limits, features, validation rules, faults."""
from __future__ import annotations

import itertools
import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .errors import ApiError
from .writes import Writer

_RULE_IDS = itertools.count(1)
_LOOPBACK = ("127.0.0.1", "::1", "localhost", "testclient")


def _ok(body: object, status: int = 200) -> Response:
    return JSONResponse(body, status_code=status)


def _bad(message: str, status: int = 400) -> Response:
    return JSONResponse({"error": message}, status_code=status)


async def _body(request: Request) -> object:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise _AdminError(f"body is not JSON: {exc}") from None


class _AdminError(Exception):
    pass


def admin_endpoint(handler):
    """Loopback only, JSON errors for bad input, state lock held."""
    async def run(request: Request) -> Response:
        client = request.client.host if request.client else "127.0.0.1"
        if client not in _LOOPBACK:
            return _bad("the admin API only answers loopback clients", 403)
        org = request.app.state.org
        try:
            body = await _body(request) if request.method in ("POST", "PUT", "PATCH") else None
            with org.lock:
                return handler(request, org, body)
        except _AdminError as exc:
            return _bad(str(exc))
        except ApiError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
    return run


def _catalog_type(org, name: str):
    obj = org.catalog.get(name) or next((o for n, o in org.catalog.items() if n.lower() == name.lower()), None)
    if obj is None:
        raise _AdminError(f"unknown sobject {name}")
    return obj


def _public(obj, record: dict) -> dict:
    return {name: record.get(name) for name, f in obj.fields.items() if not f.write_only}


# handlers ---------------------------------------------------------------------------

def reset(request, org, body):
    org.reset()
    return _ok({"ok": True})


def state(request, org, body):
    return _ok({
        "api_calls": org.api_used, "api_calls_by_route": dict(org.calls_by_route), "api_limit": org.api_limit,
        "features": dict(org.features), "counts": org.counts(),
        "faults": [f.describe() for f in org.faults.faults.values()],
        "validation_rules": list(org.validation_rules.values()),
        "api_user_id": org.api_user_id, "admin_user_id": org.admin_user_id,
    })


def seed(request, org, body):
    obj = _catalog_type(org, request.path_params["sobject"])
    records = body if isinstance(body, list) else [body]
    if not all(isinstance(r, dict) for r in records):
        raise _AdminError("body must be a record object or a list of them")
    writer = Writer(org, actor_id=org.admin_user_id, privileged=True, rules=False)
    ids = []
    for index, record in enumerate(records):
        try:
            ids.append(writer.create(obj.name, record))
        except ApiError as error:
            writer.rollback()
            return JSONResponse([{**error.body()[0], "index": index}], status_code=400)
    return _ok({"ids": ids}, 201)


def list_records(request, org, body):
    obj = _catalog_type(org, request.path_params["sobject"])
    filters = []
    for key, value in request.query_params.items():
        field = obj.field(key)
        if field is None:
            raise _AdminError(f"unknown field {key} on {obj.name}")
        filters.append((field.name, value.lower()))
    out = []
    for record in org.records[obj.name].values():
        if all(_text(record.get(name)) == wanted for name, wanted in filters):
            out.append(_public(obj, record))
    return _ok({"records": out})


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
        return _bad(f"no {obj.name} with id {request.path_params['record_id']}", 404)
    if request.method == "GET":
        return _ok(_public(obj, record))
    writer = Writer(org, actor_id=org.admin_user_id, privileged=True, rules=False)
    if request.method == "DELETE":
        writer.delete(obj.name, record_id)
        return _ok({"ok": True})
    if not isinstance(body, dict):
        raise _AdminError("body must be an object of field values")
    writer.update(obj.name, record_id, body)
    return _ok(_public(obj, org.records[obj.name][record_id]))


def reset_api_calls(request, org, body):
    org.api_used = 0
    org.calls_by_route.clear()
    return _ok({"api_calls": 0})


def limits(request, org, body):
    if request.method == "PUT":
        if not isinstance(body, dict):
            raise _AdminError("body must be an object")
        for key, attr in (("daily_api_requests", "api_limit"), ("used", "api_used")):
            if key in body:
                value = body[key]
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise _AdminError(f"{key} must be a non-negative integer")
                setattr(org, attr, value)
    return _ok({"daily_api_requests": org.api_limit, "used": org.api_used})


def features(request, org, body):
    if request.method == "PUT":
        if not isinstance(body, dict):
            raise _AdminError("body must be an object")
        for key, value in body.items():
            if key not in org.features or not isinstance(value, bool):
                raise _AdminError(f"unknown feature or non-boolean value: {key}")
            org.features[key] = value
    return _ok(dict(org.features))


_OPERATORS = ("contains", "equals", "blank", "not_blank", "always")


def validation_rules(request, org, body):
    if request.method == "GET":
        return _ok({"rules": list(org.validation_rules.values())})
    if request.method == "DELETE":
        org.validation_rules.clear()
        return _ok({"ok": True})
    if not isinstance(body, dict):
        raise _AdminError("body must be an object")
    obj = _catalog_type(org, str(body.get("sobject") or ""))
    operator = body.get("operator")
    if operator not in _OPERATORS:
        raise _AdminError(f"operator must be one of {', '.join(_OPERATORS)}")
    field = obj.field(str(body.get("field") or ""))
    if field is None and operator != "always":
        raise _AdminError(f"unknown field {body.get('field')} on {obj.name}")
    rule_id = f"rule-{next(_RULE_IDS)}"
    org.validation_rules[rule_id] = {
        "id": rule_id, "sobject": obj.name, "field": field.name if field else None, "operator": operator,
        "value": body.get("value"), "message": body.get("message") or "Validation rule failed",
    }
    return _ok({"id": rule_id}, 201)


def delete_rule(request, org, body):
    if org.validation_rules.pop(request.path_params["rule_id"], None) is None:
        return _bad("no such rule", 404)
    return _ok({"ok": True})


def faults(request, org, body):
    if request.method == "GET":
        return _ok({"faults": [f.describe() for f in org.faults.faults.values()]})
    if request.method == "DELETE":
        org.faults.clear()
        return _ok({"ok": True})
    if not isinstance(body, dict):
        raise _AdminError("body must be an object")
    try:
        fault = org.faults.add(body)
    except ValueError as exc:
        raise _AdminError(str(exc)) from None
    return _ok({"id": fault.id}, 201)


def delete_fault(request, org, body):
    if org.faults.faults.pop(request.path_params["fault_id"], None) is None:
        return _bad("no such fault", 404)
    return _ok({"ok": True})


ROUTES = [
    ("/_admin/reset", admin_endpoint(reset), ["POST"]),
    ("/_admin/state", admin_endpoint(state), ["GET"]),
    ("/_admin/records/{sobject}", admin_endpoint(seed), ["POST"]),
    ("/_admin/records/{sobject}", admin_endpoint(list_records), ["GET"]),
    ("/_admin/records/{sobject}/{record_id}", admin_endpoint(one_record), ["GET", "PATCH", "DELETE"]),
    ("/_admin/api-calls/reset", admin_endpoint(reset_api_calls), ["POST"]),
    ("/_admin/limits", admin_endpoint(limits), ["GET", "PUT"]),
    ("/_admin/features", admin_endpoint(features), ["GET", "PUT"]),
    ("/_admin/validation-rules", admin_endpoint(validation_rules), ["GET", "POST", "DELETE"]),
    ("/_admin/validation-rules/{rule_id}", admin_endpoint(delete_rule), ["DELETE"]),
    ("/_admin/faults", admin_endpoint(faults), ["GET", "POST", "DELETE"]),
    ("/_admin/faults/{fault_id}", admin_endpoint(delete_fault), ["DELETE"]),
]
