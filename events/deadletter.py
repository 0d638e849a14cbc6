"""The dead-letter store in Redis, per workspace: what could not be written, kept until support replays or purges it."""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

import redis
from pydantic import BaseModel, ValidationError

from events.dlq_causes import Group, cause_of, describe, group_bucket, index_entry
from events.keys import key
from events.lua import script
from schemas.deadletter import HISTORY_KEEP, HISTORY_MESSAGE_KEEP, DeadLetterRecord, Failure, ReplayedRecord
from schemas.events import MAX_EVENT_DEPTH, escape_surrogates, nesting_depth
from schemas.workspace import is_workspace_id

log = logging.getLogger("sfsync.deadletter")

#: the shared bucket of dead letters naming no workspace served here; a workspace id starts with a
#: letter or digit (schemas.workspace.WORKSPACE_ID_PATTERN), so no workspace can be called this
UNROUTED = "_unrouted"

#: the set of workspaces (buckets) holding dead-letter state, so listing needs no SCAN
WORKSPACES = "sfsync:dlq:workspaces"
#: where versions before per-workspace buckets kept every dead letter; moved out on first use
LEGACY_ENTRIES = "sfsync:dlq:entries"
LEGACY_BY_TIME = "sfsync:dlq:by_time"
#: characters of an undecodable or oversized raw body kept in its dead letter
RAW_KEEP = 256 * 1024
#: entries removed per retention script call, so one call never blocks Redis for long
DROP_CHUNK = 1000
#: ids read per Redis call when listing
_CHUNK = 500

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


@dataclass(frozen=True)
class Retention:
    """How long and how many dead letters one workspace keeps (SFSYNC_DLQ_MAX_AGE, SFSYNC_DLQ_MAX_PER_WORKSPACE)."""

    max_age: float = 30 * 86400.0
    max_count: int = 50_000

    @classmethod
    def from_settings(cls, settings: Any) -> "Retention":
        return cls(max_age=settings.dlq_max_age, max_count=settings.dlq_max_per_workspace)

    def cutoff(self, now: float) -> float:
        """Unix time before which a last failure is past the max age."""
        return now - self.max_age

    def to_drop(self, count: int, aged: int) -> int:
        """How many of the oldest of `count` entries go: every aged one, and more until max_count remain."""
        return min(max(aged, count - self.max_count, 0), count)


def next_history(earlier: list[Failure], at: datetime, error_code: str, error_message: str) -> list[Failure]:
    """`earlier` failures plus this one, the most recent HISTORY_KEEP of them."""
    failure = Failure(at=at, error_code=error_code, error_message=error_message[:HISTORY_MESSAGE_KEEP])
    return [*earlier, failure][-HISTORY_KEEP:]


def mark_replayed(history: list[Failure], at: datetime) -> list[Failure]:
    """The history with its last failure marked as replayed at `at`."""
    if not history:
        return []
    return [*history[:-1], history[-1].model_copy(update={"replayed_at": at})]


def _earlier_failures(previous: DeadLetterRecord | ReplayedRecord) -> list[Failure]:
    if previous.history or isinstance(previous, ReplayedRecord):
        return list(previous.history)
    # a record written before histories existed: its own last failure is all that is known
    return [Failure(at=previous.last_failure_at, error_code=previous.error_code,
                    error_message=previous.error_message[:HISTORY_MESSAGE_KEEP])]


