"""A workspace's overflow in Redis: messages a busy worker took off the shared queues so others' could pass.

When one workspace floods the queues (a burst of 50,000 events), the workers read past its
messages into `key(ws, "overflow")` (a list, oldest first) so the other workspaces' events behind
them are reached at once; the flooded workspace is then written from its overflow one batch per
turn, in the same round-robin as everyone else. A backlog of many workspaces is sorted the same
way, each workspace's messages into its own overflow, so each is written in whole batches.

A drain claims a chunk atomically (moved out of the list into a claim that expires); a drain that
dies leaves its claim to expire, and the next claim puts the chunk back at the head of the list,
so nothing is lost (the idempotency ledger absorbs the rare second write).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import redis

from events.keys import key
from events.lua import script, undecoded

#: workspaces that have (or recently had) an overflow
INDEX = "sfsync:overflow:workspaces"


class Overflow:
    """The overflows of every workspace: spilled and sieved messages, drained a claim at a time."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        self._sieve = script(client, "overflow_sieve")
        self._forget = script(client, "overflow_forget")

    @staticmethod
    def _list(ws: str) -> str:
        return key(ws, "overflow")

    @staticmethod
    def _claims(ws: str) -> str:
        return key(ws, "overflow", "claims")

    @staticmethod
    def _claim_prefix(ws: str) -> str:
        return key(ws, "overflow", "claim") + ":"

    @staticmethod
    def entry(task_name: str, queue: str, task_id: str | None, args: Any, kwargs: Any, events: int = 1,
              headers: dict[str, Any] | None = None, *, signature: str | None = None,
              body: bytes | None = None) -> str:
        """A message the consumer spilled: its task, queue, id, arguments, the `events` it carries
        (a claim counts them) and the headers a pool process reads besides Celery's; a signed one
        keeps its signature and the body's exact bytes (base64), from which its arguments are then
        read back."""
        fields = {"task": task_name, "queue": queue, "id": task_id, "args": args, "kwargs": kwargs,
                  "events": max(int(events), 1), "headers": headers or {}}
        if signature is not None and body is not None:
            fields.update(signature=signature, body=base64.b64encode(body).decode("ascii"))
        return json.dumps(fields, separators=(",", ":"))

    def spill(self, entries: list[tuple[str, str]]) -> None:
        """Append (workspace, entry) pairs to their workspaces' overflows, in order, in one round trip."""
        if not entries:
            return
        pipe = self.redis.pipeline(transaction=False)
        for ws, entry in entries:
            pipe.rpush(self._list(ws), entry)
        pipe.sadd(INDEX, *{ws for ws, _ in entries})
        pipe.execute()

    def sieve(self, queue: str, workspaces: list[str], scan: int) -> tuple[dict[str, int], int]:
        """Move these workspaces' messages among the `scan` next ones of an event queue into their
        overflows, as they are (the others keep their places); returns how many moved per
        workspace, and how many items the queue holds after the move.

        A message belongs to the workspace its `sfsync_workspace` header names (the envelope is
        decoded in the script; see events/lua/overflow_sieve.lua); one without it (an emitter that
        does not set it), or that is not ASCII, simply stays on the queue and is read as usual.
        The move is one atomic script: a message is on the queue or in an overflow, never in neither.
        """
        keys = [queue, INDEX]
        for ws in workspaces:
            keys += [self._list(ws), self._moved(ws)]
        answer = self._sieve(keys=keys, args=[scan, *workspaces])
        return dict(zip(workspaces, (int(n) for n in answer[1:]))), int(answer[0])

    def depth(self, queue: str) -> int:
        """Items waiting on an event queue."""
        return int(self.redis.llen(queue))

    @staticmethod
    def _moved(ws: str) -> str:
        return key(ws, "overflow", "moved")

    def moved(self, ws: str) -> int:
        """Queue items moved into the workspace's overflow by sieves, in all."""
        return int(self.redis.get(self._moved(ws)) or 0)

    def workspaces(self) -> list[str]:
        return [m.decode() if isinstance(m, bytes) else m for m in self.redis.smembers(INDEX)]

    def pending(self, workspaces: list[str]) -> dict[str, int]:
        """Entries waiting (and claimed) per workspace; empty ones leave the index."""
        if not workspaces:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for ws in workspaces:
            pipe.llen(self._list(ws))
            pipe.zcard(self._claims(ws))
        answers = pipe.execute()
        waiting = {ws: answers[2 * n] for n, ws in enumerate(workspaces)}
        idle = [ws for n, ws in enumerate(workspaces) if not answers[2 * n] and not answers[2 * n + 1]]
        for ws in idle:
            self._forget(keys=[INDEX, self._list(ws), self._claims(ws)], args=[ws])
        return {ws: count for ws, count in waiting.items() if count}

    def claim(self, ws: str, n: int, lease: float, at_least_one: bool = True) -> tuple[str, list[dict[str, Any]]]:
        """Entries carrying up to `n` events (at least one entry unless told otherwise), oldest
        first, held for `lease` seconds under the returned token (see `read_entry`)."""
        token = uuid.uuid4().hex
        taken = undecoded(self.redis, "overflow_claim", [self._list(ws), self._claims(ws)],
                          [time.time(), lease, n, token, self._claim_prefix(ws), "1" if at_least_one else "0"])
        return token, [read_entry(raw) for raw in taken]

    def finish(self, ws: str, token: str) -> None:
        """The claimed entries are settled: forget the claim."""
        pipe = self.redis.pipeline()
        pipe.delete(self._claim_prefix(ws) + token)
        pipe.zrem(self._claims(ws), token)
        pipe.execute()

    def size(self, ws: str) -> int:
        return int(self.redis.llen(self._list(ws)))


def read_entry(raw: bytes) -> dict[str, Any]:
    """An overflow entry as a drain uses it: a spilled message's fields ({"task", "args", ...}), or
    {"raw": text} for a queue item the sieve moved as it was (a message envelope: the sieve moves
    nothing without `properties`, which a spilled entry never has), checked like any item the read
    loop takes, with "unreadable" saying why when its bytes are not UTF-8 text."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return {"raw": raw.decode("utf-8", "surrogateescape"),
                "unreadable": f"queue item is not JSON: {type(exc).__name__}: {str(exc)[:200]}"}
    try:
        entry = json.loads(text)
    except (ValueError, RecursionError):
        return {"raw": text}
    if not isinstance(entry, dict) or "properties" in entry:
        return {"raw": text}
    return entry
