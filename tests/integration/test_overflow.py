"""The overflow of a flooding workspace in real Redis: order, claims that expire, the index."""

from __future__ import annotations

import json

from events.overflow import INDEX, Overflow


def _entries(n: int, start: int = 0) -> list[str]:
    return [Overflow.entry("sfsync.email_sent", "sfsync.email.sent", f"t{i}", [{"n": i}], {}) for i in
            range(start, start + n)]


def test_given_spilled_messages_when_claimed_then_oldest_first_and_settled_claims_are_forgotten(redis_client):
    overflow = Overflow(redis_client)
    overflow.spill([("ws_a", e) for e in _entries(5)] + [("ws_b", e) for e in _entries(2, 100)])

    token, taken = overflow.claim("ws_a", 3, lease=60)

    assert [e["id"] for e in taken] == ["t0", "t1", "t2"]
    assert overflow.pending(["ws_a", "ws_b"]) == {"ws_a": 2, "ws_b": 2}
    overflow.finish("ws_a", token)
    _, rest = overflow.claim("ws_a", 10, lease=60)
    assert [e["id"] for e in rest] == ["t3", "t4"]
    assert [e["args"] for e in rest] == [[{"n": 3}], [{"n": 4}]]


def test_given_a_drain_that_died_when_its_claim_expires_then_the_next_claim_takes_its_entries_first(redis_client):
    overflow = Overflow(redis_client)
    overflow.spill([("ws_a", e) for e in _entries(4)])
    overflow.claim("ws_a", 2, lease=-1)  # the claimant died; its lease is already over

    token, taken = overflow.claim("ws_a", 10, lease=60)

    assert [e["id"] for e in taken] == ["t0", "t1", "t2", "t3"]
    overflow.finish("ws_a", token)
    assert overflow.size("ws_a") == 0
    assert not [k for k in redis_client.scan_iter(match="sfsync:{ws_a}:overflow:claim:*")]


def test_given_a_drained_overflow_when_pending_is_read_then_the_workspace_leaves_the_index(redis_client):
    overflow = Overflow(redis_client)
    overflow.spill([("ws_a", e) for e in _entries(1)])
    token, _ = overflow.claim("ws_a", 10, lease=60)
    assert overflow.pending(overflow.workspaces()) == {}
    assert redis_client.sismember(INDEX, "ws_a")  # a claim is still open

    overflow.finish("ws_a", token)
    overflow.pending(overflow.workspaces())

    assert not redis_client.sismember(INDEX, "ws_a")
    assert json.loads(Overflow.entry("t", "q", None, [1], {"a": 1}))["kwargs"] == {"a": 1}
