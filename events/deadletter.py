"""The dead-letter store in Redis: what could not be written, kept until support replays or purges it."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version

import redis

from schemas.deadletter import DeadLetterRecord

ENTRIES = "sfsync:dlq:entries"
BY_TIME = "sfsync:dlq:by_time"


def sfsync_version() -> str:
    try:
        return version("sfsync")
    except PackageNotFoundError:
        return "0+unknown"


def dead_letter_id(workspace_id: str | None, event_id: str | None) -> str:
    """Stable per event, so the same event failing again updates its entry instead of adding one."""
    if workspace_id and event_id:
        return "dl_" + hashlib.sha256(f"{workspace_id}\0{event_id}".encode()).hexdigest()[:16]
    return "dl_" + uuid.uuid4().hex[:16]


class DeadLetterStore:
    def __init__(self, client: redis.Redis):
        self.redis = client

    def add(self, *, event, event_id: str | None, event_type: str | None, workspace_id: str | None,
            error_code: str, error_message: str, error_fields=(), attempts: int = 1,
            first_failure_at: datetime | None = None, task_name: str | None = None,
            queue: str | None = None) -> DeadLetterRecord:
        now = datetime.now(timezone.utc)
        record_id = dead_letter_id(workspace_id, event_id)
        previous = self.get(record_id)
        record = DeadLetterRecord(
            id=record_id, event_id=event_id, event_type=event_type, workspace_id=workspace_id,
            event=event, error_code=error_code, error_message=error_message[:4000],
            error_fields=list(error_fields), attempts=attempts + (previous.attempts if previous else 0),
            first_failure_at=(previous.first_failure_at if previous else (first_failure_at or now)),
            last_failure_at=now, sfsync_version=sfsync_version(), task_name=task_name, queue=queue)
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

    def count(self) -> int:
        return self.redis.hlen(ENTRIES)

    def count_by_code(self) -> Counter:
        return Counter(r.error_code for r in self.iter_all())


def raw_for_storage(raw) -> object:
    """Keep the original message argument as it came, in a JSON-safe form."""
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw).decode("utf-8", "backslashreplace")
    try:
        json.dumps(raw)
        return raw
    except (TypeError, ValueError):
        return repr(raw)
