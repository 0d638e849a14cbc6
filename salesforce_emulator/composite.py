"""composite/ resources: sObject collections (create, update, upsert, delete) and composite subrequests."""
from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from .errors import ApiError, not_found
from .reply import Reply, json_object
from .validation import ParseError
from .writes import Writer, find_by_field

MAX_COLLECTION = 200
MAX_SUBREQUESTS = 25
#: of a composite request's subrequests, at most this many may be queries or sObject collections
MAX_HEAVY_SUBREQUESTS = 5
#: a create or update collection is saved in chunks, a new one at every change of type; more is refused
MAX_CHUNKS = 10
_ROLLED_BACK = ApiError("ALL_OR_NONE_OPERATION_ROLLED_BACK", "Record rolled back because not all records "
                        "were valid and the request was using AllOrNone header")
_HALTED = ApiError("PROCESSING_HALTED", "The transaction was rolled back since another operation in the same "
                   "transaction failed.")


def route(api, method, version, segs, params, raw) -> Reply:
    if not segs:
        if method != "POST":
            raise ApiError("METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are POST", status=405)
        return composite_graph(api, version, json_object(raw))
    if segs[0] != "sobjects":
        raise not_found()
    if len(segs) == 1:
        if method == "DELETE":
            ids = [i for i in (params.get("ids") or "").split(",") if i]
            return _collection(api, "DELETE", ids, str(params.get("allOrNone", "false")).lower() == "true")
        if method not in ("POST", "PATCH"):
            raise ApiError("METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are "
                           "POST,PATCH,DELETE", status=405)
        body = json_object(raw)
        return _collection(api, method, _records(body), bool(body.get("allOrNone", False)))
    if len(segs) == 3 and method == "PATCH":
        obj = api.org.sobject(segs[1])
        if obj is None:
            raise not_found()
        field = obj.field(segs[2])
        if field is None or not (field.external_id or field.name == "Id"):
            raise ApiError("INVALID_FIELD", f"Field {segs[2]} is not an external id field on {obj.name}", [segs[2]])
        body = json_object(raw)
        return _collection(api, "UPSERT", _records(body), bool(body.get("allOrNone", False)), (obj, field))
    raise not_found()


def _records(body: dict) -> list:
    records = body.get("records")
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ApiError("JSON_PARSER_ERROR", "Cannot deserialize 'records': expected an array of sObjects")
    return records


def _collection(api, kind: str, items: list, all_or_none: bool, upsert_key=None) -> Reply:
    if len(items) > MAX_COLLECTION:
        raise ApiError("EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records into this call")
    if not items:
        raise ApiError("INVALID_FIELD", "No SObject records were provided for this call")
    if kind in ("POST", "PATCH") and chunk_count(items) > MAX_CHUNKS:
        raise ApiError("INVALID_BATCH_REQUEST", "Cannot have more than 10 chunks in a single operation. "
                       "Please rearrange the data to reduce chunking.")
    writer = api.writer()
    start = writer.savepoint()
    results: list[dict] = []
    failed = False
    pending_keys = _batch_duplicates(items, upsert_key) if upsert_key else set()
    for item in items:
        try:
            results.append(_one(api, writer, kind, item, upsert_key, pending_keys))
        except ParseError as error:
            # a JSON type mismatch fails the whole request, as Salesforce's deserializer does
            writer.rollback(start)
            raise error
        except ApiError as error:
            failed = True
            result = {"success": False, "errors": [error.record_error()]}
            if kind != "POST":
                result = {"id": _item_id(item, kind), **result}
            results.append(result)
    if failed and all_or_none:
        writer.rollback(start)
        results = [r if not r["success"] else _rolled_back(r, kind) for r in results]
    return Reply(200, results)


def chunk_count(records: list) -> int:
    """How many chunks Salesforce cuts a collection into: `{a1, a2, c1, a3}` is three."""
    chunks, previous = 0, object()
    for record in records:
        attributes = record.get("attributes") if isinstance(record, dict) else None
        name = attributes.get("type") if isinstance(attributes, dict) else None
        kind = name.lower() if isinstance(name, str) else None
        if kind != previous:
            chunks += 1
            previous = kind
    return chunks


def _rolled_back(result: dict, kind: str) -> dict:
    """A record that was fine but undone; creates (and upsert creates) have no id left to report."""
    out = {"success": False, "errors": [_ROLLED_BACK.record_error()]}
    if kind == "POST":
        return out
    return {"id": None if result.get("created") else result["id"], **out}


def _item_id(item, kind):
    if kind == "DELETE":
        return item
    return item.get("Id") if isinstance(item, dict) else None


