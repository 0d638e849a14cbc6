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


def _queue_item(workspace: str, n: int, bundle: int = 1) -> str:
    from events.wire import queue_item
    from tests.factories import email_event

    events = [email_event(workspace_id=workspace, event_id=f"evt_{workspace}_{n}_{k}") for k in range(bundle)]
    return queue_item("sfsync.email.sent", "email.sent", [events[0] if bundle == 1 else events],
                      headers={"sfsync_events": bundle, "sfsync_workspace": workspace})


def test_given_a_flood_on_the_queue_when_sieved_then_its_items_move_in_order_and_the_others_keep_theirs(
        redis_client):
    overflow = Overflow(redis_client)
    pushed = [_queue_item("ws_flood" if i % 3 else "ws_small", i) for i in range(30)]
    for item in pushed:  # publishers push on the left; workers take from the right
        redis_client.lpush("email.sent", item)

    moved, left = overflow.sieve("email.sent", ["ws_flood"], scan=2_000)

    assert moved == {"ws_flood": 20} and left == 10
    left = list(reversed(redis_client.lrange("email.sent", 0, -1)))
    assert left == [item for i, item in enumerate(pushed) if i % 3 == 0]
    _, taken = overflow.claim("ws_flood", 100, lease=60)
    assert [e["raw"] for e in taken] == [item for i, item in enumerate(pushed) if i % 3]
    assert "ws_flood" in overflow.workspaces() and overflow.moved("ws_flood") == 20


def test_given_more_queued_than_one_sweep_scans_when_sieved_then_only_the_oldest_are_looked_at(redis_client):
    overflow = Overflow(redis_client)
    for i in range(10):
        redis_client.lpush("email.sent", _queue_item("ws_flood", i))

    assert overflow.sieve("email.sent", ["ws_flood"], scan=4) == ({"ws_flood": 4}, 6)
    assert overflow.sieve("email.sent", ["ws_other"], scan=100) == ({"ws_other": 0}, 6)
    assert redis_client.llen("email.sent") == 6 and overflow.size("ws_flood") == 4


def test_given_bundles_in_the_overflow_when_claimed_then_a_claim_carries_about_a_batch_of_events(redis_client):
    overflow = Overflow(redis_client)
    for i in range(6):
        redis_client.lpush("email.sent", _queue_item("ws_flood", i, bundle=5))
    overflow.sieve("email.sent", ["ws_flood"], scan=100)

    _, first = overflow.claim("ws_flood", 12, lease=60)
    _, second = overflow.claim("ws_flood", 3, lease=60)

    assert (len(first), len(second)) == (2, 1)  # 10 events fit in 12; one bundle always goes
    _, along = overflow.claim("ws_flood", 3, lease=60, at_least_one=False)
    assert along == [] and overflow.size("ws_flood") == 3  # taken along with a batch: only what fits


def test_given_a_queued_item_that_is_not_utf8_when_claimed_then_it_comes_back_unreadable_and_the_rest_readable(
        redis_client, redis_url):
    # kombu and sfsync's publisher write ASCII JSON; an item with other bytes that names a workspace
    # is moved like any other (the sieve does not read every byte), and the claim hands it back
    # marked, for the drain to dead-letter as the read loop would, instead of failing the whole claim
    import redis

    overflow = Overflow(redis_client)
    binary = redis.Redis.from_url(redis_url)
    garbled = b'{"headers": {"sfsync_workspace": "ws_flood"}, "properties": {}, "x": "\xff"}'
    binary.lpush("email.sent", garbled)
    redis_client.lpush("email.sent", _queue_item("ws_flood", 1))

    assert overflow.sieve("email.sent", ["ws_flood"], scan=100) == ({"ws_flood": 2}, 0)
    _, (first, second) = overflow.claim("ws_flood", 10, lease=60)
    assert first["raw"].encode("utf-8", "surrogateescape") == garbled and "UnicodeDecodeError" in first["unreadable"]
    assert json.loads(second["raw"])["headers"]["sfsync_workspace"] == "ws_flood" and "unreadable" not in second