@dataclass(frozen=True)
class _Keys:
    """The Redis keys of one bucket (a workspace, or the shared `_unrouted`); all in its hash slot."""

    bucket: str

    @property
    def entries(self) -> str:
        return key(self.bucket, "dlq", "entries")

    @property
    def by_time(self) -> str:
        return key(self.bucket, "dlq", "by_time")

    @property
    def dropped(self) -> str:
        return key(self.bucket, "dlq", "dropped")

    @property
    def replayed(self) -> str:
        return key(self.bucket, "dlq", "replayed")

    @property
    def replayed_at(self) -> str:
        return key(self.bucket, "dlq", "replayed_at")

    @property
    def cause(self) -> str:
        """Hash: dead letter id -> its cause's key and first failure time (events/dlq_causes.py)."""
        return key(self.bucket, "dlq", "cause")

    @property
    def causes(self) -> str:
        """Hash: cause key -> the cause (workspace, code, fields, message pattern, an example)."""
        return key(self.bucket, "dlq", "causes")

    def all(self) -> tuple[str, ...]:
        return (self.entries, self.by_time, self.dropped, self.replayed, self.replayed_at, self.cause, self.causes)


def _accept_all(_workspace_id: str) -> bool:
    return True


class DeadLetterStore:
    """Dead letters in one bucket per workspace, each bucket bounded by age and count.

    Keys of a bucket (`events.keys.key(ws, "dlq", ...)`): `entries` (hash id -> record JSON),
    `by_time` (zset id -> last failure), `dropped` (hash error code -> entries dropped by
    retention), `replayed` and `replayed_at` (tombstones of replayed records). The set
    WORKSPACES lists the buckets. A message naming no plausible workspace, or one `known`
    refuses, goes to the shared bucket `_unrouted`, its record keeping the workspace it named.

    Replays keep one record per event: a replayed record leaves a small tombstone (attempts,
    first failure, history) in its bucket, kept as long as a dead letter would be, and the
    event failing again continues it. The tombstone lives in Redis rather than in the replayed
    message's retry meta because that meta is whatever a client sends (a forged history would
    be believed) and travels with every retry and parked copy of the message; the store keeps
    its own state, bounded by its own retention.
    """

    def __init__(self, client: redis.Redis, known: Callable[[str], bool] | None = None,
                 retention: Retention | None = None, on_drop: Callable[[str, int], None] | None = None):
        self.redis = client
        #: whether a workspace is served by this deployment (None: every plausible id is)
        self.known = known or _accept_all
        self.retention = retention or Retention()
        #: called with (bucket, how many) whenever retention drops dead letters (metrics)
        self.on_drop = on_drop
        self._drop_script = script(client, "deadletter_drop")
        self._retire_script = script(client, "deadletter_retire")
        self._legacy_checked = False

    def bucket_of(self, workspace_id: str | None) -> str:
        """The bucket a dead letter naming `workspace_id` goes to: its own, or `_unrouted`."""
        if is_workspace_id(workspace_id) and workspace_id != UNROUTED and self.known(workspace_id):
            return workspace_id
        return UNROUTED

    # --- writing

    def add(self, *, event: Any, event_id: str | None, event_type: str | None, workspace_id: str | None,
            error_code: str, error_message: str, error_fields: Iterable[str] = (), attempts: int = 1,
            first_failure_at: datetime | None = None, task_name: str | None = None,
            queue: str | None = None, content_type: str | None = None, task_id: str | None = None,
            truncated: bool = False, replay_of: str | None = None) -> DeadLetterRecord:
        """Keep one failure, then apply the bucket's retention.

        The same event failing again, also after a replay, updates its one record: attempts add
        up, the first failure time stays, the failure joins the history. `replay_of` (set by a
        replay in the message's retry meta) continues the record of an event too broken to have
        a stable id.
        """
        self._ready()
        now = datetime.now(timezone.utc)
        bucket = self.bucket_of(workspace_id)
        stable = bool(workspace_id and event_id)
        record_id = dead_letter_id(workspace_id, event_id)
        # what an emitter sent may hold lone surrogates, which no JSON encoder writes as UTF-8
        event_id, event_type, workspace_id, task_name, queue, content_type, task_id = (
            escape_surrogates(v) if isinstance(v, str) else v
            for v in (event_id, event_type, workspace_id, task_name, queue, content_type, task_id))
        error_message = escape_surrogates(error_message)
        where, previous = self._previous(bucket, record_id)
        if previous is None and not stable and isinstance(replay_of, str):
            where, previous = self._replayed_without_id(bucket, replay_of, workspace_id)
            record_id = previous.id if previous is not None else record_id
        record = DeadLetterRecord(
            id=record_id, event_id=event_id, event_type=event_type, workspace_id=workspace_id,
            event=event, error_code=error_code, error_message=error_message[:4000],
            error_fields=list(error_fields), attempts=attempts + (previous.attempts if previous else 0),
            first_failure_at=(previous.first_failure_at if previous else (first_failure_at or now)),
            last_failure_at=now, sfsync_version=sfsync_version(), task_name=task_name, queue=queue,
            content_type=content_type, task_id=task_id, truncated=truncated,
            history=next_history(_earlier_failures(previous) if previous else [], now, error_code, error_message))
        self._write(bucket, record)
        if where is not None and where != bucket:
            self._forget(where, record.id)
        self._trim(bucket, now.timestamp())
        return record

    def _previous(self, bucket: str, record_id: str) -> tuple[str | None, DeadLetterRecord | ReplayedRecord | None]:
        """The record (or replayed tombstone) this failure continues, and its bucket.

        `_unrouted` is looked at too: a workspace that became known since keeps its events' records.
        """
        buckets = [bucket] if bucket == UNROUTED else [bucket, UNROUTED]
        pipe = self.redis.pipeline(transaction=False)
        for name in buckets:
            pipe.hget(_Keys(name).entries, record_id)
            pipe.hget(_Keys(name).replayed, record_id)
        found = pipe.execute()
        for n, name in enumerate(buckets):
            entry, tombstone = found[2 * n], found[2 * n + 1]
            previous = (_parse(DeadLetterRecord, entry) if entry else None) or \
                (_parse(ReplayedRecord, tombstone) if tombstone else None)
            if previous is not None:
                return name, previous
        return None, None

    def _replayed_without_id(self, bucket: str, replay_of: str,
                             workspace_id: str | None) -> tuple[str | None, ReplayedRecord | None]:
        """The tombstone a replay of an event without ids left, when this failure is that event again."""
        where, previous = self._previous(bucket, replay_of)
        if isinstance(previous, ReplayedRecord) and previous.event_id is None \
                and previous.workspace_id == workspace_id:
            return where, previous
        return None, None

    def _write(self, bucket: str, record: DeadLetterRecord) -> None:
        keys = _Keys(bucket)
        cause = cause_of(record.workspace_id, record.error_code, record.error_fields, record.error_message)
        pipe = self.redis.pipeline()  # one bucket is one hash slot: one MULTI
        pipe.hset(keys.entries, record.id, record.model_dump_json())
        pipe.zadd(keys.by_time, {record.id: record.last_failure_at.timestamp()})
        pipe.hdel(keys.replayed, record.id)
        pipe.zrem(keys.replayed_at, record.id)
        pipe.hset(keys.cause, record.id, index_entry(cause, record.first_failure_at.timestamp()))
        pipe.hset(keys.causes, cause.key, describe(cause, record.error_message))
        pipe.execute()
        # after the entry: a bucket `prune` found empty and forgot meanwhile is listed again
        self.redis.sadd(WORKSPACES, bucket)

    def _forget(self, bucket: str, record_id: str) -> None:
        keys = _Keys(bucket)
        pipe = self.redis.pipeline()
        pipe.hdel(keys.entries, record_id)
        pipe.zrem(keys.by_time, record_id)
        pipe.hdel(keys.replayed, record_id)
        pipe.zrem(keys.replayed_at, record_id)
        pipe.hdel(keys.cause, record_id)
        pipe.execute()

    # --- retention

    def prune(self, now: datetime | None = None) -> dict[str, int]:
        """Apply retention to every bucket (beat calls this); returns dead letters dropped per bucket.

        A bucket left with no dead letters, tombstones or drop counts is taken out of WORKSPACES.
        """
        self._ready()
        stamp = (now or datetime.now(timezone.utc)).timestamp()
        dropped: dict[str, int] = {}
        for bucket in self.workspaces():
            count = self._trim(bucket, stamp)
            if count:
                dropped[bucket] = count
            self._forget_bucket_if_empty(bucket)
        return dropped

    def _trim(self, bucket: str, now: float) -> int:
        keys = _Keys(bucket)
        dropped = self._drop_due(keys.entries, keys.by_time, keys.dropped, now, count=True, cause_key=keys.cause)
        self._drop_due(keys.replayed, keys.replayed_at, keys.dropped, now, count=False, cause_key=keys.cause)
        if dropped:
            log.warning("dropped %d dead letter(s) of workspace %s, the oldest first (kept: %.0f s, at most %d)",
                        dropped, bucket, self.retention.max_age, self.retention.max_count,
                        extra={"workspace_id": bucket, "outcome": "dead_letter_dropped"})
            if self.on_drop is not None:
                self.on_drop(bucket, dropped)
        return dropped

    def _drop_due(self, hash_key: str, zset_key: str, dropped_key: str, now: float, *, count: bool,
                  cause_key: str) -> int:
        """Drop the oldest members of a bucket's hash + zset pair that retention says go; returns how many."""
        cutoff = self.retention.cutoff(now)
        total = 0
        while True:
            pipe = self.redis.pipeline()
            pipe.zcard(zset_key)
            pipe.zcount(zset_key, "-inf", f"({cutoff!r}")
            size, aged = pipe.execute()
            due = min(self.retention.to_drop(size, aged), DROP_CHUNK)
            if due <= 0:
                return total
            args: list[Any] = [repr(cutoff), self.retention.max_count, "1" if count else "0"]
            for member, score in self.redis.zrange(zset_key, 0, due - 1, withscores=True):
                args += [member, repr(score)]
            gone = len(self._drop_script(keys=[hash_key, zset_key, dropped_key, cause_key], args=args))
            total += gone
            if gone < due:  # another process dropped or updated some meanwhile; the next call sees the rest
                return total

    def _forget_bucket_if_empty(self, bucket: str) -> None:
        keys = _Keys(bucket)
        pipe = self.redis.pipeline(transaction=False)
        for name in (keys.entries, keys.replayed, keys.dropped):
            pipe.exists(name)
        if any(pipe.execute()):
            return
        self.redis.srem(WORKSPACES, bucket)
        if self.redis.exists(keys.entries):  # a dead letter added meanwhile: list the bucket again
            self.redis.sadd(WORKSPACES, bucket)

    def remove_workspace(self, workspace_id: str) -> int:
        """Delete every dead-letter key of a workspace that is gone; returns how many dead letters it held.

        Records in `_unrouted` that named it are left there (purge them with `--workspace`).
        """
        if workspace_id == UNROUTED:
            raise ValueError(f"{UNROUTED} is the shared bucket of unroutable dead letters, not a workspace; "
                             f"empty it with `sfsync dlq purge --workspace {UNROUTED}`")
        self._ready()
        keys = _Keys(workspace_id)
        pipe = self.redis.pipeline()
        pipe.hlen(keys.entries)
        pipe.delete(*keys.all())
        held: int = pipe.execute()[0]
        self.redis.srem(WORKSPACES, workspace_id)
        return held

    # --- reading

    def workspaces(self) -> list[str]:
        """Buckets holding dead-letter state (dead letters, replay tombstones or drop counts), sorted."""
        self._ready()
        return sorted(self.redis.smembers(WORKSPACES))

    def get(self, record_id: str, workspace_id: str | None = None) -> DeadLetterRecord | None:
        """One dead letter by id, of one workspace (its bucket, or `_unrouted` naming it) or of any."""
        found = self.select(DeadLetterFilter.of(ids=[record_id], workspaces=[workspace_id] if workspace_id else []))
        return found[0] if found else None

    def iter_all(self, workspaces: Iterable[str] = ()) -> Iterator[DeadLetterRecord]:
        """Oldest first, across the buckets of `workspaces` (`_unrouted` for one without a bucket), or every bucket."""
        self._ready()
        for _bucket, record in self._iter_located(self._buckets(frozenset(workspaces), frozenset(self.workspaces()))):
            yield record

    def count(self, workspace_id: str | None = None) -> int:
        """Dead letters held, in one bucket or in all."""
        if workspace_id is not None:
            self._ready()
            held: int = self.redis.hlen(_Keys(workspace_id).entries)
            return held
        return sum(self.count_by_workspace().values())

    def count_by_workspace(self) -> dict[str, int]:
        """Dead letters per bucket, for every bucket in WORKSPACES (zero ones included)."""
        buckets = self.workspaces()
        pipe = self.redis.pipeline(transaction=False)
        for bucket in buckets:
            pipe.hlen(_Keys(bucket).entries)
        return dict(zip(buckets, pipe.execute()))

    def dropped_by_workspace(self) -> dict[str, dict[str, int]]:
        """Dead letters retention dropped, per bucket and error code, since the bucket was made."""
        buckets = self.workspaces()
        pipe = self.redis.pipeline(transaction=False)
        for bucket in buckets:
            pipe.hgetall(_Keys(bucket).dropped)
        return {bucket: {code: int(n) for code, n in sorted(counts.items())}
                for bucket, counts in zip(buckets, pipe.execute()) if counts}

    def count_by_code(self) -> Counter[str]:
        return Counter(r.error_code for r in self.iter_all())

    def select(self, selection: "DeadLetterFilter", now: datetime | None = None) -> list[DeadLetterRecord]:
        """The entries a filter picks, oldest first (ids are looked up directly, not scanned)."""
        return [record for _bucket, record in self._select(selection, now)]

    def _select(self, selection: "DeadLetterFilter", now: datetime | None) -> list[tuple[str, DeadLetterRecord]]:
        self._ready()
        now = now or datetime.now(timezone.utc)
        by_id = bool(selection.ids) and not selection.everything
        held = frozenset(self.workspaces())
        buckets = self._buckets(selection.workspaces, held, by_id)
        if by_id:
            located: Iterable[tuple[str, DeadLetterRecord]] = self._find(sorted(selection.ids), buckets)
        else:
            located = self._iter_located(buckets)
        return [(bucket, record) for bucket, record in located
                if _for_bucket(selection, bucket, held, by_id).matches(record, now)]

    @staticmethod
    def _buckets(workspaces: frozenset[str], held: frozenset[str], by_id: bool = False) -> list[str]:
        """Buckets to read: all; or the named workspaces' own, and `_unrouted` when it is named or a named
        workspace has no bucket here (its letters are there, found by the workspace they name).

        A workspace that has a bucket lists exactly that bucket, so what a workspace holds is counted
        the same everywhere (its bucket's size). Looking a dead letter up by id also tries `_unrouted`."""
        if not workspaces:
            return sorted(held)
        named = {w for w in workspaces if is_workspace_id(w)}
        if by_id:
            return sorted(named | {UNROUTED})
        own = {w for w in named if w in held and w != UNROUTED}
        shared = UNROUTED in workspaces or bool(named - held)
        return sorted(own | ({UNROUTED} if shared else set()))

    def _find(self, ids: list[str], buckets: list[str]) -> list[tuple[str, DeadLetterRecord]]:
        if not ids or not buckets:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for bucket in buckets:
            pipe.hmget(_Keys(bucket).entries, ids)
        found: dict[str, tuple[str, DeadLetterRecord]] = {}
        for bucket, raws in zip(buckets, pipe.execute()):
            for record_id, raw in zip(ids, raws):
                record = _parse(DeadLetterRecord, raw) if raw else None
                if record is not None and record_id not in found:
                    found[record_id] = (bucket, record)
        return sorted(found.values(), key=lambda located: located[1].last_failure_at)

    def _iter_located(self, buckets: list[str]) -> Iterator[tuple[str, DeadLetterRecord]]:
        """(bucket, record), oldest first across the buckets (each read in chunks, merged)."""
        streams = [self._iter_bucket(bucket) for bucket in buckets]
        for _score, bucket, record in heapq.merge(*streams, key=lambda item: item[0]):
            yield bucket, record

    def _iter_bucket(self, bucket: str) -> Iterator[tuple[float, str, DeadLetterRecord]]:
        keys = _Keys(bucket)
        pairs = self.redis.zrange(keys.by_time, 0, -1, withscores=True)
        for start in range(0, len(pairs), _CHUNK):
            chunk = pairs[start:start + _CHUNK]
            for (_, score), raw in zip(chunk, self.redis.hmget(keys.entries, [i for i, _ in chunk])):
                record = _parse(DeadLetterRecord, raw) if raw else None
                if record is not None:
                    yield score, bucket, record

    # --- causes

    def causes(self, workspaces: Iterable[str] = (), *, now: datetime | None = None,
               with_ids: bool = False) -> list[Group]:
        """Dead letters grouped by cause (events/dlq_causes.py), the most letters first: of the named
        workspaces (their buckets; `_unrouted`'s letters naming one that has no bucket), or of every bucket."""
        self._ready()
        named = frozenset(workspaces)
        held = frozenset(self.workspaces())
        stamp = (now or datetime.now(timezone.utc)).timestamp()
        found: list[Group] = []
        for bucket in self._buckets(named, held):
            groups = self._bucket_causes(bucket, stamp, with_ids)
            if named and bucket == UNROUTED and UNROUTED not in named:
                groups = [g for g in groups if g.workspace_id in named - held]
            found.extend(groups)
        return sorted(found, key=lambda g: (-g.count, -g.last_seen, g.bucket, g.key))

    def cause(self, bucket: str, cause_key: str, now: datetime | None = None) -> Group | None:
        """One cause of one bucket, with its letters' ids (oldest first); None when no letter has it now."""
        if not (is_workspace_id(bucket) or bucket == UNROUTED):
            return None
        self._ready()
        stamp = (now or datetime.now(timezone.utc)).timestamp()
        return next((g for g in self._bucket_causes(bucket, stamp, True) if g.key == cause_key), None)

    def _bucket_causes(self, bucket: str, now: float, with_ids: bool) -> list[Group]:
        keys = _Keys(bucket)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrange(keys.by_time, 0, -1, withscores=True)
        pipe.hgetall(keys.cause)
        pipe.hgetall(keys.causes)
        timed, index, described = pipe.execute()
        missing = [record_id for record_id, _ in timed if record_id not in index]
        if missing:  # letters kept before the index existed: indexed once, here
            index.update(self._index_causes(bucket, missing))
            described = self.redis.hgetall(keys.causes)
        groups, stale, unused = group_bucket(bucket, timed, index, described, now, with_ids)
        undescribed = [g.sample_id for g in groups if g.key not in described]
        if undescribed:  # a description deleted by a concurrent clean-up below: written again from a letter
            self._index_causes(bucket, undescribed)
            groups, stale, unused = group_bucket(bucket, timed, index, self.redis.hgetall(keys.causes), now,
                                                 with_ids)
        if stale or unused:  # letters replayed, purged or dropped while their entry was being read
            pipe = self.redis.pipeline()
            if stale:
                pipe.hdel(keys.cause, *stale)
            if unused:
                pipe.hdel(keys.causes, *unused)
            pipe.execute()
        return groups

    def _index_causes(self, bucket: str, ids: list[str]) -> dict[str, str]:
        keys = _Keys(bucket)
        added: dict[str, str] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            pipe = self.redis.pipeline()
            for record_id, raw in zip(chunk, self.redis.hmget(keys.entries, chunk)):
                record = _parse(DeadLetterRecord, raw) if raw else None
                if record is None:
                    continue
                cause = cause_of(record.workspace_id, record.error_code, record.error_fields, record.error_message)
                added[record_id] = index_entry(cause, record.first_failure_at.timestamp())
                pipe.hset(keys.cause, record_id, added[record_id])
                pipe.hset(keys.causes, cause.key, describe(cause, record.error_message))
            pipe.execute()
        return added

    # --- support's actions

    def replay(self, selection: "DeadLetterFilter", republish: Callable[[DeadLetterRecord], None], *,
               now: datetime | None = None,
               on_progress: Callable[[DeadLetterRecord], None] | None = None) -> "ReplayResult":
        """Hand each selected entry to `republish`, then retire it; an entry whose republish fails stays.

        The entry is retired only after its event is back on a queue, so a crash in between can
        at worst replay it twice, which the idempotent write absorbs; it can never lose it. A
        retired entry leaves a tombstone its event's next failure continues; an entry that
        failed again before it was retired is left as it is (it holds that newer failure).
        """
        result = ReplayResult()
        touched: set[str] = set()
        for bucket, record in self._select(selection, now):
            result.matched += 1
            try:
                republish(record)
            except Unreplayable as exc:
                result.skipped.append((record.id, str(exc)))
            except Exception as exc:  # noqa: BLE001 - one failed republish must not stop the rest; it is reported
                result.failed.append((record.id, f"{type(exc).__name__}: {exc}"))
            else:
                self._retire(bucket, record)
                touched.add(bucket)
                result.replayed.append(record)
            if on_progress is not None:
                on_progress(record)
        stamp = datetime.now(timezone.utc).timestamp()
        for bucket in touched:
            keys = _Keys(bucket)
            self._drop_due(keys.replayed, keys.replayed_at, keys.dropped, stamp, count=False, cause_key=keys.cause)
        return result

    def _retire(self, bucket: str, record: DeadLetterRecord) -> None:
        keys = _Keys(bucket)
        at = datetime.now(timezone.utc)
        tombstone = ReplayedRecord(id=record.id, event_id=record.event_id, workspace_id=record.workspace_id,
                                   attempts=record.attempts, first_failure_at=record.first_failure_at,
                                   history=mark_replayed(_earlier_failures(record), at))
        self._retire_script(keys=[keys.entries, keys.by_time, keys.replayed, keys.replayed_at, keys.cause],
                            args=[record.id, repr(record.last_failure_at.timestamp()), tombstone.model_dump_json(),
                                  repr(at.timestamp())])

    def purge(self, selection: "DeadLetterFilter", now: datetime | None = None) -> int:
        by_bucket: dict[str, list[str]] = {}
        for bucket, record in self._select(selection, now):
            by_bucket.setdefault(bucket, []).append(record.id)
        removed = 0
        for bucket, ids in by_bucket.items():
            for start in range(0, len(ids), _CHUNK):
                removed += self._remove(bucket, ids[start:start + _CHUNK])
        return removed

    def remove(self, record_ids: list[str], workspace_id: str | None = None) -> int:
        """Delete dead letters by id from one workspace's bucket, or from wherever they are."""
        if not record_ids:
            return 0
        buckets = [workspace_id] if workspace_id else self.workspaces()
        return sum(self._remove(bucket, record_ids) for bucket in buckets)

    def _remove(self, bucket: str, record_ids: list[str]) -> int:
        keys = _Keys(bucket)
        pipe = self.redis.pipeline()
        pipe.hdel(keys.entries, *record_ids)
        pipe.zrem(keys.by_time, *record_ids)
        pipe.hdel(keys.cause, *record_ids)
        removed: int = pipe.execute()[0]
        return removed

    # --- the global keys of earlier versions

    def _ready(self) -> None:
        """On first use, move dead letters still in the global keys of earlier versions into their buckets."""
        if self._legacy_checked:
            return
        pipe = self.redis.pipeline(transaction=False)
        pipe.exists(LEGACY_ENTRIES)
        pipe.exists(LEGACY_BY_TIME)
        entries, by_time = pipe.execute()
        if entries:
            moved = self.migrate_legacy()
            log.info("moved %d dead letter(s) from %s into per-workspace keys", moved, LEGACY_ENTRIES)
        elif by_time:
            self.redis.delete(LEGACY_BY_TIME)
        self._legacy_checked = True

    def migrate_legacy(self) -> int:
        """Move every dead letter of the global keys into its bucket; returns how many were moved.

        Safe to run from several processes at once: an entry is copied only where its bucket has
        none of that id yet (a newer failure wins), then deleted from the global keys.
        """
        moved, touched = 0, set()
        while True:
            batch = list(itertools.islice(self.redis.hscan_iter(LEGACY_ENTRIES, count=_CHUNK), _CHUNK))
            if not batch:
                break
            pipe = self.redis.pipeline(transaction=False)
            for record_id, _raw in batch:
                pipe.zscore(LEGACY_BY_TIME, record_id)
            by_bucket: dict[str, list[tuple[str, str, float]]] = {}
            for (record_id, raw), score in zip(batch, pipe.execute()):
                record = _parse(DeadLetterRecord, raw)
                at = score if score is not None else (record.last_failure_at.timestamp() if record else time.time())
                bucket = self.bucket_of(record.workspace_id if record else None)
                by_bucket.setdefault(bucket, []).append((record_id, raw, at))
            for bucket, items in by_bucket.items():
                self._adopt(bucket, items)
            ids = [record_id for record_id, _raw in batch]
            pipe = self.redis.pipeline(transaction=False)
            pipe.hdel(LEGACY_ENTRIES, *ids)
            pipe.zrem(LEGACY_BY_TIME, *ids)
            pipe.execute()
            moved += len(batch)
            touched |= set(by_bucket)
        self.redis.delete(LEGACY_BY_TIME)
        for bucket in touched:
            self._trim(bucket, time.time())
        return moved

    def _adopt(self, bucket: str, items: list[tuple[str, str, float]]) -> None:
        keys = _Keys(bucket)
        pipe = self.redis.pipeline()
        for record_id, raw, at in items:
            pipe.hsetnx(keys.entries, record_id, raw)
            pipe.zadd(keys.by_time, {record_id: at}, nx=True)
        pipe.execute()
        self.redis.sadd(WORKSPACES, bucket)


_Stored = TypeVar("_Stored", bound=BaseModel)


def _parse(model: type[_Stored], raw: str) -> _Stored | None:
    """A stored record, or None (logged) when it cannot be read: one bad entry must not block the rest."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        log.warning("unreadable dead-letter entry skipped: %s", str(exc).splitlines()[0])
        return None


def _for_bucket(selection: "DeadLetterFilter", bucket: str, held: frozenset[str] = frozenset(),
                by_id: bool = False) -> "DeadLetterFilter":
    """A named bucket (a workspace's, or `--workspace _unrouted`) is picked whole, whatever workspace each
    entry's event named; in `_unrouted`, read for workspaces without a bucket, entries naming them."""
    if bucket in selection.workspaces:
        return replace(selection, workspaces=frozenset())
    if bucket == UNROUTED and selection.workspaces and not by_id:
        return replace(selection, workspaces=frozenset(selection.workspaces - held) or frozenset({""}))
    return selection


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


def raw_for_storage(raw: Any) -> tuple[object, bool]:
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


def _deep_text(raw: Any) -> str:
    try:
        return json.dumps(raw)
    except (TypeError, ValueError, RecursionError):
        return f"<{type(raw).__name__} nested deeper than Python can write out>"