def _type_of(api, item: dict, fallback=None):
    attributes = item.get("attributes")
    name = attributes.get("type") if isinstance(attributes, dict) else None
    if not name:
        if fallback is not None:
            return fallback
        raise ApiError("INVALID_TYPE", "Must send a concrete entity type.")
    obj = api.org.sobject(name)
    if obj is None:
        raise ApiError("INVALID_TYPE", f"sObject type '{name}' is not supported.")
    return obj


def _one(api, writer: Writer, kind: str, item, upsert_key, duplicates: set) -> dict:
    if kind == "DELETE":
        record_id = api.org.normalize_id(item)
        obj = api.org.sobject(api.org.type_of(record_id) or "") if record_id else None
        if obj is None:
            raise ApiError("MALFORMED_ID" if record_id is None else "INVALID_CROSS_REFERENCE_KEY",
                           f"invalid record id: {item}" if record_id is None else "invalid cross reference id")
        writer.delete(obj.name, record_id)
        return {"id": record_id, "success": True, "errors": []}
    if kind == "POST":
        obj = _type_of(api, item)
        return {"id": writer.create(obj.name, item), "success": True, "errors": []}
    if kind == "PATCH":
        obj = _type_of(api, item)
        body = {k: v for k, v in item.items() if k.lower() != "id"}
        record_id = item.get("Id") or item.get("id")
        if not record_id:
            raise ApiError("MISSING_ARGUMENT", "Id not specified in an update call")
        normalized = api.org.normalize_id(record_id)
        if normalized is None:
            raise ApiError("MALFORMED_ID", f"{obj.label} ID: id value of incorrect type: {record_id}", ["Id"])
        if api.org.type_of(normalized) != obj.name or normalized not in api.org.records[obj.name]:
            raise ApiError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
        if api.org.records[obj.name][normalized]["IsDeleted"]:
            raise ApiError("ENTITY_IS_DELETED", "entity is deleted")
        writer.update(obj.name, normalized, body)
        return {"id": normalized, "success": True, "errors": []}
    obj, field = upsert_key
    item_obj = _type_of(api, item, fallback=obj)
    if item_obj.name != obj.name:
        raise ApiError("INVALID_TYPE", f"All records must be of type {obj.name}")
    key = next((k for k in item if k.lower() == field.name.lower()), None)
    value = item.get(key) if key else None
    if value in (None, ""):
        raise ApiError("MISSING_ARGUMENT", f"{field.name} not specified")
    if str(value).lower() in duplicates:
        raise ApiError("DUPLICATE_EXTERNAL_ID", f"Duplicate external id specified: {value}", [field.name])
    matches = find_by_field(api.org, obj, field, value)
    if len(matches) > 1:
        raise ApiError("DUPLICATE_EXTERNAL_ID", f"{field.label}: more than one record found for external id "
                       f"field: {matches}", [field.name])
    if matches:
        writer.update(obj.name, matches[0], {k: v for k, v in item.items() if k != key})
        return {"id": matches[0], "success": True, "errors": [], "created": False}
    if field.name == "Id":
        raise ApiError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
    return {"id": writer.create(obj.name, item), "success": True, "errors": [], "created": True}


def _batch_duplicates(items: list, upsert_key) -> set:
    _, field = upsert_key
    seen: dict[str, int] = {}
    for item in items:
        value = next((v for k, v in item.items() if k.lower() == field.name.lower()), None)
        if value not in (None, ""):
            seen[str(value).lower()] = seen.get(str(value).lower(), 0) + 1
    return {value for value, count in seen.items() if count > 1}


# composite (subrequests with references) ----------------------------------------------------

def composite_graph(api, version: str, body: dict) -> Reply:
    subrequests = body.get("compositeRequest")
    if not isinstance(subrequests, list) or not subrequests:
        raise ApiError("JSON_PARSER_ERROR", "compositeRequest must be a non-empty array")
    if len(subrequests) > MAX_SUBREQUESTS:
        raise ApiError("LIMIT_EXCEEDED", f"Composite requests may contain at most {MAX_SUBREQUESTS} subrequests")
    if sum(_is_heavy(sub) for sub in subrequests) > MAX_HEAVY_SUBREQUESTS:
        raise ApiError("LIMIT_EXCEEDED", f"Composite requests may contain at most {MAX_HEAVY_SUBREQUESTS} "
                       "subrequests that are queries or sObject collections")
    all_or_none = bool(body.get("allOrNone", False))
    writer = Writer(api.org, actor_id=api.actor_id)
    api.shared_writer = writer
    outputs: dict[str, object] = {}
    responses: list[dict] = []
    try:
        for sub in subrequests:
            reference_id = sub.get("referenceId") if isinstance(sub, dict) else None
            status, result, headers = _subrequest(api, sub, outputs)
            responses.append({"body": result, "httpHeaders": headers, "httpStatusCode": status,
                              "referenceId": reference_id})
            if status < 300 and reference_id:
                outputs[reference_id] = result
            if status >= 400 and all_or_none:
                writer.rollback()
                responses = [r if r["httpStatusCode"] >= 400 else {**r, "body": _HALTED.body(), "httpHeaders": {},
                                                                 "httpStatusCode": 400} for r in responses]
                for rest in subrequests[len(responses):]:
                    responses.append({"body": _HALTED.body(), "httpHeaders": {}, "httpStatusCode": 400,
                                      "referenceId": rest.get("referenceId") if isinstance(rest, dict) else None})
                break
    finally:
        api.shared_writer = None
    return Reply(200, {"compositeResponse": responses})


