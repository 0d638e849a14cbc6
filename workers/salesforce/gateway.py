"""The one door to Salesforce: queries, describe and collection writes over simple-salesforce."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from simple_salesforce import Salesforce, format_soql
from simple_salesforce.format import quote_soql_value

from events.keys import key
from schemas.api_usage import ApiUsage
from schemas.codes import ErrorCode
from schemas.salesforce_hosts import HostPolicy
from workers.observability import metrics
from workers.salesforce.errors import SalesforceError
from workers.salesforce.login import connect, sign_in

log = logging.getLogger(__name__)

T = TypeVar("T")

#: records per composite/sobjects call (Salesforce's cap)
COLLECTION_LIMIT = 200
#: runs of one object type per composite/sobjects call: Salesforce processes a request in one
#: chunk per run of same-type records and refuses the whole request above this many chunks
COLLECTION_CHUNK_LIMIT = 10
#: characters of IN-list per SOQL query, so the GET URL stays far below Salesforce's limits
IN_CLAUSE_BUDGET = 12_000
#: of a composite request's subrequests, Salesforce takes at most this many queries or sObject collections
COMPOSITE_HEAVY_LIMIT = 5
#: seconds a describe result is trusted before it is fetched again
DESCRIBE_TTL = 600.0
#: objects every email batch describes, and Lead (its mappings are checked beside Contact's when a
#: worker starts): when one must be read, the others (and the list of the org's objects) come in the
#: same composite call, which counts as one API call
DESCRIBED_TOGETHER = ("Task", "EmailMessage", "Lead")


@dataclass(frozen=True)
class RecordResult:
    """One record's outcome in a collection call, in request order."""

    success: bool
    id: str | None = None
    created: bool | None = None
    errors: tuple[SalesforceError, ...] = ()

    @property
    def error(self) -> SalesforceError | None:
        return self.errors[0] if self.errors else None


def soql_in(template: str, values: list[str], **params: Any) -> str:
    """format_soql(template, values=values, **params): the IN list quoted in one call (format_soql's own
    quoting, without its formatter's per-value dispatch, a tenth of the time for a batch's addresses)."""
    if template.count("{values") != template.count("{values}"):  # a format spec of its own: format_soql decides
        return format_soql(template, values=values, **params)
    return format_soql(template.replace("{values}", "{values:literal}"), values=quote_soql_value(values), **params)


def in_clause_chunks(values: Sequence[str], budget: int = IN_CLAUSE_BUDGET) -> Iterator[list[str]]:
    """Split values so each escaped IN list stays within `budget` characters."""
    chunk: list[str] = []
    size = 0
    for value in values:
        cost = len(value) + 4
        if chunk and size + cost > budget:
            yield chunk
            chunk, size = [], 0
        chunk.append(value)
        size += cost
    if chunk:
        yield chunk


class SharedDescribes:
    """Describes of one org kept in Redis for DESCRIBE_TTL, so each process does not read them again."""

    def __init__(self, client, workspace_id: str):
        self.redis = client
        self.prefix = key(workspace_id, "describe")

    def get(self, name: str) -> Any | None:
        try:
            raw = self.redis.get(f"{self.prefix}:{name}")
        except Exception:  # noqa: BLE001 - a cache: Salesforce answers when Redis cannot
            return None
        return json.loads(raw) if raw else None

    def put(self, name: str, value: Any) -> None:
        try:
            self.redis.set(f"{self.prefix}:{name}", json.dumps(value), ex=int(DESCRIBE_TTL))
        except Exception:  # noqa: BLE001, S110 - a cache: a describe not shared is read from Salesforce again
            pass

    def forget(self) -> None:
        for name in self.redis.scan_iter(match=f"{self.prefix}:*"):
            self.redis.delete(name)


