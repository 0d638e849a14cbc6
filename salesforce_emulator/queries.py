"""SOQL query and queryAll endpoints: run a plan, hand out pages and nextRecordsUrl cursors."""
from __future__ import annotations

from .errors import ApiError
from .reply import Reply
from .soql import parse_soql
from .soql.compiler import Compiler

DEFAULT_BATCH = 2000
MIN_BATCH = 200


def batch_size(headers) -> int:
    """`Sforce-Query-Options: batchSize=N`, clamped to Salesforce's 200..2000."""
    option = headers.get("sforce-query-options") or ""
    for part in option.split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "batchsize" and value.strip().isdigit():
            return max(MIN_BATCH, min(DEFAULT_BATCH, int(value)))
    return DEFAULT_BATCH


def run_query(org, version: str, soql: str | None, *, include_deleted: bool, headers) -> Reply:
    if not soql:
        raise ApiError("MALFORMED_QUERY", "A query string has to be specified")
    plan = Compiler(org).compile(parse_soql(soql))
    predicate = plan.predicate
    table = org.records[plan.sobject.name].values() if plan.seek is None else org.seek(plan.sobject.name, plan.seek)
    if include_deleted:
        rows = [rec for rec in table if predicate(rec)]
    else:
        rows = [rec for rec in table if not rec["IsDeleted"] and predicate(rec)]
    plan.sort(rows)
    if plan.offset:
        rows = rows[plan.offset:]
    if plan.limit is not None:
        rows = rows[:plan.limit]
    if plan.count_only:
        return Reply(200, {"totalSize": len(rows), "done": True, "records": []})
    endpoint = "queryAll" if include_deleted else "query"
    return page(org, version, endpoint, plan.project, rows, 0, batch_size(headers), None)


def page(org, version, endpoint, project, rows, start, size, cursor_id) -> Reply:
    end = start + size
    body = {"totalSize": len(rows), "done": end >= len(rows),
            "records": [project(rec, version) for rec in rows[start:end]]}
    if end < len(rows):
        cursor_id = cursor_id or org.open_cursor(version, (endpoint, project, rows, size), 0)
        body["nextRecordsUrl"] = f"/services/data/v{version}/{endpoint}/{cursor_id}-{end}"
    return Reply(200, body)


def query_more(org, version: str, locator: str) -> Reply:
    cursor_id, _, position = locator.partition("-")
    entry = org.cursors.get(cursor_id)
    if entry is None or not position.isdigit():
        raise ApiError("INVALID_QUERY_LOCATOR", "invalid query locator")
    _, (endpoint, project, rows, size), _ = entry
    return page(org, version, endpoint, project, rows, int(position), size, cursor_id)