def test_given_a_backlog_of_many_workspaces_when_sorted_then_each_moves_to_its_own_overflow_in_order(
        redis_client):
    overflow = Overflow(redis_client)
    names = ["ws_a", "ws_b", "ws_c", "ws_unlisted"]
    pushed = [(names[i % 4], _queue_item(names[i % 4], i, bundle=1 + i % 3)) for i in range(40)]
    for _, item in pushed:
        redis_client.lpush("email.sent", item)

    moved, left = overflow.sieve("email.sent", ["ws_a", "ws_b", "ws_c"], scan=2_000)

    assert moved == {"ws_a": 10, "ws_b": 10, "ws_c": 10} and left == 10
    for ws in ("ws_a", "ws_b", "ws_c"):
        _, taken = overflow.claim(ws, 1_000, lease=60)
        assert [e["raw"] for e in taken] == [item for name, item in pushed if name == ws]
        assert overflow.moved(ws) == 10
    assert set(overflow.workspaces()) == {"ws_a", "ws_b", "ws_c"}
    assert list(reversed(redis_client.lrange("email.sent", 0, -1))) == [
        item for name, item in pushed if name == "ws_unlisted"]


def _celery_node_item(workspace: str | None, n: int, **extra_headers) -> str:
    """A queue item as celery-node writes it (no argsrepr, camelCase properties), with sfsync's
    headers as examples/node/emit.js sets them (none when `workspace` is None)."""
    from benchmarks.load import celery_node_item
    from tests.factories import email_event

    event = email_event(workspace_id=workspace or "ws_flood", event_id=f"evt_node_{n}")
    headers = dict(extra_headers)
    if workspace is not None:
        headers = {"sfsync_workspace": workspace, "sfsync_events": 1, **headers}
    return celery_node_item("sfsync.email.sent", "email.sent", event, headers)


def test_given_celery_node_items_with_the_workspace_header_when_sieved_then_they_move_like_sfsyncs(redis_client):
    overflow = Overflow(redis_client)
    for i in range(6):
        redis_client.lpush("email.sent", _celery_node_item("ws_flood", i))
        redis_client.lpush("email.sent", _queue_item("ws_flood", 100 + i))

    assert overflow.sieve("email.sent", ["ws_flood"], scan=100) == ({"ws_flood": 12}, 0)


def test_given_items_without_the_workspace_header_when_sieved_then_they_stay_for_the_read_loop(redis_client):
    # an older emitter's messages: the body and Celery's argsrepr name the workspace, but the
    # sieve reads the header only; the consumer reads them in queue order and parses their body
    from events.wire import queue_item
    from tests.factories import email_event

    overflow = Overflow(redis_client)
    redis_client.lpush("email.sent", _celery_node_item(None, 1))
    redis_client.lpush("email.sent", queue_item("sfsync.email.sent", "email.sent",
                                                [email_event(workspace_id="ws_flood")], headers={"sfsync_events": 1}))

    assert overflow.sieve("email.sent", ["ws_flood"], scan=100) == ({"ws_flood": 0}, 2)


def test_given_a_workspace_written_elsewhere_in_an_item_when_sieved_then_only_the_top_level_header_counts(
        redis_client):
    # a crafted item cannot steer itself (or be steered) by text placed in other headers or nested
    # objects: the envelope is decoded and only headers.sfsync_workspace is read
    overflow = Overflow(redis_client)
    nested = _celery_node_item(None, 1, stamps={"sfsync_workspace": "ws_flood"},
                               argsrepr="{'sfsync_workspace': 'ws_flood', 'workspace_id': 'ws_flood'}")
    before = json.loads(_celery_node_item("ws_small", 2))
    before["headers"] = {"note": '"sfsync_workspace": "ws_flood"', **before["headers"]}
    redis_client.lpush("email.sent", nested)
    redis_client.lpush("email.sent", json.dumps(before))

    assert overflow.sieve("email.sent", ["ws_flood", "ws_small"], scan=100) == ({"ws_flood": 0, "ws_small": 1}, 1)
    assert json.loads(redis_client.lindex("email.sent", 0))["headers"]["stamps"] == {"sfsync_workspace": "ws_flood"}


