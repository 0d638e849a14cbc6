"""The dead-letter store in Redis: what could not be written, kept until support replays or purges it."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version

import redis

from schemas.deadletter import DeadLetterRecord
from schemas.events import MAX_EVENT_DEPTH, escape_surrogates, nesting_depth

ENTRIES = "sfsync:dlq:entries"
BY_TIME = "sfsync:dlq:by_time"
#: characters of an undecodable or oversized raw body kept in its dead letter
RAW_KEEP = 256 * 1024


def sfsync_version() -> str:
    try:
        return version("sfsync")
    except PackageNotFoundError:
        return "0+unknown"


def dead_letter_id(workspace_id: str | None, event_id: str | None) -> str:
    """Stable per event, so the same event failing again updates its entry instead of adding one."""
    if workspace_id and event_id:
        # surrogatepass: an id that is not valid Unicode still names one entry
        key = f"{workspace_id}\0{event_id}".encode("utf-8", "surrogatepass")
        return "dl_" + hashlib.sha256(key).hexdigest()[:16]
    return "dl_" + uuid.uuid4().hex[:16]


class DeadLetterStore:
    def __init__(self, client: redis.Redis):
        self.redis = client

    def add(self, *, event, event_id: str | None, event_type: str | None, workspace_id: str | None,
            error_code: str, error_message: str, error_fields=(), attempts: int = 1,
            first_failure_at: datetime | None = None, task_name: str | None = None,
            queue: str | None = None, content_type: str | None = None, task_id: str | None = None,
            truncated: bool = False) -> DeadLetterRecord:
        now = datetime.now(timezone.utc)
        record_id = dead_letter_id(workspace_id, event_id)
        # what an emitter sent may hold lone surrogates, which no JSON encoder writes as UTF-8
        event_id, event_type, workspace_id, task_name, queue, content_type, task_id = (
            escape_surrogates(v) if isinstance(v, str) else v
            for v in (event_id, event_type, workspace_id, task_name, queue, content_type, task_id))
        error_message = escape_surrogates(error_message)
        previous = self.get(record_id)
        record = DeadLetterRecord(
            id=record_id, event_id=event_id, event_type=event_type, workspace_id=workspace_id,
            event=event, error_code=error_code, error_message=error_message[:4000],
            error_fields=list(error_fields), attempts=attempts + (previous.attempts if previous else 0),
            first_failure_at=(previous.first_failure_at if previous else (first_failure_at or now)),
            last_failure_at=now, sfsync_version=sfsync_version(), task_name=task_name, queue=queue,
            content_type=content_type, task_id=task_id, truncated=truncated)
        pipe = self.redis.pipeline()
        pipe.hset(ENTRIES, record_id, record.model_dump_json())
        pipe.zadd(BY_TIME, {record_id: now.timestamp()})
        pipe.execute()
        return record

    def get(self, record_id: str) -> DeadLetterRecord | None:
        raw = self.redis.hget(ENTRIES, record_id)
        return DeadLetterRecord.model_validate_json(raw) if raw else None

    def iter_all(self) -> Iterator[DeadLetterRecord]:
        """Oldest first."""
        ids = self.redis.zrange(BY_TIME, 0, -1)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            for raw in self.redis.hmget(ENTRIES, chunk):
                if raw:
                    yield DeadLetterRecord.model_validate_json(raw)

    def remove(self, record_ids: list[str]) -> int:
        if not record_ids:
            return 0
        pipe = self.redis.pipeline()
        pipe.hdel(ENTRIES, *record_ids)
        pipe.zrem(BY_TIME, *record_ids)
        return pipe.execute()[0]

    def remove_workspace(self, workspace_id: str) -> int:
        """Delete every dead letter of one workspace (the workspace is being removed); returns how many."""
        ids = [r.id for r in self.iter_all() if r.workspace_id == workspace_id]
        return sum(self.remove(ids[start:start + 500]) for start in range(0, len(ids), 500))

    def count(self) -> int:
        return self.redis.hlen(ENTRIES)

    def count_by_code(self) -> Counter:
        return Counter(r.error_code for r in self.iter_all())

    def select(self, selection: "DeadLetterFilter", now: datetime | None = None) -> list[DeadLetterRecord]:
        """The entries a filter picks, oldest first (ids are looked up directly, not scanned)."""
        now = now or datetime.now(timezone.utc)
        if selection.ids and not selection.everything:
            found = [self.get(i) for i in sorted(selection.ids)]
            return [r for r in found if r is not None and selection.matches(r, now)]
        return [r for r in self.iter_all() if selection.matches(r, now)]

    def replay(self, selection: "DeadLetterFilter", republish: Callable[[DeadLetterRecord], None], *,
               now: datetime | None = None,
               on_progress: Callable[[DeadLetterRecord], None] | None = None) -> "ReplayResult":
        """Hand each selected entry to `republish`, then remove it; an entry whose republish fails stays.

        The entry is removed only after its event is back on a queue, so a crash in between can
        at worst replay it twice, which the idempotent write absorbs; it can never lose it.
        """
        result = ReplayResult()
        for record in self.select(selection, now):
            result.matched += 1
            try:
                republish(record)
            except Unreplayable as exc:
                result.skipped.append((record.id, str(exc)))
            except Exception as exc:  # one failed republish must not stop the rest; it is reported
                result.failed.append((record.id, f"{type(exc).__name__}: {exc}"))
            else:
                self.remove([record.id])
                result.replayed.append(record)
            if on_progress is not None:
                on_progress(record)
        return result

    def purge(self, selection: "DeadLetterFilter", now: datetime | None = None) -> int:
        ids = [r.id for r in self.select(selection, now)]
        removed = 0
        for start in range(0, len(ids), 500):
            removed += self.remove(ids[start:start + 500])
        return removed


class Unreplayable(Exception):
    """This entry cannot go back on a queue as it is (no route, no event): it is left in the store."""


@dataclass
class ReplayResult:
    matched: int = 0
    replayed: list[DeadLetterRecord] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"matched": self.matched, "replayed": len(self.replayed), "failed": len(self.failed),
                "skipped": len(self.skipped)}


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which entries a `dlq` command acts on. Ages are seconds since the entry's last failure."""

    ids: frozenset[str] = frozenset()
    codes: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()
    workspaces: frozenset[str] = frozenset()
    older_than: float | None = None
    newer_than: float | None = None
    everything: bool = False

    @classmethod
    def of(cls, *, ids: Iterable[str] = (), codes: Iterable[str] = (), types: Iterable[str] = (),
           workspaces: Iterable[str] = (), older_than: float | None = None, newer_than: float | None = None,
           everything: bool = False) -> "DeadLetterFilter":
        return cls(frozenset(ids), frozenset(codes), frozenset(types), frozenset(workspaces),
                   older_than, newer_than, everything)

    @property
    def narrows(self) -> bool:
        """True when some criterion is given: replay and purge refuse an empty filter without --all."""
        return bool(self.ids or self.codes or self.types or self.workspaces
                    or self.older_than is not None or self.newer_than is not None)

    def matches(self, record: DeadLetterRecord, now: datetime) -> bool:
        if self.ids and record.id not in self.ids:
            return False
        if self.codes and record.error_code not in self.codes:
            return False
        if self.types and record.event_type not in self.types:
            return False
        if self.workspaces and record.workspace_id not in self.workspaces:
            return False
        age = record.age_seconds(now)
        if self.older_than is not None and age < self.older_than:
            return False
        if self.newer_than is not None and age > self.newer_than:
            return False
        return True


