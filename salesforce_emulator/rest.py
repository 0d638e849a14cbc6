"""The REST data API below /services/data/vXX.X/: routing and the sobject, describe and limits resources."""
from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from . import composite
from .clock import parse_datetime
from .errors import ApiError, not_found
from .queries import query_more, run_query
from .reply import Reply, json_object
from .writes import Writer, find_by_field


def _segments(path: str) -> list[str]:
    stripped = path.strip("/")
    return [unquote(s) for s in stripped.split("/")] if stripped else []


def _method_not_allowed(method: str, allowed: str) -> ApiError:
    return ApiError("METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are {allowed}", status=405)


class DataApi:
    """Dispatches one data-API request (HTTP or composite subrequest) against the org."""

    def __init__(self, org, actor_id: str | None = None):
        self.org = org
        #: the signed-in user: the creator and last modifier of what this request writes
        self.actor_id = actor_id or org.api_user_id
        #: set while a composite request runs so all its writes share one undo journal
        self.shared_writer: Writer | None = None

    def writer(self) -> Writer:
        return self.shared_writer or Writer(self.org, actor_id=self.actor_id)

    def dispatch(self, method: str, version: str, path: str, params: dict, headers, raw_body) -> tuple[Reply, str]:
        """Returns the reply and a route label such as `POST sobjects/Contact` for the call counters."""
        segments = _segments(path)
        route = f"{method} {self.route_label(path)}"
        try:
            return self._route(method, version, segments, params, headers, raw_body), route
        except ApiError as error:
            return Reply.error(error), route

    @staticmethod
    def route_label(path: str) -> str:
        """`sobjects/Contact/{id}`-style name of a path, for per-route call counts."""
        segments = _segments(path)
        if not segments:
            return "(root)"
        head = segments[0]
        if head in ("query", "queryAll"):
            return head + ("/{locator}" if len(segments) > 1 else "")
        if head == "sobjects" and len(segments) >= 3 and segments[2] != "describe":
            return "/".join(segments[:2] + (["{id}"] if len(segments) == 3 else [segments[2], "{value}"]))
        return "/".join(segments)

    def _route(self, method, version, segs, params, headers, raw) -> Reply:
        n = len(segs)
        head = segs[0] if segs else ""
        if n == 0:
            return self._only(method, "GET", lambda: Reply(200, self._resources(version)))
        if head in ("query", "queryAll") and n <= 2:
            include_deleted = head == "queryAll"
            if n == 2:
                return self._only(method, "GET", lambda: query_more(self.org, version, segs[1]))
            return self._only(method, "GET", lambda: run_query(
                self.org, version, params.get("q"), include_deleted=include_deleted, headers=headers))
        if head == "limits" and n == 1:
            return self._only(method, "GET", lambda: Reply(200, self._limits()))
        if head == "sobjects":
            return self._sobjects(method, version, segs[1:], params, raw)
        if head == "composite":
            return composite.route(self, method, version, segs[1:], params, raw)
        raise not_found()

    @staticmethod
    def _only(method: str, allowed: str, handler) -> Reply:
        if method != allowed:
            raise _method_not_allowed(method, allowed)
        return handler()

    # sobjects -------------------------------------------------------------------

    def _type(self, name: str):
        obj = self.org.sobject(name)
        if obj is None:
            raise not_found()
        return obj

    def _sobjects(self, method, version, segs, params, raw) -> Reply:
        if not segs:
            return self._only(method, "GET", lambda: Reply(200, {
                "encoding": "UTF-8", "maxBatchSize": 200,
                "sobjects": [obj.summary(version) for obj in self.org.visible()]}))
        obj = self._type(segs[0])
        if len(segs) == 1:
            if method == "GET":
                return Reply(200, {"objectDescribe": obj.summary(version), "recentItems": []})
            if method == "POST":
                record_id = self.writer().create(obj.name, json_object(raw))
                return Reply(201, {"id": record_id, "success": True, "errors": []})
            raise _method_not_allowed(method, "GET,POST")
        if len(segs) == 2 and segs[1] == "describe":
            return self._only(method, "GET", lambda: Reply(200, obj.describe(version)))
        if len(segs) == 2 and segs[1] in ("updated", "deleted"):
            return self._only(method, "GET", lambda: Reply(200, changed_since(self.org, obj, segs[1], params)))
        if len(segs) == 2:
            return self._by_id(method, version, obj, segs[1], params, raw)
        if len(segs) == 3:
            return self._by_external_id(method, version, obj, segs[1], segs[2], params, raw)
        raise not_found()

    def _by_id(self, method, version, obj, record_id, params, raw) -> Reply:
        writer = self.writer()
        if method == "GET":
            return Reply(200, self.render(obj, writer.existing(obj, record_id), version, params.get("fields")))
        if method == "PATCH":
            writer.update(obj.name, record_id, json_object(raw))
            return Reply(204)
        if method == "DELETE":
            writer.delete(obj.name, record_id)
            return Reply(204)
        raise _method_not_allowed(method, "GET,PATCH,DELETE")

    def _by_external_id(self, method, version, obj, field_name, value, params, raw) -> Reply:
        field = obj.field(field_name)
        if field is None or not (field.external_id or field.name == "Id" or
                                 (field.id_lookup and method == "GET")):
            raise ApiError("NOT_FOUND", f"Provided external ID field does not exist or is not accessible: "
                           f"{field_name}", status=404)
        matches = find_by_field(self.org, obj, field, value)
        if len(matches) > 1:
            return Reply(300, [f"/services/data/v{version}/sobjects/{obj.name}/{rid}" for rid in matches])
        writer = self.writer()
        if method == "GET":
            if not matches:
                raise not_found()
            return Reply(200, self.render(obj, self.org.records[obj.name][matches[0]], version, params.get("fields")))
        if method == "DELETE":
            if not matches:
                raise not_found()
            writer.delete(obj.name, matches[0])
            return Reply(204)
        if method != "PATCH":
            raise _method_not_allowed(method, "GET,PATCH,DELETE")
        body = json_object(raw)
        record_id, created = upsert_one(writer, obj, field, value, body, matches)
        return Reply(201 if created else 200, {"id": record_id, "success": True, "errors": [], "created": created})

    def render(self, obj, record: dict, version: str, fields_param: str | None) -> dict:
        """A record as `GET sobjects/T/id` returns it, optionally only `?fields=`."""
        if fields_param:
            names = []
            for name in fields_param.split(","):
                field = obj.field(name.strip())
                if field is None or field.write_only:
                    raise ApiError("INVALID_FIELD", f"No such column '{name.strip()}' on entity '{obj.name}'. "
                                   "If you are attempting to use a custom field, be sure to append the '__c' "
                                   "after the custom field name.")
                names.append(field.name)
        else:
            names = [f.name for f in obj.fields.values() if not f.write_only]
        out: dict[str, Any] = {"attributes": {"type": obj.name, "url": f"/services/data/v{version}/sobjects/{obj.name}/{record['Id']}"}}
        out.update((name, record.get(name)) for name in names)
        return out

    # small resources ------------------------------------------------------------------

    def _limits(self) -> dict:
        org = self.org
        remaining = max(0, org.api_limit - org.api_used)
        return {
            "DailyApiRequests": {"Max": org.api_limit, "Remaining": remaining},
            "DailyAsyncApexExecutions": {"Max": 250000, "Remaining": 250000},
            "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
            "DataStorageMB": {"Max": 1024, "Remaining": 1024},
            "SingleEmail": {"Max": 5000, "Remaining": 5000},
        }

    @staticmethod
    def _resources(version: str) -> dict:
        base = f"/services/data/v{version}"
        return {name: f"{base}/{name}" for name in ("sobjects", "query", "queryAll", "limits", "composite")}


