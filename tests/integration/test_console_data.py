"""What the console's charts, fleet and dead-letter groups read, against a real Redis (and a real worker for the rollup)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from events.deadletter import UNROUTED, DeadLetterFilter, DeadLetterStore, Retention
from events.fleet import FORGET_AFTER, INDEX, STALE_AFTER, Fleet, member_key, summary
from events.keys import key
from events.overflow import Overflow
from events.parking import ParkedMessage, ParkingLot, UsageGauge
from events.rollup import Rollup, deployment_key, minute_of, workspace_key
from tests.conftest import WORKSPACE
from tests.factories import email_event
from workers.sampler import LOCK, sample_backlog

pytestmark = pytest.mark.integration


def _minutes(redis_client, ws, back: int = 3):
    last = minute_of(time.time())
    return Rollup(redis_client).minutes(ws, last - back, last)


def test_given_a_burst_written_by_a_worker_when_the_rollup_is_read_then_it_counts_each_outcome_and_the_latency(stack):
    stack.admin.seed("Contact", [{"FirstName": "Jane", "LastName": "Doe", "Email": "jane.doe@acme.example"}])
    stack.start_worker()
    known = [email_event(origin="manual") for _ in range(20)]
    unknown = [email_event(origin="manual", to=f"nobody{i}@nowhere.example") for i in range(5)]

    stack.publish(known + unknown)
    outcomes = stack.wait_outcomes([e["id"] for e in known + unknown])

    assert sum(o["outcome"] == "written" for o in outcomes.values()) == 20
    minutes = _minutes(stack.redis, WORKSPACE)
    written = sum(m.counts["written"] for m in minutes)
    assert (written, sum(m.counts["skipped"] for m in minutes)) == (20, 5)
    # every written event's publish-to-write latency is in the histogram, each well under a minute
    latencies = [n for m in minutes for n in m.latency.values()]
    assert sum(latencies) == 20
    assert max(b for m in minutes for b in m.latency) <= 15
    # the deployment's minutes add up every workspace's
    everything = _minutes(stack.redis, None)
    assert sum(m.counts["written"] for m in everything) == 20
    # a minute's hash expires on its own
    ttls = [stack.redis.ttl(workspace_key(WORKSPACE, minute_of(time.time()) - n)) for n in range(3)]
    assert any(0 < ttl <= 3 * 86400 for ttl in ttls)


def test_given_waiting_work_when_the_backlog_is_sampled_then_one_worker_writes_it_per_interval(redis_client):
    now = time.time()
    message = ParkedMessage("sfsync.email.sent", "email.sent", {}, {}, "UNABLE_TO_LOCK_ROW", now)
    ParkingLot(redis_client, "retries").park("ws_a", [message], now + 60)
    ParkingLot(redis_client, "parked").park("ws_b", [message, ParkedMessage("t", "q", {"x": 1}, {}, "X", now)], now + 60)
    Overflow(redis_client).spill([("ws_a", Overflow.entry("sfsync.email.sent", "email.sent", "t1", [{}], {}))])
    UsageGauge(redis_client).store("ws_a", 1200, 15000, at=now - 2)
    UsageGauge(redis_client).store(WORKSPACE, 99, 15000, at=now - 3600)  # not seen lately: not written again
    redis_client.lpush("email.sent", "x", "y", "z")

    assert sample_backlog(redis_client, WORKSPACE, now=now) is True
    assert sample_backlog(redis_client, WORKSPACE, now=now + 1) is False  # the interval's sample is taken
    assert redis_client.pttl(LOCK) > 0

    minute = minute_of(now)
    assert redis_client.hgetall(workspace_key("ws_a", minute)) == {"br": "1", "bp": "0", "bo": "1", "au": "1200",
                                                                   "al": "15000"}
    assert redis_client.hgetall(workspace_key("ws_b", minute)) == {"br": "0", "bp": "2", "bo": "0"}
    assert not redis_client.exists(workspace_key(WORKSPACE, minute))
    shared = redis_client.hgetall(deployment_key(minute))
    assert (shared["bq"], shared["br"], shared["bp"], shared["bo"], shared["sm"]) == ("3", "1", "2", "1", "1")
    assert (shared["am"], shared["aw"]) == ("800", "ws_a")
    [read] = Rollup(redis_client).minutes("ws_b", minute, minute)
    assert read.sampled and read.backlog["parked"] == 2 and read.backlog["retries"] == 0


def test_given_processes_beating_when_one_stops_then_it_shows_stale_then_is_forgotten(redis_client):
    fleet = Fleet(redis_client)
    now = 1_000_000.0
    fleet.beat("worker:host-a:10", kind="worker", started=now - 100, version="1.0", in_flight=2, concurrency=4,
               workspaces=["ws_b", "ws_a"], now=now)
    fleet.beat("beat:host-a:11", kind="beat", started=now - 100, version="1.0", now=now)
    fleet.beat("console:host-b:12", kind="console", started=now - 50, version="1.0", now=now - STALE_AFTER - 1)
    fleet.beat("worker:host-b:13", kind="worker", started=now - 50, version="1.0", now=now)
    fleet.leave("worker:host-b:13", now=now)

    members = fleet.members()
    assert [m.id for m in members] == ["worker:host-a:10", "worker:host-b:13", "beat:host-a:11", "console:host-b:12"]
    worker = members[0]
    assert (worker.host, worker.pid, worker.batches_in_flight, worker.concurrency, worker.workspaces) == \
        ("host-a", 10, 2, 4, ["ws_a", "ws_b"])
    assert [m.state(now) for m in members] == ["alive", "stopped", "alive", "stale"]
    assert summary(members, now)["worker"] == {"alive": 1, "stale": 0, "stopped": 1}
    assert 0 < redis_client.ttl(member_key("worker:host-a:10")) <= FORGET_AFTER

    redis_client.delete(member_key("console:host-b:12"))  # its hash expired
    assert [m.id for m in fleet.members()][-1] == "beat:host-a:11"
    assert redis_client.zscore(INDEX, "console:host-b:12") is None


def _letter(store, ws, n, code="FIELD_CUSTOM_VALIDATION_EXCEPTION", field="Subject", message=None):
    return store.add(event={"id": f"evt_{ws}_{code}_{n}", "workspace_id": ws}, event_id=f"evt_{ws}_{code}_{n}",
                     event_type="email.sent", workspace_id=ws, error_code=code,
                     error_message=message or f"Subject must not contain 'ACME-{n}'", error_fields=[field],
                     task_name="sfsync.email.sent", queue="email.sent")


def test_given_letters_of_two_causes_when_grouped_then_replays_purges_and_retention_keep_the_groups_true(redis_client):
    store = DeadLetterStore(redis_client, known=lambda ws: ws in {"ws_a", "ws_b"})
    subject = [_letter(store, "ws_a", n) for n in range(6)]
    title = [_letter(store, "ws_a", n, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "Title", f"Title: bad value {n}")
             for n in range(2)]
    _letter(store, "ws_b", 1)
    _letter(store, "ws_stray", 1)

    groups = store.causes()
    assert [(g.bucket, g.code, g.count) for g in groups][:2] == [
        ("ws_a", "FIELD_CUSTOM_VALIDATION_EXCEPTION", 6), ("ws_a", "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", 2)]
    assert sorted((g.bucket, g.workspace_id, g.count) for g in groups[2:]) == [(UNROUTED, "ws_stray", 1),
                                                                             ("ws_b", "ws_b", 1)]
    big = groups[0]
    assert big.pattern == "Subject must not contain '…'" and big.fields == ["Subject"] and sum(big.spark) == 6
    assert [g.workspace_id for g in store.causes(["ws_stray"])] == ["ws_stray"]
    assert store.cause("ws_a", big.key).ids == [r.id for r in subject]

    replayed = store.replay(DeadLetterFilter.of(ids=[r.id for r in subject[:4]]), lambda record: None)
    assert len(replayed.replayed) == 4
    assert store.purge(DeadLetterFilter.of(ids=[title[0].id])) == 1
    counts = {g.code: g.count for g in store.causes(["ws_a"]) if g.bucket == "ws_a"}
    assert counts == {"FIELD_CUSTOM_VALIDATION_EXCEPTION": 2, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST": 1}
    assert redis_client.hlen(key("ws_a", "dlq", "cause")) == 3

    # retention drops the oldest: their index entries go with them
    small = DeadLetterStore(redis_client, known=lambda ws: ws in {"ws_a", "ws_b"}, retention=Retention(max_count=1))
    small.prune()
    assert redis_client.hlen(key("ws_a", "dlq", "cause")) == 1
    assert sum(g.count for g in store.causes(["ws_a"]) if g.bucket == "ws_a") == 1
    assert redis_client.hlen(key("ws_a", "dlq", "causes")) == 1


def test_given_letters_kept_before_the_index_existed_when_grouped_then_they_are_indexed_once(redis_client):
    store = DeadLetterStore(redis_client)
    for n in range(3):
        _letter(store, "ws_a", n)
    redis_client.delete(key("ws_a", "dlq", "cause"), key("ws_a", "dlq", "causes"))

    [group] = store.causes(["ws_a"], now=datetime.now(timezone.utc) + timedelta(hours=2))
    assert group.count == 3 and group.code == "FIELD_CUSTOM_VALIDATION_EXCEPTION" and group.spark[-3] == 3
    assert redis_client.hlen(key("ws_a", "dlq", "cause")) == 3


def test_given_a_worker_and_beat_running_when_the_worker_is_killed_then_it_shows_stale_and_a_stopped_beat_says_so(
        stack):
    from tests.conftest import wait_until
    from workers.local.stack import beat_process

    worker = stack.start_worker(concurrency=2)
    beat = beat_process(stack.env()).start()
    stack.processes.append(beat)
    fleet = Fleet(stack.redis)

    def listed(kind):
        return [m for m in fleet.members() if m.kind == kind and m.state(time.time()) == "alive"]

    [alive] = wait_until(lambda: listed("worker"), 30, "the worker's heartbeat", worker)
    assert alive.pid == worker.proc.pid and alive.concurrency == 2 and alive.batches_in_flight == 0
    wait_until(lambda: listed("beat"), 30, "beat's heartbeat", beat)
    # the sampler of the running worker marks minutes as sampled
    wait_until(lambda: stack.redis.hget(deployment_key(minute_of(time.time())), "sm") or
               stack.redis.hget(deployment_key(minute_of(time.time()) - 1), "sm"), 30, "a backlog sample", worker)

    worker.kill()
    killed_at = time.monotonic()
    [stale] = wait_until(lambda: [m for m in fleet.members() if m.pid == alive.pid and
                                  m.state(time.time()) == "stale"], 30, "the killed worker shown stale")
    assert time.monotonic() - killed_at <= STALE_AFTER + 2

    beat.terminate()
    wait_until(lambda: [m for m in fleet.members() if m.kind == "beat" and m.state(time.time()) == "stopped"], 20,
               "beat's goodbye", beat)

    again = stack.start_worker()
    wait_until(lambda: [m for m in fleet.members() if m.pid == again.proc.pid], 20, "the new worker", again)
    again.terminate()
    wait_until(lambda: [m for m in fleet.members() if m.pid == again.proc.pid and m.state(time.time()) == "stopped"],
               20, "the worker's goodbye after a warm shutdown", again)