class SalesforceGateway:
    """All Salesforce I/O of sfsync. Raises only SalesforceError; counts the calls it makes."""

    def __init__(self, sf: Salesforce, shared: "SharedDescribes | None" = None):
        self.sf = sf
        #: describes shared by every process of the deployment (read once per org, not per process)
        self.shared = shared
        self.calls = 0
        self.usage: ApiUsage | None = None
        #: sobject -> (fetched at, describe or None, its fields by name)
        self._describe: dict[str, tuple[float, dict[str, Any] | None, dict[str, dict[str, Any]]]] = {}
        self._global: tuple[float, set[str]] | None = None
        self._lock = threading.Lock()
        self._limit_info: str | None = None
        session = getattr(sf, "session", None)
        if session is not None and hasattr(session, "hooks"):
            # simple-salesforce parses Sforce-Limit-Info only from successful responses; a hook on
            # the session also sees it on errors (a spent daily quota answers 403 with the header)
            session.hooks.setdefault("response", []).append(self._read_limit_header)

    def _read_limit_header(self, response, *args, **kwargs):
        info = response.headers.get("Sforce-Limit-Info") if response is not None else None
        if info:
            self._limit_info = info
        return response

    @classmethod
    def from_settings(cls, settings) -> "SalesforceGateway":
        return cls(connect(settings))

    @classmethod
    def from_connection(cls, connection, timeout: float = 30.0, shared: "SharedDescribes | None" = None, *,
                        hosts: HostPolicy) -> "SalesforceGateway":
        return cls(sign_in(connection, timeout, hosts=hosts), shared)

    # --- plumbing -------------------------------------------------------------------
    def _call(self, fn, *args, kind: str = "other", **kwargs):
        self.calls += 1
        metrics.record_salesforce_call(kind)
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the gateway raises only SalesforceError: every failure becomes one
            error = SalesforceError.from_exception(exc)
            self._note_usage_from_error(error)
            raise error from None
        self._note_usage()
        return result

    def _note_usage(self) -> None:
        parsed = _parse_limit_info(self._limit_info)
        if parsed is not None:
            self.usage = ApiUsage(used=parsed[0], limit=parsed[1], at=time.time())
            return
        usage = getattr(self.sf, "api_usage", {}).get("api-usage")
        if usage is not None:
            self.usage = ApiUsage(used=usage.used, limit=usage.total, at=time.time())

    def _note_usage_from_error(self, error: SalesforceError) -> None:
        self._note_usage()
        if error.daily_limit and self.usage is not None and self.usage.used < self.usage.limit:
            # Salesforce said the quota is spent; trust that over a header that lags behind
            self.usage = ApiUsage(used=self.usage.limit, limit=self.usage.limit, at=time.time())

    # --- reads ----------------------------------------------------------------------
    def query_all(self, soql: str) -> list[dict[str, Any]]:
        """Run a SOQL query and follow nextRecordsUrl; each page is one API call."""
        result = self._call(self.sf.query, soql, kind="query")
        records = list(result.get("records", []))
        while not result.get("done", True) and result.get("nextRecordsUrl"):
            result = self._call(self.sf.query_more, result["nextRecordsUrl"], True)
            records.extend(result.get("records", []))
        for record in records:
            record.pop("attributes", None)
        return records

    def query_page(self, soql: str, include_deleted: bool = False) -> dict[str, Any]:
        """One page of a query (for callers that stream large result sets); queryAll with include_deleted."""
        return self._call(self.sf.query, soql, include_deleted=include_deleted)

    def query_more(self, next_records_url: str) -> dict[str, Any]:
        return self._call(self.sf.query_more, next_records_url, True)

    def query_in(self, template: str, values: Iterable[str], **params: Any) -> list[dict[str, Any]]:
        """Run `template` (format_soql syntax with an `{values}` IN slot) over values in few queries."""
        unique = sorted({v for v in values if v})
        records: list[dict[str, Any]] = []
        for chunk in in_clause_chunks(unique):
            records.extend(self.query_all(soql_in(template, chunk, **params)))
        return records

    def query_in_together(self, queries: Sequence[tuple[str, Iterable[str]]]) -> list[list[dict[str, Any]] | None]:
        """Several `query_in`s in one composite call (one API call) when their queries fit in one.

        The first query is the one needed: its failure raises, as `query_in` would. The others are
        companions read while at it: one that fails is answered None (the caller asks again when it
        needs it). Pages beyond the first are followed one call each, as `query_all` does.
        """
        chunked = [(template, list(in_clause_chunks(sorted({v for v in values if v})))) for template, values in queries]
        subrequests = [(n, soql_in(template, chunk)) for n, (template, chunks) in enumerate(chunked)
                       for chunk in chunks]
        if len(subrequests) < 2 or len(subrequests) > COMPOSITE_HEAVY_LIMIT:
            return [self.query_in(template, values) for template, values in queries]
        version = f"/services/data/v{self.sf.sf_version}"
        answer = self._call(self.sf.restful, "composite/", method="POST", kind="query", json={"compositeRequest": [
            {"method": "GET", "url": f"{version}/query/?q={quote(soql, safe='')}", "referenceId": f"q{i}"}
            for i, (_, soql) in enumerate(subrequests)]})
        replies = {r.get("referenceId"): r for r in answer.get("compositeResponse", [])}
        results: list[list[dict[str, Any]] | None] = [[] for _ in queries]
        for i, (n, _) in enumerate(subrequests):
            found = results[n]
            if found is None:
                continue
            try:
                page = _sub_body(replies.get(f"q{i}"))
                records = list(page.get("records", []))
                while not page.get("done", True) and page.get("nextRecordsUrl"):
                    page = self._call(self.sf.query_more, page["nextRecordsUrl"], True)
                    records.extend(page.get("records", []))
            except SalesforceError:
                if n == 0:
                    raise
                results[n] = None  # a companion that failed is asked again when it is needed
                continue
            for record in records:
                record.pop("attributes", None)
            found.extend(records)
        return results

    def global_describe(self) -> set[str]:
        now = time.monotonic()
        with self._lock:
            if self._global and now - self._global[0] < DESCRIBE_TTL:
                return self._global[1]
        shared = self.shared.get("_global") if self.shared is not None else None
        if shared is not None:
            names = set(shared)
        else:
            result = self._call(self.sf.describe)
            names = {o["name"] for o in result.get("sobjects", [])}
            if self.shared is not None:
                self.shared.put("_global", sorted(names))
        with self._lock:
            self._global = (now, names)
        return names

    def _described(self, sobject: str) -> tuple[float, dict[str, Any] | None, dict[str, dict[str, Any]]]:
        now = time.monotonic()
        with self._lock:
            cached = self._describe.get(sobject)
            if cached and now - cached[0] < DESCRIBE_TTL:
                return cached
        result = self.shared.get(sobject) if self.shared is not None else None
        if result is None:
            self._describe_together(sobject)
            with self._lock:
                return self._describe[sobject]
        return self._remember(sobject, result if sobject in self.global_describe() else None, now)

    def _remember(self, sobject: str, result: dict[str, Any] | None,
                  now: float) -> tuple[float, dict[str, Any] | None, dict[str, dict[str, Any]]]:
        entry = (now, result, {f["name"]: f for f in result["fields"]} if result else {})
        with self._lock:
            self._describe[sobject] = entry
        return entry

    def _describe_together(self, sobject: str) -> None:
        """Read `sobject`'s describe, the companions no cache holds and, if needed, the org's object
        list, in one composite call (one API call); an object the org lacks is described as None."""
        now = time.monotonic()
        with self._lock:
            known_global = self._global is not None and now - self._global[0] < DESCRIBE_TTL
            cached = {name for name, entry in self._describe.items() if now - entry[0] < DESCRIBE_TTL}
        shared_global = None if known_global or self.shared is None else self.shared.get("_global")
        if shared_global is not None:
            with self._lock:
                self._global = (now, set(shared_global))
            known_global = True
        wanted = [sobject] + [n for n in DESCRIBED_TOGETHER if n != sobject and n not in cached
                              and (self.shared is None or self.shared.get(n) is None)]
        version = f"/services/data/v{self.sf.sf_version}"
        requests_ = [] if known_global else [{"method": "GET", "url": f"{version}/sobjects/", "referenceId": "objects"}]
        requests_ += [{"method": "GET", "url": f"{version}/sobjects/{n}/describe/", "referenceId": f"d{i}"}
                      for i, n in enumerate(wanted)]
        answer = self._call(self.sf.restful, "composite/", method="POST", kind="describe",
                            json={"compositeRequest": requests_})
        replies = {r.get("referenceId"): r for r in answer.get("compositeResponse", [])}
        if not known_global:
            names = {o["name"] for o in _sub_body(replies.get("objects")).get("sobjects", [])}
            with self._lock:
                self._global = (now, names)
            if self.shared is not None:
                self.shared.put("_global", sorted(names))
        for i, name in enumerate(wanted):
            reply = replies.get(f"d{i}")
            try:
                result = None if reply and reply.get("httpStatusCode") == 404 else _sub_body(reply)
            except SalesforceError:
                if name == sobject:
                    raise
                continue  # a companion that failed is read again when it is needed
            if result is not None and self.shared is not None:
                self.shared.put(name, result)
            self._remember(name, result, now)

    def describe(self, sobject: str) -> dict[str, Any] | None:
        """The object's describe, cached; None when the org has no such object."""
        return self._described(sobject)[1]

    def fields(self, sobject: str) -> dict[str, dict[str, Any]]:
        """The object's fields by name (cached with the describe: it is read for every record)."""
        return self._described(sobject)[2]

    def is_createable(self, sobject: str) -> bool:
        description = self.describe(sobject)
        return bool(description and description.get("createable"))

    def current_user_id(self) -> str | None:
        """The integration user's Id, from OpenID userinfo (works with any auth, costs no data-API call)."""
        url = f"https://{self.sf.sf_instance}/services/oauth2/userinfo"
        try:
            response = self.sf.session.get(url, headers=self.sf.headers, timeout=30)
        except requests.RequestException as exc:
            raise SalesforceError.from_exception(exc) from None
        if response.status_code != 200:
            return None
        return (response.json() or {}).get("user_id")

    def limits(self) -> dict[str, Any]:
        return self._call(self.sf.limits)

    # --- writes ---------------------------------------------------------------------
    def create(self, records: Sequence[tuple[str, dict[str, Any]]],
               all_or_none: bool = False) -> list[RecordResult]:
        """Create (sobject, fields) records of any types via composite/sobjects; results in the given order."""
        body = [{"attributes": {"type": t}, **fields} for t, fields in records]
        return self._collections("POST", [t for t, _ in records], body, all_or_none)

    def update(self, records: Sequence[tuple[str, str, dict[str, Any]]],
               all_or_none: bool = False) -> list[RecordResult]:
        """Update (sobject, id, fields) records via composite/sobjects PATCH; results in the given order."""
        body = [{"attributes": {"type": t}, "Id": rid, **fields} for t, rid, fields in records]
        return self._collections("PATCH", [t for t, _, _ in records], body, all_or_none)

    def _collections(self, method: str, types: Sequence[str], body: Sequence[dict[str, Any]],
                     all_or_none: bool) -> list[RecordResult]:
        """Send records grouped by type in as few calls as Salesforce accepts; results by original position.

        With all_or_none, each call is atomic on its own: records in different calls are not.
        """
        plan = plan_collection_requests(types)
        answers = [self._collection(method, {"allOrNone": all_or_none, "records": [body[p] for p in positions]})
                   for positions in plan]
        return in_given_order(plan, answers)

    def _collection(self, method: str, body: dict[str, Any]) -> list[RecordResult]:
        started = time.monotonic()
        raw = self._call(self.sf.restful, "composite/sobjects", method=method, json=body, kind="write")
        metrics.observe_write(time.monotonic() - started)
        expected = len(body["records"])
        if not isinstance(raw, list) or len(raw) != expected:
            raise SalesforceError(code=ErrorCode.UNEXPECTED_RESPONSE,
                                  message=f"composite/sobjects answered {type(raw).__name__} "
                                          f"for {expected} records")
        return [_record_result(item) for item in raw]


