"""Emails waiting for their Contact (or Lead) to appear in Salesforce: kept per workspace in Redis, bounded.

An email skipped because nobody in Salesforce has any of the person's addresses waits here (for
`late_contact_days`, at most `late_contact_max` per workspace, the oldest dropped first). When a
matching record appears — a play creates it, or the CRM cycle reads one created or changed — the
emails waiting for its addresses are moved, in the order they were sent, into the workspace's
retries lot due at once: every worker releases due retries each second, so they are written by the
ordinary pipeline (and its idempotency ledger) like any retried event. Finding them costs one
Redis script per batch of addresses and no Salesforce call.

Redis, per workspace (one hash tag, so each script touches one slot):
- `sfsync:{<ws>}:late:entries`  hash  event id -> the parked message (`ParkedMessage.encode()`)
- `sfsync:{<ws>}:late:meta`     hash  event id -> `{"addresses": [...], "sent": <ms>, "type": ...}`
- `sfsync:{<ws>}:late:since`    zset  event id scored by when it began to wait (epoch seconds)
- `sfsync:{<ws>}:late:to:<address>`  set of the event ids waiting for that address
- `sfsync:{<ws>}:late:counts`   hash  waited, released, expired, dropped (totals since the start)
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from events.keys import key
from events.lua import script
from events.parking import ParkedMessage, ParkingLot
from schemas.codes import ErrorCode

#: seconds in a day: `late_contact_days` is in days
DAY = 86_400.0
#: the reason parked messages released here carry (shown by status with the retries)
LATE_CONTACT = ErrorCode.LATE_CONTACT


@dataclass(frozen=True)
class WaitingEmail:
    """One email to keep until its person appears: the message to send again and how to find it."""

    event_id: str
    event_type: str
    message: ParkedMessage
    #: the person's addresses, lower-cased: any of them appearing in Salesforce releases it
    addresses: tuple[str, ...]
    #: when the email was sent (ms since the epoch): released emails go out in this order
    sent_ms: int
    #: when it began to wait (epoch seconds); kept from its first wait when it waits again
    since: float


@dataclass(frozen=True)
class WaitingSummary:
    """What `sfsync late count`, status and the console show."""

    waiting: int
    #: epoch seconds the oldest began to wait (None: nothing waits)
    oldest_since: float | None
    waited: int = 0
    released: int = 0
    expired: int = 0
    dropped: int = 0

    def as_dict(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        oldest = round(now - self.oldest_since, 1) if self.oldest_since else None
        return {"waiting": self.waiting, "oldest_since": self.oldest_since, "oldest_wait_seconds": oldest,
                "oldest_wait": wait_span(oldest), "waited": self.waited, "released": self.released,
                "expired": self.expired, "dropped": self.dropped}


def wait_span(seconds: float | None) -> str:
    """`3 d 4 h`, `2 h 5 min`, `40 s`: how long something has waited, as people read it."""
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else f"{secs} s"


class LateContacts:
    """The waiting emails of every workspace (see the module docstring)."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        # each runs after the removal the three share (events/lua/late_contacts_remove.lua)
        self._wait = script(client, "late_contacts_remove", "late_contacts_wait")
        self._release = script(client, "late_contacts_remove", "late_contacts_release")
        self._expire = script(client, "late_contacts_remove", "late_contacts_expire")

    @staticmethod
    def _keys(ws: str) -> list[str]:
        return [key(ws, "late", "entries"), key(ws, "late", "meta"), key(ws, "late", "since"),
                key(ws, "late", "counts")]

    @staticmethod
    def _prefix(ws: str) -> str:
        return key(ws, "late", "to", "")

    @staticmethod
    def _expire_before(days: float, now: float) -> float:
        return now - days * DAY

    def wait(self, ws: str, emails: Sequence[WaitingEmail], *, days: float, max_waiting: int,
             now: float | None = None) -> dict[str, int]:
        """Keep these emails until their person appears (or `days` pass); returns added, expired, dropped."""
        now = time.time() if now is None else now
        args: list[str | float | int] = [self._prefix(ws), self._expire_before(days, now), max_waiting]
        for email in emails:
            addresses = sorted({a.strip().lower() for a in email.addresses if a and a.strip()})
            if not addresses:
                continue  # nothing could ever release it
            meta = {"addresses": addresses, "sent": email.sent_ms, "type": email.event_type}
            args += [email.event_id, email.since, email.message.encode(), json.dumps(meta, separators=(",", ":")),
                     json.dumps(addresses)]
        added, expired, dropped = self._wait(keys=self._keys(ws), args=args)
        return {"added": int(added), "expired": int(expired), "dropped": int(dropped)}

    def release(self, ws: str, addresses: Iterable[str], *, days: float, now: float | None = None) -> list[str]:
        """Every email waiting for one of these addresses, due in the retries lot now in the order sent;
        returns their event ids in that order. Atomic: two releases never release one email twice."""
        wanted = sorted({a.strip().lower() for a in addresses if isinstance(a, str) and a.strip()})
        if not wanted:
            return []
        now = time.time() if now is None else now
        lot = ParkingLot(self.redis, "retries")
        # the releasers look for due work through this index (it only grows): listed before anything is due
        self.redis.sadd(lot.index, ws)
        released = self._release(keys=[*self._keys(ws), key(ws, lot.name)],
                                 args=[self._prefix(ws), self._expire_before(days, now), now, *wanted])
        return [r.decode() if isinstance(r, bytes) else r for r in released]

    def expire(self, ws: str, *, days: float, now: float | None = None) -> int:
        now = time.time() if now is None else now
        return int(self._expire(keys=self._keys(ws), args=[self._prefix(ws), self._expire_before(days, now)]))

    def summary(self, ws: str, *, days: float, now: float | None = None) -> WaitingSummary:
        """How many wait (after dropping those past `days`), since when, and the totals."""
        self.expire(ws, days=days, now=now)
        _, _, since, counts = self._keys(ws)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(since)
        pipe.zrange(since, 0, 0, withscores=True)
        pipe.hgetall(counts)
        waiting, oldest, totals = pipe.execute()
        totals = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in totals.items()}
        return WaitingSummary(waiting=int(waiting), oldest_since=float(oldest[0][1]) if oldest else None,
                              **{name: totals.get(name, 0) for name in ("waited", "released", "expired", "dropped")})

    def listing(self, ws: str, *, days: float, limit: int = 100, now: float | None = None) -> list[dict[str, Any]]:
        """The oldest waiting emails first: event id and type, addresses, when sent, since and until when."""
        self.expire(ws, days=days, now=now)
        _, meta_key, since_key, _ = self._keys(ws)
        rows = self.redis.zrange(since_key, 0, max(limit, 1) - 1, withscores=True)
        if not rows:
            return []
        ids = [r[0].decode() if isinstance(r[0], bytes) else r[0] for r in rows]
        metas = self.redis.hmget(meta_key, ids)
        out = []
        for (event_id, (_, since)), raw in zip(zip(ids, rows), metas):
            meta = json.loads(raw) if raw else {}
            out.append({"event_id": event_id, "event_type": meta.get("type"), "addresses": meta.get("addresses", []),
                        "sent_at_ms": meta.get("sent"), "waiting_since": float(since),
                        "waiting_until": float(since) + days * DAY})
        return out