def raw_for_storage(raw) -> tuple[object, bool]:
    """The original message argument as it came, in a JSON-safe form, and whether it was cut.

    Only an oversized body is cut (to RAW_KEEP characters): it can never be written as it is,
    and keeping megabytes per entry would let a flood of them exhaust Redis. An object deeper
    than an event may be, or holding lone surrogates, is kept as its JSON text (surrogates as
    `\\udxxx` escapes): stored as an object, it could not be written or read back.
    """
    if isinstance(raw, (bytes, bytearray)):
        raw = bytes(raw).decode("utf-8", "backslashreplace")
    if isinstance(raw, str):
        raw = escape_surrogates(raw)
        return (raw[:RAW_KEEP], True) if len(raw) > RAW_KEEP else (raw, False)
    if nesting_depth(raw, MAX_EVENT_DEPTH) > MAX_EVENT_DEPTH:
        text = _deep_text(raw)
        return (text[:RAW_KEEP], len(text) > RAW_KEEP)
    try:
        text = json.dumps(raw, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = escape_surrogates(repr(raw))
        return (text[:RAW_KEEP], len(text) > RAW_KEEP)
    if len(text) > RAW_KEEP:
        return (escape_surrogates(text[:RAW_KEEP]), True)
    if not text.isascii() and escape_surrogates(text) != text:
        return (json.dumps(raw), False)
    return (raw, False)


def _deep_text(raw) -> str:
    try:
        return json.dumps(raw)
    except (TypeError, ValueError, RecursionError):
        return f"<{type(raw).__name__} nested deeper than Python can write out>"