def plan_collection_requests(types: Sequence[str], max_records: int = COLLECTION_LIMIT,
                             max_chunks: int = COLLECTION_CHUNK_LIMIT) -> list[list[int]]:
    """Positions of the records to send in each composite/sobjects call, grouped by object type.

    Salesforce processes a collection in one chunk per run of same-type records and refuses a
    request of more than `max_chunks` chunks, so records sent in event order (Task, EmailMessage,
    Task, ...) would be refused whole. Records are grouped by type (types in order of first
    appearance, records in their given order within a type), then packed into calls of at most
    `max_records` records and `max_chunks` type runs.
    """
    by_type: dict[str, list[int]] = {}
    for position, sobject in enumerate(types):
        by_type.setdefault(sobject, []).append(position)
    requests: list[list[int]] = []
    current: list[int] = []
    chunks = 0
    for positions in by_type.values():
        remaining = positions
        while remaining:
            if len(current) == max_records or chunks == max_chunks:
                requests.append(current)
                current, chunks = [], 0
            take = max_records - len(current)
            current.extend(remaining[:take])
            remaining = remaining[take:]
            chunks += 1
    if current:
        requests.append(current)
    return requests


def in_given_order(plan: Sequence[Sequence[int]], answers: Sequence[Sequence[T]]) -> list[T]:
    """Each call's answers (in its request order) put back at the positions the plan took them from."""
    placed: dict[int, T] = {}
    for positions, answered in zip(plan, answers, strict=True):
        placed.update(zip(positions, answered, strict=True))
    return [placed[position] for position in range(len(placed))]


def _sub_body(reply: dict[str, Any] | None) -> dict[str, Any]:
    """A successful composite subrequest's body; a failed one raises its SalesforceError."""
    if not reply:
        raise SalesforceError(code="UNKNOWN_EXCEPTION", message="the composite answer lacks a subrequest")
    status = reply.get("httpStatusCode") or 500
    if status >= 300 or not isinstance(reply.get("body"), dict):
        raise SalesforceError.from_body(reply.get("body"), status)
    return reply["body"]


def _parse_limit_info(info: str | None) -> tuple[int, int] | None:
    """(used, limit) from a `Sforce-Limit-Info: api-usage=USED/MAX[, per-app-api-usage=...]` header."""
    if not info:
        return None
    for part in info.split(","):
        name, _, value = part.strip().partition("=")
        if name == "api-usage":
            used, _, limit = value.partition("/")
            try:
                return int(used), int(limit)
            except ValueError:
                return None
    return None


def _record_result(item: dict[str, Any]) -> RecordResult:
    errors = tuple(SalesforceError.from_body([e]) for e in item.get("errors") or ())
    return RecordResult(success=bool(item.get("success")), id=item.get("id"),
                        created=item.get("created"), errors=errors)
