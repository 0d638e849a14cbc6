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

#: workspaces that have (or recently had) an overflow
INDEX = "sfsync:overflow:workspaces"


class Overflow:
    # KEYS: list, claims zset; ARGV: now, lease, n, token, claim key prefix, "1" to take at least one entry
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
        if (#taken > 0 or ARGV[6] ~= '1') and events + n > tonumber(ARGV[3]) then break end
        taken[#taken + 1] = listed[i]
        events = events + n
    end
    if #taken == 0 then return taken end
    redis.call('LTRIM', KEYS[1], #taken, -1)
    redis.call('SET', ARGV[5] .. ARGV[4], cjson.encode(taken), 'EX', math.ceil(tonumber(ARGV[2])) + 60)
    redis.call('ZADD', KEYS[2], tonumber(ARGV[1]) + tonumber(ARGV[2]), ARGV[4])
    return taken
    """

    # KEYS: event queue (a list: pushed on the left, taken from the right), the overflow index, then
    # per workspace its overflow and its count of items moved; ARGV: items to scan from the taken
    # end, then the workspaces (in the order of their keys). Returns the queue's length after the
    # move, then the count moved per workspace.
    _SIEVE = r"""
    local slot = {}
    for i = 2, #ARGV do slot[ARGV[i]] = i - 1 end
    local items = redis.call('LRANGE', KEYS[1], -tonumber(ARGV[1]), -1)
    local keep, moved, counts, any = {}, {}, {}, false
    for i = 1, #ARGV - 1 do moved[i] = {}; counts[i] = 0 end
    for i = 1, #items do
        local item, s = items[i], nil
        -- only ASCII items move (kombu and sfsync write ASCII JSON): other bytes may not decode,
        -- and are left to the read loop, which dead-letters what it cannot read
        if not string.find(item, '[\128-\255]') then
            -- the first event's workspace: its first `workspace_id` in Celery's argsrepr header
            -- ('workspace_id': 'ws'), or in an event sent as JSON text (\"workspace_id\": \"ws\")
            local at = string.find(item, 'workspace_id', 1, true)
            if at then
                local ws = string.match(item, "^workspace_id'%s*:%s*'([^'\\]+)'", at)
                    or string.match(item, '^workspace_id\\"%s*:%s*\\"([^"\\]+)\\"', at)
                if ws then s = slot[ws] end
            end
        end
        if s then
            local list = moved[s]
            list[#list + 1] = item
            counts[s] = counts[s] + 1
            any = true
        else
            keep[#keep + 1] = item
        end
    end
    if any then
        redis.call('LTRIM', KEYS[1], 0, -#items - 1)
        for i = 1, #keep do redis.call('RPUSH', KEYS[1], keep[i]) end
        for s = 1, #ARGV - 1 do
            local list = moved[s]
            if #list > 0 then
                for i = #list, 1, -1 do redis.call('RPUSH', KEYS[1 + 2 * s], cjson.encode({raw = list[i]})) end
                redis.call('SADD', KEYS[2], ARGV[s + 1])
                redis.call('INCRBY', KEYS[2 + 2 * s], #list)
            end
        end
    end
    local out = {redis.call('LLEN', KEYS[1])}
    for s = 1, #ARGV - 1 do out[#out + 1] = counts[s] end
    return out
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
    def entry(task_name: str, queue: str, task_id: str | None, args: Any, kwargs: Any, *,
              signature: str | None = None, body: bytes | None = None) -> str:
        """A spilled message; a signed one keeps its signature and the body's exact bytes (base64), from which
        its arguments are then read back."""
        fields = {"task": task_name, "queue": queue, "id": task_id, "args": args, "kwargs": kwargs}
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

        A message belongs to the workspace its first event names, as read from the `argsrepr`
        header Celery and sfsync's publisher write; one it does not recognise, or that is not
        ASCII, simply stays on the queue. The move is one atomic script: a message is on the
        queue or in an overflow, never in neither.
        """
        keys = [queue, INDEX]
        for ws in workspaces:
            keys += [self._list(ws), self._moved(ws)]
        answer = self.redis.eval(self._SIEVE, len(keys), *keys, scan, *workspaces)
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
            self.redis.eval(self._FORGET, 3, INDEX, self._list(ws), self._claims(ws), ws)
        return {ws: count for ws, count in waiting.items() if count}

    # the workspace leaves the index only if nothing was spilled or claimed in the meantime
    _FORGET = """
    if redis.call('LLEN', KEYS[2]) == 0 and redis.call('ZCARD', KEYS[3]) == 0 then
        redis.call('SREM', KEYS[1], ARGV[1])
    end
    return 0
    """

    def claim(self, ws: str, n: int, lease: float, at_least_one: bool = True) -> tuple[str, list[dict[str, Any]]]:
        """Entries carrying up to `n` events (at least one entry unless told otherwise), oldest
        first, held for `lease` seconds under the returned token."""
        token = uuid.uuid4().hex
        taken = self.redis.eval(self._CLAIM, 2, self._list(ws), self._claims(ws), time.time(), lease, n, token,
                                self._claim_prefix(ws), "1" if at_least_one else "0")
        return token, [json.loads(raw) for raw in taken]

    def finish(self, ws: str, token: str) -> None:
        """The claimed entries are settled: forget the claim."""
        pipe = self.redis.pipeline()
        pipe.delete(self._claim_prefix(ws) + token)
        pipe.zrem(self._claims(ws), token)
        pipe.execute()

    def size(self, ws: str) -> int:
        return int(self.redis.llen(self._list(ws)))