def upsert_one(writer: Writer, obj, field, value, body: dict, matches: list[str]) -> tuple[str, bool]:
    """Create when nothing matches, else update the one match; the path's value wins over the body's."""
    body = {k: v for k, v in body.items() if obj.field(k) is None or obj.field(k).name != field.name}
    if matches:
        writer.update(obj.name, matches[0], body)
        return matches[0], False
    if field.name == "Id":
        raise not_found()
    return writer.create(obj.name, {**body, field.name: value}), True


def changed_since(org, obj, kind: str, params: dict) -> dict:
    """`sobjects/T/updated/` and `/deleted/`: ids changed between `start` and `end` (by SystemModstamp)."""
    start = parse_datetime(params.get("start") or "", require_offset=True)
    end = parse_datetime(params.get("end") or "", require_offset=True)
    if start is None or end is None:
        raise ApiError("INVALID_REPLICATION_DATE", "start and end must be ISO datetimes with a time zone")
    rows = [rec for rec in org.records[obj.name].values()
            if start <= rec["SystemModstamp"] <= end and rec["IsDeleted"] == (kind == "deleted")]
    if kind == "updated":
        return {"ids": [rec["Id"] for rec in rows], "latestDateCovered": end}
    return {"deletedRecords": [{"id": rec["Id"], "deletedDate": rec["SystemModstamp"]} for rec in rows],
            "earliestDateAvailable": start, "latestDateCovered": end}