def _is_heavy(sub) -> bool:
    """A query (query/, queryAll/) or sObject collection subrequest."""
    url = sub.get("url") if isinstance(sub, dict) else None
    if not isinstance(url, str):
        return False
    path = urlsplit(url).path
    rest = path.split("/", 4)[-1] if path.startswith("/services/data/v") else path
    return rest.startswith(("query", "queryAll", "composite/sobjects"))


def _subrequest(api, sub, outputs) -> tuple[int, object, dict]:
    if not isinstance(sub, dict) or not sub.get("url") or not sub.get("method"):
        error = ApiError("INVALID_INPUT", "Each subrequest needs method, url and referenceId")
        return 400, error.body(), {}
    try:
        url = _substitute(sub["url"], outputs, in_url=True)
        payload = _substitute(sub.get("body"), outputs) if "body" in sub else b""
    except ApiError as error:
        return 400, error.body(), {}
    parts = urlsplit(url)
    prefix = "/services/data/v"
    if not parts.path.startswith(prefix) or "/" not in parts.path[len(prefix):]:
        return 404, ApiError("NOT_FOUND", "The requested resource does not exist").body(), {}
    version, _, rest = parts.path[len(prefix):].partition("/")
    if rest.strip("/") == "composite" or (rest.startswith("composite/") and not rest.startswith("composite/sobjects")):
        return 400, ApiError("INVALID_INPUT", "composite subrequests can't be nested").body(), {}
    params = dict(parse_qsl(parts.query))
    reply, _ = api.dispatch(sub["method"].upper(), version, rest, params, sub.get("httpHeaders") or {}, payload)
    headers = {}
    if reply.status == 201 and isinstance(reply.body, dict) and reply.body.get("id"):
        headers["Location"] = f"{parts.path.rstrip('/')}/{reply.body['id']}"
    return reply.status, reply.body, headers


def _substitute(value, outputs, in_url: bool = False):
    """Replace every `@{ref.path}` in strings of the url or body with the referenced result's value."""
    if isinstance(value, dict):
        return {k: _substitute(v, outputs) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, outputs) for v in value]
    if not isinstance(value, str) or "@{" not in value:
        return value
    out, i = [], 0
    while True:
        start = value.find("@{", i)
        if start < 0:
            out.append(value[i:])
            break
        end = value.find("}", start)
        if end < 0:
            raise ApiError("INVALID_INPUT", f"Unterminated reference in {value}")
        out.append(value[i:start])
        resolved = _lookup(value[start + 2:end], outputs)
        if value == value[start:end + 1] and not in_url:
            return resolved  # a whole-string reference keeps its JSON type
        out.append(str(resolved))
        i = end + 1
    return "".join(out)


def _lookup(expression: str, outputs) -> object:
    """Value of `ref.path` (e.g. `acct.id`, `found.records[0].Id`) in an earlier subrequest's body."""
    steps = _steps(expression)
    name = steps[0]
    if name not in outputs:
        raise ApiError("PROCESSING_HALTED", f"Invalid reference specified. No value for {expression} found in "
                       f"{name}. Provided referenceId ({name}) is not valid.")
    current = outputs[name]
    try:
        for step in steps[1:]:
            current = current[int(step[1:-1])] if step.startswith("[") else current[step]
    except (KeyError, IndexError, TypeError, ValueError):
        raise ApiError("PROCESSING_HALTED", f"Invalid reference specified. No value for {expression} found "
                       f"in {name}.") from None
    return current


def _steps(path: str) -> list[str]:
    """`records[0].Id` → ['records', '[0]', 'Id']."""
    steps: list[str] = []
    for part in path.split(".") if path else []:
        while "[" in part:
            head, _, rest = part.partition("[")
            if head:
                steps.append(head)
            index, _, part = rest.partition("]")
            steps.append(f"[{index}]")
        if part:
            steps.append(part)
    return steps
