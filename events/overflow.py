"""A workspace's overflow in Redis: messages a busy worker took off the shared queues so others' could pass.

When one workspace floods the queues (a burst of 50,000 events), the workers read past its
messages into `key(ws, "overflow")` (a list, oldest first) so the other workspaces' events behind
them are reached at once; the flooded workspace is then written from its overflow one batch per
turn, in the same round-robin as everyone else.

A drain claims a chunk atomically (moved out of the list into a claim that expires); a drain that
dies leaves its claim to expire, and the next claim puts the chunk back at the head of the list,
so nothing is lost (the idempotency ledger absorbs the rare second write).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import redis

from events.keys import key

#: workspaces that have (or recently had) an overflow
INDEX = "sfsync:overflow:workspaces"


class Overflow:
    # KEYS: list, claims zset; ARGV: now, lease, n, token, claim key prefix
    _CLAIM = """
    local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
    for _, old in ipairs(expired) do
        local held = redis.call('GET', ARGV[5] .. old)
        if held then
            local items = cjson.decode(held)
            for i = #items, 1, -1 do redis.call('LPUSH', KEYS[1], items[i]) end
            redis.call('DEL', ARGV[5] .. old)
        end
        redis.call('ZREM', KEYS[2], old)
    end
    local listed = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1)
    local taken, events = {}, 0
    for i = 1, #listed do
        -- events an entry carries: a queue item says so in its sfsync_events header; a spilled
        -- message names a workspace once per event
        local n = tonumber(string.match(listed[i], 'sfsync_events[^:]*:%s*(%d+)'))
        if not n then
            local _, count = string.gsub(listed[i], 'workspace_id', '')
            n = math.max(count, 1)
        end
        if #taken > 0 and events + n > tonumber(ARGV[3]) then break end
        taken[#taken + 1] = listed[i]
        events = events + n
    end
    if #taken == 0 then return taken end
    redis.call('LTRIM', KEYS[1], #taken, -1)
    redis.call('SET', ARGV[5] .. ARGV[4], cjson.encode(taken), 'EX', math.ceil(tonumber(ARGV[2])) + 60)
    redis.call('ZADD', KEYS[2], tonumber(ARGV[1]) + tonumber(ARGV[2]), ARGV[4])
    return taken
    """

    # KEYS: event queue (a list: pushed on the left, taken from the right), the workspace's overflow,
    # the overflow index, the count of items moved; ARGV: items to scan from the taken end,
    # workspace, texts that mark its items
    _SIEVE = """
    local items = redis.call('LRANGE', KEYS[1], -tonumber(ARGV[1]), -1)
    local keep, moved = {}, {}
    for i = 1, #items do
        -- only ASCII items move (kombu and sfsync write ASCII JSON): other bytes may not decode,
        -- and are left to the read loop, which dead-letters what it cannot read
        local hit = false
        if not string.find(items[i], '[\\128-\\255]') then
            for p = 3, #ARGV do
                if string.find(items[i], ARGV[p], 1, true) then hit = true; break end
            end
        end
        if hit then moved[#moved + 1] = items[i] else keep[#keep + 1] = items[i] end
    end
    if #moved == 0 then return 0 end
    redis.call('LTRIM', KEYS[1], 0, -#items - 1)
    for i = 1, #keep do redis.call('RPUSH', KEYS[1], keep[i]) end
    for i = #moved, 1, -1 do redis.call('RPUSH', KEYS[2], cjson.encode({raw = moved[i]})) end
    redis.call('SADD', KEYS[3], ARGV[2])
    redis.call('INCRBY', KEYS[4], #moved)
    return #moved
    """

    def __init__(self, client: redis.Redis):
        self.redis = client

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
    def entry(task_name: str, queue: str, task_id: str | None, args: Any, kwargs: Any) -> str:
        return json.dumps({"task": task_name, "queue": queue, "id": task_id, "args": args, "kwargs": kwargs},
                          separators=(",", ":"))

    def spill(self, entries: list[tuple[str, str]]) -> None:
        """Append (workspace, entry) pairs to their workspaces' overflows, in order, in one round trip."""
        if not entries:
            return
        pipe = self.redis.pipeline(transaction=False)
        for ws, entry in entries:
            pipe.rpush(self._list(ws), entry)
        pipe.sadd(INDEX, *{ws for ws, _ in entries})
        pipe.execute()

    def sieve(self, queue: str, workspace: str, scan: int) -> int:
        """Move the workspace's messages among the `scan` next ones of an event queue into its overflow,
        as they are (the others keep their places); returns how many moved.

        A message is recognised by the first event's workspace in the `argsrepr` header Celery and
        sfsync's publisher write; one it does not recognise, or that is not ASCII, simply stays on
        the queue. The move is
        one atomic script: a message is on the queue or in the overflow, never in neither.
        """
        marks = [f"'workspace_id': '{workspace}'", f'\\"workspace_id\\": \\"{workspace}\\"',
                 f'\\"workspace_id\\":\\"{workspace}\\"']
        return int(self.redis.eval(self._SIEVE, 4, queue, self._list(workspace), INDEX, self._moved(workspace), scan,
                                   workspace, *marks))

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
            self.redis.eval(self._FORGET, 3, INDEX, self._list(ws), self._claims(ws), ws)
        return {ws: count for ws, count in waiting.items() if count}

    # the workspace leaves the index only if nothing was spilled or claimed in the meantime
    _FORGET = """
    if redis.call('LLEN', KEYS[2]) == 0 and redis.call('ZCARD', KEYS[3]) == 0 then
        redis.call('SREM', KEYS[1], ARGV[1])
    end
    return 0
    """

    def claim(self, ws: str, n: int, lease: float) -> tuple[str, list[dict[str, Any]]]:
        """Entries carrying up to `n` events (at least one entry), oldest first, held for `lease`
        seconds under the returned token."""
        token = uuid.uuid4().hex
        taken = self.redis.eval(self._CLAIM, 2, self._list(ws), self._claims(ws), time.time(), lease, n, token,
                                self._claim_prefix(ws))
        return token, [json.loads(raw) for raw in taken]

    def finish(self, ws: str, token: str) -> None:
        """The claimed entries are settled: forget the claim."""
        pipe = self.redis.pipeline()
        pipe.delete(self._claim_prefix(ws) + token)
        pipe.zrem(self._claims(ws), token)
        pipe.execute()

    def size(self, ws: str) -> int:
        return int(self.redis.llen(self._list(ws)))