def test_given_an_item_that_is_not_an_envelope_when_sieved_then_it_stays_for_the_read_loop(redis_client):
    overflow = Overflow(redis_client)
    for item in ('"sfsync_workspace": "ws_flood"', '{"headers": "sfsync_workspace"}', "[" * 2000,
                 '{"headers": {"sfsync_workspace": 7}, "properties": {}}',
                 '{"headers": ["sfsync_workspace", "ws_flood"], "properties": {}}',
                 # no envelope properties: it would pass for a spilled message in the overflow
                 '{"headers": {"sfsync_workspace": "ws_flood"}, "task": "sfsync.email.sent", "args": [{}]}'):
        redis_client.lpush("email.sent", item)

    assert overflow.sieve("email.sent", ["ws_flood"], scan=100) == ({"ws_flood": 0}, 6)


def test_given_entries_that_say_their_events_when_claimed_then_a_claim_counts_them(redis_client):
    overflow = Overflow(redis_client)
    spilled = [Overflow.entry("sfsync.email.sent", "email.sent", f"t{i}", [[{"n": k} for k in range(4)]], {},
                              events=4) for i in range(3)]
    overflow.spill([("ws_a", e) for e in spilled])
    redis_client.lpush("email.sent", _celery_node_item("ws_a", 9, sfsync_events=0))  # nonsense: counts as one
    overflow.sieve("email.sent", ["ws_a"], scan=10)
    redis_client.rpush("sfsync:{ws_a}:overflow", json.dumps({"task": "t", "args": [1]}))  # written before counts

    _, first = overflow.claim("ws_a", 8, lease=60)
    _, rest = overflow.claim("ws_a", 8, lease=60)

    assert [e.get("id") for e in first] == ["t0", "t1"]
    assert [e.get("id") for e in rest[:1]] == ["t2"] and len(rest) == 3


def test_given_a_header_naming_another_workspace_than_the_events_when_sorted_then_the_header_decides(
        redis_client):
    # scheduling only: the drain writes each event to its own workspace's org
    from events.wire import queue_item
    from tests.factories import email_event

    overflow = Overflow(redis_client)
    events = [email_event(workspace_id="ws_b", event_id="e1"), email_event(workspace_id="ws_b", event_id="e2")]
    redis_client.lpush("email.sent", queue_item("sfsync.email.sent", "email.sent", [events],
                                                headers={"sfsync_events": 2, "sfsync_workspace": "ws_a"}))

    assert overflow.sieve("email.sent", ["ws_a", "ws_b"], scan=10) == ({"ws_a": 1, "ws_b": 0}, 0)
    assert overflow.claim("ws_a", 1, lease=60, at_least_one=False)[1] == []  # it carries two events
    _, (entry,) = overflow.claim("ws_a", 2, lease=60, at_least_one=False)
    assert json.loads(entry["raw"])["headers"]["sfsync_workspace"] == "ws_a"


def test_given_an_event_sent_as_json_text_when_sorted_then_its_header_decides(redis_client):
    from events.wire import queue_item
    from tests.factories import email_event

    overflow = Overflow(redis_client)
    text = json.dumps(email_event(workspace_id="ws_a", event_id="e1"))
    redis_client.lpush("email.sent", queue_item("sfsync.email.sent", "email.sent", [text],
                                                headers={"sfsync_workspace": "ws_a"}))
    redis_client.lpush("email.sent", queue_item("sfsync.email.sent", "email.sent", [json.dumps({"x": 1})]))

    assert overflow.sieve("email.sent", ["ws_a"], scan=10) == ({"ws_a": 1}, 1)
